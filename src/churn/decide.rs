//! When to re-score a customer and which alerts a prediction raises.

use super::features::{ChurnEvent, ChurnState};
use super::rules::ChurnRules;

/// Why a customer was re-scored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A significant event (`triggers.events`).
    Event { event_type: String },
    /// Usage over the last 7 days fell below the rules' ratio of the 7 days before.
    UsageDrop { event_type: String },
    /// No event since `last_event_ms` for the rules' `inactivity.after` (or more).
    Inactivity { last_event_ms: i64 },
}

impl Trigger {
    /// `event`, `usage_drop` or `inactivity` (also the metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Event { .. } => "event",
            Trigger::UsageDrop { .. } => "usage_drop",
            Trigger::Inactivity { .. } => "inactivity",
        }
    }
}

/// An alert for `customer-alerts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alert {
    /// A critical event happened (always alerted).
    CriticalEvent { event_type: String },
    /// The customer crossed into high risk.
    HighRisk,
}

impl Alert {
    pub fn kind(&self) -> &'static str {
        match self {
            Alert::CriticalEvent { .. } => "critical_event",
            Alert::HighRisk => "high_risk",
        }
    }
}

/// Whether `ev` (already observed into `state`) re-scores the customer. Keeps the usage-drop
/// latch in `state`.
pub fn trigger_for(
    rules: &ChurnRules,
    state: &mut ChurnState,
    ev: &ChurnEvent<'_>,
) -> Option<Trigger> {
    let drop = rules.usage_drop.as_ref().and_then(|u| {
        let (last7, prev7) = state.usage_last_two_weeks(ev.occurred_at);
        let dropped = prev7 >= u.min_previous && prev7 > 0.0 && last7 < u.ratio * prev7;
        if !dropped {
            // Recovered (or never dropped): the next drop fires again.
            state.usage_drop_signalled = false;
            return None;
        }
        if state.usage_drop_signalled {
            return None;
        }
        state.usage_drop_signalled = true;
        Some(Trigger::UsageDrop {
            event_type: ev.event_type.to_string(),
        })
    });
    if rules.trigger_events.contains(ev.event_type) {
        return Some(Trigger::Event {
            event_type: ev.event_type.to_string(),
        });
    }
    drop
}

/// The alerts a prediction of `probability` raises, updating the high-risk latch in `state`.
pub fn alerts_for(
    rules: &ChurnRules,
    state: &mut ChurnState,
    trigger: &Trigger,
    probability: f64,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if let Trigger::Event { event_type } = trigger {
        if rules.critical_events.contains(event_type) {
            alerts.push(Alert::CriticalEvent {
                event_type: event_type.clone(),
            });
        }
    }
    if state.high_risk {
        if probability < rules.high_risk_exit {
            state.high_risk = false;
        }
    } else if probability >= rules.high_risk_enter {
        state.high_risk = true;
        alerts.push(Alert::HighRisk);
    }
    alerts
}

/// When this customer is next due for an inactivity re-score, if the rules have one and the
/// customer has events: `after` past the last event, then every `repeat_every` after the last
/// inactivity re-score of the same silence. Derived from the state alone, so a restart or a
/// restore reschedules exactly what was pending and nothing twice.
pub fn inactivity_due(rules: &ChurnRules, state: &ChurnState) -> Option<i64> {
    let i = rules.inactivity.as_ref()?;
    let last = state.last_activity_ms()?;
    match state.inactivity_scored {
        Some((silence, at)) if silence == last => Some(at.saturating_add(i.repeat_ms)),
        _ => Some(last.saturating_add(i.after_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, at: i64, value: Option<f64>) -> ChurnEvent<'_> {
        ChurnEvent {
            event_type: t,
            occurred_at: at,
            value,
        }
    }

    #[test]
    fn alerts_have_hysteresis() {
        let rules = ChurnRules::bundled().unwrap(); // enter 0.7, exit 0.6
        let mut s = ChurnState::default();
        let t = Trigger::Event {
            event_type: "order_placed".into(),
        };
        let kinds = |a: Vec<Alert>| a.iter().map(Alert::kind).collect::<Vec<_>>();
        assert!(kinds(alerts_for(&rules, &mut s, &t, 0.69)).is_empty());
        assert_eq!(kinds(alerts_for(&rules, &mut s, &t, 0.71)), ["high_risk"]);
        // Hovering between exit and enter, and above: no new alert.
        for p in [0.69, 0.72, 0.61, 0.75] {
            assert!(alerts_for(&rules, &mut s, &t, p).is_empty(), "{p}");
        }
        assert!(
            alerts_for(&rules, &mut s, &t, 0.59).is_empty(),
            "leaves high risk"
        );
        assert!(!s.high_risk);
        assert!(alerts_for(&rules, &mut s, &t, 0.65).is_empty());
        assert_eq!(kinds(alerts_for(&rules, &mut s, &t, 0.70)), ["high_risk"]);
        let critical = Trigger::Event {
            event_type: "payment_failed".into(),
        };
        assert_eq!(
            kinds(alerts_for(&rules, &mut s, &critical, 0.9)),
            ["critical_event"]
        );
    }

    #[test]
    fn usage_drop_fires_once_per_drop() {
        let rules = ChurnRules::bundled().unwrap(); // ratio 0.5, min_previous 100
        let day = super::super::features::DAY_MS;
        let mut s = ChurnState::default();
        let feed = |t: &str, at: i64, v: f64, s: &mut ChurnState| {
            let e = ev(t, at, Some(v));
            s.observe(&rules, &e);
            trigger_for(&rules, s, &e).map(|t| t.kind())
        };
        // 7 days of 50 MB a day: 350 in the first week.
        for d in 0..7 {
            assert_eq!(feed("data_usage", d * day, 50.0, &mut s), None);
        }
        // Second week: 10 a day. On day 13 the last 7 days (days 7..=13) hold 70 < 175.
        let mut fired = Vec::new();
        for d in 7..14 {
            fired.push(feed("data_usage", d * day + 1, 10.0, &mut s));
        }
        assert_eq!(fired.iter().filter(|f| f.is_some()).count(), 1, "{fired:?}");
        assert_eq!(fired.iter().flatten().next(), Some(&"usage_drop"));
        // A trigger event still fires while the drop is latched.
        assert_eq!(feed("payment_failed", 14 * day, 0.0, &mut s), Some("event"));
    }

    #[test]
    fn inactivity_is_due_after_the_silence_then_every_repeat() {
        let rules = ChurnRules::bundled().unwrap(); // after 14d, repeat 14d
        let day = super::super::features::DAY_MS;
        let mut s = ChurnState::default();
        assert_eq!(inactivity_due(&rules, &s), None);
        s.observe(&rules, &ev("login", 10 * day, None));
        assert_eq!(inactivity_due(&rules, &s), Some(24 * day));
        s.inactivity_scored = Some((10 * day, 24 * day));
        assert_eq!(inactivity_due(&rules, &s), Some(38 * day));
        s.observe(&rules, &ev("login", 30 * day, None));
        assert_eq!(
            inactivity_due(&rules, &s),
            Some(44 * day),
            "a new event starts a new silence"
        );
    }
}
