//! Runs every churn case file under `tests/churn_cases/` through the real topology
//! (`topology::build_topology`, churn on) in the `TopologyTestDriver`: seed-shaped JSON events in,
//! the exact records on `churn-predictions` and `customer-alerts` out.
//!
//! A case file:
//!
//! ```toml
//! about = "what the case shows"
//! rules = """ ...a churn rules file... """   # default: the bundled topology/churn.toml
//! model = """ ...a model file... """          # default: the bundled model
//!
//! [[step]]                 # in order: an event to pipe (to customer-events, partition 0)...
//! event = '{"event_id":"e1", ...}'
//! [[step]]                 # ...or a wall-clock advance (fires wall-clock punctuations)
//! advance = "2s"
//!
//! predictions = ['{...}']  # the expected records, in order, exactly
//! alerts = ['{...}']
//! ```
//!
//! Models in the cases are small enough that every probability is worked out by hand in the
//! file's comments. Each record's `result_id` (16 hex digits), `model_version` and
//! `rules_version` (non-empty) are checked for shape and then left out of the comparison;
//! the key must be the record's `customer_id`.

mod support;

use std::path::Path;
use std::time::Duration;

use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};
use scorestream::topology;
use serde::Deserialize;
use serde_json::Value;
use support::cases::{run_case_files, FileOutcome};

/// 2030-01-01T00:00:00Z.
const WALL_CLOCK: i64 = 1_893_456_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    rules: Option<String>,
    model: Option<String>,
    #[serde(default)]
    step: Vec<Step>,
    #[serde(default)]
    predictions: Vec<String>,
    #[serde(default)]
    alerts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    event: Option<String>,
    #[serde(default, with = "humantime_serde")]
    advance: Option<Duration>,
}

fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config {
        application_id: "churn-cases".into(),
        ..Config::default()
    };
    for (text, slot, name) in [
        (&case.rules, &mut config.churn.rules_file, "rules.toml"),
        (&case.model, &mut config.churn.model_file, "model.toml"),
    ] {
        if let Some(t) = text {
            let p = dir.path().join(name);
            std::fs::write(&p, t).map_err(|e| e.to_string())?;
            *slot = Some(p);
        }
    }
    let parts = topology::Components::load(&config).map_err(|e| format!("load: {e}"))?;
    let topology = topology::build_topology(&config, &parts, None).map_err(|e| e.to_string())?;
    let mut driver = TopologyTestDriver::new(topology, WALL_CLOCK);
    for (i, step) in case.step.iter().enumerate() {
        match (&step.event, step.advance) {
            (Some(event), None) => driver
                .pipe("customer-events", Record::new(event.as_bytes().to_vec(), 0))
                .map_err(|e| format!("step {i}: {e}"))?,
            (None, Some(by)) => driver
                .advance_wall_clock(by)
                .map_err(|e| format!("step {i}: {e}"))?,
            _ => return Err(format!("step {i}: give exactly one of event, advance")),
        }
    }
    let mut problems = Vec::new();
    for (topic, expected) in [
        (&config.churn.predictions_topic, &case.predictions),
        (&config.churn.alerts_topic, &case.alerts),
    ] {
        if let Err(p) = compare(&mut driver, topic, expected) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", case.about, problems.join("\n")))
    }
}

fn compare(
    driver: &mut TopologyTestDriver,
    topic: &str,
    expected: &[String],
) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut actual = Vec::new();
    for r in driver.read_output(topic) {
        let mut v: Value = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
            .map_err(|e| format!("a record on {topic} is not JSON: {e}"))?;
        let hex16 = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let nonempty = |k: &str| v[k].as_str().is_some_and(|s| !s.is_empty());
        if !v["result_id"].as_str().is_some_and(hex16)
            || !nonempty("model_version")
            || (v["type"] == "churn_prediction" && !nonempty("rules_version"))
        {
            problems.push(format!(
                "bad result_id, model_version or rules_version in {v}"
            ));
        }
        let key = r.key.as_deref().map(String::from_utf8_lossy);
        if key.as_deref() != v["customer_id"].as_str() {
            problems.push(format!("key {key:?} is not the customer_id of {v}"));
        }
        let obj = v.as_object_mut().expect("records are objects");
        for k in ["result_id", "model_version", "rules_version"] {
            obj.remove(k);
        }
        actual.push(v);
    }
    let expected: Vec<Value> = expected
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::from_str(s).map_err(|e| format!("{topic}[{i}] is not JSON: {e}")))
        .collect::<Result<_, _>>()?;
    if actual != expected {
        let first = expected
            .iter()
            .zip(&actual)
            .position(|(e, a)| e != a)
            .unwrap_or(expected.len().min(actual.len()));
        let at = |v: &[Value]| v.get(first).map_or("(none)".to_string(), Value::to_string);
        let lines = |v: &[Value]| {
            v.iter()
                .map(|x| format!("    {x}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        problems.push(format!(
            "{topic} differs, first at #{first}:\n  expected: {}\n  actual:   {}\n  all actual ({}):\n{}",
            at(&expected),
            at(&actual),
            actual.len(),
            lines(&actual)
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_churn_case_file_passes() {
    run_case_files("churn_cases", 1, |p| FileOutcome::single(p, run_case(p)));
}
