//! Property tests: the normalizer never panics, whatever the bytes; valid generated events
//! always normalize and round-trip through the binary form; derived ids ignore key order.

use proptest::prelude::*;
use scorestream::ingest::mapping::NormalizerConfig;
use scorestream::ingest::{CanonicalEvent, Normalizer, RawInput};

const NOW: i64 = 1_717_200_000_000;

fn normalizer() -> Normalizer {
    Normalizer::new(NormalizerConfig {
        max_record_bytes: 4096,
        max_depth: 8,
        ..NormalizerConfig::default()
    })
}

fn run(n: &Normalizer, bytes: &[u8]) -> Result<CanonicalEvent, scorestream::ingest::Rejection> {
    n.normalize(&RawInput {
        topic: "customer-events",
        value: Some(bytes),
        kafka_timestamp_ms: Some(NOW - 1),
        now_ms: NOW,
    })
}

/// JSON-ish text: fragments that often make almost-valid objects.
fn jsonish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"customer_id\"".to_string()),
        Just("\"event_type\"".to_string()),
        Just("\"timestamp\"".to_string()),
        Just("\"value\"".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1e999".to_string()),
        Just("-0".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("\"\\ud800\"".to_string()),
        "[0-9]{1,20}".prop_map(|s| s),
        "\"[a-zA-Z0-9 ._:-]{0,12}\"".prop_map(|s| s),
    ];
    prop::collection::vec(atom, 0..40).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct Ev {
    customer: String,
    kind: String,
    ts: i64,
    value: Option<f64>,
    extra: Vec<(String, i64)>,
}

fn event() -> impl Strategy<Value = Ev> {
    (
        "[a-zA-Z0-9-]{1,16}",
        "[a-z]{1,8}(_[a-z]{1,8}){0,2}",
        prop_oneof![0i64..NOW / 1000, 100_000_000_000i64..NOW],
        prop::option::of(-1e9f64..1e9),
        prop::collection::vec(("x[a-z]{1,6}", any::<i64>()), 0..4),
    )
        .prop_map(|(customer, kind, ts, value, extra)| Ev {
            customer,
            kind,
            ts,
            value,
            extra,
        })
}

fn to_json(e: &Ev, reversed: bool) -> String {
    let mut fields = vec![
        format!("\"customer_id\":\"{}\"", e.customer),
        format!("\"event_type\":\"{}\"", e.kind),
        format!("\"timestamp\":{}", e.ts),
    ];
    if let Some(v) = e.value {
        fields.push(format!("\"value\":{v:?}"));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in &e.extra {
        if seen.insert(k.clone()) {
            fields.push(format!("\"{k}\":{v}"));
        }
    }
    if reversed {
        fields.reverse();
    }
    format!("{{{}}}", fields.join(","))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = run(&normalizer(), &bytes);
    }

    #[test]
    fn jsonish_text_never_panics(text in jsonish()) {
        let _ = run(&normalizer(), text.as_bytes());
    }

    #[test]
    fn valid_events_normalize_and_round_trip(e in event()) {
        let n = normalizer();
        let ev = run(&n, to_json(&e, false).as_bytes()).expect("valid event accepted");
        prop_assert_eq!(&ev.customer_id, &e.customer);
        prop_assert_eq!(&ev.event_type, &e.kind);
        let expected_ms = if e.ts < 100_000_000_000 { e.ts * 1000 } else { e.ts };
        prop_assert_eq!(ev.occurred_at, expected_ms);
        prop_assert_eq!(ev.value, e.value);
        let back = CanonicalEvent::decode(&ev.encode()).expect("decodes");
        prop_assert_eq!(back, ev);
    }

    #[test]
    fn derived_id_ignores_key_order(e in event()) {
        let n = normalizer();
        let a = run(&n, to_json(&e, false).as_bytes()).expect("accepted");
        let b = run(&n, to_json(&e, true).as_bytes()).expect("accepted");
        prop_assert_eq!(a.event_id, b.event_id);
    }
}
