//! Handing a task's outputs to a producer: which partition each goes to, and what happens
//! when the producer refuses one (Kafka Streams' `RecordCollectorImpl`, the part that
//! decides, with its `ProductionExceptionHandler`). A full queue gives the record back to be
//! sent later, in order; a dead letter too large for the broker gets its sink's
//! `on_too_large` (by default cut to fit and marked with [`TRUNCATED_HEADER`]); any other
//! output too large gets the topology's `oversize_output` policy (by default a failed
//! delivery, as anything else refused: the runtime then reprocesses its input).
//!
//! The runtime's record collector (librdkafka's producer, `runtime::stream_thread::output`)
//! and the [`TopologyTestDriver`](super::TopologyTestDriver) (in-memory topics) both send
//! through [`send`], over the small [`RecordProducer`] trait, so these rules exist once.

use super::dead_letter::{headers, ErrorPolicy, OnTooLarge, Position};
use super::record::SourcePosition;
use super::task::SinkRecord;

/// Header set on a dead letter whose value was cut to fit the broker's limit (its value:
/// the original size in bytes).
pub const TRUNCATED_HEADER: &str = headers::TRUNCATED;

/// The reason of an output dropped because the broker refused it as too large.
pub const OVERSIZE_OUTPUT: &str = "oversize_output";

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
    /// Too large, and its policy drops it: for the caller to report with
    /// [`super::dead_letter::BadRecords::report`] (reason [`OVERSIZE_OUTPUT`]).
    Dropped(SinkRecord),
    /// The producer's queue is full: send it again later, before anything newer.
    QueueFull(SinkRecord),
    /// Never to be delivered: its delivery failed.
    Failed(SinkRecord, Refusal),
}

/// What the collector applies to records the broker refuses as too large.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest record the producer sends.
    pub max_message_bytes: usize,
    /// What happens to an output other than a dead letter that is too large (a dead letter
    /// has its sink's `on_too_large`). `dead_letter` is not offered for it: it acts as
    /// `fail`.
    pub oversize_output: ErrorPolicy,
}

impl Limits {
    /// Today's rules: a producer limit, oversized outputs fail their delivery.
    pub fn new(max_message_bytes: usize) -> Self {
        Limits {
            max_message_bytes,
            oversize_output: ErrorPolicy::Fail,
        }
    }
}

/// Where a dropped or cut output's input came from, for logs.
pub fn position_of(out: &SinkRecord) -> Position {
    let s = out.record.source.as_ref();
    Position {
        topic: s.map_or_else(String::new, |s| s.topic.to_string()),
        partition: s.map_or(-1, |s| s.partition),
        offset: s.map_or(-1, |s| s.offset),
    }
}

/// Sends `out` to `producer`, on the partition its rule picks for a topic of `partitions`
/// partitions (when known), applying the oversize policies of `limits`.
pub fn send<P: RecordProducer + ?Sized>(
    producer: &mut P,
    out: SinkRecord,
    partitions: Option<i32>,
    limits: Limits,
) -> Sent {
    let partition = out.partition(partitions);
    match producer.send(out, partition) {
        Ok(()) => Sent::Taken(None),
        Err((Refusal::QueueFull, out)) => Sent::QueueFull(out),
        Err((Refusal::TooLarge, out)) => too_large(producer, out, partitions, limits),
        Err((why, out)) => Sent::Failed(out, why),
    }
}

