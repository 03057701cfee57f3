//! Property: for random event streams — duplicates, any interleaving across customers and
//! input partitions, out of order within the grace period — every customer's points per
//! point type equal the rules applied to the deduplicated stream, whatever the partition
//! count (1, 2, 3, 7). The oracles below are written from the rules text, independently of
//! `gamification::apply`; they rely on caps making per-day totals order-independent: with a
//! rule cap `r` and a type cap `t`, a type's day total is `min(t, Σ_rules min(r, uncapped))`.
//!
//! Each run is read three ways, all of which must equal the oracle: the last `total` of
//! `points_awarded` per customer and type, the sum of its `points` (every award published
//! once), and the `points` held in the `customer-state` store of every task.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use scorestream::engine::Record;
use serde_json::Value;

/// (customer, type) → points.
type Totals = BTreeMap<(String, String), i64>;

/// 2030: no event is in the future.
const WALL_CLOCK: i64 = 1_893_456_000_000;

/// Pipes `events` (input partition, JSON) through the real topology on `partitions`
/// partitions and reads the points three ways.
fn run(rules: Option<&str>, events: &[(u8, String)], partitions: i32) -> [Totals; 3] {
    let mut driver = support::driver::bundled(rules, partitions, WALL_CLOCK);
    for (p, json) in events {
        driver
            .pipe_to_partition(
                "customer-events",
                i32::from(*p) % partitions,
                Record::new(json.clone().into_bytes(), 0),
            )
            .unwrap();
    }
    assert!(
        driver.output_topics().iter().all(|t| !t.ends_with("-dlq")),
        "nothing is late or invalid: {:?}",
        driver.output_topics()
    );

    let (mut last_total, mut sum_points) = (Totals::new(), Totals::new());
    for r in driver.read_output("gamification-results") {
        let v: Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        if v["type"] != "points_awarded" {
            continue;
        }
        let key = (
            v["customer_id"].as_str().unwrap().to_string(),
            v["point_type"].as_str().unwrap().to_string(),
        );
        // A customer's results come out in the order they were computed: the last total
        // is the final one.
        last_total.insert(key.clone(), v["total"].as_i64().unwrap());
        *sum_points.entry(key).or_insert(0) += v["points"].as_i64().unwrap();
    }

    let mut stored = Totals::new();
    for (customer, state) in support::driver::customer_states(&mut driver, partitions) {
        for (point_type, n) in state["points"].as_object().unwrap() {
            let n = n.as_i64().unwrap();
            if n != 0 {
                stored.insert((customer.clone(), point_type.clone()), n);
            }
        }
    }
    [last_total, sum_points, stored]
}

/// The same `(customer, n)` must mean the same event: every copy takes the first one's
/// content (a producer retry), whatever else the strategy drew for it.
fn same_id_same_content<E: Copy>(events: Vec<E>, id: impl Fn(&E) -> (u8, u16)) -> Vec<E> {
    let mut first = BTreeMap::new();
    events
        .into_iter()
        .map(|e| *first.entry(id(&e)).or_insert(e))
        .collect()
}

/// Random events with some repeated (producer retries), all shuffled.
fn with_repeats<E: Clone + std::fmt::Debug>(
    one: impl Strategy<Value = E>,
    max: usize,
) -> impl Strategy<Value = Vec<E>> {
    prop::collection::vec(one, 1..max)
        .prop_flat_map(|events| {
            let n = events.len();
            (Just(events), prop::collection::vec(0..n, 0..n.min(20)))
        })
        .prop_map(|(mut events, repeats)| {
            let extra: Vec<E> = repeats.iter().map(|&i| events[i].clone()).collect();
            events.extend(extra);
            events
        })
        .prop_shuffle()
}

fn check(
    rules: Option<&str>,
    events: &[(u8, String)],
    expected: &Totals,
) -> Result<(), TestCaseError> {
    let expected: Totals = expected
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    for partitions in [1, 2, 3, 7] {
        let [last_total, sum_points, stored] = run(rules, events, partitions);
        prop_assert_eq!(
            &last_total,
            &expected,
            "last totals, partitions = {}",
            partitions
        );
        prop_assert_eq!(
            &sum_points,
            &expected,
            "sum of awards, partitions = {}",
            partitions
        );
        prop_assert_eq!(
            &stored,
            &expected,
            "stored points, partitions = {}",
            partitions
        );
    }
    Ok(())
}

