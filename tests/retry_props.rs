//! Property (issue 16, item 1): producer retries never change a customer's results. For any
//! event sequence over the bundled rules and any set of retries of those events — the same
//! record re-sent, the same event re-sent with an extra attribute (`retry_count`), and an
//! id-less event re-sent with its keys reordered and other whitespace — each delivered at
//! any later point and on any input partition, every customer's final stored state and the
//! set of distinct `result_id`s equal those of the sequence without retries.
//!
//! Events are drawn in the seeds' shapes (telecom usage without an id, integer customer ids
//! with `amount`, shop orders with `event_id`, app events with `userId` and epoch
//! milliseconds), spread over three weeks so that the bundled weekly missions repeat, with
//! arrival jitter inside the grace period.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use scorestream::engine::Record;
use serde_json::Value;

/// 2030: no event is in the future.
const WALL_CLOCK: i64 = 1_893_456_000_000;
/// 2024-03-01T00:00:00Z.
const START_S: i64 = 1_709_251_200;
const PARTITIONS: i32 = 3;

/// One drawn event: (customer, shape, amount, hours after the start, jitter seconds).
type Drawn = (u8, u8, u16, u16, u8);

/// The JSON of a drawn event; `n` is its position (it makes ids and times unique enough).
fn event_json(e: &Drawn, n: usize) -> String {
    let (c, shape, amount, hours, jitter) = *e;
    // Arrival order is the drawn order; event time is hours plus up to 25 s of jitter.
    let at_s = START_S + i64::from(hours) * 3600 + i64::from(jitter % 26);
    let iso = chrono::DateTime::from_timestamp(at_s, 0)
        .unwrap()
        .to_rfc3339();
    match shape % 6 {
        // Seed 001, telecom IN usage: no event id, a string id, `value`, a source.
        0 => format!(
            r#"{{"source":"in","source_name":"IN System","customer_id":"10{c}","event_type":"data_usage","timestamp":"{iso}","value":{amount}.0,"metadata":{{"network":"4G"}}}}"#
        ),
        1 => format!(
            r#"{{"source":"in","customer_id":"10{c}","event_type":"voice_call","timestamp":"{iso}","value":{}}}"#,
            amount % 30
        ),
        // Seed 001, recharge: an integer customer id and `amount`, no event id.
        2 => format!(
            r#"{{"customer_id":10{c},"event_type":"recharge","timestamp":"{iso}","amount":{}.50}}"#,
            amount % 100
        ),
        // Seed 003, shop: an event id and the value inside `data`.
        3 => format!(
            r#"{{"event_id":"10{c}_{at_s}_{n}","event_type":"order_placed","customer_id":"10{c}","timestamp":"{iso}","data":{{"order_id":"ORD-{n}","order_value":{}.99}}}}"#,
            amount % 300
        ),
        // Seed 004, app: `userId`, `eventType`, epoch milliseconds, no event id.
        4 => format!(
            r#"{{"userId":"10{c}","eventType":"AppLogin","timestamp":{}}}"#,
            at_s * 1000
        ),
        _ => format!(
            r#"{{"source":"in","customer_id":"10{c}","event_type":"bundle_purchase","timestamp":"{iso}","amount":{}}}"#,
            amount % 50
        ),
    }
}

/// The three retry forms of one event's JSON.
fn retry_of(json: &str, form: u8) -> String {
    let v: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
    match form % 3 {
        // The same record re-sent, byte for byte.
        0 => json.to_string(),
        // The same event with an extra attribute.
        1 => {
            let mut v = v;
            v.insert("retry_count".into(), Value::from(1));
            Value::Object(v).to_string()
        }
        // Keys reversed, other whitespace.
        _ => {
            let members: Vec<String> = v
                .iter()
                .rev()
                .map(|(k, v)| format!("{} :  {}", Value::from(k.as_str()), v))
                .collect();
            format!("{{ {} }}\n", members.join(" ,\n  "))
        }
    }
}

