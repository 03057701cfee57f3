//! The ingest processor: normalize every input record, dead-letter what is bad, re-key
//! what is good by customer id in the compact binary form.

use std::sync::Arc;

use super::build::{BuildCtx, Part};
use super::EVENTS_BY_CUSTOMER;
use crate::config::{Config, ConfigError};
use crate::engine::{
    BadRecords, Child, ErrorPolicy, Partitioning, Processor, ProcessorContext, ProcessorError,
    Record, SinkTarget, TopicRef, TopologyBuilder,
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

/// Sub-topology 0: parse, normalize, dead-letter or re-key by customer.
pub struct IngestPart;

impl Part for IngestPart {
    fn name(&self) -> &'static str {
        NAME
    }

    fn outputs(&self, _: &BuildCtx<'_>) -> Vec<&'static str> {
        OUTPUTS.to_vec()
    }

    fn stores(&self, _: &BuildCtx<'_>) -> Vec<&'static str> {
        Vec::new()
    }

    fn build(&self, b: &mut TopologyBuilder, ctx: &BuildCtx<'_>) {
        let (normalizer, bad) = (ctx.parts.normalizer.clone(), ctx.bad_records());
        b.add_source("ingest-source", &ctx.inputs);
        b.add_processor(
            NAME,
            move || Box::new(IngestProcessor::new(normalizer.clone(), bad.clone())),
            &["ingest-source"],
        );
        b.add_sink(
            DEAD_LETTER_CHILD,
            SinkTarget::dead_letter(ctx.dead_letter.clone()),
            Partitioning::SameAsSource,
            &[NAME],
        );
        b.add_sink(
            VALID_CHILD,
            SinkTarget::Topic(TopicRef::internal(EVENTS_BY_CUSTOMER)),
            Partitioning::ByKey,
            &[NAME],
        );
    }

    /// `[ingest]` limits.
    fn validate(&self, config: &Config) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if config.ingest.max_record_bytes == 0 {
            errors.push(ConfigError::new(
                "ingest.max_record_bytes",
                "must be above zero",
            ));
        }
        if config.ingest.max_depth == 0 {
            errors.push(ConfigError::new("ingest.max_depth", "must be above zero"));
        }
        errors
    }
}

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