// --- 1. Uncapped rules, one point type -------------------------------------------------

const SIMPLE_RULES: &str = r#"
[settings]
time_zone = "UTC"
lateness_grace = "24h"
[point_types.xp]
[points.visit]
event_type = "visit"
point_type = "xp"
base = 3
[points.buy]
event_type = "buy"
point_type = "xp"
base = 1
per_unit = 2
"#;

/// (customer, event number, is a buy, amount, minutes after 10:00, input partition).
type Simple = (u8, u16, bool, u8, u8, u8);

fn simple_json(e: &Simple) -> (u8, String) {
    let (c, n, buy, amount, minute, p) = *e;
    let kind = if buy { "buy" } else { "visit" };
    let json = format!(
        r#"{{"event_id":"c{c}-{n}","customer_id":"c{c}","event_type":"{kind}","timestamp":"2024-03-01T{:02}:{:02}:00Z","amount":{amount}}}"#,
        10 + minute / 60,
        minute % 60
    );
    (p, json)
}

/// visit = 3, buy = 1 + 2 × amount; each event id once.
fn simple_oracle(events: &[Simple]) -> Totals {
    let mut seen = BTreeSet::new();
    let mut totals = Totals::new();
    for &(c, n, buy, amount, _, _) in events {
        if !seen.insert((c, n)) {
            continue;
        }
        let points = if buy { 1 + 2 * i64::from(amount) } else { 3 };
        *totals.entry((format!("c{c}"), "xp".into())).or_insert(0) += points;
    }
    totals
}

// --- 2. Two point types, rule and type daily caps, a local midnight in the stream -------

/// Tokyo (UTC+9): the events span 23 h from 03-01T10:00Z, across Tokyo's midnight at 15:00Z,
/// all within the 24 h grace period whatever order they arrive in.
const CAPPED_RULES: &str = r#"
[settings]
time_zone = "Asia/Tokyo"
lateness_grace = "24h"
[point_types.xp]
[point_types.coins]
daily_cap = 20
[points.visit]
event_type = "visit"
point_type = "xp"
base = 3
daily_cap = 7
[points.buy_xp]
event_type = "buy"
point_type = "xp"
base = 1
per_unit = 2
[points.buy_coins]
event_type = "buy"
point_type = "coins"
per_unit = 0.5
[points.share]
event_type = "share"
point_type = "coins"
base = 4
"#;

/// (customer, event number, kind 0 visit / 1 buy / 2 share, amount, minutes after
/// 03-01T10:00Z, input partition).
type Capped = (u8, u16, u8, u8, u16, u8);

fn capped_json(e: &Capped) -> (u8, String) {
    let (c, n, kind, amount, minute, p) = *e;
    let kind = ["visit", "buy", "share"][usize::from(kind)];
    let at = chrono::DateTime::from_timestamp(1_709_287_200 + i64::from(minute) * 60, 0)
        .unwrap()
        .to_rfc3339();
    let json = format!(
        r#"{{"event_id":"c{c}-{n}","customer_id":"c{c}","event_type":"{kind}","timestamp":"{at}","amount":{amount}}}"#
    );
    (p, json)
}

/// Per customer and Tokyo day: xp = min(7, 3 × visits) + Σ (1 + 2 × amount) over buys;
/// coins = min(20, Σ floor(amount / 2) over buys + 4 × shares). Each event id once.
fn capped_oracle(events: &[Capped]) -> Totals {
    #[derive(Default)]
    struct Day {
        visits: i64,
        buy_xp: i64,
        coins: i64,
    }
    let mut seen = BTreeSet::new();
    let mut days: BTreeMap<(u8, bool), Day> = BTreeMap::new();
    for &(c, n, kind, amount, minute, _) in events {
        if !seen.insert((c, n)) {
            continue;
        }
        // 10:00Z is 19:00 in Tokyo: the next Tokyo day starts 5 h later.
        let next_day = minute >= 5 * 60;
        let day = days.entry((c, next_day)).or_default();
        let amount = i64::from(amount);
        match kind {
            0 => day.visits += 1,
            1 => {
                day.buy_xp += 1 + 2 * amount;
                day.coins += amount / 2;
            }
            _ => day.coins += 4,
        }
    }
    let mut totals = Totals::new();
    for ((c, _), d) in days {
        *totals.entry((format!("c{c}"), "xp".into())).or_insert(0) +=
            (3 * d.visits).min(7) + d.buy_xp;
        *totals.entry((format!("c{c}"), "coins".into())).or_insert(0) += d.coins.min(20);
    }
    totals
}

