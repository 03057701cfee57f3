//! On a real broker (Tansu), a `late_event` dead letter keeps the original record's headers
//! (DESIGN §2; issue 16, item 7): `scorestream run` reads an input record carrying a
//! `traceparent`, writes it through `<app-id>-events-by-customer`, finds it late after
//! re-keying, and the dead letter on `<input>-dlq` carries that `traceparent`.

mod support;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use support::instance::Instance;

const TRACE_ON_TIME: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_LATE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn header(m: &impl Message, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn a_late_event_dead_letter_keeps_the_traceparent_on_tansu() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    let results = support::random_topic("gamification-results");
    support::create_topics(&bootstrap, &[(input.clone(), 1), (results.clone(), 1)]);
    let app_id = support::random_topic("late-headers");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "application_id = \"{app_id}\"\nbootstrap_servers = \"{bootstrap}\"\n\
             inputs = [\"{input}\"]\n\
             [runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\n\
             commit_interval = \"100ms\"\nshutdown_timeout = \"20s\"\n\
             [gamification]\nresults_topic = \"{results}\"\n"
        ),
    )
    .unwrap();
    let mut instance = Instance::start(&config, &dir.path().join("state"));
    assert!(
        instance.wait_for_log("Task running", Duration::from_secs(90)),
        "{}",
        instance.log()
    );

    // The same customer: on time, then two days earlier (the bundled grace is 24 h).
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    for (at, trace) in [
        ("2024-03-03T10:00:00Z", TRACE_ON_TIME),
        ("2024-03-01T08:00:00Z", TRACE_LATE),
    ] {
        let value = format!(
            r#"{{"customer_id":"c-late","event_type":"recharge","timestamp":"{at}","amount":5}}"#
        );
        let headers = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some(trace),
        });
        producer
            .send(
                BaseRecord::<(), str>::to(&input)
                    .payload(&value)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        // One acknowledged produce per event: their order on the partition is certain.
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    let dlq = format!("{input}-dlq");
    let deadline = Instant::now() + Duration::from_secs(90);
    let late = loop {
        let found = support::consume_all(&bootstrap, &dlq, Duration::from_secs(20))
            .into_iter()
            .find(|m| header(m, "scorestream.error.reason").as_deref() == Some("late_event"));
        if let Some(m) = found {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no late_event dead letter on {dlq}:\n{}",
            instance.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        header(&late, "traceparent").as_deref(),
        Some(TRACE_LATE),
        "{:?}",
        late.headers()
    );
    assert_eq!(
        header(&late, "scorestream.source.topic").as_deref(),
        Some(input.as_str())
    );
    assert_eq!(
        header(&late, "scorestream.source.offset").as_deref(),
        Some("1")
    );
    instance.stop();
}
