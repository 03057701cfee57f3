//! Operability on a real broker process: SIGTERM stops `scorestream run` cleanly with its
//! offsets committed, and a broker that disappears mid-run is survived (logged, retried,
//! bounded shutdown), never a panic.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use scorestream::metrics::Metrics;
use scorestream::{runtime, topology};

fn committed_total(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// `promtool check metrics` (Debian's `prometheus` package, installed by
/// scripts/install-deps.sh) must have nothing to say about a live `/metrics`.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/install-deps.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics: {report}"
    );
}

#[test]
fn sigterm_finishes_work_commits_and_exits_zero() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    support::create_topics(&bootstrap, &[(input.clone(), 2)]);
    let records: Vec<support::Outgoing> = (0..500)
        .map(|i| {
            let v = format!(
                r#"{{"customer_id":"c{}","event_type":"recharge","timestamp":"2024-01-01T12:00:00Z","amount":{i}}}"#,
                i % 13
            );
            (input.clone(), None, v.into_bytes(), Some(i % 2))
        })
        .collect();
    support::produce_many(&bootstrap, &records);
    let app_id = support::random_topic("app");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "inputs = [\"{input}\"]\n[runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\ncommit_interval = \"200ms\"\n"
        ),
    )
    .unwrap();
    let http_port = support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scorestream"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("SCORESTREAM_APPLICATION_ID", &app_id)
        .env("SCORESTREAM_STATE_DIR", dir.path().join("state"))
        .env("SCORESTREAM_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it has joined the group and restored its (empty) state.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = support::http_get(http_port, "/ready") {
            assert!(body.contains(r#""ready":true"#), "{body}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("/ready never answered 200");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Wait until every input offset is committed, then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(90);
    while committed_total(&bootstrap, &app_id, &input, 2) < 500 {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("offsets never reached 500");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Lag is refreshed every 2 s from librdkafka's cached watermarks: wait for it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (code, metrics) = loop {
        let (code, metrics) = support::http_get(http_port, "/metrics").expect("/metrics answers");
        if metrics.contains("scorestream_consumer_lag_records{") || Instant::now() > deadline {
            break (code, metrics);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 200);
    for family in [
        "scorestream_records_consumed_total{topic=",
        "scorestream_consumer_lag_records{partition=",
        "scorestream_record_process_seconds_bucket{le=",
        "scorestream_processor_records_total{processor=\"normalize\"}",
        "scorestream_processor_records_total{processor=\"gamify\"}",
        "scorestream_http_requests_total{route=\"/ready\",status=\"200\"}",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
    promtool_check_metrics(&metrics);
    let pid = child.id().to_string();
    let signalled = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if signalled.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("did not stop within 40 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("Shutdown requested"), "{log}");
    assert!(log.contains("Left the consumer group"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // A clean run has nothing for an operator to act on: no ERROR line (end of partition,
    // for one, is normal).
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "ERROR lines in a clean run: {errors:#?}");
}

/// Tansu accepts transactional requests but shows aborted records to `read_committed`
/// readers: `scorestream run` with `exactly_once` must exit non-zero with the reason and the
/// way out, before consuming anything — not run with a guarantee it cannot keep.
#[test]
fn exactly_once_on_tansu_exits_with_the_reason() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    support::create_topics(&bootstrap, &[(input.clone(), 2)]);
    let app_id = support::random_topic("app");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "inputs = [\"{input}\"]\n[runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scorestream"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
        .env("SCORESTREAM_APPLICATION_ID", &app_id)
        .env("SCORESTREAM_PROCESSING_GUARANTEE", "exactly_once")
        .env("SCORESTREAM_HTTP_ADDR", "127.0.0.1:0")
        .env("SCORESTREAM_STATE_DIR", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("exactly_once on Tansu neither ran nor exited within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("does not hide aborted transactions") && log.contains("at_least_once"),
        "{log}"
    );
    assert_eq!(
        committed_total(&bootstrap, &app_id, &input, 2),
        0,
        "no input consumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_going_away_is_survived_and_shutdown_stays_bounded() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    support::create_topics(&bootstrap, &[(input.clone(), 1)]);
    let mut config = support::app_config(&bootstrap, &[&input]);
    let state = tempfile::tempdir().unwrap();
    config.state_dir = state.path().to_path_buf();
    config.runtime.session_timeout = Duration::from_secs(6);
    config.runtime.commit_interval = Duration::from_millis(200);
    config.runtime.shutdown_timeout = Duration::from_secs(5);
    let metrics = Metrics::new();
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, Some(metrics.clone())).unwrap();
    let handle = runtime::start(&config, topology, metrics.clone())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.partitions_assigned.get() == 0 {
        assert!(Instant::now() < deadline, "never got partitions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(broker); // kill -9 the broker process
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !handle.is_finished(),
        "the runtime must keep retrying, not stop or panic"
    );
    let stopping = Instant::now();
    handle.shutdown();
    let result = tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "shutdown took {:?} with the broker gone",
        stopping.elapsed()
    );
}