// --- 3. The bundled rules, on event types that only earn capped xp ----------------------

/// From topology/gamification.toml: event type, base xp, the rule's daily cap. No mission
/// matches these types, the rules have no per_unit, and a customer stays bronze
/// (multiplier 1.0; silver needs 1000 xp, and a day earns at most 148 of these).
/// `answer_submitted` earns only with `correct = true`.
const BUNDLED_XP: [(&str, i64, i64); 7] = [
    ("app_login", 5, 5),
    ("login", 5, 5),
    ("user_login", 5, 5),
    ("product_viewed", 1, 10),
    ("email_opened", 1, 3),
    ("post_liked", 1, 20),
    ("answer_submitted", 5, 100),
];

/// (customer, event number, type index, correct, minutes after 03-01T12:00Z, partition).
type Bundled = (u8, u16, u8, bool, u16, u8);

fn bundled_json(e: &Bundled) -> (u8, String) {
    let (c, n, kind, correct, minute, p) = *e;
    let kind = BUNDLED_XP[usize::from(kind)].0;
    let at = chrono::DateTime::from_timestamp(1_709_294_400 + i64::from(minute) * 60, 0)
        .unwrap()
        .to_rfc3339();
    let json = format!(
        r#"{{"event_id":"u{c}-{n}","customer_id":"u{c}","event_type":"{kind}","timestamp":"{at}","correct":{correct}}}"#
    );
    (p, json)
}

/// Per customer, Nairobi day (UTC+3: 12:00Z is 15:00, the next day starts 9 h later) and
/// rule: min(cap, base × matching events).
fn bundled_oracle(events: &[Bundled]) -> Totals {
    let mut seen = BTreeSet::new();
    let mut counts: BTreeMap<(u8, bool, u8), i64> = BTreeMap::new();
    for &(c, n, kind, correct, minute, _) in events {
        if !seen.insert((c, n)) {
            continue;
        }
        if BUNDLED_XP[usize::from(kind)].0 == "answer_submitted" && !correct {
            continue;
        }
        *counts.entry((c, minute >= 9 * 60, kind)).or_insert(0) += 1;
    }
    let mut totals = Totals::new();
    for ((c, _, kind), n) in counts {
        let (_, base, cap) = BUNDLED_XP[usize::from(kind)];
        *totals.entry((format!("u{c}"), "xp".into())).or_insert(0) += (base * n).min(cap);
    }
    totals
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn points_equal_the_rules_on_the_deduplicated_stream(
        events in with_repeats((0u8..6, 0u16..40, any::<bool>(), 0u8..50, 0u8..120, 0u8..7), 80)
    ) {
        let events = same_id_same_content(events, |e| (e.0, e.1));
        let json: Vec<_> = events.iter().map(simple_json).collect();
        check(Some(SIMPLE_RULES), &json, &simple_oracle(&events))?;
    }

    #[test]
    fn capped_points_of_two_types_across_a_local_midnight(
        events in with_repeats((0u8..5, 0u16..40, 0u8..3, 0u8..30, 0u16..23 * 60, 0u8..7), 80)
    ) {
        let events = same_id_same_content(events, |e| (e.0, e.1));
        let json: Vec<_> = events.iter().map(capped_json).collect();
        check(Some(CAPPED_RULES), &json, &capped_oracle(&events))?;
    }

    #[test]
    fn bundled_rules_capped_xp(
        events in with_repeats((0u8..4, 0u16..60, 0u8..7, any::<bool>(), 0u16..23 * 60, 0u8..7), 80)
    ) {
        let events = same_id_same_content(events, |e| (e.0, e.1));
        let json: Vec<_> = events.iter().map(bundled_json).collect();
        check(None, &json, &bundled_oracle(&events))?;
    }
}
