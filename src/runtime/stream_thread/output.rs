//! Getting outputs into the producer: partition choice, headers, a full queue handed
//! back for later (backpressure), and oversized dead letters truncated.

use std::sync::atomic::Ordering;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tracing::{error, warn};

use super::{LoopState, Shared, TRUNCATED_HEADER};
use crate::engine::{Headers, Partitioning, SinkRecord};
use crate::runtime::partitioner::partition_for_key;

impl Shared {
    /// A broker that restarted without its state refuses the producer's id forever: the
    /// producer is replaced (a new id) and the next commit rewinds, so what it had not
    /// delivered is produced again. Counted as the broker having lost state.
    pub(super) fn renew_forgotten_producer(&self) {
        if self.transactional || !self.producer.forgotten_by_broker() {
            return;
        }
        match self.producer.replace() {
            Ok(()) => {
                self.metrics
                    .state_ahead_of_broker
                    .with_label_values(&["producer"])
                    .inc();
                warn!("The broker refuses this instance's producer id (it restarted without its state): producer replaced; outputs not acknowledged are produced again from the last commit.");
            }
            Err(e) => warn!(error = %e, "Could not create a new producer; retrying."),
        }
    }

    /// Enqueues one output in the producer. Gives it back when the queue is full.
    pub(super) fn send(&self, out: SinkRecord) -> Option<SinkRecord> {
        let topic: &str = &out.topic;
        let count = self.partition_counts.get(topic).copied();
        let partition = match out.partitioning {
            Partitioning::SameAsSource => out
                .record
                .source
                .as_ref()
                .map(|s| count.map_or(s.partition, |c| s.partition % c.max(1))),
            Partitioning::Partition(p) => Some(p),
            Partitioning::ByKey => match (out.record.key.as_deref(), count) {
                (Some(k), Some(c)) => Some(partition_for_key(k, c)),
                _ => None,
            },
        };
        let result = {
            let headers = to_kafka_headers(&out.record.headers);
            let mut br: BaseRecord<'_, [u8], [u8], ()> =
                BaseRecord::to(topic).timestamp(out.record.timestamp);
            if let Some(k) = out.record.key.as_deref() {
                br = br.key(k);
            }
            if let Some(v) = out.record.value.as_deref() {
                br = br.payload(v);
            }
            if let Some(p) = partition {
                br = br.partition(p);
            }
            if let Some(h) = headers {
                br = br.headers(h);
            }
            self.producer.send(br)
        };
        match result {
            Ok(()) => None,
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => Some(out),
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))
                if topic.ends_with("-dlq")
                    && out.record.headers.last(TRUNCATED_HEADER).is_none() =>
            {
                self.send(self.truncate(out))
            }
            Err(e) => {
                // Not retriable here: count it as a failed delivery so the next commit
                // rewinds and reprocesses instead of committing past it.
                self.producer
                    .context()
                    .failures
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .delivery_failures
                    .with_label_values(&[topic])
                    .inc();
                error!(topic, error = %e, "Could not enqueue an output; its input will be reprocessed.");
                None
            }
        }
    }

    /// Cuts a dead letter's value to what the producer accepts and records the original size.
    fn truncate(&self, mut out: SinkRecord) -> SinkRecord {
        let original = out.record.value.as_ref().map_or(0, Vec::len);
        let overhead = out.record.size_hint() - original + 1024;
        let keep = self.max_message_bytes.saturating_sub(overhead);
        if let Some(v) = out.record.value.as_mut() {
            v.truncate(keep);
        }
        out.record
            .headers
            .push(TRUNCATED_HEADER, original.to_string());
        self.metrics.dead_letters_truncated.inc();
        let source = out.record.source.as_ref();
        warn!(
            topic = %out.topic,
            source_topic = source.map_or("", |s| &*s.topic),
            partition = source.map_or(-1, |s| s.partition),
            offset = source.map_or(-1, |s| s.offset),
            original_bytes = original,
            kept_bytes = keep,
            "Dead letter too large for the broker; value truncated."
        );
        out
    }

    /// Moves pending outputs into the producer until it is full. True if all went.
    pub(super) fn send_pending(&self, st: &mut LoopState) -> bool {
        while let Some(out) = st.pending.pop_front() {
            if let Some(back) = self.send(out) {
                st.pending.push_front(back);
                self.metrics.pending_outputs.set(st.pending.len() as i64);
                return false;
            }
        }
        self.metrics.pending_outputs.set(0);
        true
    }
}

fn to_kafka_headers(h: &Headers) -> Option<OwnedHeaders> {
    if h.is_empty() {
        return None;
    }
    let mut out = OwnedHeaders::new_with_capacity(h.len());
    for (k, v) in h.iter() {
        out = out.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    Some(out)
}
