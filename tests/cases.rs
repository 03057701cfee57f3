//! Runs every gamification case file under `tests/cases/` through the real topology
//! (`app::build_topology`) in the `TopologyTestDriver`: seed-shaped JSON events in, the exact
//! records on `gamification-results` and the dead letters out.
//!
//! A case file:
//!
//! ```toml
//! about = "what the case shows"
//! rules = """ ...a rules file... """   # default: the bundled topology/gamification.toml
//! types = ["points_awarded"]           # compare only these result types (default: all)
//! partitions = 1                       # of every topic (default 1)
//! commit_interval = "1s"               # runtime.commit_interval: the leaderboards' emit
//!                                      # interval on the wall clock (default 1 s)
//! inputs = ["customer-events"]         # the input topics (default: customer-events)
//!
//! [[step]]                             # in order: an event to pipe...
//! event = '{"event_id":"e1", ...}'
//! topic = "customer-events"            # default
//! partition = 0                        # input partition (default 0)
//! [[step]]                             # ...or a wall-clock advance (fires punctuations)
//! advance = "2s"
//!
//! results = ['{...}', ...]             # the expected records, in order, exactly
//! dead_letters = [{ reason = "late_event", event_id = "e3", topic = "customer-events-dlq" }]
//! ```
//!
//! Expected records are written by hand from the rules. Each record's `result_id` (a
//! hash) and `rules_version` (a hash of the rules text) are checked for presence and shape
//! (16 hex digits; a non-empty string) and then left out of the comparison; everything else
//! must be equal, except that an expected string `"<any>"` stands for any non-empty string
//! (for ids derived by hashing, which no one can write by hand); each record's key must be
//! its `customer_id` (a `leaderboard_updated`'s: its `board`). Dead letters are compared by reason, `event_id` (of the canonical event
//! they carry) and topic (default `customer-events-dlq`), in order (topic by topic, sorted by
//! name), and each must name its input topic in `scorestream.source.topic`. Every failing
//! case is reported with its file and the first difference.

use std::path::Path;
use std::time::Duration;

use scorestream::app;
use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};
use serde::Deserialize;
use serde_json::Value;

/// 2030-01-01T00:00:00Z: far enough ahead that no case's event is "in the future".
const WALL_CLOCK: i64 = 1_893_456_000_000;
const RESULTS: &str = "gamification-results";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    rules: Option<String>,
    types: Option<Vec<String>>,
    #[serde(default = "one")]
    partitions: i32,
    #[serde(default, with = "humantime_serde")]
    commit_interval: Option<Duration>,
    inputs: Option<Vec<String>>,
    #[serde(default)]
    step: Vec<Step>,
    #[serde(default)]
    results: Vec<String>,
    #[serde(default)]
    dead_letters: Vec<DeadLetter>,
}

fn one() -> i32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    event: Option<String>,
    topic: Option<String>,
    #[serde(default)]
    partition: i32,
    #[serde(default, with = "humantime_serde")]
    advance: Option<Duration>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct DeadLetter {
    reason: String,
    event_id: String,
    #[serde(default = "default_dlq")]
    topic: String,
}

fn default_dlq() -> String {
    "customer-events-dlq".into()
}

