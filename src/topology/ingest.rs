//! The ingest processor: normalize every input record, dead-letter what is bad, re-key
//! what is good by customer id in the compact binary form.

use std::sync::Arc;

use crate::engine::{
    BadRecords, Child, ErrorPolicy, Processor, ProcessorContext, ProcessorError, Record,
};

use crate::ingest::event::Origin;
use crate::ingest::normalize::{Normalizer, RawInput};

/// The processor's name in the topology.
pub const NAME: &str = "normalize";
/// Child names the ingest processor forwards to.
pub const VALID_CHILD: &str = "events-by-customer";
pub const DEAD_LETTER_CHILD: &str = "dead-letter";
/// Every child it forwards to (checked when the topology is built).
pub const OUTPUTS: [&str; 2] = [VALID_CHILD, DEAD_LETTER_CHILD];

/// Normalizes, validates and re-keys. Stateless.
pub struct IngestProcessor {
    normalizer: Arc<Normalizer>,
    bad_records: BadRecords,
    valid: Option<Child>,
    dead_letter: Option<Child>,
}

impl IngestProcessor {
    pub fn new(normalizer: Arc<Normalizer>, bad_records: BadRecords) -> Self {
        IngestProcessor {
            normalizer,
            bad_records,
            valid: None,
            dead_letter: None,
        }
    }
}

impl Processor for IngestProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.valid = Some(ctx.child(VALID_CHILD)?);
        self.dead_letter = Some(ctx.child(DEAD_LETTER_CHILD)?);
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        record: Record,
    ) -> Result<(), ProcessorError> {
        let (valid, dead) = match (self.valid, self.dead_letter) {
            (Some(v), Some(d)) => (v, d),
            _ => return Err(ProcessorError::Failed("process called before init".into())),
        };
        let topic = record.source.as_ref().map_or("", |p| &*p.topic);
        let input = RawInput {
            topic,
            value: record.value.as_deref(),
            kafka_timestamp_ms: (record.timestamp > 0).then_some(record.timestamp),
            now_ms: ctx.wall_clock_time(),
        };
        match self.normalizer.normalize(&input) {
            Ok(mut event) => {
                if let Some(pos) = &record.source {
                    event.origin = Origin {
                        topic: pos.topic.to_string(),
                        partition: pos.partition,
                        offset: pos.offset,
                    };
                }
                // The original headers travel on the internal record (as Kafka Streams'
                // repartition topics carry them), so that a dead letter raised after
                // re-keying (`late_event`) keeps them too (DESIGN §2).
                let out = Record::new(event.encode(), event.occurred_at)
                    .with_key(event.customer_id.as_bytes())
                    .with_headers(record.headers)
                    .with_source(record.source);
                ctx.forward_to(valid, out);
            }
            // Rejected input is always dead-lettered (DESIGN §2).
            Err(rejection) => self.bad_records.handle(
                ctx,
                Some(dead),
                record,
                ErrorPolicy::DeadLetter,
                rejection.reason.as_str(),
                &rejection.message,
            )?,
        }
        Ok(())
    }
}
