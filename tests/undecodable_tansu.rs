//! A record batch no consumer can decode (DESIGN §5, issue 17): written to an input
//! partition on Tansu with the Kafka protocol itself (`support/corrupt_batch.py`: a batch
//! marked zstd whose payload is not), it must be a loud, counted, visible condition — the
//! `/ready` reason, `scorestream_undecodable_batches_total`, an ERROR line at most every
//! 10 s — never a silent stall, and the other partitions go on.

mod support;

use std::time::{Duration, Instant};

use rdkafka::Message;
use support::instance::Instance;

fn inject_corrupt_batch(bootstrap: &str, topic: &str, partition: i32) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/corrupt_batch.py"
    );
    let out = std::process::Command::new("python3")
        .args([script, bootstrap, topic, &partition.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the broker refused the batch: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_undecodable_batch_is_counted_logged_and_shown_on_ready() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    let results = support::random_topic("results");
    support::create_topics(&bootstrap, &[(input.clone(), 2)]);
    inject_corrupt_batch(&bootstrap, &input, 0);
    let good: Vec<support::Outgoing> = (0..5)
        .map(|i| {
            let v = format!(
                r#"{{"event_id":"e{i}","customer_id":"c1","event_type":"purchase","timestamp":"2024-03-01T10:00:0{i}Z","amount":1}}"#
            );
            (input.clone(), None, v.into_bytes(), Some(1))
        })
        .collect();
    support::produce_many(&bootstrap, &good);

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[settings]\ntime_zone = \"UTC\"\n[point_types.xp]\n[points.buy]\nevent_type = \"purchase\"\npoint_type = \"xp\"\nbase = 1\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "application_id = \"{}\"\nbootstrap_servers = \"{bootstrap}\"\ninputs = [\"{input}\"]\n\
             [runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\ncommit_interval = \"200ms\"\n\
             [gamification]\nrules_file = \"{}\"\nresults_topic = \"{results}\"\n",
            support::random_topic("app"),
            rules.display()
        ),
    )
    .unwrap();
    let port = support::free_port();
    let started = Instant::now();
    let inst = Instance::start_on_port(&config, &dir.path().join("state"), port);

    // /ready names the condition.
    let deadline = Instant::now() + Duration::from_secs(90);
    let body = loop {
        if let Some((503, body)) = support::http_get(port, "/ready") {
            if body.contains("cannot be decoded") {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/ready never reported the batch:\n{}",
            inst.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("\"ready\":false"), "{body}");

    // Counted.
    let (_, metrics) = support::http_get(port, "/metrics").unwrap();
    let counted: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scorestream_undecodable_batches_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(counted >= 1.0, "not counted:\n{metrics}");

    // The other partition goes on: every good event earned its point.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let scored = support::consume_all(&bootstrap, &results, Duration::from_secs(20))
            .iter()
            .filter(|m| {
                let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
                v["type"] == "points_awarded"
            })
            .count();
        if scored == good.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{scored} of {} scored",
            good.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Loud, but once per 10 s however often librdkafka fetches the batch again.
    let log = inst.stop();
    let lines = log
        .lines()
        .filter(|l| l.contains("An input record batch cannot be decoded"))
        .count();
    let allowed = 1 + started.elapsed().as_secs() as usize / 10;
    assert!(
        (1..=allowed).contains(&lines),
        "{lines} log lines in {:?} (at most {allowed}):\n{log}",
        started.elapsed()
    );
    drop(broker);
}
