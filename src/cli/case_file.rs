//! Case files: readable `input → expected output` tests of a rules file, run through the
//! real topology in the [`TopologyTestDriver`]. `scorestream test` runs them for rule authors
//! (no cargo needed); `tests/cases.rs` runs `tests/cases/` with the same code.
//!
//! A case file:
//!
//! ```toml
//! about = "what the case shows"
//! rules = """ ...a rules file... """   # default: `scorestream test --rules`, else the
//!                                      # bundled topology/gamification.toml
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
//! Each result's `result_id` (a hash) and `rules_version` (a hash of the rules text) are
//! checked for shape (16 hex digits; a non-empty string) and then left out of the
//! comparison; everything else must be equal, except that an expected string `"<any>"`
//! stands for any non-empty string. Each record's key must be its `customer_id` (a
//! `leaderboard_updated`'s: its `board`). Dead letters are compared by reason, the
//! `event_id` of the canonical event they carry, and topic (default `customer-events-dlq`),
//! in order (topic by topic, sorted by name); each must name its input topic in
//! `scorestream.source.topic`. The wall clock starts at 2030-01-01T00:00:00Z.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::engine::dead_letter::headers;
use crate::engine::{Record, TopologyTestDriver};
use crate::gamification::Rules;
use crate::topology;

/// 2030-01-01T00:00:00Z: far enough ahead that no case's event is "in the future".
pub const WALL_CLOCK: i64 = 1_893_456_000_000;

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

/// Why a case did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The case file itself is wrong (unreadable, bad TOML, bad rules, a bad step).
    #[error("{0}")]
    Invalid(String),
    /// The topology's output differs from the expected: a readable report.
    #[error("{0}")]
    Failed(String),
}

