//! The bundled topology in the in-process TopologyTestDriver, for property tests that need
//! no broker: built from a rules text, and its customers' stored state read back.

use std::collections::BTreeMap;

use scorestream::config::Config;
use scorestream::engine::{TaskId, TopologyTestDriver};
use scorestream::metrics::Metrics;
use scorestream::topology;
use serde_json::Value;

/// The bundled topology with `rules` (a rules file's text; `None`: the bundled rules) on
/// `partitions` partitions of every topic, its wall clock at `wall_clock` (epoch ms).
pub fn bundled(rules: Option<&str>, partitions: i32, wall_clock: i64) -> TopologyTestDriver {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        application_id: "props".into(),
        ..Config::default()
    };
    if let Some(rules) = rules {
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, rules).unwrap();
        config.gamification.rules_file = Some(path);
    }
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, None).unwrap();
    TopologyTestDriver::with_partitions(topology, partitions, wall_clock)
}

/// Rules with a one-hour grace period, late events dead-lettered and strict event types
/// (no rule uses `teleport`): one `purchase` rule.
pub const STRICT_RULES: &str = r#"
[settings]
time_zone = "UTC"
lateness_grace = "1h"
late_policy = "dead_letter"
strict_event_types = true
[point_types.xp]
[points.buy]
event_type = "purchase"
point_type = "xp"
per_unit = 1
"#;

/// The bundled topology of `config` with its rules file holding `rules`, counting in
/// `metrics` when given, on one partition per topic.
pub fn with_config(
    mut config: Config,
    rules: &str,
    metrics: Option<Metrics>,
    wall_clock: i64,
) -> TopologyTestDriver {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, rules).unwrap();
    config.gamification.rules_file = Some(path);
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, metrics).unwrap();
    TopologyTestDriver::new(topology, wall_clock)
}

/// Every customer's `customer-state` value as JSON (`scorestream state dump`'s form), from
/// the game task of each of the `partitions` partitions.
pub fn customer_states(
    driver: &mut TopologyTestDriver,
    partitions: i32,
) -> BTreeMap<String, Value> {
    let mut states = BTreeMap::new();
    for partition in 0..partitions {
        let task = TaskId {
            subtopology: 1,
            partition,
        };
        let Some(state) = driver.task_state(task) else {
            continue;
        };
        let index = state
            .store_names()
            .iter()
            .position(|n| *n == "customer-state")
            .expect("the game task has customer-state");
        for (k, v) in state.raw_entries(index).unwrap() {
            let entry = topology::store_entry_json("customer-state", &k, &v);
            let customer = entry["key"].as_str().expect("a customer-state entry");
            states.insert(customer.to_string(), entry["value"].clone());
        }
    }
    states
}
