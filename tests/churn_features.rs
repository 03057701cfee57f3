//! Churn features are point-in-time correct: after each accepted event, in any arrival order
//! the grace allows, the incrementally kept state gives at that event's time exactly what a
//! naive oracle computes from the list of events received so far that are at or before it.

use proptest::prelude::*;
use scorestream::churn::features::{ChurnEvent, ChurnState, DAY_MS, FEATURES, RECENCY_CAP_DAYS};
use scorestream::churn::ChurnRules;

const TYPES: [&str; 9] = [
    "order_placed",
    "recharge",
    "login",
    "data_usage",
    "complaint",
    "payment_failed",
    "email_opened",
    "support_ticket_created",
    "mystery",
];

#[derive(Clone, Debug)]
struct Ev {
    t: &'static str,
    at: i64,
    value: Option<f64>,
}

/// The documented semantics, computed from scratch over `events` (all at or before `t`).
fn oracle(rules: &ChurnRules, events: &[&Ev], t: i64) -> Vec<f64> {
    let day = |ms: i64| ms.div_euclid(DAY_MS);
    let today = day(t);
    let has = |e: &Ev, kind: &str| {
        let bit = 1u16
            << scorestream::churn::rules::KINDS
                .iter()
                .position(|k| *k == kind)
                .unwrap();
        rules.kind_bits(e.t) & bit != 0
    };
    // Events on the `span` days ending `offset` days before t's day.
    let window = |span: i64, offset: i64| -> Vec<&Ev> {
        events
            .iter()
            .copied()
            .filter(|e| {
                let age = today - day(e.at);
                age >= offset && age < offset + span
            })
            .collect()
    };
    let count = |w: &[&Ev], kind: Option<&str>| {
        w.iter().filter(|e| kind.is_none_or(|k| has(e, k))).count() as f64
    };
    let sum = |w: &[&Ev], kinds: &[&str]| -> f64 {
        w.iter()
            .filter(|e| kinds.iter().any(|k| has(e, k)))
            .map(|e| e.value.unwrap_or(0.0))
            .sum()
    };
    let since = |kind: Option<&str>| {
        events
            .iter()
            .filter(|e| kind.is_none_or(|k| has(e, k)))
            .map(|e| e.at)
            .max()
            .map_or(RECENCY_CAP_DAYS, |at| {
                ((t - at) as f64 / DAY_MS as f64).min(RECENCY_CAP_DAYS)
            })
    };
    let trend = |a: f64, b: f64| (a - b) / (b + 1.0);
    let money = ["order", "recharge"];
    let (d7, d30, d90, p30, p7) = (
        window(7, 0),
        window(30, 0),
        window(90, 0),
        window(30, 30),
        window(7, 7),
    );
    let first = events.iter().map(|e| e.at).min();
    vec![
        since(None),
        since(Some("order")),
        since(Some("login")),
        since(Some("recharge")),
        count(&d7, None),
        count(&d30, None),
        count(&d90, None),
        trend(count(&d30, None), count(&p30, None)),
        count(&d30, Some("order")),
        count(&d90, Some("order")),
        sum(&d30, &money),
        sum(&d90, &money),
        trend(sum(&d30, &money), sum(&p30, &money)),
        sum(&d7, &["usage"]),
        trend(sum(&d7, &["usage"]), sum(&p7, &["usage"])),
        trend(sum(&d30, &["usage"]), sum(&p30, &["usage"])),
        count(&d30, Some("login")),
        count(&d30, Some("engagement")),
        count(&d30, Some("support")),
        count(&d90, Some("complaint")),
        count(&d30, Some("payment_failure")),
        first.map_or(0.0, |f| (t - f) as f64 / DAY_MS as f64),
    ]
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    // Up to 60 events over ~200 days, in arrival order: mostly forward, sometimes up to
    // 30 h back (beyond the 24 h window: those are dropped as late, as upstream would).
    prop::collection::vec(
        (0..TYPES.len(), -30i64..600, prop::option::of(0u32..500)),
        1..60,
    )
    .prop_map(|steps| {
        let mut now = 1_700_000_000_000i64;
        steps
            .into_iter()
            .map(|(ty, step_h, value)| {
                let at = if step_h < 0 {
                    now + step_h * 3_600_000
                } else {
                    now += step_h * 3_600_000 * 8 / 10;
                    now
                };
                Ev {
                    t: TYPES[ty],
                    at,
                    value: value.map(f64::from),
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn features_at_each_event_equal_the_oracle(arrivals in events()) {
        let rules = ChurnRules::bundled().unwrap();
        let mut state = ChurnState::default();
        let mut seen: Vec<&Ev> = Vec::new();
        let mut latest = i64::MIN;
        for ev in &arrivals {
            if ev.at < latest.saturating_sub(rules.exact_window_ms) {
                continue; // late: dead-lettered before the churn branch
            }
            latest = latest.max(ev.at);
            state.observe(&rules, &ChurnEvent { event_type: ev.t, occurred_at: ev.at, value: ev.value });
            seen.push(ev);
            let before: Vec<&Ev> = seen.iter().copied().filter(|e| e.at <= ev.at).collect();
            let want = oracle(&rules, &before, ev.at);
            let got = state.features_at(ev.at).values;
            for (i, name) in FEATURES.iter().enumerate() {
                prop_assert!(
                    (got[i] - want[i]).abs() < 1e-6,
                    "{name} at {}: got {} want {} after {} events", ev.at, got[i], want[i], seen.len()
                );
            }
        }
        // And at a later time with no new event (an inactivity re-score).
        let later = latest + 20 * DAY_MS;
        let want = oracle(&rules, &seen, later);
        let got = state.features_at(later).values;
        for (i, name) in FEATURES.iter().enumerate() {
            prop_assert!((got[i] - want[i]).abs() < 1e-6, "{name} later: got {} want {}", got[i], want[i]);
        }
    }
}
