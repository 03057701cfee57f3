//! The record collector: getting outputs into the producer — partition choice, headers,
//! the commit epoch each belongs to (see `runtime::acks`), a full queue handed back for
//! later (backpressure), and oversized dead letters truncated.

use std::sync::atomic::Ordering;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tracing::{error, warn};

use super::{LoopState, Shared, TRUNCATED_HEADER};
use crate::engine::{Headers, SinkRecord};

impl Shared {
    /// A broker that restarted without its state refuses the producer's id forever: the
    /// producer is replaced (a new id) and the next commit rewinds, so what it had not
    /// delivered is produced again. Counted as the broker having lost state.
    /// The same when the producer raised a fatal error (out of sequence: the broker gave
    /// its id to another client).
    pub(super) fn renew_forgotten_producer(&self) {
        if self.transactional {
            return;
        }
        let fatal = if self.producer.forgotten_by_broker() {
            None
        } else {
            match self.producer.fatal_error() {
                None => return,
                some => some,
            }
        };
        match self.producer.replace() {
            Ok(()) => {
                self.metrics
                    .state_ahead_of_broker
                    .with_label_values(&["producer"])
                    .inc();
                match fatal {
                    None => warn!("The broker refuses this instance's producer id (it restarted without its state): producer replaced; outputs not acknowledged are produced again from the last commit."),
                    Some(error) => warn!(%error, "The producer failed for good (an idempotent producer out of sequence with a broker that restarted without its state): producer replaced; outputs not acknowledged are produced again from the last commit."),
                }
            }
            Err(e) => warn!(error = %e, "Could not create a new producer; retrying."),
        }
    }

    /// Takes one output of the current epoch: into the producer, or behind the outputs
    /// already waiting for room in it (order is kept).
    pub(super) fn collect(&self, st: &mut LoopState, out: SinkRecord) {
        let epoch = st.epoch;
        self.producer.context().ledger().sent(epoch);
        if st.pending.is_empty() {
            if let Some(back) = self.send(out, epoch) {
                st.pending.push_back((epoch, back));
            }
        } else {
            st.pending.push_back((epoch, out));
        }
    }

    /// Collects every output drained into `st.scratch`, keeping the buffer for the next
    /// record.
    pub(super) fn collect_scratch(&self, st: &mut LoopState) {
        let mut scratch = std::mem::take(&mut st.scratch);
        for out in scratch.drain(..) {
            self.collect(st, out);
        }
        st.scratch = scratch;
    }

    /// Enqueues one output of commit epoch `epoch` in the producer. Gives it back when the
    /// queue is full.
    pub(super) fn send(&self, out: SinkRecord, epoch: u64) -> Option<SinkRecord> {
        let topic: &str = &out.topic;
        let partition = out.partition(self.partition_counts.get(topic).copied());
        let result = {
            let headers = to_kafka_headers(&out.record.headers);
            let mut br: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(topic, epoch as usize).timestamp(out.record.timestamp);
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
                self.send(self.truncate(out), epoch)
            }
            Err(e) => {
                // Not retriable here: count it as a failed delivery so the next commit
                // rewinds and reprocesses instead of committing past it.
                let context = self.producer.context();
                context.failures.fetch_add(1, Ordering::Relaxed);
                context.ledger().failed(epoch);
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
        while let Some((epoch, out)) = st.pending.pop_front() {
            if let Some(back) = self.send(out, epoch) {
                st.pending.push_front((epoch, back));
                self.gauges.pending.set(st.pending.len() as i64);
                return false;
            }
        }
        self.gauges.pending.set(0);
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
