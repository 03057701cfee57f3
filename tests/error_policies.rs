//! `[errors]`: what happens to each kind of bad record (issue 14, item 3), run through the
//! bundled topology in the TopologyTestDriver. Per policy: `dead_letter` (today's default,
//! unchanged: on `<input>-dlq`, counted), `drop` (nothing on the dead-letter topic, counted)
//! and `fail` (the task stops with an error naming the reason and the record's topic,
//! partition and offset).

mod support;

use scorestream::config::Config;
use scorestream::engine::{ErrorPolicy, Record, TopologyTestDriver};
use scorestream::metrics::Metrics;

/// 2030-01-01T00:00:00Z: no event of the test is in the future.
const WALL_CLOCK: i64 = 1_893_456_000_000;
const APP: &str = "policies";
const DLQ: &str = "customer-events-dlq";

fn driver(errors: impl FnOnce(&mut Config)) -> (TopologyTestDriver, Metrics) {
    let mut config = Config {
        application_id: APP.into(),
        ..Config::default()
    };
    errors(&mut config);
    let metrics = Metrics::new();
    let rules = support::driver::STRICT_RULES;
    let driver = support::driver::with_config(config, rules, Some(metrics.clone()), WALL_CLOCK);
    (driver, metrics)
}

fn event(id: &str, kind: &str, at: &str) -> Record {
    let json = format!(
        r#"{{"event_id":"{id}","customer_id":"c1","event_type":"{kind}","timestamp":"{at}","amount":5}}"#
    );
    Record::new(json.into_bytes(), 0)
}

/// e1 on time (offset 0); e2 two hours behind it, grace one hour: late (offset 1).
fn pipe_late(d: &mut TopologyTestDriver) -> Result<(), String> {
    d.pipe(
        "customer-events",
        event("e1", "purchase", "2024-03-01T10:00:00Z"),
    )
    .unwrap();
    d.pipe(
        "customer-events",
        event("e2", "purchase", "2024-03-01T08:00:00Z"),
    )
    .map_err(|e| e.to_string())
}

/// An event type no rule uses, rules strict (offset 0).
fn pipe_unknown_type(d: &mut TopologyTestDriver) -> Result<(), String> {
    d.pipe(
        "customer-events",
        event("e3", "teleport", "2024-03-01T10:05:00Z"),
    )
    .map_err(|e| e.to_string())
}

/// Bytes that are no canonical event, straight onto the internal topic (offset 0).
fn pipe_undecodable(d: &mut TopologyTestDriver) -> Result<(), String> {
    let topic = format!("{APP}-events-by-customer");
    d.pipe(
        &topic,
        Record::new(b"\xff not bincode".to_vec(), 0).with_key("c1"),
    )
    .map_err(|e| e.to_string())
}

fn counted(m: &Metrics, reason: &str, action: &str) -> u64 {
    m.bad_records.with_label_values(&[reason, action]).get()
}

fn dead_lettered(m: &Metrics, reason: &str) -> u64 {
    m.dead_letters
        .with_label_values(&["customer-events", reason])
        .get()
}

