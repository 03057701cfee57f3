//! A dead letter raised after re-keying keeps the original record's headers (DESIGN §2;
//! issue 16, item 7): a producer's `traceparent` reaches the `late_event` (and the rules'
//! `unknown_event_type`) dead letter, through the internal `events-by-customer` record,
//! run through the real topology in the `TopologyTestDriver`.

mod support;

use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};

/// 2030-01-01T00:00:00Z: no event of the test is in the future.
const WALL_CLOCK: i64 = 1_893_456_000_000;
const TRACE_ON_TIME: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_LATE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_UNKNOWN: &str = "00-5c1f6e7a6b3d4e2f9a8b7c6d5e4f3a2b-1a2b3c4d5e6f7a8b-01";

fn driver() -> TopologyTestDriver {
    let config = Config {
        application_id: "late-headers".into(),
        ..Config::default()
    };
    support::driver::with_config(config, support::driver::STRICT_RULES, None, WALL_CLOCK)
}

fn event(id: &str, kind: &str, at: &str, trace: &str) -> Record {
    let json = format!(
        r#"{{"event_id":"{id}","customer_id":"c1","event_type":"{kind}","timestamp":"{at}","amount":5}}"#
    );
    Record::new(json.into_bytes(), 0)
        .with_header("traceparent", trace)
        .with_header("producer", "billing")
}

#[test]
fn late_and_unknown_type_dead_letters_keep_the_original_headers() {
    let mut d = driver();
    d.pipe(
        "customer-events",
        event("e1", "purchase", "2024-03-01T10:00:00Z", TRACE_ON_TIME),
    )
    .unwrap();
    // Two hours behind stream time, grace one hour: late.
    d.pipe(
        "customer-events",
        event("e2", "purchase", "2024-03-01T08:00:00Z", TRACE_LATE),
    )
    .unwrap();
    // On time, but no rule uses the type and the rules are strict.
    d.pipe(
        "customer-events",
        event("e3", "teleport", "2024-03-01T10:05:00Z", TRACE_UNKNOWN),
    )
    .unwrap();

    // The internal record carries the headers across the re-keying.
    let internal = d.read_output("late-headers-events-by-customer");
    assert_eq!(internal.len(), 3);
    let traces: Vec<_> = internal
        .iter()
        .map(|r| r.headers.last_str("traceparent"))
        .collect();
    assert_eq!(
        traces,
        [Some(TRACE_ON_TIME), Some(TRACE_LATE), Some(TRACE_UNKNOWN)]
    );

    let dead = d.read_output("customer-events-dlq");
    let reasons: Vec<_> = dead
        .iter()
        .map(|r| r.headers.last_str("scorestream.error.reason"))
        .collect();
    assert_eq!(
        reasons,
        [Some("late_event"), Some("unknown_event_type")],
        "{dead:?}"
    );
    for (r, (trace, offset)) in dead.iter().zip([(TRACE_LATE, "1"), (TRACE_UNKNOWN, "2")]) {
        let h = &r.headers;
        assert_eq!(h.last_str("traceparent"), Some(trace), "{h:?}");
        assert_eq!(h.last_str("producer"), Some("billing"), "{h:?}");
        assert_eq!(
            h.last_str("scorestream.source.topic"),
            Some("customer-events")
        );
        assert_eq!(h.last_str("scorestream.source.partition"), Some("0"));
        assert_eq!(h.last_str("scorestream.source.offset"), Some(offset));
        // The original headers come first, each once; the error headers after them.
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(&names[..2], ["traceparent", "producer"], "{names:?}");
        assert_eq!(names.iter().filter(|n| **n == "traceparent").count(), 1);
    }
}