struct Outcome {
    /// customer → the stored `customer-state` value as JSON.
    states: BTreeMap<String, Value>,
    /// Every distinct result id on every output topic but the dead-letter ones.
    result_ids: BTreeSet<String>,
    dead_letters: usize,
}

fn run(rules: Option<&str>, deliveries: &[(i32, String)]) -> Outcome {
    let mut driver = support::driver::bundled(rules, PARTITIONS, WALL_CLOCK);
    for (partition, json) in deliveries {
        driver
            .pipe_to_partition(
                "customer-events",
                *partition,
                Record::new(json.clone().into_bytes(), 0),
            )
            .unwrap();
    }
    let mut result_ids = BTreeSet::new();
    let mut dead_letters = 0;
    for topic in driver.output_topics() {
        if topic.ends_with("-dlq") {
            dead_letters += driver.read_output(&topic).len();
            continue;
        }
        for r in driver.read_output(&topic) {
            let Some(value) = r.value.as_deref() else {
                continue;
            };
            if let Ok(v) = serde_json::from_slice::<Value>(value) {
                if let Some(id) = v["result_id"].as_str() {
                    result_ids.insert(format!("{topic}/{id}"));
                }
            }
        }
    }
    let states = support::driver::customer_states(&mut driver, PARTITIONS);
    Outcome {
        states,
        result_ids,
        dead_letters,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn retries_never_change_results(
        mut drawn in prop::collection::vec((0u8..3, 0u8..6, 0u16..900, 0u16..21 * 24, any::<u8>()), 1..60),
        // (which event, form, how many deliveries later, partition)
        retries in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, 0usize..80, 0i32..PARTITIONS), 0..25),
        partitions in prop::collection::vec(0i32..PARTITIONS, 60),
    ) {
        // Arrival in event-time order up to the jitter: sorted by hour.
        drawn.sort_by_key(|e| e.3);
        let originals: Vec<(i32, String)> = drawn
            .iter()
            .enumerate()
            .map(|(n, e)| (partitions[n], event_json(e, n)))
            .collect();
        let mut with_retries: Vec<(usize, i32, String)> = originals
            .iter()
            .enumerate()
            .map(|(n, (p, json))| (n * 100, *p, json.clone()))
            .collect();
        for (which, form, later, partition) in &retries {
            let n = which.index(originals.len());
            // After the original: a position between later deliveries.
            let slot = (n + 1 + later) * 100 - 1 - (form % 3) as usize;
            with_retries.push((slot, *partition, retry_of(&originals[n].1, *form)));
        }
        with_retries.sort_by_key(|d| d.0);
        let with_retries: Vec<(i32, String)> =
            with_retries.into_iter().map(|(_, p, json)| (p, json)).collect();

        let plain = run(None, &originals);
        let retried = run(None, &with_retries);
        // A retry delivered more than the dedupe horizon (7 days of stream time) after its
        // original is no longer recognised, but it is beyond the grace period too: it is
        // dead-lettered as late and changes nothing.
        prop_assert_eq!(plain.dead_letters, 0, "the drawn events are all valid and in time");
        for (customer, state) in &plain.states {
            prop_assert_eq!(Some(state), retried.states.get(customer), "customer {}", customer);
        }
        prop_assert_eq!(plain.states.len(), retried.states.len());
        prop_assert_eq!(plain.result_ids, retried.result_ids);
    }
}

// --- Arrival order ----------------------------------------------------------------------

