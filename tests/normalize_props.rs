//! Property tests (a fuzz of the normalizer): whatever the bytes, and whatever JSON-ish
//! object is built from the fields producers send, it never panics and gives exactly one
//! verdict — accepted, or rejected with one reason code of DESIGN §2 — and that verdict
//! agrees with serde_json's full parse (a `Value`, which refuses `1e400` and lone
//! surrogates) on what is JSON, what is an object, and what repeats a key. Valid generated
//! events always normalize and round-trip through the binary form; derived ids ignore key
//! order.

use proptest::prelude::*;
use scorestream::ingest::mapping::NormalizerConfig;
use scorestream::ingest::{CanonicalEvent, Normalizer, RawInput, RejectReason, Rejection};

const NOW: i64 = 1_717_200_000_000;
const MAX_BYTES: usize = 4096;
const MAX_DEPTH: usize = 8;

/// The reason codes DESIGN §2 lists, copied from it.
const DESIGN_CODES: [&str; 13] = [
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "empty_value",
    "duplicate_key",
    "missing_field",
    "empty_field",
    "wrong_type",
    "invalid_timestamp",
    "too_large",
    "too_deep",
    "unknown_event_type",
    "late_event",
];

fn normalizer() -> Normalizer {
    Normalizer::new(NormalizerConfig {
        max_record_bytes: MAX_BYTES,
        max_depth: MAX_DEPTH,
        ..NormalizerConfig::default()
    })
}