/// Runs the case file at `path`. Its own `rules` win; otherwise `rules` (a rules file's
/// text), otherwise the bundled rules. A failure's report says what differs.
pub fn run_case(path: &Path, rules: Option<&str>) -> Result<(), CaseError> {
    let invalid = CaseError::Invalid;
    let (case, config, mut driver) = drive(path, rules)?;
    let expected: Vec<Value> = case
        .results
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::from_str(s).map_err(|e| invalid(format!("results[{i}] is not JSON: {e}")))
        })
        .collect::<Result<_, _>>()?;

    let mut problems = Vec::new();
    let mut actual = results(
        &mut driver,
        &config.gamification.results_topic,
        case.types.as_deref(),
        &mut problems,
    );
    for (e, a) in expected.iter().zip(actual.iter_mut()) {
        match_any(e, a);
    }
    if actual != expected {
        problems.push(super::case_diff::records(&expected, &actual));
    }
    let dead = dead_letters(&mut driver, &mut problems);
    if dead != case.dead_letters {
        let show = |d: &[DeadLetter]| {
            d.iter()
                .map(|d| format!("\n      {} {} on {}", d.reason, d.event_id, d.topic))
                .collect::<String>()
        };
        problems.push(format!(
            "dead letters differ:\n    expected ({}):{}\n    actual ({}):{}",
            case.dead_letters.len(),
            show(&case.dead_letters),
            dead.len(),
            show(&dead)
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut report = format!("{}\n", case.about.lines().next().unwrap_or(""));
    for p in problems {
        let _ = writeln!(report, "  {}", p.replace('\n', "\n  "));
    }
    Err(CaseError::Failed(report))
}

/// Every record the topology wrote for the case at `path`, by topic, in order.
pub fn outputs(path: &Path, rules: Option<&str>) -> Result<Vec<(String, Record)>, CaseError> {
    let (_, _, mut driver) = drive(path, rules)?;
    let mut out = Vec::new();
    for topic in driver.output_topics() {
        for r in driver.read_output(&topic) {
            out.push((topic.clone(), r));
        }
    }
    Ok(out)
}

/// Parses the case, builds the topology and pipes every step through it.
fn drive(
    path: &Path,
    rules: Option<&str>,
) -> Result<(Case, Config, TopologyTestDriver), CaseError> {
    let invalid = CaseError::Invalid;
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read: {e}")))?;
    let case: Case = toml::from_str(&text).map_err(|e| invalid(format!("bad case file: {e}")))?;
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
    let rules = match case.rules.as_deref().or(rules) {
        Some(text) => Rules::from_toml_str(text),
        None => Rules::bundled(),
    }
    .map_err(|e| invalid(format!("invalid rules:\n{e}")))?;
    let normalizer = topology::normalizer(&config).map_err(|e| invalid(e.to_string()))?;
    let churn = topology::churn_parts(&config).map_err(|e| {
        invalid(
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let parts = topology::Components {
        normalizer: Arc::new(normalizer),
        rules: Arc::new(rules),
        churn: Some(Arc::new(churn)),
    };
    let topology =
        topology::build_topology(&config, &parts, None).map_err(|e| invalid(e.to_string()))?;
    let mut driver = TopologyTestDriver::with_partitions(topology, case.partitions, WALL_CLOCK);
    for (i, step) in case.step.iter().enumerate() {
        match (&step.event, step.advance) {
            (Some(_), None) if !(0..case.partitions).contains(&step.partition) => {
                return Err(invalid(format!(
                    "step {i}: partition {} of {}",
                    step.partition, case.partitions
                )))
            }
            (Some(event), None) => {
                let topic = step.topic.as_deref().unwrap_or("customer-events");
                driver
                    .pipe_to_partition(
                        topic,
                        step.partition,
                        Record::new(event.as_bytes().to_vec(), 0),
                    )
                    .map_err(|e| invalid(format!("step {i}: {e}")))?;
            }
            (None, Some(by)) => driver
                .advance_wall_clock(by)
                .map_err(|e| invalid(format!("step {i}: {e}")))?,
            _ => {
                return Err(invalid(format!(
                    "step {i}: give exactly one of event, advance"
                )))
            }
        }
    }
    Ok((case, config, driver))
}

/// The results on `topic` (of `types`, when given) without their hashes, after checking
/// those hashes' shape and each record's key.
fn results(
    driver: &mut TopologyTestDriver,
    topic: &str,
    types: Option<&[String]>,
    problems: &mut Vec<String>,
) -> Vec<Value> {
    let mut out = Vec::new();
    for r in driver.read_output(topic) {
        let mut v: Value = match serde_json::from_slice(r.value.as_deref().unwrap_or_default()) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("a result is not JSON: {e}"));
                continue;
            }
        };
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
        if let Some(obj) = v.as_object_mut() {
            obj.remove("result_id");
            obj.remove("rules_version");
        }
        let keep = types.is_none_or(|t| t.iter().any(|t| Some(t.as_str()) == v["type"].as_str()));
        if keep {
            out.push(v);
        }
    }
    out
}

fn dead_letters(driver: &mut TopologyTestDriver, problems: &mut Vec<String>) -> Vec<DeadLetter> {
    let mut dead = Vec::new();
    let mut topics = driver.topology().dead_letter_topics();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for dlq in topics {
        let topic = dlq.name;
        for r in driver.read_output(&topic) {
            let reason = r
                .headers
                .last_str(headers::REASON)
                .unwrap_or("")
                .to_string();
            let source = r.headers.last_str(headers::SOURCE_TOPIC).unwrap_or("");
            if source != dlq.source {
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
    dead
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

/// What `scorestream test` saw: a line per case, then a total.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub invalid: usize,
}

/// Runs each case file (a directory: its `*.toml` files, sorted) against the rules file at
/// `rules_path` (default: the bundled rules), writing `ok`/`FAILED` lines and each failure's
/// report to `out`.
pub fn run_files(
    paths: &[std::path::PathBuf],
    rules_path: Option<&Path>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    let rules = match rules_path {
        None => None,
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => Some(t),
            Err(e) => {
                writeln!(out, "cannot read rules file {}: {e}", p.display())?;
                summary.invalid += 1;
                return Ok(summary);
            }
        },
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inside: Vec<_> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    for f in &files {
        match run_case(f, rules.as_deref()) {
            Ok(()) => {
                summary.passed += 1;
                writeln!(out, "ok      {}", f.display())?;
            }
            Err(CaseError::Failed(report)) => {
                summary.failed += 1;
                writeln!(out, "FAILED  {}: {report}", f.display())?;
            }
            Err(CaseError::Invalid(why)) => {
                summary.invalid += 1;
                let why = why.replace('\n', "\n    ");
                writeln!(out, "INVALID {}: {why}", f.display())?;
            }
        }
    }
    writeln!(
        out,
        "\n{} case files: {} passed, {} failed, {} invalid",
        files.len(),
        summary.passed,
        summary.failed,
        summary.invalid
    )?;
    Ok(summary)
}

/// `scorestream test`: runs the case files, printing a line or a difference per case; exit
/// 1 if a case fails, 2 if a case or rules file is invalid.
pub fn command(cases: &[std::path::PathBuf], rules: Option<&Path>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut out = std::io::stdout().lock();
    match run_files(cases, rules, &mut out) {
        Ok(s) if s.invalid > 0 => ExitCode::from(2),
        Ok(s) if s.failed > 0 => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
