//! The record collector: getting outputs into the producer — headers, the commit epoch
//! each belongs to (see `runtime::acks`), a full queue handed back for later
//! (backpressure). The partition choice and the oversize policy (dead letters truncated)
//! are `engine::collector`'s, shared with the test driver.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use tracing::{error, warn};

use super::{LoopState, Shared};
use crate::engine::collector::{self, RecordProducer, Refusal, Sent};
use crate::engine::{BadRecords, ErrorPolicy, Headers, SinkRecord};
use crate::runtime::producer::ReplaceableProducer;

/// Outputs on their way to the producer: those waiting for room in it, with their commit
/// epoch, and the buffer tasks drain their outputs into. Sending them is the methods below
/// (on `Shared`, which holds the producer, shared with its delivery callbacks); what
/// partition an output goes to and what happens to one too large is decided in
/// `engine::collector`, shared with the test driver.
#[derive(Default)]
pub(super) struct RecordCollector {
    /// Outputs waiting for room in the producer, with their commit epoch, in order.
    pub pending: VecDeque<(u64, SinkRecord)>,
    /// Emptied buffer for a task's outputs, kept to reuse its allocation.
    pub scratch: Vec<SinkRecord>,
}

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
        let epoch = st.checkpoint.epoch;
        self.producer.context().ledger().sent(epoch);
        if st.collector.pending.is_empty() {
            if let Some(back) = self.send(out, epoch) {
                st.collector.pending.push_back((epoch, back));
            }
        } else {
            st.collector.pending.push_back((epoch, out));
        }
    }

    /// Collects every output drained into `st.collector.scratch`, keeping the buffer for the next
    /// record.
    pub(super) fn collect_scratch(&self, st: &mut LoopState) {
        let mut scratch = std::mem::take(&mut st.collector.scratch);
        for out in scratch.drain(..) {
            self.collect(st, out);
        }
        st.collector.scratch = scratch;
    }

    /// Enqueues one output of commit epoch `epoch` in the producer. Gives it back when the
    /// queue is full. The partition and what happens to a record refused are decided in
    /// `engine::collector`.
    pub(super) fn send(&self, out: SinkRecord, epoch: u64) -> Option<SinkRecord> {
        let partitions = self.partition_counts.get(&*out.topic).copied();
        let mut producer = EpochProducer {
            producer: &self.producer,
            epoch,
        };
        let limits = collector::Limits {
            max_message_bytes: self.max_message_bytes,
            oversize_output: self.topology.oversize_output(),
        };
        match collector::send(&mut producer, out, partitions, limits) {
            Sent::Taken(None) => None,
            Sent::Dropped(out) => {
                let at = collector::position_of(&out);
                let message = format!("too large for the broker (topic {})", out.topic);
                let (policy, reason) = (ErrorPolicy::Drop, collector::OVERSIZE_OUTPUT);
                let counters = Some(self.metrics.bad_record_counters());
                BadRecords::new(counters).report(&at, policy, reason, &message);
                None
            }
            Sent::Taken(Some(t)) => {
                self.metrics.dead_letters_truncated.inc();
                let source = t.source.as_ref();
                warn!(
                    topic = %t.topic,
                    source_topic = source.map_or("", |s| &*s.topic),
                    partition = source.map_or(-1, |s| s.partition),
                    offset = source.map_or(-1, |s| s.offset),
                    original_bytes = t.original_bytes,
                    kept_bytes = t.kept_bytes,
                    "Dead letter too large for the broker; value truncated."
                );
                None
            }
            Sent::QueueFull(out) => Some(out),
            Sent::Failed(out, why) => {
                // Not retriable here: count it as a failed delivery so the next commit
                // rewinds and reprocesses instead of committing past it.
                let context = self.producer.context();
                context.failures.fetch_add(1, Ordering::Relaxed);
                context.ledger().failed(epoch);
                let topic: &str = &out.topic;
                self.metrics
                    .delivery_failures
                    .with_label_values(&[topic])
                    .inc();
                error!(topic, error = ?why, "Could not enqueue an output; its input will be reprocessed.");
                None
            }
        }
    }

    /// Moves pending outputs into the producer until it is full. True if all went.
    pub(super) fn send_pending(&self, st: &mut LoopState) -> bool {
        while let Some((epoch, out)) = st.collector.pending.pop_front() {
            if let Some(back) = self.send(out, epoch) {
                st.collector.pending.push_front((epoch, back));
                self.gauges.pending.set(st.collector.pending.len() as i64);
                return false;
            }
        }
        self.gauges.pending.set(0);
        true
    }
}

/// librdkafka's producer, tagging each record with its commit epoch (the delivery opaque).
struct EpochProducer<'a> {
    producer: &'a ReplaceableProducer,
    epoch: u64,
}

impl RecordProducer for EpochProducer<'_> {
    fn send(
        &mut self,
        out: SinkRecord,
        partition: Option<i32>,
    ) -> Result<(), (Refusal, SinkRecord)> {
        let result = {
            let headers = to_kafka_headers(&out.record.headers);
            let mut br: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&out.topic, self.epoch as usize)
                    .timestamp(out.record.timestamp);
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
            Ok(()) => Ok(()),
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                Err((Refusal::QueueFull, out))
            }
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {
                Err((Refusal::TooLarge, out))
            }
            Err(e) => Err((Refusal::Failed(e.to_string()), out)),
        }
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
