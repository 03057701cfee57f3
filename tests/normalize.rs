//! Runs every normalization case file under `tests/normalize_cases/`: input record →
//! expected canonical event or dead-letter reason. Expectations are written by hand from
//! DESIGN §2; event times are checked with chrono's RFC 3339 parser, not ours. Every failing
//! case is reported, with its file and name.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use scorestream::ingest::mapping::NormalizerConfig;
use scorestream::ingest::{CanonicalEvent, Normalizer, RawInput, RejectReason};
use serde::Deserialize;
use support::cases::{run_case_files, FileOutcome};

/// 2024-06-01T00:00:00Z: the default "now" of a case.
const DEFAULT_NOW: i64 = 1_717_200_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    case: Vec<Case>,
    #[serde(default)]
    same_id: Vec<Pair>,
    #[serde(default)]
    different_id: Vec<Pair>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "default_topic")]
    topic: String,
    value: Option<String>,
    /// Raw bytes as hex, for input that is not UTF-8.
    value_hex: Option<String>,
    /// A value of N repetitions of `value_repeat_unit` between `value` and `value_suffix`.
    value_repeat_unit: Option<String>,
    value_repeat: Option<usize>,
    value_suffix: Option<String>,
    kafka_timestamp: Option<String>,
    now: Option<String>,
    strict: Option<Vec<String>>,
    expect: Option<Expect>,
    reject: Option<String>,
    message_contains: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    event_id: Option<String>,
    customer_id: String,
    event_type: String,
    source: String,
    occurred_at: String,
    value: Option<f64>,
    #[serde(default)]
    no_value: bool,
    attributes: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pair {
    name: String,
    #[serde(default = "default_topic")]
    topic: String,
    a: String,
    b: String,
}

fn default_topic() -> String {
    "customer-events".into()
}

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad expectation time {rfc3339}: {e}"))
        .timestamp_millis()
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).expect("toml to json")
}

fn run_case(c: &Case) -> Result<(), String> {
    let bytes: Option<Vec<u8>> = match (&c.value, &c.value_hex) {
        (_, Some(h)) => Some(hex(h)),
        (Some(v), None) => {
            let mut b = v.clone().into_bytes();
            if let (Some(unit), Some(n)) = (&c.value_repeat_unit, c.value_repeat) {
                b.extend(unit.repeat(n).into_bytes());
            }
            if let Some(sfx) = &c.value_suffix {
                b.extend(sfx.as_bytes());
            }
            Some(b)
        }
        (None, None) => None,
    };
    let mut config = NormalizerConfig::default();
    if let Some(types) = &c.strict {
        config.strict_event_types = Some(types.iter().cloned().collect());
    }
    let n = Normalizer::new(config);
    let input = RawInput {
        topic: &c.topic,
        value: bytes.as_deref(),
        kafka_timestamp_ms: c.kafka_timestamp.as_deref().map(ms),
        now_ms: c.now.as_deref().map_or(DEFAULT_NOW, ms),
    };
    let got = n.normalize(&input);
    match (&c.expect, &c.reject) {
        (Some(e), None) => {
            let ev =
                got.map_err(|r| format!("rejected as {} ({})", r.reason.as_str(), r.message))?;
            check_event(&ev, e)
        }
        (None, Some(reason)) => match got {
            Ok(ev) => Err(format!("accepted, expected {reason}: {ev:?}")),
            Err(r) if r.reason.as_str() != reason => Err(format!(
                "rejected as {} ({}), expected {reason}",
                r.reason.as_str(),
                r.message
            )),
            Err(r) => match &c.message_contains {
                Some(m) if !r.message.contains(m.as_str()) => {
                    Err(format!("message {:?} lacks {m:?}", r.message))
                }
                _ => Ok(()),
            },
        },
        _ => Err("a case needs exactly one of `expect` or `reject`".into()),
    }
}

