//! Bringing a task's stores up to the end of their changelogs before it processes anything,
//! as Kafka Streams' `StoreChangelogReader`: incremental from the offset stored locally,
//! or from the beginning when the local state is missing.
//!
//! One consumer (no group) reads every changelog partition being restored. Records are
//! applied in large atomic batches. A partition is done when the fetch reports its end
//! (`PartitionEOF`) and our position has reached the high watermark the fetch returned —
//! never on a listed end offset alone (Tansu's `ListOffsets` is wrong after batches).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::client::LoggingContext;
use super::RuntimeError;
use crate::engine::{StreamTask, TaskId};
use crate::metrics::{GaugeShare, Metrics};
use crate::state::changelog::{decode_positions, is_committed, POSITIONS_HEADER};

mod ends;

pub(crate) use ends::cached_watermarks;

type Tp = (String, i32);

/// One changelog partition being read.
struct Reading {
    task: TaskId,
    store: usize,
    /// Next offset to apply; `None` until the first record when reading from the start.
    next: Option<i64>,
    /// Where reading began, from the local state; `None` from the beginning.
    from: Option<i64>,
    done: bool,
    batch: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    positions: HashMap<Tp, i64>,
    /// The partition's end cached before this reading fetched anything (an earlier
    /// assignment's), and when it began: see `ends.rs`.
    cached_before: Option<i64>,
    began: Instant,
    /// A record of this reading arrived: the partition's cached end is from a fetch of it.
    fetched: bool,
    /// An end-of-partition event of this partition number came since the reading began.
    eof_seen: bool,
}

/// A task waiting for its stores.
struct Restoring {
    task: StreamTask,
    /// The group's committed offsets of the task's inputs: the restore filter.
    committed: HashMap<Tp, i64>,
    applied: u64,
    skipped: u64,
    started: Instant,
    last_log: Instant,
    /// Its local state is ahead of a changelog (the broker lost records): why.
    ahead: Option<String>,
}

pub(crate) struct Restorer {
    /// This thread's shares of `scorestream_tasks_restoring` and `_restore_remaining`.
    restoring: GaugeShare,
    remaining: GaugeShare,
    consumer: BaseConsumer<LoggingContext>,
    /// To create the consumer again after an outage.
    config: rdkafka::ClientConfig,
    tasks: HashMap<TaskId, Restoring>,
    readings: HashMap<Tp, Reading>,
    batch_records: usize,
    metrics: Metrics,
    /// Tasks found ahead of their changelogs, taken by [`take_ahead`](Self::take_ahead).
    ahead: Vec<(StreamTask, String)>,
}

impl Restorer {
    pub(crate) fn new(
        config: rdkafka::ClientConfig,
        batch_records: usize,
        metrics: Metrics,
    ) -> Result<Restorer, RuntimeError> {
        let consumer = config
            .create_with_context(LoggingContext)
            .map_err(RuntimeError::Client)?;
        Ok(Restorer {
            consumer,
            config,
            tasks: HashMap::new(),
            readings: HashMap::new(),
            batch_records: batch_records.max(1),
            restoring: GaugeShare::whole(&metrics.tasks_restoring),
            remaining: GaugeShare::whole(&metrics.restore_remaining),
            metrics,
            ahead: Vec::new(),
        })
    }

    /// Reports into one stream thread's shares of the restore gauges.
    pub(crate) fn with_shares(mut self, restoring: GaugeShare, remaining: GaugeShare) -> Self {
        self.restoring = restoring;
        self.remaining = remaining;
        self
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.tasks.is_empty()
    }

    pub(crate) fn contains(&self, id: &TaskId) -> bool {
        self.tasks.contains_key(id)
    }

    pub(crate) fn task_ids(&self) -> Vec<TaskId> {
        self.tasks.keys().copied().collect()
    }