/// Runs one case; the differences, if any.
fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("bad case file: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config {
        application_id: "cases".into(),
        ..Config::default()
    };
    if let Some(every) = case.commit_interval {
        config.runtime.commit_interval = every;
    }
    if let Some(inputs) = &case.inputs {
        config.inputs = inputs.clone();
    }
    if let Some(rules) = &case.rules {
        let p = dir.path().join("rules.toml");
        std::fs::write(&p, rules).map_err(|e| e.to_string())?;
        config.gamification.rules_file = Some(p);
    }
    let parts = app::Components::load(&config).map_err(|e| format!("rules: {e}"))?;
    let topology = app::build_topology(&config, &parts, None).map_err(|e| e.to_string())?;
    let mut driver = TopologyTestDriver::with_partitions(topology, case.partitions, WALL_CLOCK);
    for (i, step) in case.step.iter().enumerate() {
        match (&step.event, step.advance) {
            (Some(_), None) if !(0..case.partitions).contains(&step.partition) => {
                return Err(format!(
                    "step {i}: partition {} of {}",
                    step.partition, case.partitions
                ))
            }
            (Some(event), None) => {
                let topic = step.topic.as_deref().unwrap_or("customer-events");
                driver
                    .pipe_to_partition(
                        topic,
                        step.partition,
                        Record::new(event.as_bytes().to_vec(), 0),
                    )
                    .map_err(|e| format!("step {i}: {e}"))?;
            }
            (None, Some(by)) => driver
                .advance_wall_clock(by)
                .map_err(|e| format!("step {i}: {e}"))?,
            _ => return Err(format!("step {i}: give exactly one of event, advance")),
        }
    }

    let mut problems = Vec::new();
    let mut actual = Vec::new();
    for r in driver.read_output(RESULTS) {
        let mut v: Value = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
            .map_err(|e| format!("a result is not JSON: {e}"))?;
        let id_ok = v["result_id"]
            .as_str()
            .is_some_and(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let version_ok = v["rules_version"].as_str().is_some_and(|s| !s.is_empty());
        if !id_ok || !version_ok {
            problems.push(format!("bad result_id or rules_version in {v}"));
        }
        let key_field = if v["type"] == "leaderboard_updated" {
            "board"
        } else {
            "customer_id"
        };
        let key = r.key.as_deref().map(String::from_utf8_lossy);
        if key.as_deref() != v[key_field].as_str() {
            problems.push(format!("key {key:?} is not the {key_field} of {v}"));
        }
        let obj = v.as_object_mut().expect("results are objects");
        obj.remove("result_id");
        obj.remove("rules_version");
        let keep = case
            .types
            .as_ref()
            .is_none_or(|t| t.iter().any(|t| Some(t.as_str()) == v["type"].as_str()));
        if keep {
            actual.push(v);
        }
    }
    let expected: Vec<Value> = case
        .results
        .iter()
        .enumerate()
        .map(|(i, s)| serde_json::from_str(s).map_err(|e| format!("results[{i}] is not JSON: {e}")))
        .collect::<Result<_, _>>()?;
    for (e, a) in expected.iter().zip(actual.iter_mut()) {
        match_any(e, a);
    }
    if actual != expected {
        let first = expected
            .iter()
            .zip(&actual)
            .position(|(e, a)| e != a)
            .unwrap_or(expected.len().min(actual.len()));
        let at = |v: &[Value]| v.get(first).map_or("(none)".to_string(), Value::to_string);
        problems.push(format!(
            "results differ, first at #{first} (0-based):\n  expected: {}\n  actual:   {}\n  \
             all expected ({}):\n{}\n  all actual ({}):\n{}",
            at(&expected),
            at(&actual),
            expected.len(),
            lines(&expected),
            actual.len(),
            lines(&actual)
        ));
    }

    let mut dead = Vec::new();
    for topic in driver.output_topics() {
        if !topic.ends_with("-dlq") {
            continue;
        }
        for r in driver.read_output(&topic) {
            let reason = r
                .headers
                .last_str("scorestream.error.reason")
                .unwrap_or("")
                .to_string();
            let source = r.headers.last_str("scorestream.source.topic").unwrap_or("");
            if topic.strip_suffix("-dlq") != Some(source) {
                problems.push(format!(
                    "a dead letter on {topic} names {source:?} as its source topic"
                ));
            }
            let v: Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default()).unwrap_or_default();
            dead.push(DeadLetter {
                reason,
                event_id: v["event_id"].as_str().unwrap_or("").to_string(),
                topic: topic.clone(),
            });
        }
    }
    if dead != case.dead_letters {
        problems.push(format!(
            "dead letters differ: expected {:?}, actual {dead:?}",
            case.dead_letters
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", case.about, problems.join("\n")))
    }
}

/// Where `expected` holds `"<any>"` and `actual` a non-empty string, makes them equal.
fn match_any(expected: &Value, actual: &mut Value) {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) if e == "<any>" && !a.is_empty() => {
            a.clone_from(e);
        }
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                if let Some(av) = a.get_mut(k) {
                    match_any(ev, av);
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (ev, av) in e.iter().zip(a.iter_mut()) {
                match_any(ev, av);
            }
        }
        _ => {}
    }
}

fn lines(v: &[Value]) -> String {
    v.iter()
        .map(|x| format!("    {x}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_case_file_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/cases")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 10,
        "expected the case files, found {paths:?}"
    );
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} case files failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}