/// An output the producer refused as too large: its policy.
fn too_large<P: RecordProducer + ?Sized>(
    producer: &mut P,
    out: SinkRecord,
    partitions: Option<i32>,
    limits: Limits,
) -> Sent {
    let on_too_large = match (out.dead_letter, limits.oversize_output) {
        (Some(d), _) => d.on_too_large,
        (None, ErrorPolicy::Drop) => OnTooLarge::Drop,
        (None, ErrorPolicy::Fail | ErrorPolicy::DeadLetter) => OnTooLarge::Fail,
    };
    match on_too_large {
        OnTooLarge::Truncate if out.record.headers.last(TRUNCATED_HEADER).is_none() => {
            let fit = out
                .dead_letter
                .map_or(limits.max_message_bytes, |d| d.max_bytes)
                .min(limits.max_message_bytes);
            let (cut, truncation) = truncate(out, fit);
            match send(producer, cut, partitions, limits) {
                Sent::Taken(_) => Sent::Taken(Some(truncation)),
                other => other,
            }
        }
        OnTooLarge::Drop => Sent::Dropped(out),
        OnTooLarge::Truncate | OnTooLarge::Fail => Sent::Failed(out, Refusal::TooLarge),
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
    use crate::engine::dead_letter::DeadLetterLimits;
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
            // The dead-letter sinks of these tests are named `*-dlq`.
            dead_letter: topic.ends_with("-dlq").then_some(DeadLetterLimits {
                max_bytes: usize::MAX,
                on_too_large: OnTooLarge::Truncate,
            }),
        }
    }

    #[test]
    fn the_partition_follows_the_sinks_rule() {
        let mut p = Fake::new(10, 1 << 20);
        let keyed = out("t", Partitioning::ByKey, Some(b"customer-1"), 10);
        let expected = crate::engine::partitioner::partition_for_key(b"customer-1", 6);
        assert_eq!(
            send(&mut p, keyed.clone(), Some(6), Limits::new(1 << 20)),
            Sent::Taken(None)
        );
        // Same as the source, modulo the target's partitions; fixed; unknown count: the
        // producer chooses for a keyed record.
        send(
            &mut p,
            out("t", Partitioning::SameAsSource, None, 1),
            Some(3),
            Limits::new(1 << 20),
        );
        send(
            &mut p,
            out("t", Partitioning::Partition(2), None, 1),
            Some(6),
            Limits::new(1 << 20),
        );
        send(&mut p, keyed, None, Limits::new(1 << 20));
        let partitions: Vec<Option<i32>> = p.taken.iter().map(|(p, _)| *p).collect();
        assert_eq!(partitions, vec![Some(expected), Some(2), Some(2), None]);
    }

    #[test]
    fn a_full_queue_gives_the_record_back_unchanged() {
        let mut p = Fake::new(0, 1 << 20);
        let o = out("t", Partitioning::ByKey, Some(b"k"), 10);
        assert_eq!(
            send(&mut p, o.clone(), Some(3), Limits::new(1 << 20)),
            Sent::QueueFull(o)
        );
    }

    #[test]
    fn a_dead_letter_too_large_is_cut_to_fit_and_marked_once() {
        let max = 4096;
        let mut p = Fake::new(10, max);
        let big = out("events-dlq", Partitioning::SameAsSource, Some(b"k"), 10_000);
        let Sent::Taken(Some(t)) = send(&mut p, big, Some(6), Limits::new(max)) else {
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
            send(&mut tiny, marked, Some(6), Limits::new(8)),
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
            Limits::new(100),
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
                Limits::new(100)
            ),
            Sent::Failed(_, Refusal::Failed(_))
        ));
        assert!(p.taken.is_empty());
    }

    #[test]
    fn oversized_records_their_policy_drops_are_given_back_as_dropped() {
        let mut p = Fake::new(10, 100);
        let drop_outputs = Limits {
            max_message_bytes: 100,
            oversize_output: ErrorPolicy::Drop,
        };
        let big = out("results", Partitioning::ByKey, Some(b"k"), 1000);
        assert_eq!(
            send(&mut p, big.clone(), Some(3), drop_outputs),
            Sent::Dropped(big)
        );
        // A dead letter follows its sink's `on_too_large`, not `oversize_output`.
        let mut dead = out("events-dlq", Partitioning::SameAsSource, Some(b"k"), 1000);
        assert!(matches!(
            send(&mut p, dead.clone(), Some(3), drop_outputs),
            Sent::Taken(Some(_))
        ));
        for (on_too_large, dropped) in [(OnTooLarge::Drop, true), (OnTooLarge::Fail, false)] {
            dead.dead_letter = Some(DeadLetterLimits {
                max_bytes: usize::MAX,
                on_too_large,
            });
            let sent = send(&mut p, dead.clone(), Some(3), Limits::new(100));
            assert_eq!(matches!(sent, Sent::Dropped(_)), dropped, "{sent:?}");
            assert_eq!(
                matches!(sent, Sent::Failed(_, Refusal::TooLarge)),
                !dropped,
                "{sent:?}"
            );
        }
        assert_eq!(p.taken.len(), 1, "only the truncated dead letter");
    }
}
