//! A broker outage at exactly the wrong moment — while a task is being created (its
//! committed offsets are fetched), while stores restore, while a commit waits for its
//! acknowledgements, or just while processing — is survived: the runtime keeps retrying,
//! `/ready` answers 503 while the broker is gone, and shutdown stays bounded.
//!
//! The moment is made exact with the runtime's test hooks: the hook kills the broker on the
//! processing thread itself, at the named point.
//!
//! A SQLite broker keeps its data across the restart: afterwards the totals are exact and
//! every result was published, with no manual action (issue 16, item 11). A memory broker
//! coming back empty is in `broker_restart.rs`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scorestream::config::Config;
use scorestream::metrics::Metrics;
use scorestream::runtime::hooks::{self, Point};
use scorestream::runtime::RuntimeHandle;
use scorestream::{http, runtime, topology};
use support::exact::Setup;
use support::tansu::Tansu;

/// Hooks are process-wide: one scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Session timeout of the consumer group (the config `Setup` writes): an outage longer
/// than it makes the group drop this member's partitions.
const SESSION: Duration = Duration::from_secs(6);

struct Running {
    handle: RuntimeHandle,
    metrics: Metrics,
    http_port: u16,
}

/// Starts the runtime in this process with `/ready` and `/metrics` served on a free port.
fn start(rt: &tokio::runtime::Runtime, config: &Config) -> Running {
    // RUST_LOG (e.g. `info,scorestream::runtime::client=debug` with
    // `SCORESTREAM_KAFKA_CONSUMER__DEBUG=consumer,cgrp,fetch`) for librdkafka's view.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    let metrics = Metrics::new();
    let parts = topology::Components::load(config).unwrap();
    let topology = topology::build_topology(config, &parts, Some(metrics.clone())).unwrap();
    rt.block_on(async {
        let ctx = http::HttpContext::new(metrics.clone());
        let listener = http::bind("127.0.0.1:0").await.unwrap();
        let http_port = listener.local_addr().unwrap().port();
        http::spawn(listener, http::router(ctx.clone()));
        let handle = runtime::start(config, topology, metrics.clone())
            .await
            .unwrap();
        ctx.started.store(true, Ordering::Relaxed);
        Running {
            handle,
            metrics,
            http_port,
        }
    })
}

impl Running {
    fn ready(&self) -> (u16, String) {
        support::http_get(self.http_port, "/ready").unwrap_or((0, String::new()))
    }

