//! A broker restarted without its state no longer knows the output producer's id (issue 16,
//! item 5). librdkafka's idempotent producer then bumps the epoch itself and retries, and
//! Tansu refuses every retry, so nothing is delivered again: the runtime's producer sees it
//! in its statistics and is replaced with a new one (a new id), which delivers.
//!
//! The same under a whole running instance is not a test here: librdkafka 2.12 sometimes
//! crashes there on Tansu's answers for the topics it lost (see `broker_restart.rs`).

mod support;

use std::time::{Duration, Instant};

use rdkafka::producer::BaseRecord;
use rdkafka::ClientConfig;
use scorestream::metrics::Metrics;
use scorestream::runtime::client::DeliveryContext;
use scorestream::runtime::producer::ReplaceableProducer;

fn send_one(producer: &ReplaceableProducer, topic: &str, value: &str) {
    producer
        .send(
            BaseRecord::<str, str, usize>::with_opaque_to(topic, 0)
                .key("k")
                .payload(value),
        )
        .unwrap();
}

#[test]
fn a_producer_id_the_restarted_broker_refuses_is_replaced_and_outputs_are_delivered() {
    let mut broker = support::tansu::Tansu::start();
    let topic = support::random_topic("outputs");
    support::create_topics(&broker.bootstrap(), &[(topic.clone(), 1)]);
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("allow.auto.create.topics", "false")
        // The runtime's producer reports every 15 s; faster here to keep the test short.
        .set("statistics.interval.ms", "1000");
    let context = DeliveryContext::new(Metrics::new(), Default::default());
    let producer = ReplaceableProducer::new(
        config.create_with_context(context.share()).unwrap(),
        config.clone(),
        context,
    );
    send_one(&producer, &topic, "before");
    producer.flush(Duration::from_secs(20)).unwrap();

    broker.start_again();
    support::create_topics(&broker.bootstrap(), &[(topic.clone(), 1)]);
    send_one(&producer, &topic, "after");
    // The old id is refused again and again: nothing is delivered, and it is noticed.
    assert!(
        producer.flush(Duration::from_secs(5)).is_err(),
        "delivered with the id the broker forgot: is the replacement still needed?"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !producer.forgotten_by_broker() {
        assert!(
            Instant::now() < deadline,
            "the statistics never showed the id refused"
        );
        producer.poll(Duration::from_millis(100));
    }
    producer.replace().unwrap();
    assert!(!producer.forgotten_by_broker());
    send_one(&producer, &topic, "again");
    producer.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(producer.in_flight_count(), 0);
    let values: Vec<String> =
        support::consume_all(&broker.bootstrap(), &topic, Duration::from_secs(10))
            .iter()
            .map(|m| {
                use rdkafka::Message;
                String::from_utf8_lossy(m.payload().unwrap()).into_owned()
            })
            .collect();
    assert_eq!(values, ["again"], "what the restarted broker holds");
}