fn reasons(d: &mut TopologyTestDriver) -> Vec<String> {
    d.read_output(DLQ)
        .iter()
        .map(|r| {
            r.headers
                .last_str("scorestream.error.reason")
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn by_default_late_and_unknown_type_events_are_dead_lettered_and_counted() {
    let (mut d, m) = driver(|_| {});
    pipe_late(&mut d).unwrap();
    pipe_unknown_type(&mut d).unwrap();
    assert_eq!(reasons(&mut d), ["late_event", "unknown_event_type"]);
    for reason in ["late_event", "unknown_event_type"] {
        assert_eq!(counted(&m, reason, "dead_lettered"), 1, "{reason}");
        assert_eq!(dead_lettered(&m, reason), 1, "{reason}");
    }
    assert_eq!(m.late_events.with_label_values(&["dead_lettered"]).get(), 1);
}

#[test]
fn drop_sends_nothing_to_the_dead_letter_topic_and_counts_it() {
    let (mut d, m) = driver(|c| {
        c.errors.late_event = Some(ErrorPolicy::Drop);
        c.errors.unknown_event_type = ErrorPolicy::Drop;
    });
    pipe_late(&mut d).unwrap();
    pipe_unknown_type(&mut d).unwrap();
    assert_eq!(reasons(&mut d), Vec::<String>::new());
    for reason in ["late_event", "unknown_event_type"] {
        assert_eq!(counted(&m, reason, "dropped"), 1, "{reason}");
        assert_eq!(dead_lettered(&m, reason), 0, "{reason}");
    }
    assert_eq!(m.late_events.with_label_values(&["dropped"]).get(), 1);
    // The on-time event still scored.
    assert!(!d.read_output("gamification-results").is_empty());
}

#[test]
fn fail_stops_the_task_with_the_reason_and_the_records_position() {
    let (mut d, m) = driver(|c| c.errors.late_event = Some(ErrorPolicy::Fail));
    let error = pipe_late(&mut d).unwrap_err();
    for part in [
        "late_event",
        "topic 'customer-events', partition 0, offset 1",
        "'fail'",
    ] {
        assert!(error.contains(part), "{part:?} not in: {error}");
    }
    assert_eq!(counted(&m, "late_event", "failed"), 1);
    assert_eq!(reasons(&mut d), Vec::<String>::new());

    let (mut d, m) = driver(|c| c.errors.unknown_event_type = ErrorPolicy::Fail);
    let error = pipe_unknown_type(&mut d).unwrap_err();
    for part in [
        "unknown_event_type",
        "topic 'customer-events', partition 0, offset 0",
    ] {
        assert!(error.contains(part), "{part:?} not in: {error}");
    }
    assert_eq!(counted(&m, "unknown_event_type", "failed"), 1);
}

#[test]
fn errors_late_event_overrides_the_rules_late_policy() {
    // The rules say dead_letter; unset, that holds (see the default test); set, it wins.
    let (mut d, _) = driver(|c| c.errors.late_event = Some(ErrorPolicy::Drop));
    pipe_late(&mut d).unwrap();
    assert!(d.read_output(DLQ).is_empty());
}

#[test]
fn an_undecodable_internal_record_is_dropped_by_default_or_fails_the_task() {
    let (mut d, m) = driver(|_| {});
    pipe_undecodable(&mut d).unwrap();
    assert_eq!(counted(&m, "undecodable_internal", "dropped"), 1);
    assert_eq!(m.corrupt_internal_records.get(), 1);

    let (mut d, m) = driver(|c| c.errors.undecodable_internal = ErrorPolicy::Fail);
    let error = pipe_undecodable(&mut d).unwrap_err();
    let position = format!("topic '{APP}-events-by-customer', partition 0, offset 0");
    for part in ["undecodable_internal", position.as_str()] {
        assert!(error.contains(part), "{part:?} not in: {error}");
    }
    assert_eq!(counted(&m, "undecodable_internal", "failed"), 1);
}

#[test]
fn the_keys_parse_and_dead_letter_is_refused_where_there_is_no_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().display();
    let ok = format!(
        "state_dir = '{state_dir}'\n[errors]\nlate_event = 'fail'\nunknown_event_type = 'drop'\n\
         undecodable_internal = 'fail'\noversize_output = 'drop'\n\
         dead_letter_max_bytes = '2 MiB'\ndead_letter_too_large = 'drop'\n"
    );
    let config = Config::from_toml_with_env(Some(&ok), &|_| None).unwrap();
    assert_eq!(config.errors.late_event, Some(ErrorPolicy::Fail));
    assert_eq!(config.dead_letter_max_bytes(), 2 << 20);

    let bad = format!(
        "state_dir = '{state_dir}'\n[ingest]\nmax_depth = 0\n[errors]\n\
         undecodable_internal = 'dead_letter'\noversize_output = 'dead_letter'\n\
         dead_letter_max_bytes = 10\n"
    );
    let errors = Config::from_toml_with_env(Some(&bad), &|_| None)
        .unwrap_err()
        .0;
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "ingest.max_depth",
            "errors.undecodable_internal",
            "errors.oversize_output",
            "errors.dead_letter_max_bytes",
        ],
        "every error at once: {errors:?}"
    );
}