/// Repeatable missions with cooldowns (the bundled `weekly_data_explorer` and
/// `chatterbox`), a repeatable single mission, a one-off sum mission, and capped points;
/// no tiers (a tier's multiplier applies from the moment it is reached, so it is
/// arrival-order dependent by design) and no sequences (they follow arrival order).
const ORDER_RULES: &str = r#"
[settings]
time_zone = "UTC"
lateness_grace = "24h"
[point_types.xp]
[points.data_usage_xp]
event_type = "data_usage"
point_type = "xp"
per_unit = 0.1
daily_cap = 200
[points.voice_call_xp]
event_type = "voice_call"
point_type = "xp"
base = 1
[missions.weekly_data_explorer]
name = "Use 1 GB of data"
kind = "sum"
event_types = ["data_usage"]
target = 1024
repeatable = true
cooldown = "7d"
reward = { point_type = "xp", points = 100 }
[missions.chatterbox]
name = "Make 4 calls"
kind = "count"
event_types = ["voice_call"]
target = 4
repeatable = true
cooldown = "2d"
reward = { point_type = "xp", points = 50 }
[missions.daily_login]
name = "Log in"
kind = "single"
event_types = ["app_login"]
repeatable = true
cooldown = "20h"
reward = { point_type = "xp", points = 5 }
[missions.big_user]
name = "Use 5 GB"
kind = "sum"
event_types = ["data_usage"]
target = 5120
reward = { point_type = "xp", points = 500 }
"#;

/// The parts of a customer's state that must not depend on arrival order.
fn order_free(state: &Value) -> Value {
    let missions: serde_json::Map<String, Value> = state["missions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, p)| {
            let kept = serde_json::json!({
                "count": p["count"],
                "sum_milli": p["sum_milli"],
                "completions": p["completions"],
                "last_completed_at": p["last_completed_at"],
            });
            (id.clone(), kept)
        })
        .collect();
    let done: Vec<&String> = state["missions_done"].as_object().unwrap().keys().collect();
    serde_json::json!({
        "points": state["points"],
        "missions": missions,
        "missions_done": done,
        "missions_completed": state["missions_completed"],
        "profile": state["profile"],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Events arriving out of order inside the grace period (as when a customer's events
    /// are spread over input partitions that are read at different speeds, or a retry on
    /// another partition overtakes its original) end in the same points and missions as
    /// the same events in time order.
    #[test]
    fn arrival_order_within_the_grace_period_does_not_change_missions_or_points(
        drawn in prop::collection::vec((0u8..2, 0u8..6, 0u16..900, 0u16..35 * 24, any::<u8>()), 1..70),
        delays in prop::collection::vec(0i64..20 * 3600, 70),
    ) {
        // Only the shapes whose types these rules know well: usage, calls, app logins.
        let events: Vec<(i64, String)> = drawn
            .iter()
            .enumerate()
            .map(|(n, e)| {
                let shape = [0u8, 1, 4][usize::from(e.1 % 3)];
                let e = (e.0, shape, e.2, e.3, e.4);
                let at = START_S + i64::from(e.3) * 3600 + i64::from(e.4 % 26);
                (at, event_json(&e, n))
            })
            .collect();
        let mut in_time_order = events.clone();
        in_time_order.sort_by_key(|e| e.0);
        // Each event arrives up to 20 hours after it happened.
        let mut arrivals: Vec<(i64, String)> = events
            .iter()
            .zip(&delays)
            .map(|((at, json), delay)| (at + delay, json.clone()))
            .collect();
        arrivals.sort_by_key(|a| a.0);
        let to_deliveries = |v: &[(i64, String)]| -> Vec<(i32, String)> {
            v.iter().map(|(_, json)| (0, json.clone())).collect()
        };
        let ordered = run(Some(ORDER_RULES), &to_deliveries(&in_time_order));
        let arrived = run(Some(ORDER_RULES), &to_deliveries(&arrivals));
        prop_assert_eq!(ordered.dead_letters, 0);
        prop_assert_eq!(arrived.dead_letters, 0, "nothing is late");
        prop_assert_eq!(ordered.states.len(), arrived.states.len());
        for (customer, state) in &ordered.states {
            prop_assert_eq!(
                order_free(state),
                order_free(&arrived.states[customer]),
                "customer {}", customer
            );
        }
    }
}
