//! State under real process crashes, against a Tansu broker:
//!
//! - crash: `scorestream run` is killed with SIGKILL at random moments (processing,
//!   committing, restoring) and restarted while a producer keeps sending; at the end every
//!   customer's totals equal the expected ones exactly.
//! - wipe: stop, delete the state directory, restart: the restored state equals the state
//!   before, and processing goes on with exact totals.
//! - migration: a second instance joins, tasks move and are restored by the new owner; the
//!   first leaves; totals stay exact.
//!
//! Totals are read with `scorestream state dump`, which rebuilds state from the changelogs
//! with the restore rules — exactly what a new owner would hold.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use support::exact::Setup;
use support::instance::Instance;

/// Stream threads per instance: `SCORESTREAM_TEST_STREAM_THREADS` (1 unless set; with
/// more, on the patched broker, see `Setup::with_threads`).
fn stream_threads() -> usize {
    std::env::var("SCORESTREAM_TEST_STREAM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Where a kill landed, from the last lines the instance logged.
fn classify(log: &str) -> &'static str {
    let restoring = log.rfind("Restoring a store");
    let running = log.rfind("Task running");
    match (restoring, running) {
        (Some(r), Some(t)) if r > t => "restore",
        (Some(_), None) => "restore",
        (_, Some(_)) => "processing/commit",
        _ => "start-up",
    }
}

#[test]
fn kill_9_at_random_moments_never_loses_or_double_counts() {
    let mut s = Setup::with_threads("50ms", stream_threads());
    let state = s.state_dir("crash");
    let mut rng = rand::rng();
    let mut landed: BTreeMap<&str, u32> = BTreeMap::new();
    let mut warnings: Vec<String> = Vec::new();
    let rounds = 20;
    s.produce(2000);
    for round in 0..rounds {
        // Every third round starts from an empty disk and is killed within 40 ms of its
        // restore starting, so the kill lands in a full restore; the others restore
        // incrementally and are killed while processing.
        let early = round % 3 == 0;
        if early {
            let _ = std::fs::remove_dir_all(&state);
        }
        let mut inst = Instance::start(&s.config, &state);
        if !early {
            assert!(
                inst.wait_for_log("Task running", Duration::from_secs(60)),
                "round {round}: never started:\n{}",
                inst.log()
            );
        } else {
            inst.wait_for_log("Restoring a store", Duration::from_secs(60));
        }
        // Keep events flowing while it runs.
        s.produce(500);
        // Early kills land inside the restore that just started; the others while
        // processing, mostly inside one of the commits that run every 50 ms.
        let producer = s.produce_in_background(500);
        let delay = if early {
            rng.random_range(0..40)
        } else {
            rng.random_range(100..1500)
        };
        std::thread::sleep(Duration::from_millis(delay));
        let log = inst.kill9();
        producer.join().unwrap();
        *landed.entry(classify(&log)).or_default() += 1;
        assert!(!log.contains("panicked"), "round {round}:\n{log}");
        if let Ok(dir) = std::env::var("SCORESTREAM_TEST_KEEP_LOGS") {
            let _ = std::fs::write(format!("{dir}/round-{round:02}.log"), &log);
        }
        warnings.extend(
            log.lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .map(|l| format!("round {round}: {l}")),
        );
    }
    eprintln!("kill points: {landed:?}");
    // A final clean run processes everything left.
    let port = support::free_port();
    let inst = Instance::start_on_port(&s.config, &state, port);
    let got = s.wait_exact_with_log(Duration::from_secs(120), "after 20 kills", || {
        let log = inst.log();
        let lines: Vec<&str> = log.lines().collect();
        // The live state of a few short customers, beside the changelogs' (the dump).
        let dumped = s.dump();
        let live: Vec<String> = s
            .expected
            .iter()
            .filter(|(c, e)| dumped.get(*c) != Some(*e))
            .take(3)
            .map(|(c, e)| {
                let body = support::http_get(port, &format!("/customers/{c}"))
                    .map(|(_, b)| b.chars().take(400).collect::<String>())
                    .unwrap_or_default();
                format!("{c}: expected {e:?}, dumped {:?}, live: {body}", dumped.get(c))
            })
            .collect();
        if let Ok(dir) = std::env::var("SCORESTREAM_TEST_KEEP_LOGS") {
            let _ = std::fs::write(format!("{dir}/final.log"), &log);
        }
        format!(
            "missing events:\n{}\nchangelog records a restore skips:\n{}\nchangelog history of short customers:\n{}\nwhere: {}\nlive state of short customers:\n{}\nwarnings of the killed rounds (last 100):\n{}\nlast lines of the final run's log:\n{}",
            s.trace_missing(&dumped, 5),
            s.changelog_skips(),
            s.changelog_history(&dumped, 5),
            s.locate_loss(),
            live.join("\n"),
            warnings[warnings.len().saturating_sub(100)..].join("\n"),
            lines[lines.len().saturating_sub(200)..].join("\n")
        )
    });
    s.check_boards(Duration::from_secs(60));
    let log = inst.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(got.len(), 1000);
    assert_eq!(got.values().map(|t| t.0).sum::<u64>(), s.next_event);
    assert!(landed.values().sum::<u32>() >= 20);
    s.check_results();
    drop(s.broker);
}

/// kill -9 exactly where the asynchronous commit is most fragile, alternating between
/// `CommitSettled` (every output and changelog record of the point acknowledged, local
/// state not yet written, offsets not committed) and `Commit` (the point prepared, its
/// records with the producer, none acknowledged yet), twice each. The instance stalls at the point (a
/// test hook, `SCORESTREAM_TEST_STALL_AT`) and is killed there; each restart runs on the
/// kept state directory. The totals, boards and results end exact.
#[test]
fn kill_9_exactly_at_the_commit_points_never_loses_or_double_counts() {
    let started = std::time::Instant::now();
    let mut s = Setup::with_threads("50ms", stream_threads());
    let state = s.state_dir("points");
    let mut rng = rand::rng();
    s.produce(1000);
    for round in 0..4 {
        let point = if round % 2 == 0 {
            "commit_settled"
        } else {
            "commit"
        };
        // The n-th point reached after the first record was processed.
        let stall = format!("{point}:{}", rng.random_range(1..5));
        s.produce(300);
        let mut inst = Instance::start_with_env(
            &s.config,
            &state,
            &[("SCORESTREAM_TEST_STALL_AT", stall.as_str())],
        );
        let producer = s.produce_in_background(300);
        assert!(
            inst.wait_for_log("stalled at", Duration::from_secs(60)),
            "round {round}: never reached {stall}:\n{}",
            inst.log()
        );
        let log = inst.kill9();
        producer.join().unwrap();
        assert!(!log.contains("panicked"), "round {round} ({stall}):\n{log}");
        eprintln!(
            "round {round}: killed at {stall} after {:?}",
            started.elapsed()
        );
    }
    let inst = Instance::start(&s.config, &state);
    let got = s.wait_exact_with_log(
        Duration::from_secs(60),
        "after kills at the commit points",
        || {
            let log = inst.log();
            let lines: Vec<&str> = log.lines().collect();
            format!(
                "missing events:\n{}\nwhere: {}\nlast lines of the final run's log:\n{}",
                s.trace_missing(&s.dump(), 5),
                s.locate_loss(),
                lines[lines.len().saturating_sub(200)..].join("\n")
            )
        },
    );
    s.check_boards(Duration::from_secs(30));
    let log = inst.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(got.values().map(|t| t.0).sum::<u64>(), s.next_event);
    s.check_results();
    eprintln!("took {:?}", started.elapsed());
    drop(s.broker);
}

#[test]
fn wiped_state_is_restored_from_the_changelog_exactly() {
    let mut s = Setup::with_threads("200ms", stream_threads());
    let state = s.state_dir("wipe");
    s.produce(3000);
    let mut inst = Instance::start(&s.config, &state);
    assert!(inst.wait_for_log("Task running", Duration::from_secs(60)));
    let before = s.wait_exact(Duration::from_secs(60), "first run");
    let first = inst.stop();

    std::fs::remove_dir_all(&state).unwrap();
    s.produce(1000);
    let mut inst = Instance::start(&s.config, &state);
    assert!(
        inst.wait_for_log("Restored.", Duration::from_secs(60)),
        "{}\n--- the first run ---\n{first}",
        inst.log()
    );
    let after = s.wait_exact(Duration::from_secs(60), "after the wipe");
    let log = inst.stop();
    assert!(
        log.contains("from=None"),
        "restored from the beginning:\n{log}"
    );
    assert_ne!(before, after, "new events were applied on top");
    drop(s.broker);
}

#[test]
fn tasks_migrate_between_instances_with_exact_totals() {
    let mut s = Setup::with_threads("200ms", stream_threads());
    s.produce(2000);
    let mut a = Instance::start(&s.config, &s.state_dir("a"));
    assert!(a.wait_for_log("Task running", Duration::from_secs(60)));
    s.wait_exact(Duration::from_secs(60), "one instance");

    // B joins: some tasks move to it and are restored there from the changelog.
    let mut b = Instance::start(&s.config, &s.state_dir("b"));
    s.produce(1000);
    assert!(
        b.wait_for_log("Restored.", Duration::from_secs(90)),
        "b never restored a task:\n{}",
        b.log()
    );
    s.wait_exact(Duration::from_secs(60), "two instances");
    assert!(a.log().contains("Partitions revoked"), "a gave tasks away");

    // A leaves: B takes everything.
    a.stop();
    s.produce(1000);
    s.wait_exact_with_log(
        Duration::from_secs(90),
        "after the first instance left",
        || b.log(),
    );
    s.check_boards(Duration::from_secs(60));
    let log = b.stop();
    assert!(!log.contains("panicked"), "{log}");
    drop(s.broker);
}
