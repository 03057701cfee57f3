//! An input partition positioned past its end: the topic was deleted and re-created, or
//! the broker lost it, while the consumer group's committed offsets were kept. Kafka
//! answers a fetch there with OFFSET_OUT_OF_RANGE and the consumer resets by
//! `auto.offset.reset`; Tansu answers with no records and no error, so the partition would
//! stall silently. Detected here as Kafka Streams treats an out-of-range offset with the
//! `earliest` policy: logged, counted, and read again from the beginning of what the
//! broker has, with the task's stored position for it forgotten so that its records are
//! processed, not skipped as replays.
//!
//! Where the broker does answer OFFSET_OUT_OF_RANGE, librdkafka resets the position itself
//! (`auto.offset.reset=earliest`) and says so only in a log line: [`reset_partition`]
//! reads it, and [`Shared::offset_reset`] logs and counts it the same way.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{error, warn};

use super::checkpoint::PartitionState;
use super::{LoopState, Shared, StreamConsumer};
use crate::runtime::restore::{cached_watermarks, committed_offsets};

/// A partition is compared with its end once it has been fetched for this long (the end is
/// then the one fetches return now: `fetch.wait.max.ms` is 100 ms).
const FETCHED_FOR: Duration = Duration::from_secs(3);
/// How often assigned partitions are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// What one stream thread knows of its input partitions' ends.
#[derive(Default)]
pub(super) struct InputEnds {
    /// Running and fetched: the position it has been at (-1: nothing consumed since it
    /// was assigned) and since when.
    fetched_since: HashMap<(usize, i32), (i64, Instant)>,
    /// The end at which the partition was last compared with the committed offset: it is
    /// compared again only when the end changes (an idle partition costs one request).
    compared_at_end: HashMap<(usize, i32), i64>,
    /// Found past their end and not yet sought back (the seek failed): `/ready` says so.
    beyond: HashMap<(usize, i32), i64>,
    /// The end seen when the partition was last assigned here before (`None`: never). An
    /// end cached by an earlier assignment can be far behind the group's committed offset
    /// (another member went on meanwhile, and this consumer may not have fetched the
    /// partition yet): the committed offset is compared only with an end that differs.
    assigned_end: HashMap<(usize, i32), Option<i64>>,
    /// The last end seen of every partition ever assigned here (kept across assignments).
    last_end: HashMap<(usize, i32), i64>,
    /// Sought to their beginning this assignment: not compared again (the group's offset
    /// stays past the end until records from the beginning are committed).
    restarted: HashSet<(usize, i32)>,
    last: Option<Instant>,
}

impl InputEnds {
    /// Compares the position of every running input partition that has not moved for a
    /// few seconds with the end its fetches return: the next offset to process, or, when it
    /// consumed nothing since it was assigned, the group's committed offset. A partition
    /// past its end is sought to its beginning. One committed-offsets request at most per
    /// call, and only for partitions whose end changed since they were last compared.
    pub(super) fn check(&mut self, shared: &Shared, consumer: &StreamConsumer, st: &mut LoopState) {
        if self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let before = self.beyond.len() as i64;
        self.fetched_since
            .retain(|k, _| st.checkpoint.partitions.contains_key(k));
        self.compared_at_end
            .retain(|k, _| st.checkpoint.partitions.contains_key(k));
        self.beyond
            .retain(|k, _| st.checkpoint.partitions.contains_key(k));
        self.restarted
            .retain(|k| st.checkpoint.partitions.contains_key(k));
        self.assigned_end
            .retain(|k, _| st.checkpoint.partitions.contains_key(k));
        let mut candidates = Vec::new();
        for (&(ti, p), ps) in &st.checkpoint.partitions {
            let topic = &*shared.sources[ti].name;
            let assigned_end = *self
                .assigned_end
                .entry((ti, p))
                .or_insert_with(|| self.last_end.get(&(ti, p)).copied());
            let cached = cached_watermarks(consumer, topic, p).map(|w| w.1);
            if let Some(end) = cached {
                self.last_end.insert((ti, p), end);
            }
            let id = shared.task_of((ti, p));
            let fetching = st.tasks.running.contains_key(&id) && !st.paused && !st.outage;
            if ps.position >= 0 {
                self.restarted.remove(&(ti, p));
            }
            if !fetching || self.restarted.contains(&(ti, p)) {
                self.fetched_since.remove(&(ti, p));
                continue;
            }
            let entry = self
                .fetched_since
                .entry((ti, p))
                .or_insert((ps.position, Instant::now()));
            if entry.0 != ps.position {
                *entry = (ps.position, Instant::now());
            }
            if entry.1.elapsed() < FETCHED_FOR && !self.beyond.contains_key(&(ti, p)) {
                continue;
            }
            let Some(end) = cached else {
                continue;
            };
            let position = (ps.position >= 0).then_some(ps.position);
            if position.is_some_and(|at| at <= end) {
                continue;
            }
            if position.is_none() && assigned_end == Some(end) {
                // Possibly an earlier assignment's end: wait for one fetched since.
                continue;
            }
            if position.is_some()
                || self.compared_at_end.get(&(ti, p)) != Some(&end)
                || self.beyond.contains_key(&(ti, p))
            {
                candidates.push(((ti, p), end, position));
            }
        }
        if !candidates.is_empty() {
            self.compare(shared, consumer, st, &candidates);
        }
        let after = self.beyond.len() as i64;
        shared.metrics.input_beyond_end.add(after - before);
    }

