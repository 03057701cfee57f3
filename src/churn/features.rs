//! Per-customer churn features, kept incrementally and point-in-time correct.
//!
//! A customer's [`ChurnState`] holds the events of the last `exact_window` (behind their
//! latest event) one by one, and everything older folded into UTC-day buckets (kept 120
//! days). An event that is accepted is never older than the customer's latest event minus
//! the window (later ones are dead-lettered upstream), and an event is folded only once its
//! whole day lies before that bound, so for any time `t` a prediction can be made at, every
//! folded day ends before `t`: `features_at(t)` sees exactly the events at or before `t`.
//!
//! Window semantics (documented in docs/churn.md): an N-day window at `t` covers the UTC days
//! `day(t) - N + 1 ..= day(t)`, with the events of `day(t)` counted only up to `t`. Recency
//! ("days since the last order") is exact, capped at 365 days (also for never). The state
//! stays bounded: at most 120 day buckets plus a day or two of individual events.

use serde::{Deserialize, Serialize};

use super::rules::{ChurnRules, Kind, KINDS};

pub const DAY_MS: i64 = 86_400_000;
/// Day buckets older than this (behind the latest event's day) are dropped.
const KEEP_DAYS: i64 = 120;
/// Recency of something never seen, and the cap of every recency, in days.
pub const RECENCY_CAP_DAYS: f64 = 365.0;

/// Every feature, in the order of [`FeatureVector::values`]; the model file refers to
/// them by these names.
pub const FEATURES: [&str; 22] = [
    "days_since_last_activity",
    "days_since_last_order",
    "days_since_last_login",
    "days_since_last_recharge",
    "events_7d",
    "events_30d",
    "events_90d",
    "activity_trend_30d",
    "orders_30d",
    "orders_90d",
    "spend_30d",
    "spend_90d",
    "spend_trend_30d",
    "usage_7d",
    "usage_trend_7d",
    "usage_trend_30d",
    "logins_30d",
    "engagement_30d",
    "support_tickets_30d",
    "complaints_90d",
    "payment_failures_30d",
    "tenure_days",
];

/// One event as the features see it.
#[derive(Clone, Copy, Debug)]
pub struct ChurnEvent<'a> {
    pub event_type: &'a str,
    pub occurred_at: i64,
    pub value: Option<f64>,
}

/// Feature values in [`FEATURES`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureVector {
    pub values: [f64; FEATURES.len()],
}

impl FeatureVector {
    pub fn get(&self, name: &str) -> Option<f64> {
        FEATURES
            .iter()
            .position(|f| *f == name)
            .map(|i| self.values[i])
    }
}

/// One event kept individually.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Recent {
    at: i64,
    kinds: u16,
    value: f64,
}

/// One UTC day's events, folded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DayBucket {
    day: i64,
    events: u32,
    /// Counts by kind index, only kinds that occurred.
    counts: Vec<(u8, u32)>,
    money: f64,
    usage: f64,
}

/// Everything the churn branch remembers about a customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChurnState {
    first_at: Option<i64>,
    latest_at: Option<i64>,
    days: Vec<DayBucket>,
    recent: Vec<Recent>,
    /// Latest folded event, overall and by kind index (recency survives pruned days).
    folded_last: Option<i64>,
    folded_last_by_kind: Vec<(u8, i64)>,
    /// In high risk since an alert; cleared below the exit threshold (hysteresis).
    pub high_risk: bool,
    /// A usage drop was signalled and usage has not recovered since.
    pub usage_drop_signalled: bool,
    /// The silence (time of the last event) an inactivity re-score covered, and when.
    pub inactivity_scored: Option<(i64, i64)>,
    /// The latest prediction: probability, band and the time it was made at.
    pub last_prediction: Option<(f64, String, i64)>,
}

/// Sums over a window, by kind.
#[derive(Default, Clone, Copy)]
struct Totals {
    events: f64,
    kinds: [f64; KINDS.len()],
    money: f64,
    usage: f64,
}

impl Totals {
    fn add(&mut self, kinds: u16, value: f64, n: f64) {
        self.events += n;
        for (i, k) in self.kinds.iter_mut().enumerate() {
            if kinds & (1 << i) != 0 {
                *k += n;
            }
        }
        if kinds & (Kind::Order.bit() | Kind::Recharge.bit()) != 0 {
            self.money += value;
        }
        if kinds & Kind::Usage.bit() != 0 {
            self.usage += value;
        }
    }
}

pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

fn trend(now: f64, before: f64) -> f64 {
    (now - before) / (before + 1.0)
}

impl ChurnState {
    /// Time of the customer's latest event.
    pub fn last_activity_ms(&self) -> Option<i64> {
        self.latest_at
    }

    /// Takes an accepted event into account (the caller has deduplicated it).
    pub fn observe(&mut self, rules: &ChurnRules, ev: &ChurnEvent<'_>) {
        let kinds = rules.kind_bits(ev.event_type);
        let value = ev.value.filter(|v| v.is_finite()).unwrap_or(0.0);
        self.first_at = Some(
            self.first_at
                .map_or(ev.occurred_at, |f| f.min(ev.occurred_at)),
        );
        let latest = self
            .latest_at
            .map_or(ev.occurred_at, |l| l.max(ev.occurred_at));
        self.latest_at = Some(latest);
        let r = Recent {
            at: ev.occurred_at,
            kinds,
            value,
        };
        let i = self.recent.partition_point(|x| x.at <= r.at);
        self.recent.insert(i, r);
        // Fold what can no longer be preceded by an accepted event.
        let bound_day = day_of(latest - rules.exact_window_ms);
        let n = self.recent.partition_point(|x| day_of(x.at) < bound_day);
        for r in self.recent.drain(..n).collect::<Vec<_>>() {
            self.fold(r);
        }
        let first_kept = day_of(latest) - KEEP_DAYS;
        let n = self.days.partition_point(|d| d.day < first_kept);
        self.days.drain(..n);
    }