/// Nesting depth of JSON text, brackets inside strings not counted.
fn depth(text: &[u8]) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &b in text {
        match (in_str, esc, b) {
            (true, true, _) => esc = false,
            (true, false, b'\\') => esc = true,
            (true, false, b'"') => in_str = false,
            (true, ..) => {}
            (false, _, b'"') => in_str = true,
            (false, _, b'{' | b'[') => {
                d += 1;
                max = max.max(d);
            }
            (false, _, b'}' | b']') => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The verdict the normalizer must give, as far as serde_json can tell: `Err(reasons)` when
/// it must reject with one of `reasons`, `Ok(())` when it must not reject for a reason about
/// the bytes, the JSON or the top-level keys (a field may still be wrong).
fn oracle(bytes: &[u8]) -> Result<(), Vec<RejectReason>> {
    use RejectReason::*;
    if bytes.is_empty() {
        return Err(vec![EmptyValue]);
    }
    if bytes.len() > MAX_BYTES {
        return Err(vec![TooLarge]);
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let Ok(text) = std::str::from_utf8(text) else {
        return Err(vec![InvalidUtf8]);
    };
    let deep = depth(text.as_bytes()) > MAX_DEPTH;
    match serde_json::from_str::<serde_json::Value>(text) {
        // Our depth scan is lenient with broken text, so either may come first there.
        Err(_) if deep => Err(vec![TooDeep, InvalidJson]),
        _ if deep => Err(vec![TooDeep]),
        Err(_) => Err(vec![InvalidJson]),
        Ok(serde_json::Value::Object(_)) => {
            // A `Value` keeps the last of repeated keys: read the keys in order instead.
            let TopKeys(mut keys) = serde_json::from_str(text).expect("an object");
            keys.sort_unstable();
            if keys.windows(2).any(|w| w[0] == w[1]) {
                Err(vec![DuplicateKey])
            } else {
                Ok(())
            }
        }
        Ok(_) => Err(vec![NotAnObject]),
    }
}

/// The top-level keys of an object, in order, repeats included.
struct TopKeys(Vec<String>);

impl<'de> serde::Deserialize<'de> for TopKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = TopKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<TopKeys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    m.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(TopKeys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Normalizes `bytes` and checks the verdict: no panic (the caller), one DESIGN code, the
/// oracle's verdict, and an accepted event that keeps the canonical form's promises.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let got = run(&normalizer(), bytes);
    match &got {
        Err(r) => {
            prop_assert!(DESIGN_CODES.contains(&r.reason.as_str()), "{r:?}");
            prop_assert!(r.reason != RejectReason::LateEvent, "{r:?}");
            prop_assert!(!r.message.is_empty());
        }
        Ok(ev) => {
            prop_assert!(!ev.customer_id.is_empty() && ev.customer_id.trim() == ev.customer_id);
            prop_assert!(!ev.event_type.is_empty());
            prop_assert!(ev.value.is_none_or(f64::is_finite), "{ev:?}");
            let back = CanonicalEvent::decode(&ev.encode()).expect("decodes");
            prop_assert_eq!(&back, ev);
        }
    }
    match (got, oracle(bytes)) {
        (Err(r), Err(allowed)) => prop_assert!(
            allowed.contains(&r.reason),
            "rejected as {} ({}), expected one of {allowed:?}: {}",
            r.reason,
            r.message,
            String::from_utf8_lossy(bytes)
        ),
        (Ok(ev), Err(allowed)) => prop_assert!(
            false,
            "accepted, expected one of {allowed:?}: {} -> {ev:?}",
            String::from_utf8_lossy(bytes)
        ),
        (Err(Rejection { reason, message }), Ok(())) => {
            use RejectReason::*;
            prop_assert!(
                !matches!(
                    reason,
                    EmptyValue | TooLarge | InvalidUtf8 | TooDeep | InvalidJson | NotAnObject
                ),
                "valid JSON object rejected as {reason} ({message}): {}",
                String::from_utf8_lossy(bytes)
            );
            // A repeated key is only ever reported when keys repeat, or for a customer
            // id given under two names.
            if reason == DuplicateKey {
                prop_assert!(message.contains(" but "), "{message}");
            }
        }
        (Ok(_), Ok(())) => {}
    }
    Ok(())
}

fn run(n: &Normalizer, bytes: &[u8]) -> Result<CanonicalEvent, Rejection> {
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

/// A JSON string literal with the escapes that matter: lone and paired surrogates, escaped
/// backslashes before a `u`, quotes, Unicode whitespace.
fn string_literal() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        "[a-zA-Z0-9 _.:-]{0,6}",
        Just(r"\ud800".to_string()),
        Just(r"\udc00".to_string()),
        Just(r"\ud83d\ude00".to_string()),
        Just(r"\u00e9".to_string()),
        Just(r"\\".to_string()),
        Just(r#"\""#.to_string()),
        Just("\u{a0}\u{3000}".to_string()),
        Just(r"\t".to_string()),
    ];
    prop::collection::vec(part, 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// Any JSON value as text, including literals a full parser refuses: numbers beyond a
/// double (`1e400`) and lone surrogates.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        "-?[1-9][0-9]{18,40}",
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        "-?[0-9](\\.[0-9]{1,3})?[eE][+-]?[0-9]{1,3}",
        string_literal(),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key(), inner), 0..4).prop_map(|m| object(&m)),
        ]
    })
}

/// Mostly the field names producers use (every customer id alias), sometimes any string.
fn key() -> impl Strategy<Value = String> {
    const NAMES: [&str; 14] = [
        "customer_id",
        "customerId",
        "user_id",
        "userId",
        "event_type",
        "eventType",
        "timestamp",
        "occurred_at",
        "event_id",
        "source",
        "value",
        "amount",
        "data",
        "metadata",
    ];
    prop_oneof![
        4 => prop::sample::select(&NAMES[..]).prop_map(|k| format!("\"{k}\"")),
        1 => string_literal(),
    ]
}

fn object(members: &[(String, String)]) -> String {
    let body: Vec<String> = members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", body.join(","))
}

/// A top-level object of producer field names and any values (keys may repeat).
fn jsonish_object() -> impl Strategy<Value = String> {
    prop::collection::vec((key(), json_value()), 0..8).prop_map(|m| object(&m))
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

#[test]
fn the_reason_codes_are_exactly_design_s() {
    let codes: Vec<&str> = RejectReason::ALL.iter().map(RejectReason::as_str).collect();
    assert_eq!(codes, DESIGN_CODES);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_get_one_verdict(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn jsonish_text_gets_one_verdict(text in jsonish()) {
        check(text.as_bytes())?;
    }

    #[test]
    fn jsonish_objects_get_one_verdict(text in jsonish_object()) {
        check(text.as_bytes())?;
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