    fn compare(
        &mut self,
        shared: &Shared,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        candidates: &[((usize, i32), i64, Option<i64>)],
    ) {
        let mut tpl = TopicPartitionList::new();
        for &((ti, p), _, position) in candidates {
            if position.is_none() {
                tpl.add_partition(&shared.sources[ti].name, p);
            }
        }
        let committed = if tpl.count() == 0 {
            HashMap::new()
        } else {
            match committed_offsets(consumer, tpl, Duration::from_secs(2)) {
                Ok(c) => c,
                // The broker is slow or going away: compared again at the next check.
                Err(_) => return,
            }
        };
        for &((ti, p), end, position) in candidates {
            let topic = &*shared.sources[ti].name;
            if position.is_none() {
                self.compared_at_end.insert((ti, p), end);
            }
            let known = position.or_else(|| committed.get(&(topic.to_string(), p)).copied());
            let Some(offset) = known else {
                self.beyond.remove(&(ti, p));
                continue;
            };
            if offset <= end {
                self.beyond.remove(&(ti, p));
                continue;
            }
            if self.beyond.insert((ti, p), offset).is_none() {
                shared
                    .metrics
                    .state_ahead_of_broker
                    .with_label_values(&["input"])
                    .inc();
                error!(topic, partition = p, offset, end, "An input partition's position is past its end: the topic was re-created or the broker lost it, and the consumer group's offsets (or this consumer's position) were kept. Nothing could be read from it; reading it again from the beginning of what the broker has (auto.offset.reset=earliest).");
            }
            if let Err(e) = consumer.seek(topic, p, Offset::Beginning, Duration::from_secs(5)) {
                warn!(topic, partition = p, error = %e, "Could not seek the input partition to its beginning; retrying.");
                continue;
            }
            self.beyond.remove(&(ti, p));
            self.restarted.insert((ti, p));
            forget_position(shared, st, ti, p);
        }
    }
}

/// The partition starts over: nothing of the old one is committed from here, and the
/// task's stored position for it (ahead of everything the partition has now) must not make
/// its records look like replays.
fn forget_position(shared: &Shared, st: &mut LoopState, ti: usize, p: i32) {
    st.checkpoint
        .partitions
        .insert((ti, p), PartitionState::NEW);
    let id = shared.task_of((ti, p));
    if let Some(state) = st.tasks.running.get_mut(&id).and_then(|t| t.state_mut()) {
        state.forget_applied(&shared.sources[ti].name, p);
    }
}

/// The partition of a librdkafka log line saying a fetch error reset its position, e.g.
/// `[thrd:main]: events [2]: offset reset (at offset 1000 (leader epoch 0), broker 1) to
/// cached BEGINNING offset offset 0 (leader epoch -1): fetch failed due to requested offset
/// not available on the broker: Broker: Offset out of range` (librdkafka logs resets caused
/// by an error at warning level, facility `OFFSET`). Topic names hold no spaces.
pub(super) fn reset_partition(line: &str) -> Option<(&str, i32)> {
    let (head, _) = line.split_once("]: offset reset")?;
    let (before, partition) = head.rsplit_once(" [")?;
    let topic = before.rsplit_once(' ').map_or(before, |(_, t)| t);
    Some((topic, partition.parse().ok()?))
}

impl Shared {
    /// librdkafka reset an input partition's position after a fetch error (the offset is
    /// not on the broker: the topic was re-created or the broker lost records). Logged and
    /// counted as an input the local state is ahead of. Returns false for a partition that
    /// is not one of this thread's inputs (the line is then logged as it is).
    pub(super) fn offset_reset(&self, topic: &str, partition: i32, line: &str) -> bool {
        if self.topic_index(topic).is_none() {
            return false;
        }
        self.metrics
            .state_ahead_of_broker
            .with_label_values(&["input"])
            .inc();
        let reset = line.find("offset reset").map_or(line, |at| &line[at..]);
        error!(topic, partition, %reset, "An input partition's position is not on the broker: the topic was re-created or the broker lost records. Reading it again from the beginning of what the broker has (auto.offset.reset=earliest).");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::reset_partition;

    #[test]
    fn the_partition_of_an_offset_reset_line_is_read() {
        let line = "[thrd:main]: customer-events [2]: offset reset (at offset 1000 (leader epoch 0), broker 1) to cached BEGINNING offset offset 0 (leader epoch -1): fetch failed due to requested offset not available on the broker: Broker: Offset out of range";
        assert_eq!(reset_partition(line), Some(("customer-events", 2)));
        assert_eq!(
            reset_partition(line.trim_start_matches("[thrd:main]: ")),
            Some(("customer-events", 2))
        );
        assert_eq!(
            reset_partition("Fetch backoff for 10ms: Local: Queue full"),
            None
        );
        assert_eq!(reset_partition("t [x]: offset reset (at offset 1)"), None);
    }
}
