//! Properties of [`super::eval::apply`] over random streams: with duplicates and shuffles
//! inside the grace period, points equal the rules applied to the deduplicated stream, and
//! a customer's results do not depend on how other customers' events are interleaved.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::eval::{apply, Applied};
use super::eval_tests::{event, ms};
use super::rules::Rules;
use super::state::CustomerGameState;
use crate::domain::event::CanonicalEvent;

/// No caps and no tiers, so totals are a pure function of the deduplicated events.
const PROP_RULES: &str = r#"
[settings]
time_zone = "Europe/Paris"
lateness_grace = "24h"
[point_types.xp]
[point_types.coins]
[points.a]
event_type = "a"
point_type = "xp"
base = 3
[points.b]
event_type = "b"
point_type = "xp"
per_unit = 0.5
[points.c]
event_type = "c"
point_type = "coins"
base = 1
per_unit = 2
[missions.every_third_a]
kind = "count"
event_types = ["a"]
target = 3
repeatable = true
reward = { point_type = "coins", points = 10 }
[streaks.active]
event_types = ["a", "b"]
[scores.usage]
kind = "sum"
event_types = ["b"]
window = "7d"
saturation = 100
[leaderboards.xp]
point_type = "xp"
periods = ["daily", "weekly", "all_time"]
"#;

const TYPES: [&str; 4] = ["a", "b", "c", "unknown"];

/// What the rules above give for a set of distinct events of one customer.
fn expected_points(events: &[&CanonicalEvent]) -> BTreeMap<String, i64> {
    let mut xp = 0;
    let mut coins = 0;
    let mut a_count = 0;
    for e in events {
        let v = e.value.unwrap_or(0.0);
        match e.event_type.as_str() {
            "a" => {
                xp += 3;
                a_count += 1;
            }
            "b" => xp += (0.5 * v).floor() as i64,
            "c" => coins += (1.0 + 2.0 * v).floor() as i64,
            _ => {}
        }
    }
    coins += 10 * (a_count / 3);
    [("coins", coins), ("xp", xp)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n))
        .collect()
}

/// Applies a stream in order, with stream time the running maximum of event time.
fn run(
    rules: &Rules,
    stream: &[CanonicalEvent],
) -> (
    BTreeMap<String, CustomerGameState>,
    BTreeMap<String, Vec<Applied>>,
    usize,
) {
    let mut states: BTreeMap<String, CustomerGameState> = BTreeMap::new();
    let mut results: BTreeMap<String, Vec<Applied>> = BTreeMap::new();
    let mut stream_time = i64::MIN;
    let mut duplicates = 0;
    for e in stream {
        stream_time = stream_time.max(e.occurred_at);
        let state = states.entry(e.customer_id.clone()).or_default();
        let applied = apply(rules, state, e, stream_time);
        assert!(
            !matches!(applied, Applied::Late { .. }),
            "nothing is beyond grace here"
        );
        duplicates += usize::from(applied == Applied::Duplicate);
        results
            .entry(e.customer_id.clone())
            .or_default()
            .push(applied);
    }
    (states, results, duplicates)
}

/// Distinct events (customer, type, value, seconds after the start), then the indexes of
/// those sent twice, then the whole stream shuffled.
fn streams() -> impl Strategy<Value = (Vec<CanonicalEvent>, Vec<CanonicalEvent>)> {
    let distinct = prop::collection::vec((0u8..3, 0usize..4, 0u32..100, 0i64..12 * 3600), 1..40);
    (
        distinct,
        prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    )
        .prop_flat_map(|(specs, dup_picks)| {
            let t0 = ms("2024-01-14T18:00:00Z");
            let distinct: Vec<CanonicalEvent> = specs
                .iter()
                .enumerate()
                .map(|(i, (c, ty, v, s))| {
                    event(
                        &format!("e{i}"),
                        &format!("c{c}"),
                        TYPES[*ty],
                        t0 + s * 1000,
                        Some(f64::from(*v)),
                    )
                })
                .collect();
            let mut stream = distinct.clone();
            stream.extend(dup_picks.iter().map(|ix| ix.get(&distinct).clone()));
            (Just(distinct), Just(stream).prop_shuffle())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn points_equal_the_rules_over_the_deduplicated_stream((distinct, stream) in streams()) {
        let rules = Rules::from_toml_str(PROP_RULES).unwrap();
        let (states, _, duplicates) = run(&rules, &stream);
        prop_assert_eq!(duplicates, stream.len() - distinct.len());
        for (customer, state) in &states {
            let mine: Vec<&CanonicalEvent> = distinct.iter().filter(|e| &e.customer_id == customer).collect();
            prop_assert_eq!(&state.points, &expected_points(&mine), "customer {}", customer);
            prop_assert_eq!(state.profile.events as usize, mine.len());
            // All time holds the points total (and the time it was reached).
            if let Some(all_time) = state.board_totals.iter().find(|b| b.period_key == "all_time") {
                prop_assert_eq!(all_time.total, state.points_of("xp"));
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_other_customers_interleaving((_distinct, stream) in streams()) {
        let rules = Rules::from_toml_str(PROP_RULES).unwrap();
        let (states, results, _) = run(&rules, &stream);
        // Same per-customer order, customers one after another.
        let mut by_customer = stream.clone();
        by_customer.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
        let (states2, results2, _) = run(&rules, &by_customer);
        prop_assert_eq!(states, states2);
        prop_assert_eq!(results, results2);
    }

    #[test]
    fn order_within_grace_does_not_change_totals_or_streaks((_distinct, stream) in streams()) {
        let rules = Rules::from_toml_str(PROP_RULES).unwrap();
        let (shuffled, _, _) = run(&rules, &stream);
        let mut in_time_order = stream.clone();
        in_time_order.sort_by_key(|e| e.occurred_at);
        let (ordered, _, _) = run(&rules, &in_time_order);
        for (customer, s) in &shuffled {
            let o = &ordered[customer];
            prop_assert_eq!(&s.points, &o.points);
            prop_assert_eq!(&s.streaks, &o.streaks);
            prop_assert_eq!(&s.scores, &o.scores);
            prop_assert_eq!(&s.board_totals, &o.board_totals);
        }
    }
}