    fn wait_ready(&self, status: u16, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            let (s, body) = self.ready();
            if s == status {
                return;
            }
            assert!(
                !self.handle.is_finished(),
                "{what}: the runtime stopped (last /ready {s} {body})"
            );
            assert!(
                Instant::now() < deadline,
                "{what}: /ready never answered {status} within {timeout:?}; last: {s} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `/ready` answers 503 saying the cluster does not answer.
    fn wait_outage_seen(&self, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            let (s, body) = self.ready();
            if s == 503 && body.contains("does not answer") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: /ready never reported the outage within {timeout:?}; last: {s} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops it and checks the shutdown stays bounded.
    fn stop(self) {
        let stopping = Instant::now();
        self.handle.shutdown();
        let result = self.handle.join();
        assert!(result.is_ok(), "{result:?}");
        assert!(
            stopping.elapsed() < Duration::from_secs(40),
            "shutdown took {:?}",
            stopping.elapsed()
        );
    }
}

fn config_of(s: &Setup, state: &str) -> Config {
    let mut config = Config::load(Some(&s.config)).unwrap();
    config.state_dir = s.state_dir(state);
    config
}

/// Kills the broker the first time the processing thread reaches `point` (for a commit:
/// one with processed records in it). Returns the flag set when it did.
fn kill_broker_at(
    s: &Setup,
    point: Point,
    metrics_of: Arc<Mutex<Option<Metrics>>>,
) -> Arc<AtomicBool> {
    let fired = Arc::new(AtomicBool::new(false));
    let (flag, broker) = (fired.clone(), s.broker.clone());
    hooks::set(move |p| {
        if p != point || flag.load(Ordering::Relaxed) {
            return;
        }
        if p == Point::Commit {
            let processed = metrics_of
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|m| m.processor_records.with_label_values(&["gamify"]).get() > 0);
            if !processed {
                return;
            }
        }
        broker.lock().unwrap().stop();
        flag.store(true, Ordering::Relaxed);
    });
    fired
}

fn wait_for(flag: &AtomicBool, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while !flag.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The broker dies at `point`: the runtime survives longer than the group's session, is not
/// ready meanwhile, and stops within its bounds.
fn memory_broker_dies_at(point: Point) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut s = Setup::new("200ms");
    s.produce(300);
    let config = config_of(&s, "state");
    let metrics_of = Arc::new(Mutex::new(None));
    let fired = kill_broker_at(&s, point, metrics_of.clone());
    let run = start(&rt, &config);
    *metrics_of.lock().unwrap() = Some(run.metrics.clone());
    wait_for(&fired, Duration::from_secs(90), &format!("{point:?}"));
    hooks::clear();

    run.wait_ready(503, Duration::from_secs(20), "broker down");
    // Longer than the session: the group drops the partitions.
    std::thread::sleep(SESSION * 2 + Duration::from_secs(2));
    assert!(
        !run.handle.is_finished(),
        "{point:?}: the runtime stopped while the broker was down"
    );

    run.stop();
}

#[test]
fn broker_dying_while_a_task_is_created_is_survived() {
    memory_broker_dies_at(Point::CreateTask);
}

#[test]
fn broker_dying_during_a_restore_is_survived() {
    memory_broker_dies_at(Point::Restore);
}

#[test]
fn broker_dying_during_a_commit_is_survived() {
    memory_broker_dies_at(Point::Commit);
}

/// The SQLite broker is stopped at `point` (`None`: while records are being processed) and
/// started again with its data: `/ready` reports the outage, and afterwards every total is
/// exact and every result was published once, with no manual action.
fn sqlite_broker_restarts_at(point: Option<Point>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut s = Setup::with_broker(Tansu::start_sqlite(), "200ms");
    s.produce(500);
    let config = config_of(&s, "state");
    if point == Some(Point::Restore) {
        // Fill the changelogs, then start on an empty disk: the next start restores it all.
        let run = start(&rt, &config);
        s.wait_exact(Duration::from_secs(60), "first run");
        run.stop();
        std::fs::remove_dir_all(&config.state_dir).unwrap();
        s.produce(100);
    }
    let metrics_of = Arc::new(Mutex::new(None));
    let fired = match point {
        Some(p) => kill_broker_at(&s, p, metrics_of.clone()),
        None => Arc::new(AtomicBool::new(false)),
    };
    let run = start(&rt, &config);
    *metrics_of.lock().unwrap() = Some(run.metrics.clone());
    if point.is_none() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while run
            .metrics
            .processor_records
            .with_label_values(&["gamify"])
            .get()
            == 0
        {
            assert!(Instant::now() < deadline, "nothing processed");
            std::thread::sleep(Duration::from_millis(5));
        }
        s.broker.lock().unwrap().stop();
    } else {
        wait_for(&fired, Duration::from_secs(60), &format!("{point:?}"));
    }
    hooks::clear();
    run.wait_outage_seen(Duration::from_secs(20), "broker down");
    std::thread::sleep(SESSION + Duration::from_secs(2));
    assert!(
        !run.handle.is_finished(),
        "{point:?}: stopped during the outage"
    );

    s.broker.lock().unwrap().start_again();
    s.produce(300);
    // Reconnect backoff (up to 10 s), librdkafka's produce retries, the group's rejoin and
    // a commit point settling all follow the restart: bounded, but 60 s was seen short.
    s.wait_exact(
        Duration::from_secs(180),
        &format!("{point:?}: after the broker restart"),
    );
    run.wait_ready(200, Duration::from_secs(30), "broker back");
    run.stop();
    s.check_results();
}

#[test]
fn sqlite_broker_restart_while_processing_keeps_totals_exact() {
    sqlite_broker_restarts_at(None);
}

#[test]
fn sqlite_broker_restart_during_a_commit_keeps_totals_exact() {
    sqlite_broker_restarts_at(Some(Point::Commit));
}

#[test]
fn sqlite_broker_restart_during_a_restore_keeps_totals_exact() {
    sqlite_broker_restarts_at(Some(Point::Restore));
}

/// Repartition records stay until they are processed, however old their events. A record's
/// timestamp is its event's time, and a broker's retention judges records by it: Tansu (on
/// SQLite: it applies retention when it starts, then every 10 minutes) deleted the 7-day
/// repartition topic's records of these events, a day of 2024, at its restart — a backlog
/// not yet processed then was never counted, and the totals stalled short (the
/// intermittent stall of the restart tests above).
#[test]
fn repartition_records_of_old_events_outlive_a_broker_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut s = Setup::with_broker(Tansu::start_sqlite(), "200ms");
    s.produce(300);
    let config = config_of(&s, "state");
    let run = start(&rt, &config);
    s.wait_exact(Duration::from_secs(60), "first run");
    run.stop();
    let topic = format!("{}-events-by-customer", config.application_id);
    let kept = support::consume_all(&s.bootstrap, &topic, Duration::from_secs(30)).len();
    assert_eq!(
        kept, 300,
        "one repartition record per event before the restart"
    );

    s.broker.lock().unwrap().start_again();
    // Its retention runs as it starts: give it time to finish.
    std::thread::sleep(Duration::from_secs(3));
    let kept = support::consume_all(&s.bootstrap, &topic, Duration::from_secs(30)).len();
    assert_eq!(
        kept, 300,
        "repartition records deleted by the restarted broker"
    );
}
