//! Inputs compressed with every codec Kafka producers use are read and scored (DESIGN §5):
//! events produced with gzip, snappy, lz4 and zstd (one producer per codec) to one input
//! topic on a Tansu broker, then an uncompressed one after them, all earn their points;
//! ScoreStream's own producer compresses its outputs with lz4 by default, or as
//! `[kafka.producer] "compression.type"` says (zstd here, read back by the test).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use scorestream::config::Config;
use scorestream::metrics::Metrics;
use scorestream::runtime;
use scorestream::topology;

const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];

/// Sends `events` in one batch with `codec` and waits for the acknowledgements.
fn produce_compressed(bootstrap: &str, topic: &str, codec: &str, events: &[String]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "50")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap_or_else(|e| panic!("a {codec} producer: {e}"));
    for e in events {
        producer
            .send(
                BaseRecord::<[u8], [u8]>::to(topic)
                    .payload(e.as_bytes())
                    .partition(0),
            )
            .unwrap_or_else(|(e, _)| panic!("{codec}: {e}"));
    }
    producer
        .flush(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{codec} batch not acknowledged: {e}"));
}

fn recharge(customer: &str, i: usize) -> String {
    format!(
        r#"{{"event_id":"{customer}-{i}","customer_id":"{customer}","event_type":"recharge","timestamp":"2024-06-10T08:{i:02}:00Z","amount":50}}"#
    )
}

/// Outputs are compressed with lz4 unless `[kafka.producer]` says otherwise.
#[test]
fn outputs_default_to_lz4_and_kafka_producer_overrides_it() {
    let mut config = Config::default();
    let producer = runtime::client::producer_config(&config);
    assert_eq!(producer.get("compression.type"), Some("lz4"));
    config
        .kafka
        .producer
        .insert("compression.type".into(), "zstd".into());
    let producer = runtime::client::producer_config(&config);
    assert_eq!(producer.get("compression.type"), Some("zstd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_compressed_with_every_codec_are_scored() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    let results = support::random_topic("gamification-results");
    support::create_topics(&bootstrap, &[(input.clone(), 1), (results.clone(), 1)]);
    for codec in CODECS {
        let events: Vec<String> = (0..5).map(|i| recharge(&format!("c-{codec}"), i)).collect();
        produce_compressed(&bootstrap, &input, codec, &events);
    }
    // After the compressed batches: an uncompressed event is not held up behind them.
    produce_compressed(&bootstrap, &input, "none", &[recharge("c-plain", 0)]);

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        application_id: support::random_topic("codecs"),
        bootstrap_servers: bootstrap.clone(),
        inputs: vec![input.clone()],
        state_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.runtime.replication_factor = 1;
    config.runtime.commit_interval = Duration::from_millis(200);
    config.runtime.session_timeout = Duration::from_secs(6);
    config.gamification.results_topic = results.clone();
    config.churn.enabled = false;
    config
        .kafka
        .producer
        .insert("compression.type".into(), "zstd".into());
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, None).unwrap();
    let metrics = Metrics::new();
    let handle = runtime::start(&config, topology, metrics.clone())
        .await
        .unwrap_or_else(|e| panic!("runtime starts: {e}"));

    let expected: BTreeSet<String> = CODECS
        .iter()
        .map(|c| format!("c-{c}"))
        .chain(["c-plain".to_string()])
        .collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let scored = loop {
        let (b, t) = (bootstrap.clone(), results.clone());
        let records = tokio::task::spawn_blocking(move || {
            support::consume_all(&b, &t, Duration::from_secs(20))
        })
        .await
        .unwrap();
        let scored: BTreeSet<String> = records
            .iter()
            .filter_map(|m| serde_json::from_slice::<serde_json::Value>(m.payload()?).ok())
            .filter(|v| v["type"] == "points_awarded")
            .filter_map(|v| v["customer_id"].as_str().map(String::from))
            .collect();
        if scored == expected || Instant::now() > deadline {
            break scored;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    handle.shutdown();
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        scored, expected,
        "customers scored, by the codec of their events"
    );
    assert_eq!(
        metrics.records_consumed.with_label_values(&[&input]).get(),
        21
    );
}
