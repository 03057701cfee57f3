//! Handing a task's outputs to a producer: which partition each goes to, and what happens
//! when the producer refuses one (Kafka Streams' `RecordCollectorImpl`, the part that
//! decides). A full queue gives the record back to be sent later, in order; a dead letter
//! too large for the broker is cut to fit and marked with [`TRUNCATED_HEADER`]; anything
//! else refused is a failed delivery (the runtime then reprocesses its input).
//!
//! The runtime's record collector (librdkafka's producer, `runtime::stream_thread::output`)
//! and the [`TopologyTestDriver`](super::TopologyTestDriver) (in-memory topics) both send
//! through [`send`], over the small [`RecordProducer`] trait, so these rules exist once.

use super::record::SourcePosition;
use super::task::SinkRecord;

/// Header set on a dead letter whose value was cut to fit the broker's limit (its value:
/// the original size in bytes).
pub const TRUNCATED_HEADER: &str = "scorestream.error.truncated";

/// Room left for the key, headers and the broker's framing when a dead letter is cut.
const TRUNCATION_MARGIN: usize = 1024;

/// Why a producer did not take a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No room now; the same record may be sent again later.
    QueueFull,
    /// Larger than the broker accepts.
    TooLarge,
    /// Any other error: the record will never be taken.
    Failed(String),
}

/// What takes records: librdkafka's producer in the runtime, in-memory topics in the test
/// driver.
pub trait RecordProducer {
    /// Takes `out` for `partition` of its topic (`None`: the producer chooses), or gives it
    /// back with the reason. (The record comes back by value so a queue-full record is
    /// retried without a copy; refusals are rare, so its size on that path is fine.)
    #[allow(clippy::result_large_err)]
    fn send(
        &mut self,
        out: SinkRecord,
        partition: Option<i32>,
    ) -> Result<(), (Refusal, SinkRecord)>;
}

/// A dead letter cut to fit, for the caller to count and log.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncation {
    /// The dead-letter topic.
    pub topic: std::sync::Arc<str>,
    pub original_bytes: usize,
    pub kept_bytes: usize,
    /// Where the dead letter's input came from.
    pub source: Option<SourcePosition>,
}

/// What became of one output.
#[derive(Debug, PartialEq)]
pub enum Sent {
    /// The producer took it (a dead letter possibly cut to fit first).
    Taken(Option<Truncation>),
    /// The producer's queue is full: send it again later, before anything newer.
    QueueFull(SinkRecord),
    /// Never to be delivered: its delivery failed.
    Failed(SinkRecord, Refusal),
}

/// Whether `topic` is a dead-letter topic (`<input>-dlq`).
pub fn is_dead_letter_topic(topic: &str) -> bool {
    topic.ends_with("-dlq")
}

/// Sends `out` to `producer`, on the partition its rule picks for a topic of `partitions`
/// partitions (when known), applying the oversize policy for a broker that accepts at most
/// `max_message_bytes`.
pub fn send<P: RecordProducer + ?Sized>(
    producer: &mut P,
    out: SinkRecord,
    partitions: Option<i32>,
    max_message_bytes: usize,
) -> Sent {
    let partition = out.partition(partitions);
    match producer.send(out, partition) {
        Ok(()) => Sent::Taken(None),
        Err((Refusal::QueueFull, out)) => Sent::QueueFull(out),
        Err((Refusal::TooLarge, out))
            if is_dead_letter_topic(&out.topic)
                && out.record.headers.last(TRUNCATED_HEADER).is_none() =>
        {
            let (cut, truncation) = truncate(out, max_message_bytes);
            match send(producer, cut, partitions, max_message_bytes) {
                Sent::Taken(_) => Sent::Taken(Some(truncation)),
                other => other,
            }
        }
        Err((why, out)) => Sent::Failed(out, why),
    }
}

