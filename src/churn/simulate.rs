//! The labelled-data generator the shipped model is trained on (`scorestream churn export`).
//!
//! Each simulated customer is a telecom subscriber or a shop customer with a base activity
//! rate and a hidden disengagement `d` (uniform 0..1). For 120 days up to the snapshot they
//! produce seed-shaped events. In the last 28 days their activity declines in proportion to
//! `d` (down to 20 % of the base rate for d = 1), and complaints, support tickets, payment
//! failures and plan downgrades become more likely with `d`; everyone has a small baseline
//! of those too. The label — churned within 30 days after the snapshot — is drawn with
//! probability `sigmoid(6 d - 4.5)` (about 28 % churn overall), so behaviour predicts it
//! without deciding it: quiet customers who stay and busy ones who leave both exist. The
//! features are computed by [`ChurnState`] exactly as in the stream, at the snapshot time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::features::{ChurnEvent, ChurnState, FeatureVector, DAY_MS};
use super::rules::ChurnRules;

/// 2025-05-01T00:00:00Z: the snapshot every simulated history ends at.
pub const SNAPSHOT_MS: i64 = 1_746_057_600_000;
const HISTORY_DAYS: i64 = 120;
const DECLINE_DAYS: i64 = 28;

/// One simulated customer's features at the snapshot and label.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub features: FeatureVector,
    pub churned: bool,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Simulates `customers` customers from `seed`.
pub fn simulate(rules: &ChurnRules, customers: usize, seed: u64) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..customers).map(|_| customer(rules, &mut rng)).collect()
}

fn customer(rules: &ChurnRules, rng: &mut StdRng) -> Row {
    let d: f64 = rng.random();
    let telecom = rng.random_bool(0.5);
    let rate: f64 = rng.random_range(0.3..2.5);
    let start = SNAPSHOT_MS - HISTORY_DAYS * DAY_MS;
    let mut events: Vec<(i64, &'static str, Option<f64>)> = Vec::new();
    for day in 0..HISTORY_DAYS {
        let day_start = start + day * DAY_MS;
        let into_decline = day - (HISTORY_DAYS - DECLINE_DAYS);
        let (factor, risk) = if into_decline >= 0 {
            let ramp = (into_decline + 1) as f64 / DECLINE_DAYS as f64;
            (1.0 - 0.8 * d * ramp, d)
        } else {
            (1.0, 0.0)
        };
        let expected = rate * factor;
        let n = poisson(rng, expected);
        for _ in 0..n {
            let at = day_start + rng.random_range(0..DAY_MS);
            let u: f64 = rng.random();
            let ev = if telecom {
                match u {
                    u if u < 0.5 => ("data_usage", Some(rng.random_range(10.0..400.0))),
                    u if u < 0.75 => ("voice_call", Some(rng.random_range(10.0..600.0))),
                    u if u < 0.9 => ("login", None),
                    _ => ("recharge", Some(rng.random_range(5.0..50.0))),
                }
            } else {
                match u {
                    u if u < 0.35 => ("product_viewed", None),
                    u if u < 0.6 => ("email_opened", None),
                    u if u < 0.8 => ("login", None),
                    u if u < 0.92 => ("order_placed", Some(rng.random_range(10.0..200.0))),
                    _ => ("cart_abandoned", None),
                }
            };
            events.push((at, ev.0, ev.1));
        }
        for (kind, base, extra) in [
            ("complaint", 0.002, 0.03),
            ("support_ticket_created", 0.004, 0.03),
            ("payment_failed", 0.003, 0.03),
            ("plan_downgrade", 0.0005, 0.01),
        ] {
            if rng.random_bool((base + extra * risk).min(1.0)) {
                events.push((day_start + rng.random_range(0..DAY_MS), kind, None));
            }
        }
    }
    events.sort_by_key(|e| e.0);
    let mut state = ChurnState::default();
    for (at, t, v) in &events {
        state.observe(
            rules,
            &ChurnEvent {
                event_type: t,
                occurred_at: *at,
                value: *v,
            },
        );
    }
    Row {
        features: state.features_at(SNAPSHOT_MS),
        churned: rng.random_bool(sigmoid(6.0 * d - 4.5)),
    }
}

/// A Poisson draw (Knuth's method; the means here are small).
fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p: f64 = rng.random();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}
