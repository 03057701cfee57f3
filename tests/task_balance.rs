//! Scale-out moves the stateful work (issue 15): with several instances (and stream
//! threads) of one application on Tansu, every member owns whole tasks and each
//! sub-topology's tasks are spread over the instances; when one leaves, the others own
//! all of them; totals stay exact throughout.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::exact::{Setup, PARTITIONS};
use support::instance::Instance;

/// Sub-topologies of the bundled topology with the rules of `support::exact`: ingest,
/// per-customer game state, leaderboards. Each has `PARTITIONS` tasks.
const SUBTOPOLOGIES: usize = 3;

/// Tasks running per sub-topology on the instance listening on `port`, summed over its
/// stream threads (`scorestream_thread_tasks`); `None` while it does not answer.
fn tasks_by_subtopology(port: u16) -> Option<BTreeMap<usize, i64>> {
    let (status, body) = support::http_get(port, "/metrics")?;
    if status != 200 {
        return None;
    }
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("scorestream_thread_tasks{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ")?;
        let sub = labels
            .split(',')
            .find_map(|l| l.strip_prefix("subtopology=\""))?
            .trim_end_matches('"')
            .parse()
            .ok()?;
        *out.entry(sub).or_insert(0) += value.trim().parse::<i64>().ok()?;
    }
    Some(out)
}

/// Waits until the instances on `ports` together run every task of every sub-topology
/// exactly once, each instance between floor and ceil of its fair share of each.
fn wait_balanced(ports: &[u16], what: &str) -> Vec<BTreeMap<usize, i64>> {
    let n = ports.len() as i64;
    let (low, high) = (
        i64::from(PARTITIONS) / n,
        (i64::from(PARTITIONS) + n - 1) / n,
    );
    support::eventually(Duration::from_secs(150), what, || {
        let views: Vec<BTreeMap<usize, i64>> = ports
            .iter()
            .map(|&p| tasks_by_subtopology(p))
            .collect::<Option<_>>()?;
        let balanced = (0..SUBTOPOLOGIES).all(|sub| {
            let counts: Vec<i64> = views
                .iter()
                .map(|v| v.get(&sub).copied().unwrap_or(0))
                .collect();
            counts.iter().sum::<i64>() == i64::from(PARTITIONS)
                && counts.iter().all(|&c| (low..=high).contains(&c))
        });
        balanced.then_some(views)
    })
}

/// `instances` instances of `threads` stream threads each: balanced, exact; then (when
/// `leave`) the last one leaves and the others take its tasks, still exact.
fn scale_out_and_back(instances: usize, threads: usize, leave: bool) {
    let mut s = Setup::with_threads("300ms", threads);
    s.produce(1500);
    let ports: Vec<u16> = (0..instances).map(|_| support::free_port()).collect();
    let mut running: Vec<Instance> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| Instance::start_on_port(&s.config, &s.state_dir(&format!("i{i}")), port))
        .collect();
    let views = wait_balanced(
        &ports,
        &format!("{instances} instances x {threads} threads balanced"),
    );
    println!("{instances} x {threads}: tasks per sub-topology per instance: {views:?}");
    s.produce(1500);
    s.wait_exact(Duration::from_secs(120), "every instance running");
    if !leave {
        s.check_boards(Duration::from_secs(60));
        for i in running {
            check_log(&i.stop(), threads);
        }
        return;
    }

    let leaving = running.pop().expect("at least one instance");
    check_log(&leaving.stop(), threads);
    let views = wait_balanced(
        &ports[..instances - 1],
        "the remaining instances own every task",
    );
    println!("after one left: {views:?}");
    s.produce(1000);
    s.wait_exact(Duration::from_secs(120), "after one instance left");
    s.check_boards(Duration::from_secs(60));
    for i in running {
        check_log(&i.stop(), threads);
    }
}

/// An instance's log: no panic, and no local state judged ahead of the broker — the
/// broker lost nothing here, so that would be a false alarm (and a needless full restore):
/// a task that comes back to a thread after a rebalance is restored again by a consumer
/// that read its changelogs before. With several stream threads, they started processing
/// together, once each had its partitions (not at the start deadline).
fn check_log(log: &str, threads: usize) {
    assert!(!log.contains("panicked"), "{log}");
    if threads > 1 {
        assert!(
            log.contains("Every stream thread has its partitions: processing starts."),
            "the stream threads did not start together:\n{log}"
        );
    }
    let ahead: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ahead of the broker"))
        .collect();
    assert!(ahead.is_empty(), "false alarm:\n{}", ahead.join("\n"));
}

#[test]
fn two_instances_share_every_subtopology_and_one_takes_all_back() {
    scale_out_and_back(2, 1, true);
}

#[test]
fn three_instances_each_own_a_task_of_every_subtopology() {
    scale_out_and_back(3, 1, true);
}

/// On the patched broker (`Setup::with_threads`): two threads of one instance leaving
/// together wedged stock Tansu 0.6.0's group, and its fetch from inside a record batch
/// skipped the rest of the batch (docs/operations.md) — the likely cause of the 90 s without
/// progress once seen here after the other instance left, when this test had no leave.
#[test]
fn two_instances_of_two_stream_threads_share_every_subtopology_and_one_takes_all_back() {
    scale_out_and_back(2, 2, true);
}
