//! The churn branch of the per-customer sub-topology (DESIGN §1): it runs inside the game
//! processor on the same deduplicated events and the same stored value per customer, so an
//! event still costs one state read and one write.
//!
//! On every accepted event the customer's [`ChurnState`] takes it in; a significant event
//! or a usage drop re-scores the customer at that event's time with the features of the
//! events at or before it. Silent customers are found through a second store,
//! `churn-inactivity`, keyed by (due time, customer): a punctuation on the rules' clock
//! re-scores those whose silence has lasted `inactivity.after`. The due time is derived from
//! the customer's state, which also records the silence it scored, so a restart or restore
//! neither loses a pending re-score nor repeats one. The index holds an entry at or before
//! each customer's due time and is corrected lazily: an entry that fires early (the customer
//! was active since) is moved to the real due time then, instead of on every event.

use std::sync::Arc;

use serde::Serialize;

use crate::churn::rules::Clock;
use crate::churn::{
    alerts_for, inactivity_due, trigger_for, Alert, ChurnEvent, ChurnRules, ChurnState, Model,
    Prediction, Trigger,
};
use crate::domain::envelope::Envelope;
use crate::engine::{Child, ProcessorContext, ProcessorError, Record, SourcePosition};
use crate::gamification::time::rfc3339_ms;
use crate::ingest::event::CanonicalEvent;
use crate::metrics::Metrics;
use crate::state::StoreHandle;

/// Store of pending inactivity re-scores: (due time, customer id) → 1.
pub const INACTIVITY_STORE: &str = "churn-inactivity";
pub const PREDICTIONS_CHILD: &str = "churn-predictions";
pub const ALERTS_CHILD: &str = "customer-alerts";
/// The children the churn branch forwards to, through the game processor.
pub const OUTPUTS: [&str; 2] = [PREDICTIONS_CHILD, ALERTS_CHILD];
/// Inactivity re-scores per punctuation at most; the rest wait for the next one.
const MAX_PER_PUNCTUATION: usize = 10_000;

/// The validated rules and model.
pub struct ChurnParts {
    pub rules: ChurnRules,
    pub model: Model,
}

pub type InactivityIndex = StoreHandle<(u64, String), u8>;

/// What the game processor calls for churn.
pub struct ChurnBranch {
    parts: Arc<ChurnParts>,
    index: InactivityIndex,
    metrics: Option<Metrics>,
    children: Option<(Child, Child)>,
}

/// A scored customer, ready to publish.
struct Scored<'a> {
    customer_id: &'a str,
    event_id: &'a str,
    at: i64,
    trigger: &'a Trigger,
    prediction: &'a Prediction,
    band: &'static str,
}

impl ChurnBranch {
    pub fn new(parts: Arc<ChurnParts>, index: InactivityIndex, metrics: Option<Metrics>) -> Self {
        ChurnBranch {
            parts,
            index,
            metrics,
            children: None,
        }
    }

    /// Resolves children; returns the inactivity punctuation to schedule.
    pub fn init(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
    ) -> Result<Option<crate::engine::ScheduleId>, ProcessorError> {
        self.children = Some((ctx.child(PREDICTIONS_CHILD)?, ctx.child(ALERTS_CHILD)?));
        Ok(self.parts.rules.inactivity.as_ref().map(|i| {
            let kind = match i.clock {
                Clock::StreamTime => crate::engine::PunctuationType::StreamTime,
                Clock::WallClock => crate::engine::PunctuationType::WallClock,
            };
            ctx.schedule(i.check_every, kind)
        }))
    }

    /// Takes an accepted event into `state`, publishes a prediction (and alerts) if it is a
    /// trigger, and moves the customer's inactivity entry. Returns nothing to store: the
    /// caller stores `state` with the game state.
    pub fn on_event(
        &self,
        ctx: &mut ProcessorContext<'_>,
        state: &mut ChurnState,
        event: &CanonicalEvent,
        source: Option<&SourcePosition>,
    ) -> Result<(), ProcessorError> {
        let rules = &self.parts.rules;
        let due_before = inactivity_due(rules, state);
        let ev = ChurnEvent {
            event_type: &event.event_type,
            occurred_at: event.occurred_at,
            value: event.value,
        };
        state.observe(rules, &ev);
        if let Some(trigger) = trigger_for(rules, state, &ev) {
            self.score(
                ctx,
                state,
                &event.customer_id,
                &event.event_id,
                event.occurred_at,
                &trigger,
                source,
            );
        }
        // The index only needs an entry at or before the real due time: an entry that fires
        // early is moved then (`on_silence`). So an active customer, whose due time moves
        // later with every event, costs no index write per event.
        let due_after = inactivity_due(rules, state);
        match (due_before, due_after) {
            (None, Some(_)) => self.move_due(ctx, &event.customer_id, None, due_after)?,
            (Some(before), Some(after)) if after < before => {
                self.move_due(ctx, &event.customer_id, Some(before), due_after)?
            }
            _ => {}
        }
        Ok(())
    }