fn check_event(ev: &CanonicalEvent, e: &Expect) -> Result<(), String> {
    let mut errs = Vec::new();
    if let Some(id) = &e.event_id {
        if &ev.event_id != id {
            errs.push(format!("event_id {:?} != {id:?}", ev.event_id));
        }
    } else if !ev.event_id.starts_with("ev-") || ev.event_id.len() != 35 {
        errs.push(format!(
            "expected a derived event id, got {:?}",
            ev.event_id
        ));
    }
    if ev.customer_id != e.customer_id {
        errs.push(format!(
            "customer_id {:?} != {:?}",
            ev.customer_id, e.customer_id
        ));
    }
    if ev.event_type != e.event_type {
        errs.push(format!(
            "event_type {:?} != {:?}",
            ev.event_type, e.event_type
        ));
    }
    if ev.source != e.source {
        errs.push(format!("source {:?} != {:?}", ev.source, e.source));
    }
    if ev.occurred_at != ms(&e.occurred_at) {
        errs.push(format!(
            "occurred_at {} != {} ({})",
            ev.occurred_at,
            ms(&e.occurred_at),
            e.occurred_at
        ));
    }
    match (e.value, e.no_value) {
        (Some(v), _) if ev.value != Some(v) => errs.push(format!("value {:?} != {v}", ev.value)),
        (None, true) if ev.value.is_some() => {
            errs.push(format!("value {:?}, expected none", ev.value))
        }
        _ => {}
    }
    if let Some(attrs) = &e.attributes {
        let got: BTreeMap<String, serde_json::Value> = ev
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        let want: BTreeMap<String, serde_json::Value> = attrs
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect();
        if got != want {
            errs.push(format!("attributes {got:?} != {want:?}"));
        }
    }
    // The binary form round-trips.
    match CanonicalEvent::decode(&ev.encode()) {
        Ok(back) if &back == ev => {}
        other => errs.push(format!("encode/decode round trip failed: {other:?}")),
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

fn id_of(topic: &str, value: &str) -> Result<String, String> {
    let n = Normalizer::new(NormalizerConfig::default());
    n.normalize(&RawInput {
        topic,
        value: Some(value.as_bytes()),
        kafka_timestamp_ms: Some(DEFAULT_NOW - 1000),
        now_ms: DEFAULT_NOW,
    })
    .map(|e| e.event_id)
    .map_err(|r| format!("rejected: {} {}", r.reason.as_str(), r.message))
}

#[test]
fn normalization_case_files() {
    let count = run_case_files("normalize_cases", 1, |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let file: File =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        let mut failures = Vec::new();
        for c in &file.case {
            if let Err(e) = run_case(c) {
                failures.push(format!("{fname} / {}: {e}", c.name));
            }
        }
        for p in &file.same_id {
            match (id_of(&p.topic, &p.a), id_of(&p.topic, &p.b)) {
                (Ok(a), Ok(b)) if a == b => {}
                (a, b) => {
                    failures.push(format!("{fname} / {}: ids differ: {a:?} vs {b:?}", p.name))
                }
            }
        }
        for p in &file.different_id {
            match (id_of(&p.topic, &p.a), id_of(&p.topic, &p.b)) {
                (Ok(a), Ok(b)) if a != b => {}
                (a, b) => failures.push(format!(
                    "{fname} / {}: ids not different: {a:?} vs {b:?}",
                    p.name
                )),
            }
        }
        FileOutcome {
            cases: file.case.len() + file.same_id.len() + file.different_id.len(),
            failures,
        }
    });
    println!("{count} normalization cases passed");
}

/// The reason table of `docs/outputs.md` ("Which input gets which reason") is what the
/// normalizer does: every reason code is listed, and every row whose input is an example
/// (a code span) gets the reason the row names.
#[test]
fn docs_reason_table_matches_the_normalizer() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/outputs.md");
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("| input | reason |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(rows.len() > 20, "the reason table is missing: {rows:?}");
    let code = |cell: &str| {
        cell.strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .map(str::to_string)
    };
    let n = Normalizer::new(NormalizerConfig::default());
    let mut problems = Vec::new();
    let mut listed = Vec::new();
    let mut examples = 0;
    for row in rows {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        let Some(reason) = cells.get(1).copied().and_then(code) else {
            problems.push(format!("no reason code in {row}"));
            continue;
        };
        if !RejectReason::ALL.iter().any(|r| r.as_str() == reason) {
            problems.push(format!("{reason} is not a reason code"));
        }
        listed.push(reason.clone());
        let Some(example) = code(cells[0]) else {
            continue; // described, not an example
        };
        examples += 1;
        let got = n.normalize(&RawInput {
            topic: "customer-events",
            value: Some(example.as_bytes()),
            kafka_timestamp_ms: Some(DEFAULT_NOW - 1000),
            now_ms: DEFAULT_NOW,
        });
        match got {
            Err(r) if r.reason.as_str() == reason => {}
            Err(r) => problems.push(format!(
                "{example}: documented {reason}, got {} ({})",
                r.reason, r.message
            )),
            Ok(ev) => problems.push(format!("{example}: documented {reason}, accepted: {ev:?}")),
        }
    }
    for r in RejectReason::ALL {
        if !listed.iter().any(|l| l == r.as_str()) {
            problems.push(format!("{r} is not in the table"));
        }
    }
    assert!(examples >= 20, "only {examples} examples");
    assert!(
        problems.is_empty(),
        "docs/outputs.md's reason table drifted:\n{}",
        problems.join("\n")
    );
}

/// A record at the size limit with ~90,000 distinct top-level keys is normalized in well
/// under a second (issue 16, item 3): the duplicate-key check is linear, not a comparison
/// of every key with every other (~4·10^9 comparisons, minutes in a debug build). The bound
/// is loose (about 20 times the debug-build cost) so a busy machine does not fail it.
#[test]
fn a_maximal_wide_object_is_linear() {
    let limit = NormalizerConfig::default().max_record_bytes;
    let mut text =
        String::from(r#"{"customer_id":"c-1","event_type":"data_usage","timestamp":1717199000"#);
    let mut keys = 0;
    loop {
        let member = format!(r#","k{keys}":1"#);
        if text.len() + member.len() + 1 > limit {
            break;
        }
        text.push_str(&member);
        keys += 1;
    }
    text.push('}');
    assert!(keys > 85_000, "{keys} keys");
    let n = Normalizer::new(NormalizerConfig::default());
    let started = std::time::Instant::now();
    let ev = n
        .normalize(&RawInput {
            topic: "customer-events",
            value: Some(text.as_bytes()),
            kafka_timestamp_ms: None,
            now_ms: DEFAULT_NOW,
        })
        .expect("valid");
    let took = started.elapsed();
    assert_eq!(ev.attributes.len(), keys);
    assert!(took.as_secs_f64() < 5.0, "{keys} keys took {took:?}");

    // A duplicate at the very end of such an object is still found.
    let last = format!(r#""k{}":1}}"#, keys - 1);
    let dup = text.replace(&last, r#""k0":2}"#);
    let got = n.normalize(&RawInput {
        topic: "customer-events",
        value: Some(dup.as_bytes()),
        kafka_timestamp_ms: None,
        now_ms: DEFAULT_NOW,
    });
    let r = got.expect_err("duplicate");
    assert_eq!(r.reason, RejectReason::DuplicateKey);
    assert!(r.message.contains("'k0'"), "{}", r.message);
}
