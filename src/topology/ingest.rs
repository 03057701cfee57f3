//! The ingest processor: normalize every input record, dead-letter what is bad, re-key
//! what is good by customer id in the compact binary form.

use std::sync::Arc;

use crate::engine::{Child, Processor, ProcessorContext, ProcessorError, Record};
use crate::metrics::Metrics;

use crate::ingest::event::Origin;
use crate::ingest::normalize::{Normalizer, RawInput, RejectReason};

/// Dead-letter header names, in the style of Kafka Streams' KIP-1034.
pub mod headers {
    pub const REASON: &str = "scorestream.error.reason";
    pub const MESSAGE: &str = "scorestream.error.message";
    pub const SOURCE_TOPIC: &str = "scorestream.source.topic";
    pub const SOURCE_PARTITION: &str = "scorestream.source.partition";
    pub const SOURCE_OFFSET: &str = "scorestream.source.offset";
}

/// The processor's name in the topology.
pub const NAME: &str = "normalize";
/// Child names the ingest processor forwards to.
pub const VALID_CHILD: &str = "events-by-customer";
pub const DEAD_LETTER_CHILD: &str = "dead-letter";
/// Every child it forwards to (checked when the topology is built).
pub const OUTPUTS: [&str; 2] = [VALID_CHILD, DEAD_LETTER_CHILD];

/// Builds a dead letter: the original key, value, headers and timestamp unchanged, plus the
/// error headers naming the reason, a readable message and the original position.
pub fn dead_letter(original: Record, reason: RejectReason, message: &str) -> Record {
    let mut rec = original;
    rec.headers.push(headers::REASON, reason.as_str());
    rec.headers.push(headers::MESSAGE, message);
    if let Some(pos) = rec.source.clone() {
        rec.headers
            .push(headers::SOURCE_TOPIC, pos.topic.as_bytes());
        rec.headers
            .push(headers::SOURCE_PARTITION, pos.partition.to_string());
        rec.headers
            .push(headers::SOURCE_OFFSET, pos.offset.to_string());
    }
    rec
}

/// Normalizes, validates and re-keys. Stateless.
pub struct IngestProcessor {
    normalizer: Arc<Normalizer>,
    metrics: Option<Metrics>,
    valid: Option<Child>,
    dead_letter: Option<Child>,
}

impl IngestProcessor {
    pub fn new(normalizer: Arc<Normalizer>, metrics: Option<Metrics>) -> Self {
        IngestProcessor {
            normalizer,
            metrics,
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
                let out = Record {
                    key: Some(event.customer_id.as_bytes().to_vec()),
                    value: Some(event.encode()),
                    headers: record.headers,
                    timestamp: event.occurred_at,
                    source: record.source,
                };
                ctx.forward_to(valid, out);
            }
            Err(rejection) => {
                if let Some(m) = &self.metrics {
                    m.dead_letters
                        .with_label_values(&[topic, rejection.reason.as_str()])
                        .inc();
                }
                tracing::debug!(
                    topic,
                    partition = record.source.as_ref().map_or(-1, |p| p.partition),
                    offset = record.source.as_ref().map_or(-1, |p| p.offset),
                    reason = rejection.reason.as_str(),
                    "Record dead-lettered."
                );
                let dl = dead_letter(record, rejection.reason, &rejection.message);
                ctx.forward_to(dead, dl);
            }
        }
        Ok(())
    }
}