    fn move_due(
        &self,
        ctx: &mut ProcessorContext<'_>,
        customer_id: &str,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<(), ProcessorError> {
        let mut index = ctx.store(&self.index)?;
        if let Some(d) = from {
            index.delete(&(d.max(0) as u64, customer_id.to_string()))?;
        }
        if let Some(d) = to {
            index.put(&(d.max(0) as u64, customer_id.to_string()), &1)?;
        }
        Ok(())
    }

    /// Customers whose silence is due at `now` (at most a bounded batch), removed from the
    /// index; the caller re-scores each with [`Self::on_silence`].
    pub fn take_due(
        &self,
        ctx: &mut ProcessorContext<'_>,
        now: i64,
    ) -> Result<Vec<(i64, String)>, ProcessorError> {
        let mut index = ctx.store(&self.index)?;
        let end = (now.max(0) as u64).saturating_add(1);
        let mut due = index.range(&(0, String::new()), &(end, String::new()))?;
        due.truncate(MAX_PER_PUNCTUATION);
        for (key, _) in &due {
            index.delete(key)?;
        }
        Ok(due.into_iter().map(|((d, c), _)| (d as i64, c)).collect())
    }

    /// Re-scores a silent customer whose index entry said `due`; returns false (nothing
    /// to store) when the entry was stale.
    pub fn on_silence(
        &self,
        ctx: &mut ProcessorContext<'_>,
        state: &mut ChurnState,
        customer_id: &str,
        due: i64,
    ) -> Result<bool, ProcessorError> {
        let rules = &self.parts.rules;
        let (Some(expected), Some(last)) = (inactivity_due(rules, state), state.last_activity_ms())
        else {
            return Ok(false);
        };
        if expected != due {
            // Moved since (an event arrived): keep the entry the state implies.
            self.move_due(ctx, customer_id, None, Some(expected))?;
            return Ok(false);
        }
        let trigger = Trigger::Inactivity {
            last_event_ms: last,
        };
        let event_id = format!("inactivity:{last}:{due}");
        self.score(ctx, state, customer_id, &event_id, due, &trigger, None);
        state.inactivity_scored = Some((last, due));
        self.move_due(ctx, customer_id, None, inactivity_due(rules, state))?;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn score(
        &self,
        ctx: &mut ProcessorContext<'_>,
        state: &mut ChurnState,
        customer_id: &str,
        event_id: &str,
        at: i64,
        trigger: &Trigger,
        source: Option<&SourcePosition>,
    ) {
        let Some((predictions, alerts)) = self.children else {
            return;
        };
        let rules = &self.parts.rules;
        let prediction = self.parts.model.predict(&state.features_at(at));
        let band = rules.band(prediction.probability);
        state.last_prediction = Some((prediction.probability, band.to_string(), at));
        let raised = alerts_for(rules, state, trigger, prediction.probability);
        if let Some(m) = &self.metrics {
            m.churn_predictions
                .with_label_values(&[trigger.kind(), band])
                .inc();
            for a in &raised {
                m.churn_alerts.with_label_values(&[a.kind()]).inc();
            }
        }
        let scored = Scored {
            customer_id,
            event_id,
            at,
            trigger,
            prediction: &prediction,
            band,
        };
        let record = |value: Vec<u8>| {
            Record::new(value, at)
                .with_key(customer_id.as_bytes())
                .with_source(source.cloned())
        };
        ctx.forward_to(predictions, record(self.prediction_json(&scored)));
        for a in &raised {
            ctx.forward_to(alerts, record(self.alert_json(&scored, a)));
        }
    }

    fn prediction_json(&self, s: &Scored<'_>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            head: Envelope<'a>,
            model_version: &'a str,
            rules_version: &'a str,
            probability: f64,
            risk_band: &'a str,
            factors: Vec<FactorOut<'a>>,
            trigger: TriggerOut<'a>,
        }
        let out = Out {
            head: Envelope::new(
                "churn_prediction",
                s.customer_id,
                s.event_id,
                rfc3339_ms(s.at),
                "",
            ),
            model_version: &self.parts.model.version,
            rules_version: &self.parts.rules.version,
            probability: round4(s.prediction.probability),
            risk_band: s.band,
            factors: factors(s.prediction),
            trigger: TriggerOut::of(s.trigger),
        };
        serde_json::to_vec(&out).expect("a prediction serializes")
    }

    fn alert_json(&self, s: &Scored<'_>, alert: &Alert) -> Vec<u8> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            head: Envelope<'a>,
            alert: &'static str,
            severity: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            event_type: Option<&'a str>,
            probability: f64,
            risk_band: &'a str,
            model_version: &'a str,
            factors: Vec<FactorOut<'a>>,
        }
        let (severity, event_type) = match alert {
            Alert::CriticalEvent { event_type } => ("critical", Some(event_type.as_str())),
            Alert::HighRisk => ("high", None),
        };
        let out = Out {
            head: Envelope::new(
                "customer_alert",
                s.customer_id,
                s.event_id,
                rfc3339_ms(s.at),
                alert.kind(),
            ),
            alert: alert.kind(),
            severity,
            event_type,
            probability: round4(s.prediction.probability),
            risk_band: s.band,
            model_version: &self.parts.model.version,
            factors: factors(s.prediction),
        };
        serde_json::to_vec(&out).expect("an alert serializes")
    }
}

#[derive(Serialize)]
struct FactorOut<'a> {
    feature: &'a str,
    value: f64,
    contribution: f64,
}

fn factors(p: &Prediction) -> Vec<FactorOut<'_>> {
    p.factors
        .iter()
        .map(|f| FactorOut {
            feature: &f.feature,
            value: round4(f.value),
            contribution: round4(f.contribution),
        })
        .collect()
}

#[derive(Serialize)]
struct TriggerOut<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    silent_since: Option<String>,
}

impl<'a> TriggerOut<'a> {
    fn of(t: &'a Trigger) -> TriggerOut<'a> {
        match t {
            Trigger::Event { event_type } | Trigger::UsageDrop { event_type } => TriggerOut {
                kind: t.kind(),
                event_type: Some(event_type),
                silent_since: None,
            },
            Trigger::Inactivity { last_event_ms } => TriggerOut {
                kind: t.kind(),
                event_type: None,
                silent_since: Some(rfc3339_ms(*last_event_ms)),
            },
        }
    }
}

/// Four decimals: enough for a probability, stable across platforms' last-bit differences.
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