    /// Starts restoring `task` (its state attached, not yet initialised). `committed` are
    /// the consumer group's committed offsets of the task's input partitions.
    pub(crate) fn add(
        &mut self,
        task: StreamTask,
        committed: HashMap<Tp, i64>,
    ) -> Result<(), RuntimeError> {
        let id = task.id();
        let Some(state) = task.state() else {
            return Ok(());
        };
        let changelogs = state.changelogs().map_err(RuntimeError::State)?;
        let partition = state.partition();
        // This consumer read some of these partitions before (the task ran on this thread
        // earlier): their ends cached then are stale, and an end-of-partition event names
        // no topic, so one of another changelog's partition `partition` would be judged
        // against them. An idle restorer starts over with a fresh consumer instead; a busy
        // one waits for each reading's own end (`Reading::own_end`).
        if self.tasks.is_empty()
            && changelogs
                .iter()
                .any(|(_, topic, _)| cached_watermarks(&self.consumer, topic, partition).is_some())
        {
            self.reconnect()?;
        }
        debug!(task = %id, committed = ?committed, applied = ?state.applied_positions(), "Restore filter: the group's committed input offsets, and the input positions the local state holds.");
        let mut tpl = TopicPartitionList::new();
        for (store, topic, from) in changelogs {
            let offset = from.map_or(Offset::Beginning, Offset::Offset);
            tpl.add_partition_offset(&topic, partition, offset)
                .map_err(RuntimeError::Client)?;
            info!(task = %id, topic = %topic, partition, from = ?from, "Restoring a store from its changelog.");
            let cached_before = cached_watermarks(&self.consumer, &topic, partition).map(|w| w.1);
            self.readings.insert(
                (topic, partition),
                Reading {
                    cached_before,
                    began: Instant::now(),
                    fetched: false,
                    eof_seen: false,
                    task: id,
                    store,
                    next: from,
                    from,
                    done: false,
                    batch: Vec::new(),
                    positions: HashMap::new(),
                },
            );
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(RuntimeError::Client)?;
        let now = Instant::now();
        self.tasks.insert(
            id,
            Restoring {
                task,
                committed,
                applied: 0,
                skipped: 0,
                started: now,
                last_log: now,
                ahead: None,
            },
        );
        self.restoring.set(self.tasks.len() as i64);
        Ok(())
    }

    /// Drops a task that was revoked while restoring; what it applied so far stays local.
    pub(crate) fn remove(&mut self, id: &TaskId) {
        if self.tasks.remove(id).is_none() {
            return;
        }
        self.release_readings(id);
        self.restoring.set(self.tasks.len() as i64);
    }

    /// The broker is gone: stops every restore (the tasks start over when it is back, from
    /// what they applied) so nothing is fetched when it comes back. Returns them.
    pub(crate) fn stop_all(&mut self) -> Vec<TaskId> {
        let ids = self.task_ids();
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    /// A new consumer for the restores to come: the old one's metadata may name topics the
    /// broker lost (a broker back without its data); reading those crashes librdkafka 2.12
    /// on Tansu's answer.
    pub(crate) fn reconnect(&mut self) -> Result<(), RuntimeError> {
        if !self.tasks.is_empty() {
            return Ok(());
        }
        let fresh = self
            .config
            .create_with_context(LoggingContext)
            .map_err(RuntimeError::Client)?;
        let old = std::mem::replace(&mut self.consumer, fresh);
        // Closing it may wait on the broker: not on the processing thread.
        std::thread::spawn(move || drop(old));
        Ok(())
    }

    /// Stops reading task `id`'s changelog partitions.
    fn release_readings(&mut self, id: &TaskId) {
        let tps: Vec<Tp> = self
            .readings
            .iter()
            .filter(|(_, r)| r.task == *id)
            .map(|(tp, _)| tp.clone())
            .collect();
        if tps.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &tps {
            tpl.add_partition(t, *p);
        }
        if let Err(e) = self.consumer.incremental_unassign(&tpl) {
            warn!(error = %e, "Could not unassign restored changelog partitions.");
        }
        for tp in tps {
            self.readings.remove(&tp);
        }
    }

    /// Reads and applies changelog records for up to `budget`. Returns the tasks whose
    /// stores reached the end, ready to be initialised.
    pub(crate) fn poll(&mut self, budget: Duration) -> Result<Vec<StreamTask>, RuntimeError> {
        if self.tasks.is_empty() {
            return Ok(Vec::new());
        }
        super::hooks::reach(super::hooks::Point::Restore);
        let deadline = Instant::now() + budget;
        let mut eofs = HashSet::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(left) {
                None => {}
                Some(Ok(m)) => {
                    let full = take(
                        &mut self.readings,
                        &mut self.tasks,
                        &self.metrics,
                        self.batch_records,
                        &m,
                    );
                    drop(m);
                    if let Some(tp) = full {
                        self.flush(&tp)?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    eofs.insert(p);
                }
                Some(Err(e)) => super::client::report(&e, ""),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        self.check_ends(&eofs);
        self.set_aside_ahead();
        self.flush_all()?;
        self.report();
        Ok(self.finish_done())
    }

    /// Tasks whose local state was found ahead of a changelog since the last call, with
    /// why: their stores hold what the broker no longer has. They left the restorer; the
    /// caller wipes their local state and restores them again from the beginning.
    pub(crate) fn take_ahead(&mut self) -> Vec<(StreamTask, String)> {
        std::mem::take(&mut self.ahead)
    }

    /// Moves tasks found ahead of a changelog out of the restorer, nothing of theirs
    /// applied further.
    fn set_aside_ahead(&mut self) {
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.ahead.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.release_readings(&id);
            if let Some(t) = self.tasks.remove(&id) {
                self.ahead.push((t.task, t.ahead.unwrap_or_default()));
            }
        }
        self.restoring.set(self.tasks.len() as i64);
    }

    fn flush(&mut self, tp: &Tp) -> Result<(), RuntimeError> {
        let Some(r) = self.readings.get_mut(tp) else {
            return Ok(());
        };
        let Some(next) = r.next else {
            return Ok(());
        };
        if r.batch.is_empty() && !r.done {
            return Ok(());
        }
        let Some(restoring) = self.tasks.get_mut(&r.task) else {
            return Ok(());
        };
        let batch = std::mem::take(&mut r.batch);
        let positions = std::mem::take(&mut r.positions);
        if let Some(state) = restoring.task.state_mut() {
            state
                .apply_restored(r.store, batch, next, &positions)
                .map_err(RuntimeError::State)?;
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<(), RuntimeError> {
        let tps: Vec<Tp> = self.readings.keys().cloned().collect();
        for tp in tps {
            self.flush(&tp)?;
        }
        Ok(())
    }

    fn report(&mut self) {
        let mut remaining_total = 0;
        for (id, t) in self.tasks.iter_mut() {
            let mut remaining = 0;
            for ((topic, p), r) in &self.readings {
                if r.task != *id || r.done {
                    continue;
                }
                if let Some((low, high)) = cached_watermarks(&self.consumer, topic, *p) {
                    if high >= 0 {
                        remaining += (high - r.next.unwrap_or(low.max(0))).max(0);
                    }
                }
            }
            remaining_total += remaining;
            if t.last_log.elapsed() >= Duration::from_secs(5) {
                t.last_log = Instant::now();
                let secs = t.started.elapsed().as_secs_f64().max(0.001);
                info!(
                    task = %id,
                    applied = t.applied,
                    skipped = t.skipped,
                    remaining,
                    rate = (t.applied as f64 / secs) as u64,
                    "Restoring."
                );
            }
        }
        self.remaining.set(remaining_total);
    }

    fn finish_done(&mut self) -> Vec<StreamTask> {
        let done: Vec<TaskId> = self
            .tasks
            .keys()
            .filter(|id| {
                self.readings
                    .values()
                    .filter(|r| r.task == **id)
                    .all(|r| r.done)
            })
            .copied()
            .collect();
        let mut out = Vec::new();
        for id in done {
            // `poll` flushed every reading just before, done ones included.
            self.release_readings(&id);
            if let Some(t) = self.tasks.remove(&id) {
                info!(
                    task = %id,
                    applied = t.applied,
                    skipped_uncommitted = t.skipped,
                    secs = format!("{:.2}", t.started.elapsed().as_secs_f64()),
                    "Restored."
                );
                out.push(t.task);
            }
        }
        self.restoring.set(self.tasks.len() as i64);
        out
    }
}

/// Buffers one changelog record (or counts it as skipped). Returns the partition when its
/// buffer is full and must be applied.
fn take(
    readings: &mut HashMap<Tp, Reading>,
    tasks: &mut HashMap<TaskId, Restoring>,
    metrics: &Metrics,
    batch_records: usize,
    m: &BorrowedMessage<'_>,
) -> Option<Tp> {
    let tp = (m.topic().to_string(), m.partition());
    let reading = readings.get_mut(&tp)?;
    let restoring = tasks.get_mut(&reading.task)?;
    if restoring.ahead.is_some() {
        return None;
    }
    if let Some(from) = reading.from.filter(|&from| m.offset() < from) {
        // The consumer was reset below where the local state stops: that offset is out
        // of range, the broker lost (or re-created) the changelog.
        restoring.ahead = Some(format!(
            "{}-{}: local state restored up to offset {from}, the changelog now starts over at {}",
            m.topic(),
            m.partition(),
            m.offset()
        ));
        return None;
    }
    reading.next = Some(m.offset() + 1);
    reading.fetched = true;
    let positions = m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == POSITIONS_HEADER)
            .and_then(|h| h.value)
            .and_then(decode_positions)
    });
    let keep = match &positions {
        None => true,
        Some(p) => is_committed(p, &restoring.committed),
    };
    if keep {
        if let Some(p) = positions {
            for (t, part, next) in p {
                let e = reading.positions.entry((t, part)).or_insert(next);
                *e = (*e).max(next);
            }
        }
        if let Some(k) = m.key() {
            reading
                .batch
                .push((k.to_vec(), m.payload().map(<[u8]>::to_vec)));
        }
        restoring.applied += 1;
        metrics.restore_records.inc();
    } else {
        restoring.skipped += 1;
        metrics.restore_records_skipped.inc();
        debug!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            positions = ?positions,
            "Changelog record of uncommitted input skipped."
        );
    }
    (reading.batch.len() >= batch_records).then_some(tp)
}

/// The group's committed offsets of `tpl`, as `(topic, partition) → next offset`;
/// partitions with none are left out (restore treats them as nothing committed).
pub(crate) fn committed_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: TopicPartitionList,
    timeout: Duration,
) -> Result<HashMap<Tp, i64>, RuntimeError> {
    Ok(consumer
        .committed_offsets(tpl, timeout)
        .map_err(RuntimeError::Client)?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
            _ => None,
        })
        .collect())
}
