//! When a changelog reading is done: its position reached the end the fetch returned.
//!
//! Two things make a partition's cached end untrustworthy. An end-of-partition event names
//! only the partition number, so one of another changelog (the task's other store, or
//! another sub-topology's task of the same partition) comes for this reading too. And the
//! restore consumer may have read the partition before (the task ran on this thread
//! earlier): its end cached then is stale until this reading's own fetch comes back. So an
//! end counts only once it is the reading's own ([`Reading::own_end`]), and a reading stays
//! pending from its partition's first end-of-partition event on: the event comes once,
//! possibly before the end was its own.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Offset;

use super::{Reading, Restorer, Tp};

/// A fetch of a partition being restored comes back within this (`fetch.wait.max.ms` is
/// 50 ms) while the broker answers.
const OWN_FETCH_WITHIN: Duration = Duration::from_secs(5);

impl Reading {
    /// Whether `high`, the partition's cached end, is this reading's own: from a fetch made
    /// for it, not left from an earlier assignment of the partition to the same consumer.
    /// Either no end was cached before it began, or the end changed since, or a record of
    /// it arrived, or a fetch has had time to come back.
    fn own_end(&self, high: i64) -> bool {
        self.cached_before != Some(high) || self.fetched || self.began.elapsed() >= OWN_FETCH_WITHIN
    }
}

impl Restorer {
    /// After a poll that saw end-of-partition events for the partition numbers `eofs`:
    /// marks the readings pending from then on, marks done those pending whose position
    /// reached their own end, and flags the tasks found ahead of a changelog.
    pub(super) fn check_ends(&mut self, eofs: &HashSet<i32>) {
        for ((_, p), r) in self.readings.iter_mut() {
            if eofs.contains(p) {
                r.eof_seen = true;
            }
        }
        if self.readings.values().any(|r| r.eof_seen && !r.done) {
            self.mark_done();
        }
        self.check_beyond_end();
    }

    /// Marks the pending readings done whose position reached the fetched high watermark.
    /// The consumer's own position counts too: it steps over transaction markers, which
    /// take offsets but are never delivered.
    fn mark_done(&mut self) {
        let positions: HashMap<Tp, i64> = self
            .consumer
            .position()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for ((topic, partition), r) in self.readings.iter_mut() {
            if !r.eof_seen || r.done {
                continue;
            }
            if let Some(&pos) = positions.get(&(topic.clone(), *partition)) {
                r.next = Some(r.next.map_or(pos, |n| n.max(pos)));
            }
            let Some((low, high)) = cached_watermarks(&self.consumer, topic, *partition) else {
                continue;
            };
            if high < 0 || !r.own_end(high) {
                continue;
            }
            let at = r.next.unwrap_or(low.max(0));
            // Past the end is not done: the broker lost records this task's local state
            // holds, which `check_beyond_end` (run right after) flags.
            if at == high {
                r.done = true;
                r.next = Some(at);
            }
        }
    }

    /// Marks the tasks whose reading position is past the end of its changelog partition
    /// (restore began at an offset the changelog does not reach: the broker lost records
    /// this task's local state holds), end of partition or not: Tansu answers a fetch
    /// beyond the end with no records and no error (Kafka: offset out of range), so no
    /// end-of-partition event ever comes and the restore would wait forever. The end is
    /// the one the last fetch returned, once it is this reading's own.
    fn check_beyond_end(&mut self) {
        for ((topic, partition), r) in &self.readings {
            let Some(at) = r.next.filter(|_| !r.done) else {
                continue;
            };
            let Some(t) = self.tasks.get_mut(&r.task).filter(|t| t.ahead.is_none()) else {
                continue;
            };
            let Some((_, high)) = cached_watermarks(&self.consumer, topic, *partition) else {
                continue;
            };
            if r.own_end(high) && at > high {
                t.ahead = Some(format!("{topic}-{partition}: local state restored up to offset {at}, the changelog ends at {high}"));
            }
        }
    }
}

/// The low and high watermarks librdkafka cached from the last fetch response (no request;
/// unlike `ListOffsets`, right on Tansu). `None` before the first fetch.
pub(crate) fn cached_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the handle is valid while `consumer` lives; the out-pointers are locals.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}
