//! A commit point whose outputs are never acknowledged (the broker froze right after the
//! point was prepared, so librdkafka would keep retrying up to `message.timeout.ms`) is
//! abandoned after `runtime.commit_deadline`: processing rewinds to the last commit instead
//! of holding back every later commit, nothing of the point is committed, and once the
//! broker answers again the totals are exact.
//!
//! The moment is exact: the runtime's test hook freezes the broker (SIGSTOP) on the
//! processing thread at `Point::Commit`, when the point's records were just handed to the
//! producer.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scorestream::config::Config;
use scorestream::metrics::Metrics;
use scorestream::runtime::hooks::{self, Point};
use scorestream::{runtime, topology};
use support::exact::Setup;

/// The sum of a counter over all its label values.
fn total(counter: &prometheus::IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    counter
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

const DEADLINE: Duration = Duration::from_secs(2);

#[test]
fn a_commit_point_not_acknowledged_in_time_is_abandoned_and_its_inputs_reprocessed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut s = Setup::new("200ms");
    s.produce(500);
    let mut config = Config::load(Some(&s.config)).unwrap();
    config.state_dir = s.state_dir("state");
    config.runtime.commit_deadline = DEADLINE;

    let metrics = Metrics::new();
    let frozen = Arc::new(AtomicBool::new(false));
    let frozen_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    {
        let (flag, at, broker, m) = (
            frozen.clone(),
            frozen_at.clone(),
            s.broker.clone(),
            metrics.clone(),
        );
        // Game results counted at the previous point: a point prepared after the stateful
        // task produced results stages that task's changelog records now, so they are with
        // the producer and cannot have been acknowledged yet. (A point that only covers
        // repartitioned ingest records may be acknowledged before the freeze.)
        let mut results_before = 0;
        hooks::set(move |p| {
            if p != Point::Commit || flag.load(Ordering::Relaxed) {
                return;
            }
            let results = total(&m.game_results);
            let fresh = results > results_before;
            results_before = results;
            if !fresh {
                return;
            }
            *at.lock().unwrap() = Some(Instant::now());
            broker.lock().unwrap().pause();
            flag.store(true, Ordering::Relaxed);
        });
    }
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, Some(metrics.clone())).unwrap();
    let handle = rt
        .block_on(runtime::start(&config, topology, metrics.clone()))
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(90);
    while !frozen.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "no commit point with records");
        std::thread::sleep(Duration::from_millis(10));
    }
    hooks::clear();
    let at = frozen_at.lock().unwrap().expect("set with the flag");
    let rewinds = metrics.rewinds.get();

    // While the broker stays frozen, the point must be abandoned soon after its deadline.
    let limit = at + DEADLINE * 10;
    while metrics.rewinds.get() == rewinds {
        if Instant::now() > limit {
            s.broker.lock().unwrap().resume();
            panic!(
                "the commit point was not abandoned within {:?} of the broker freezing (deadline {DEADLINE:?})",
                DEADLINE * 10
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = at.elapsed();
    s.broker.lock().unwrap().resume();
    assert!(
        waited >= DEADLINE - Duration::from_millis(300),
        "abandoned after {waited:?}, before its deadline {DEADLINE:?}"
    );
    assert!(!handle.is_finished(), "the runtime stopped");

    // Everything the abandoned point covered is processed again: exact totals, one result
    // per event, nothing counted twice.
    s.produce(300);
    s.wait_exact(Duration::from_secs(120), "after the broker thawed");
    let stopping = Instant::now();
    handle.shutdown();
    let result = handle.join();
    assert!(result.is_ok(), "{result:?}");
    assert!(stopping.elapsed() < Duration::from_secs(40));
    s.check_results();
    drop(s.broker);
}