    fn fold(&mut self, r: Recent) {
        let day = day_of(r.at);
        let i = match self.days.binary_search_by_key(&day, |d| d.day) {
            Ok(i) => i,
            Err(i) => {
                self.days.insert(
                    i,
                    DayBucket {
                        day,
                        events: 0,
                        counts: Vec::new(),
                        money: 0.0,
                        usage: 0.0,
                    },
                );
                i
            }
        };
        self.folded_last = Some(self.folded_last.map_or(r.at, |l| l.max(r.at)));
        let d = &mut self.days[i];
        d.events += 1;
        for k in 0..KINDS.len() as u8 {
            if r.kinds & (1 << k) == 0 {
                continue;
            }
            match d.counts.iter_mut().find(|(i, _)| *i == k) {
                Some((_, c)) => *c += 1,
                None => d.counts.push((k, 1)),
            }
            match self.folded_last_by_kind.iter_mut().find(|(i, _)| *i == k) {
                Some((_, t)) => *t = (*t).max(r.at),
                None => self.folded_last_by_kind.push((k, r.at)),
            }
        }
        if r.kinds & (Kind::Order.bit() | Kind::Recharge.bit()) != 0 {
            d.money += r.value;
        }
        if r.kinds & Kind::Usage.bit() != 0 {
            d.usage += r.value;
        }
    }

    /// Usage over the 7 days up to `t` and the 7 days before (for the usage-drop trigger).
    pub fn usage_last_two_weeks(&self, t: i64) -> (f64, f64) {
        let w = self.windows(t);
        (w.d7.usage, w.prev7.usage)
    }

    fn windows(&self, t: i64) -> Windows {
        let today = day_of(t);
        let mut w = Windows::default();
        for d in &self.days {
            w.each_slot(today - d.day, |slot| {
                slot.events += d.events as f64;
                for &(k, c) in &d.counts {
                    slot.kinds[k as usize] += c as f64;
                }
                slot.money += d.money;
                slot.usage += d.usage;
            });
        }
        for r in self.recent.iter().take_while(|r| r.at <= t) {
            w.each_slot(today - day_of(r.at), |slot| slot.add(r.kinds, r.value, 1.0));
        }
        w
    }

    /// Time of the last event at or before `t` of any of `kinds` (0: any event).
    fn last_at(&self, t: i64, kinds: u16) -> Option<i64> {
        let recent = self
            .recent
            .iter()
            .take_while(|r| r.at <= t)
            .filter(|r| kinds == 0 || r.kinds & kinds != 0)
            .map(|r| r.at)
            .max();
        if recent.is_some() {
            return recent;
        }
        // Every folded event precedes any time a prediction is made at (module doc).
        if kinds == 0 {
            return self.folded_last.filter(|&at| at <= t);
        }
        self.folded_last_by_kind
            .iter()
            .filter(|(k, at)| kinds & (1 << k) != 0 && *at <= t)
            .map(|(_, at)| *at)
            .max()
    }

    /// The features at `t`, from the events at or before `t`.
    pub fn features_at(&self, t: i64) -> FeatureVector {
        let w = self.windows(t);
        let days_since = |kinds: u16| {
            self.last_at(t, kinds).map_or(RECENCY_CAP_DAYS, |at| {
                ((t - at) as f64 / DAY_MS as f64).clamp(0.0, RECENCY_CAP_DAYS)
            })
        };
        let k = |slot: &Totals, kind: Kind| slot.kinds[kind as usize];
        let tenure = self
            .first_at
            .filter(|&f| f <= t)
            .map_or(0.0, |f| (t - f) as f64 / DAY_MS as f64);
        FeatureVector {
            values: [
                days_since(0),
                days_since(Kind::Order.bit()),
                days_since(Kind::Login.bit()),
                days_since(Kind::Recharge.bit()),
                w.d7.events,
                w.d30.events,
                w.d90.events,
                trend(w.d30.events, w.prev30.events),
                k(&w.d30, Kind::Order),
                k(&w.d90, Kind::Order),
                w.d30.money,
                w.d90.money,
                trend(w.d30.money, w.prev30.money),
                w.d7.usage,
                trend(w.d7.usage, w.prev7.usage),
                trend(w.d30.usage, w.prev30.usage),
                k(&w.d30, Kind::Login),
                k(&w.d30, Kind::Engagement),
                k(&w.d30, Kind::Support),
                k(&w.d90, Kind::Complaint),
                k(&w.d30, Kind::PaymentFailure),
                tenure,
            ],
        }
    }
}

/// Sums over the windows features need, by age in days (0 = the day of `t`).
#[derive(Default)]
struct Windows {
    d7: Totals,
    d30: Totals,
    d90: Totals,
    /// Days 30..60 and 7..14 back: the periods trends compare with.
    prev30: Totals,
    prev7: Totals,
}

impl Windows {
    /// Runs `f` on every window a day of this age falls in.
    fn each_slot(&mut self, age: i64, mut f: impl FnMut(&mut Totals)) {
        if age < 0 {
            return;
        }
        for (span, offset, slot) in [
            (7, 0, &mut self.d7),
            (30, 0, &mut self.d30),
            (90, 0, &mut self.d90),
            (30, 30, &mut self.prev30),
            (7, 7, &mut self.prev7),
        ] {
            if (offset..offset + span).contains(&age) {
                f(slot);
            }
        }
    }
}
