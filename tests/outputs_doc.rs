//! `docs/outputs.md` cannot drift from the code: every JSON example in it is compared with a
//! real record of the same `type` produced by the bundled topology and rules (same fields,
//! recursively, and the same kind of value), and every type the topology produced must be
//! documented, and every documented type produced.
//!
//! `SCORESTREAM_PRINT_OUTPUT_EXAMPLES=1 cargo test --test outputs_doc -- --nocapture` prints
//! one real record per type, which is where the doc's examples come from.

use std::collections::BTreeMap;
use std::time::Duration;

use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};
use scorestream::topology;
use serde_json::Value;

const EVENTS: &[&str] = &[
    // Seed 000 (IN system): recharge and data usage; seed 002 (retail): an order.
    r#"{"source":"in","customer_id":"254700000001","event_type":"recharge","timestamp":"2024-06-10T08:15:00Z","amount":100.0}"#,
    r#"{"source":"in","source_name":"IN System","customer_id":"254700000001","event_type":"data_usage","timestamp":"2024-06-10T09:30:00Z","value":250,"metadata":{"network":"5G","location":"Nairobi"}}"#,
    r#"{"event_id":"ord-1","event_type":"order_placed","customer_id":"CUST-001","timestamp":"2024-06-10T10:00:00Z","data":{"order_id":"ORD-1","order_value":120.5,"items_count":2}}"#,
    // Seed 002: a failed payment re-scores churn risk and raises a critical alert.
    r#"{"event_id":"pay-1","event_type":"payment_failed","customer_id":"CUST-001","timestamp":"2024-06-10T10:05:00Z","data":{"order_id":"ORD-1","reason":"card_declined"}}"#,
];

/// One real record per output type, from the bundled topology.
fn produced() -> BTreeMap<String, Value> {
    let config = Config {
        application_id: "docs".into(),
        ..Config::default()
    };
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, None).unwrap();
    let mut driver = TopologyTestDriver::new(topology, 1_893_456_000_000);
    for e in EVENTS {
        driver
            .pipe("customer-events", Record::new(e.as_bytes().to_vec(), 0))
            .unwrap();
    }
    driver.advance_wall_clock(Duration::from_secs(2)).unwrap();
    let mut by_type = BTreeMap::new();
    for topic in [
        "gamification-results",
        "churn-predictions",
        "customer-alerts",
    ] {
        for r in driver.read_output(topic) {
            let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            let t = v["type"].as_str().unwrap().to_string();
            by_type.entry(t).or_insert(v);
        }
    }
    by_type
}

/// The ```json blocks of the doc, parsed.
fn documented() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/outputs.md");
    let text = std::fs::read_to_string(path).expect("docs/outputs.md");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                let v: Value = serde_json::from_str(b)
                    .unwrap_or_else(|e| panic!("a json block in docs/outputs.md: {e}\n{b}"));
                out.push(v);
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences in shape between a documented example and a real record.
fn compare(path: &str, doc: &Value, real: &Value, out: &mut Vec<String>) {
    match (doc, real) {
        (Value::Object(d), Value::Object(r)) => {
            for k in d.keys().filter(|k| !r.contains_key(*k)) {
                out.push(format!("{path}.{k}: documented, not produced"));
            }
            for k in r.keys().filter(|k| !d.contains_key(*k)) {
                out.push(format!("{path}.{k}: produced, not documented"));
            }
            for (k, dv) in d {
                if let Some(rv) = r.get(k) {
                    compare(&format!("{path}.{k}"), dv, rv, out);
                }
            }
        }
        (Value::Array(d), Value::Array(r)) => {
            if let (Some(d0), Some(r0)) = (d.first(), r.first()) {
                compare(&format!("{path}[0]"), d0, r0, out);
            }
        }
        // An optional field may be null in one and set in the other.
        (Value::Null, _) | (_, Value::Null) => {}
        (d, r) if kind(d) != kind(r) => out.push(format!(
            "{path}: documented as {}, produced as {}",
            kind(d),
            kind(r)
        )),
        _ => {}
    }
}

#[test]
fn docs_outputs_md_matches_what_the_topology_produces() {
    let real = produced();
    if std::env::var_os("SCORESTREAM_PRINT_OUTPUT_EXAMPLES").is_some() {
        for v in real.values() {
            println!("{}\n", serde_json::to_string_pretty(v).unwrap());
        }
    }
    let docs = documented();
    let mut problems = Vec::new();
    let mut documented_types = Vec::new();
    for d in &docs {
        let Some(t) = d["type"].as_str() else {
            continue; // other examples (e.g. a dead letter's value) are not results
        };
        documented_types.push(t.to_string());
        match real.get(t) {
            None => problems.push(format!("{t}: documented, but the topology produced none")),
            Some(r) => compare(t, d, r, &mut problems),
        }
    }
    for t in real.keys() {
        if !documented_types.contains(t) {
            problems.push(format!(
                "{t}: produced, but has no example in docs/outputs.md"
            ));
        }
    }
    // Eight gamification types, churn_prediction and customer_alert.
    assert_eq!(
        real.len(),
        10,
        "the events should produce every type: {:?}",
        real.keys()
    );
    assert!(
        problems.is_empty(),
        "docs/outputs.md drifted:\n{}",
        problems.join("\n")
    );
}
