//! Every compression codec Kafka producers use (issue 17, DESIGN §5): events produced with
//! gzip, snappy, lz4 and zstd — and uncompressed — are consumed and scored on Tansu, and
//! ScoreStream's own producers take `compression.type` from `[kafka.producer]` (here zstd)
//! and what they write reads back.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use support::instance::Instance;

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const PER_CODEC: usize = 40;

/// Produces `PER_CODEC` events for the codec's own customers, compressed with it, in
/// batches (linger) so that the broker stores compressed record batches.
fn produce_with(bootstrap: &str, topic: &str, codec: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", codec)
        .set("linger.ms", "50")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for i in 0..PER_CODEC {
        let value = format!(
            r#"{{"event_id":"{codec}-{i}","customer_id":"{codec}-c{}","event_type":"purchase","timestamp":"2024-03-01T10:00:{:02}Z","amount":{i}}}"#,
            i % 4,
            i % 60
        );
        producer
            .send(BaseRecord::<[u8], _>::to(topic).payload(value.as_bytes()))
            .expect("queued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every record acknowledged");
}

#[test]
fn events_in_every_codec_are_scored_and_compressed_outputs_read_back() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    let results = support::random_topic("results");
    support::create_topics(&bootstrap, &[(input.clone(), 2)]);
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
             [gamification]\nrules_file = \"{}\"\nresults_topic = \"{results}\"\n\
             [kafka.producer]\n\"compression.type\" = \"zstd\"\n",
            support::random_topic("app"),
            rules.display()
        ),
    )
    .unwrap();
    for codec in CODECS {
        produce_with(&bootstrap, &input, codec);
    }
    let mut inst = Instance::start(&config, &dir.path().join("state"));
    assert!(
        inst.wait_for_log("Task running", Duration::from_secs(60)),
        "{}",
        inst.log()
    );

    // One points_awarded per event of every codec, read back from outputs that ScoreStream
    // itself compressed with zstd.
    let deadline = Instant::now() + Duration::from_secs(90);
    let per_codec = loop {
        let mut per_codec: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in support::consume_all(&bootstrap, &results, Duration::from_secs(20)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            if v["type"] == "points_awarded" {
                let event = v["event_id"].as_str().unwrap().to_string();
                let codec = event.split('-').next().unwrap().to_string();
                per_codec.entry(codec).or_default().insert(event);
            }
        }
        let done = CODECS
            .iter()
            .all(|c| per_codec.get(*c).map_or(0, BTreeSet::len) == PER_CODEC);
        if done || Instant::now() > deadline {
            break per_codec;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = inst.stop();
    for codec in CODECS {
        assert_eq!(
            per_codec.get(codec).map_or(0, BTreeSet::len),
            PER_CODEC,
            "{codec}: scored events; log:\n{log}"
        );
    }
    assert!(
        !log.contains("Decompression"),
        "no batch failed to decode:\n{log}"
    );
    drop(broker);
}