/// Cuts a dead letter's value to what a broker accepting `max_message_bytes` takes, and
/// records the original size in [`TRUNCATED_HEADER`].
fn truncate(mut out: SinkRecord, max_message_bytes: usize) -> (SinkRecord, Truncation) {
    let original = out.record.value.as_ref().map_or(0, Vec::len);
    let overhead = out.record.size_hint() - original + TRUNCATION_MARGIN;
    let keep = max_message_bytes.saturating_sub(overhead);
    if let Some(v) = out.record.value.as_mut() {
        v.truncate(keep);
    }
    out.record
        .headers
        .push(TRUNCATED_HEADER, original.to_string());
    let truncation = Truncation {
        topic: out.topic.clone(),
        original_bytes: original,
        kept_bytes: keep.min(original),
        source: out.record.source.clone(),
    };
    (out, truncation)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{Partitioning, Record};

    /// Takes records up to `room`, refuses those above `max_bytes` (as the broker would).
    struct Fake {
        room: usize,
        max_bytes: usize,
        taken: Vec<(Option<i32>, SinkRecord)>,
        broken: bool,
    }

    impl Fake {
        fn new(room: usize, max_bytes: usize) -> Fake {
            Fake {
                room,
                max_bytes,
                taken: Vec::new(),
                broken: false,
            }
        }
    }

    impl RecordProducer for Fake {
        fn send(
            &mut self,
            out: SinkRecord,
            partition: Option<i32>,
        ) -> Result<(), (Refusal, SinkRecord)> {
            if self.broken {
                return Err((Refusal::Failed("unknown topic".into()), out));
            }
            if out.record.size_hint() > self.max_bytes {
                return Err((Refusal::TooLarge, out));
            }
            if self.taken.len() >= self.room {
                return Err((Refusal::QueueFull, out));
            }
            self.taken.push((partition, out));
            Ok(())
        }
    }

    fn out(
        topic: &str,
        partitioning: Partitioning,
        key: Option<&[u8]>,
        value: usize,
    ) -> SinkRecord {
        let mut record = Record::new(vec![b'x'; value], 0);
        record.key = key.map(<[u8]>::to_vec);
        record.source = Some(SourcePosition {
            topic: Arc::from("in"),
            partition: 5,
            offset: 42,
        });
        SinkRecord {
            topic: Arc::from(topic),
            partitioning,
            record,
        }
    }

    #[test]
    fn the_partition_follows_the_sinks_rule() {
        let mut p = Fake::new(10, 1 << 20);
        let keyed = out("t", Partitioning::ByKey, Some(b"customer-1"), 10);
        let expected = crate::engine::partitioner::partition_for_key(b"customer-1", 6);
        assert_eq!(
            send(&mut p, keyed.clone(), Some(6), 1 << 20),
            Sent::Taken(None)
        );
        // Same as the source, modulo the target's partitions; fixed; unknown count: the
        // producer chooses for a keyed record.
        send(
            &mut p,
            out("t", Partitioning::SameAsSource, None, 1),
            Some(3),
            1 << 20,
        );
        send(
            &mut p,
            out("t", Partitioning::Partition(2), None, 1),
            Some(6),
            1 << 20,
        );
        send(&mut p, keyed, None, 1 << 20);
        let partitions: Vec<Option<i32>> = p.taken.iter().map(|(p, _)| *p).collect();
        assert_eq!(partitions, vec![Some(expected), Some(2), Some(2), None]);
    }

    #[test]
    fn a_full_queue_gives_the_record_back_unchanged() {
        let mut p = Fake::new(0, 1 << 20);
        let o = out("t", Partitioning::ByKey, Some(b"k"), 10);
        assert_eq!(
            send(&mut p, o.clone(), Some(3), 1 << 20),
            Sent::QueueFull(o)
        );
    }

    #[test]
    fn a_dead_letter_too_large_is_cut_to_fit_and_marked_once() {
        let max = 4096;
        let mut p = Fake::new(10, max);
        let big = out("events-dlq", Partitioning::SameAsSource, Some(b"k"), 10_000);
        let Sent::Taken(Some(t)) = send(&mut p, big, Some(6), max) else {
            panic!("not taken after truncation");
        };
        assert_eq!(t.original_bytes, 10_000);
        assert_eq!(t.source.as_ref().map(|s| s.offset), Some(42));
        let (partition, sent) = &p.taken[0];
        assert_eq!(*partition, Some(5), "still on the source's partition");
        assert!(
            sent.record.size_hint() <= max,
            "{}",
            sent.record.size_hint()
        );
        assert_eq!(sent.record.value.as_ref().unwrap().len(), t.kept_bytes);
        assert_eq!(
            sent.record.headers.last_str(TRUNCATED_HEADER),
            Some("10000")
        );

        // Still too large once marked (huge headers): it fails instead of being cut again.
        let mut tiny = Fake::new(10, 8);
        let marked = sent.clone();
        assert!(matches!(
            send(&mut tiny, marked, Some(6), 8),
            Sent::Failed(_, Refusal::TooLarge)
        ));
    }

    #[test]
    fn other_records_too_large_and_other_refusals_fail_their_delivery() {
        let mut p = Fake::new(10, 100);
        let result = send(
            &mut p,
            out("results", Partitioning::ByKey, Some(b"k"), 1000),
            Some(3),
            100,
        );
        assert!(
            matches!(result, Sent::Failed(o, Refusal::TooLarge) if o.record.value.as_ref().unwrap().len() == 1000)
        );
        p.broken = true;
        assert!(matches!(
            send(
                &mut p,
                out("results", Partitioning::ByKey, Some(b"k"), 1),
                Some(3),
                100
            ),
            Sent::Failed(_, Refusal::Failed(_))
        ));
        assert!(p.taken.is_empty());
    }
}
