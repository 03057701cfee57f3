//! The minimal workload of the end-to-end load run (`benches/minimal-rules.toml`, issue 15)
//! must cost exactly one `points_awarded` per valid event and nothing else, for every event
//! shape the load generator sends: the load run compares its rate with the raw passthrough
//! on that premise (and checks the count again on the broker).

use std::collections::HashSet;

use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};
use scorestream::generator::{Generator, GeneratorConfig};
use scorestream::topology;
use serde_json::Value;

const PARTITIONS: i32 = 4;
/// 2030-01-01 (epoch ms), where the generated events start.
const START: i64 = 1_893_456_000_000;

#[test]
fn minimal_rules_award_exactly_one_points_per_valid_event() {
    let events = 5_000;
    let mut config = Config {
        application_id: "bench-minimal".into(),
        inputs: vec!["load-in".into()],
        ..Config::default()
    };
    config.churn.enabled = false;
    config.gamification.rules_file =
        Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/minimal-rules.toml"));
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, None).unwrap();
    // Each event a minute after the previous one's window: event times strictly increase,
    // so no two events share a derived event id (no duplicates) and none is late.
    let step = 61_000;
    let end = START + events as i64 * step;
    let mut driver = TopologyTestDriver::with_partitions(topology, PARTITIONS, end);
    let mut g = Generator::new(GeneratorConfig {
        customers: 2_000,
        ..GeneratorConfig::default()
    });
    let mut valid = 0usize;
    let mut types = HashSet::new();
    for i in 0..events {
        let ev = g.next_event(START + i as i64 * step);
        if ev.expected_reason.is_none() {
            valid += 1;
            let v: Value = serde_json::from_slice(&ev.value).unwrap();
            let t = v.get("event_type").or_else(|| v.get("eventType")).unwrap();
            types.insert(t.as_str().unwrap().to_string());
        }
        driver
            .pipe_to_partition("load-in", i % PARTITIONS, Record::new(ev.value, end))
            .unwrap();
    }
    // Every shape of the generator was exercised (16 event types).
    assert_eq!(types.len(), 16, "event types seen: {types:?}");
    assert!(valid > events as usize * 9 / 10, "valid = {valid}");

    let results = driver.read_output(&config.gamification.results_topic);
    let mut ids = HashSet::new();
    for r in &results {
        let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert_eq!(v["type"], "points_awarded", "unexpected result {v}");
        assert!(v["points"].as_i64().unwrap() >= 1, "{v}");
        assert!(
            ids.insert(v["event_id"].as_str().unwrap().to_string()),
            "two awards for one event: {v}"
        );
    }
    assert_eq!(results.len(), valid, "one points_awarded per valid event");
    let dead = driver.read_output("load-in-dlq").len();
    assert_eq!(
        dead,
        events as usize - valid,
        "the bad records are dead-lettered"
    );
}
