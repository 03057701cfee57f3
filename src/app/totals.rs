//! Per-customer running totals with duplicate suppression by event id: the first keyed,
//! stateful step of the per-customer sub-topology (DESIGN §1, §4).
//!
//! Under at-least-once the ingest hop can write the same event to `events-by-customer`
//! twice (a crash after producing, before committing), at different offsets. Stored offsets
//! cannot catch that, so events are also remembered by `event_id` for
//! `state.dedupe_horizon` of event time, bucketed by hour so that forgetting them is a
//! range delete.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::engine::{
    Processor, ProcessorContext, ProcessorError, Punctuation, PunctuationType, Record,
};
use crate::ingest::event::CanonicalEvent;
use crate::metrics::Metrics;
use crate::state::StoreHandle;

pub const TOTALS_STORE: &str = "customer-totals";
pub const SEEN_STORE: &str = "seen-events";

const HOUR_MS: i64 = 3_600_000;

/// What the totals store keeps per customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerTotals {
    /// Distinct events applied.
    pub events: u64,
    /// Sum of the events' `value` (amount, MB, minutes… whatever the source reports).
    pub value_sum: f64,
    pub first_event_at: i64,
    pub last_event_at: i64,
}

/// Key of the dedupe store: `(hour of event time, event id)`.
pub type SeenKey = (u64, String);

pub struct TotalsProcessor {
    totals: StoreHandle<String, CustomerTotals>,
    seen: StoreHandle<SeenKey, i64>,
    horizon_ms: i64,
    metrics: Option<Metrics>,
}

impl TotalsProcessor {
    pub fn new(
        totals: StoreHandle<String, CustomerTotals>,
        seen: StoreHandle<SeenKey, i64>,
        horizon: Duration,
        metrics: Option<Metrics>,
    ) -> Self {
        TotalsProcessor {
            totals,
            seen,
            horizon_ms: horizon.as_millis() as i64,
            metrics,
        }
    }
}

impl Processor for TotalsProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        ctx.schedule(Duration::from_secs(3600), PunctuationType::StreamTime);
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        let event = match r.value.as_deref().map(CanonicalEvent::decode) {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                let p = ctx.position();
                warn!(
                    topic = p.map_or("", |p| &*p.topic),
                    partition = p.map_or(-1, |p| p.partition),
                    offset = p.map_or(-1, |p| p.offset),
                    error = %e,
                    "Undecodable record on the per-customer topic; skipped."
                );
                if let Some(m) = &self.metrics {
                    m.corrupt_internal_records.inc();
                }
                return Ok(());
            }
            None => return Ok(()),
        };
        let seen_key: SeenKey = (
            (event.occurred_at.max(0) / HOUR_MS) as u64,
            event.event_id.clone(),
        );
        if ctx.store(&self.seen)?.get(&seen_key)?.is_some() {
            if let Some(m) = &self.metrics {
                m.duplicate_events.inc();
            }
            return Ok(());
        }
        ctx.store(&self.seen)?.put(&seen_key, &event.occurred_at)?;
        let mut totals = ctx.store(&self.totals)?;
        let mut t = totals.get(&event.customer_id)?.unwrap_or(CustomerTotals {
            first_event_at: event.occurred_at,
            last_event_at: event.occurred_at,
            ..CustomerTotals::default()
        });
        t.events += 1;
        t.value_sum += event.value.unwrap_or(0.0);
        t.first_event_at = t.first_event_at.min(event.occurred_at);
        t.last_event_at = t.last_event_at.max(event.occurred_at);
        totals.put(&event.customer_id, &t)?;
        Ok(())
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        p: Punctuation,
    ) -> Result<(), ProcessorError> {
        let cutoff = ((p.time - self.horizon_ms).max(0) / HOUR_MS) as u64;
        if cutoff > 0 {
            ctx.store(&self.seen)?
                .delete_range(&(0, String::new()), &(cutoff, String::new()))?;
        }
        Ok(())
    }
}
