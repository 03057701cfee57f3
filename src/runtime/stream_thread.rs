//! The processing loop: one thread that polls the consumer, runs tasks, produces their
//! outputs, and commits input offsets only after those outputs are acknowledged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::client::{DeliveryContext, LoggingContext};
use super::partitioner::partition_for_key;
use super::restore::{committed_offsets, Restorer};
use super::RuntimeError;
use crate::config::{RuntimeSettings, StateSettings, StoreBackend};
use crate::engine::{
    Headers, Partitioning, Record, SinkRecord, SourcePosition, StreamTask, TaskId, Topology,
};
use crate::metrics::Metrics;
use crate::state::{
    Backend, MemoryBackend, RocksBackend, RocksResources, StateDirectory, TaskState,
};

/// `exactly_once`: consecutive failed transactions after which the instance stops.
const MAX_ABORTS_IN_A_ROW: u32 = 5;

/// Header set on a dead letter whose value was cut to fit the broker's limit.
pub const TRUNCATED_HEADER: &str = "scorestream.error.truncated";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Clone, Copy, Debug)]
struct PartitionState {
    /// Next offset to commit (last processed + 1); -1 before the first record.
    position: i64,
    /// Last committed position; -1 if none this assignment.
    committed: i64,
    /// First offset processed this assignment; where a rewind goes if nothing was committed.
    base: i64,
}

impl PartitionState {
    const NEW: PartitionState = PartitionState {
        position: -1,
        committed: -1,
        base: -1,
    };
}

/// A source topic, interned with what the loop needs per record.
struct SourceTopic {
    name: Arc<str>,
    subtopology: usize,
    consumed: prometheus::IntCounter,
}

/// Everything the loop and the rebalance callback share. Guarded by one mutex that the
/// loop holds while processing a batch and never while polling the consumer (the
/// rebalance callback runs inside `poll`).
pub(crate) struct LoopState {
    /// Running tasks (restored and initialised).
    tasks: BTreeMap<TaskId, StreamTask>,
    /// Tasks whose stores are being restored; their inputs are paused.
    restorer: Option<Restorer>,
    /// First offset fetched for a partition while its task was restoring; the partition is
    /// sought back there when the task starts.
    held: HashMap<(usize, i32), i64>,
    /// An error raised inside a rebalance callback, ending the loop.
    fatal: Option<RuntimeError>,
    /// Transactions aborted in a row (`exactly_once`); too many stop the instance.
    aborts_in_a_row: u32,
    partitions: HashMap<(usize, i32), PartitionState>,
    pending: VecDeque<SinkRecord>,
    scratch: Vec<SinkRecord>,
    failures_seen: u64,
    paused: bool,
}

/// The producer of outputs and changelogs, with what the loop must know about it.
pub(crate) struct OutputProducer {
    pub producer: BaseProducer<DeliveryContext>,
    /// Largest record the broker accepts (dead letters above it are truncated).
    pub max_message_bytes: usize,
    /// `exactly_once`: transactional, with a transaction always open.
    pub transactional: bool,
}

/// Where tasks' stores live.
pub(crate) struct StateContext {
    pub settings: StateSettings,
    /// Locked for this process; `None` with the memory backend.
    pub directory: Option<StateDirectory>,
    pub rocks: Option<RocksResources>,
    /// Handed to the loop state at start (behind a mutex only to keep `Shared` `Sync`).
    pub restorer: Mutex<Option<Restorer>>,
}

pub(crate) struct Shared {
    state: Mutex<LoopState>,
    stores: StateContext,
    producer: BaseProducer<DeliveryContext>,
    topology: Topology,
    metrics: Metrics,
    settings: RuntimeSettings,
    sources: Vec<SourceTopic>,
    partition_counts: HashMap<String, i32>,
    /// `exactly_once`: the producer is transactional and a transaction is always open.
    transactional: bool,
    max_message_bytes: usize,
}

/// Consumer callbacks: logging, and commit-before-revoke.
pub(crate) struct StreamContext {
    logging: LoggingContext,
    shared: Arc<Shared>,
}

impl ClientContext for StreamContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.logging.log(level, fac, log_message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.logging.error(error, reason)
    }
}

impl ConsumerContext for StreamContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.shared.on_revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "Rebalance error."),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.shared.on_assign(tpl);
        }
    }
}

type StreamConsumer = BaseConsumer<StreamContext>;

/// Outcome of a commit attempt.
#[derive(Debug, PartialEq, Eq)]
enum Committed {
    Nothing,
    Offsets(usize),
    Rewound,
    Failed,
}

impl Shared {
    pub(crate) fn new(
        topology: Topology,
        metrics: Metrics,
        settings: RuntimeSettings,
        producer: OutputProducer,
        partition_counts: HashMap<String, i32>,
        mut stores: StateContext,
    ) -> Shared {
        let OutputProducer {
            producer,
            max_message_bytes,
            transactional,
        } = producer;
        let restorer = stores
            .restorer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let sources = topology
            .source_topics()
            .into_iter()
            .map(|t| SourceTopic {
                subtopology: topology.subtopology_of(&t).expect("source topic"),
                consumed: metrics.records_consumed.with_label_values(&[&t]),
                name: Arc::from(t.as_str()),
            })
            .collect();
        Shared {
            stores,
            state: Mutex::new(LoopState {
                tasks: BTreeMap::new(),
                restorer,
                held: HashMap::new(),
                fatal: None,
                aborts_in_a_row: 0,
                partitions: HashMap::new(),
                pending: VecDeque::new(),
                scratch: Vec::new(),
                failures_seen: 0,
                paused: false,
            }),
            producer,
            topology,
            metrics,
            settings,
            sources,
            partition_counts,
            max_message_bytes,
            transactional,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LoopState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.sources.iter().position(|s| &*s.name == topic)
    }

    fn on_assign(&self, tpl: &TopicPartitionList) {
        self.metrics.rebalances.with_label_values(&["assign"]).inc();
        let mut st = self.lock();
        let mut added = Vec::new();
        for e in tpl.elements() {
            if let Some(i) = self.topic_index(e.topic()) {
                st.partitions
                    .entry((i, e.partition()))
                    .or_insert(PartitionState::NEW);
                added.push(format!("{}-{}", e.topic(), e.partition()));
            }
        }
        self.metrics
            .partitions_assigned
            .set(st.partitions.len() as i64);
        info!(partitions = %added.join(","), total = st.partitions.len(), "Partitions assigned.");
    }

    fn on_revoke(&self, consumer: &StreamConsumer, tpl: &TopicPartitionList) {
        self.metrics.rebalances.with_label_values(&["revoke"]).inc();
        let lost = consumer.assignment_lost();
        let mut st = self.lock();
        let revoked: Vec<(usize, i32)> = tpl
            .elements()
            .iter()
            .filter_map(|e| self.topic_index(e.topic()).map(|i| (i, e.partition())))
            .collect();
        // Tasks left with no assigned partition close; their final outputs and store
        // writes go out with the commit below, then their stores close.
        let remaining: Vec<TaskId> = st
            .partitions
            .keys()
            .filter(|k| !revoked.contains(k))
            .map(|&(i, p)| TaskId {
                subtopology: self.sources[i].subtopology,
                partition: p,
            })
            .collect();
        let closing: Vec<TaskId> = st
            .tasks
            .keys()
            .filter(|id| !remaining.contains(id))
            .copied()
            .collect();
        if let Some(r) = st.restorer.as_mut() {
            for id in r.task_ids() {
                if !remaining.contains(&id) {
                    r.remove(&id);
                    info!(task = %id, "Revoked while restoring.");
                }
            }
        }
        let now = now_ms();
        for id in &closing {
            if let Some(task) = st.tasks.get_mut(id) {
                if let Err(e) = task.close(now) {
                    warn!(task = %id, error = %e, "Task failed while closing.");
                }
            }
        }
        if lost {
            warn!(
                partitions = revoked.len(),
                "Partitions lost (session expired); not committing, the new owner reprocesses from the last commit."
            );
        } else {
            let deadline = Instant::now() + self.settings.shutdown_timeout;
            let outcome = self.commit(consumer, &mut st, deadline);
            debug!(?outcome, "Committed before revocation.");
        }
        for id in &closing {
            st.tasks.remove(id);
            if let Some(dir) = &self.stores.directory {
                dir.mark_released(*id);
            }
        }
        for k in &revoked {
            st.partitions.remove(k);
            st.held.remove(k);
        }
        self.metrics
            .partitions_assigned
            .set(st.partitions.len() as i64);
        self.metrics.tasks_assigned.set(st.tasks.len() as i64);
        info!(
            revoked = revoked.len(),
            closed_tasks = closing.len(),
            remaining = st.partitions.len(),
            "Partitions revoked."
        );
    }

    /// Runs one polled record through its task. Records of partitions no longer assigned
    /// (revoked during the poll that returned them) are skipped: the new owner has them.
    fn process_message(
        &self,
        st: &mut LoopState,
        m: &BorrowedMessage<'_>,
        now: i64,
    ) -> Result<(), RuntimeError> {
        let Some(ti) = self.topic_index(m.topic()) else {
            return Ok(());
        };
        let partition = m.partition();
        let offset = m.offset();
        let source = &self.sources[ti];
        let id = TaskId {
            subtopology: source.subtopology,
            partition,
        };
        if !st.partitions.contains_key(&(ti, partition)) {
            debug!(
                topic = m.topic(),
                partition, offset, "Skipping record of a revoked partition."
            );
            return Ok(());
        }
        if !st.tasks.contains_key(&id) {
            // Its task is restoring: come back to this record when it starts.
            let held = st.held.entry((ti, partition)).or_insert(offset);
            *held = (*held).min(offset);
            return Ok(());
        }
        let ps = st
            .partitions
            .get_mut(&(ti, partition))
            .expect("checked above");
        if ps.base < 0 {
            ps.base = offset;
        }
        ps.position = offset + 1;
        source.consumed.inc();
        let headers = match m.headers() {
            None => Headers::new(),
            Some(h) => h
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect(),
        };
        let record = Record {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: m.timestamp().to_millis().unwrap_or(now),
            source: Some(SourcePosition {
                topic: source.name.clone(),
                partition,
                offset,
            }),
        };
        let task = st.tasks.get_mut(&id).expect("checked above");
        if !task.process(&source.name, record, now)? {
            self.metrics.replayed_records_skipped.inc();
        }
        task.drain_outputs_into(&mut st.scratch);
        let mut scratch = std::mem::take(&mut st.scratch);
        for out in scratch.drain(..) {
            if st.pending.is_empty() {
                if let Some(back) = self.send(out) {
                    st.pending.push_back(back);
                }
            } else {
                st.pending.push_back(out);
            }
        }
        st.scratch = scratch;
        Ok(())
    }

    /// Enqueues one output in the producer. Gives it back when the queue is full.
    fn send(&self, out: SinkRecord) -> Option<SinkRecord> {
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
            self.producer.send(br).map_err(|(e, _)| e)
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
    fn send_pending(&self, st: &mut LoopState) -> bool {
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

    /// Flushes every output, then commits the positions of processed records. A delivery
    /// failure since the last commit rewinds instead: nothing past an unacknowledged
    /// output is ever committed.
    fn commit(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        deadline: Instant,
    ) -> Committed {
        let started = Instant::now();
        // Store writes of this batch become changelog records, produced with the outputs.
        let now = now_ms();
        {
            let st = &mut *st;
            for task in st.tasks.values_mut() {
                task.prepare_commit(now);
                task.drain_outputs_into(&mut st.scratch);
            }
            st.pending.extend(st.scratch.drain(..));
        }
        while !self.send_pending(st) {
            if Instant::now() >= deadline {
                warn!(
                    pending = st.pending.len(),
                    "Commit skipped: the producer queue stayed full."
                );
                self.metrics.commit_failures.inc();
                return Committed::Failed;
            }
            self.producer.poll(Duration::from_millis(10));
        }
        if self.transactional {
            return self.commit_transaction(consumer, st, deadline, started);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = self.producer.flush(remaining) {
            warn!(error = %e, in_flight = self.producer.in_flight_count(), "Commit skipped: outputs not acknowledged in time.");
            self.metrics.commit_failures.inc();
            return Committed::Failed;
        }
        let failures = self.producer.context().failures.load(Ordering::Relaxed);
        if failures != st.failures_seen {
            st.failures_seen = failures;
            self.rewind(consumer, st);
            return Committed::Rewound;
        }
        // Every output and changelog record is acknowledged: write each task's data and
        // input positions in one local batch, then commit the consumer offsets.
        if !self.write_local_state(st) {
            return Committed::Failed;
        }
        let (tpl, n) = self.positions_to_commit(st);
        if n == 0 {
            return Committed::Nothing;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.mark_committed(st, started, n);
                Committed::Offsets(n)
            }
            Err(e) => {
                self.metrics.commit_failures.inc();
                warn!(error = %e, partitions = n, "Offset commit failed; retrying at the next interval.");
                Committed::Failed
            }
        }
    }

    /// Writes every task's staged store batch. False (and a fatal error recorded) when the
    /// local write failed.
    fn write_local_state(&self, st: &mut LoopState) -> bool {
        let ctx = self.producer.context();
        for task in st.tasks.values_mut() {
            if let Err(e) = task.finish_commit(&|t, p| ctx.changelog_end(t, p)) {
                error!(task = %task.id(), error = %e, "Could not write local state; stopping without committing offsets (a restart restores from the changelog).");
                self.metrics.commit_failures.inc();
                st.fatal = Some(RuntimeError::State(e));
                return false;
            }
        }
        true
    }

    /// Positions processed since the last commit, and how many partitions moved.
    fn positions_to_commit(&self, st: &LoopState) -> (TopicPartitionList, usize) {
        let mut tpl = TopicPartitionList::new();
        let mut n = 0;
        for (&(ti, p), ps) in &st.partitions {
            if ps.position >= 0 && ps.position != ps.committed {
                let _ = tpl.add_partition_offset(
                    &self.sources[ti].name,
                    p,
                    Offset::Offset(ps.position),
                );
                n += 1;
            }
        }
        (tpl, n)
    }

    fn mark_committed(&self, st: &mut LoopState, started: Instant, n: usize) {
        for ps in st.partitions.values_mut() {
            if ps.position >= 0 {
                ps.committed = ps.position;
            }
        }
        self.metrics.commits.inc();
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        debug!(partitions = n, "Committed offsets.");
    }

    /// `exactly_once`: outputs, changelog records and input offsets commit in one Kafka
    /// transaction; the local store write follows the transaction's commit (a crash in
    /// between is repaired by restore, whose filter then sees the offsets committed). A
    /// failed transaction is aborted and the inputs are read again from the last commit.
    fn commit_transaction(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        deadline: Instant,
        started: Instant,
    ) -> Committed {
        let (tpl, n) = self.positions_to_commit(st);
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let result = (|| {
            if n > 0 {
                let cgm = consumer
                    .group_metadata()
                    .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
                self.producer
                    .send_offsets_to_transaction(&tpl, &cgm, remaining)?;
            }
            self.producer.commit_transaction(remaining)
        })();
        let failures = self.producer.context().failures.load(Ordering::Relaxed);
        let delivered = failures == st.failures_seen;
        st.failures_seen = failures;
        match result {
            Ok(()) if delivered => {
                st.aborts_in_a_row = 0;
                if !self.write_local_state(st) {
                    return Committed::Failed;
                }
                if n > 0 {
                    self.mark_committed(st, started, n);
                }
                if let Err(e) = self.producer.begin_transaction() {
                    error!(error = %e, "Could not begin the next transaction; stopping.");
                    st.fatal = Some(RuntimeError::Transactions(e.to_string()));
                    return Committed::Failed;
                }
                if n > 0 {
                    Committed::Offsets(n)
                } else {
                    Committed::Nothing
                }
            }
            other => {
                self.metrics.commit_failures.inc();
                if let Err(KafkaError::Transaction(e)) = &other {
                    if e.is_fatal() {
                        error!(error = %e, "Fatal transaction error (fenced by another instance with the same transactional id?); stopping.");
                        st.fatal = Some(RuntimeError::Transactions(e.to_string()));
                        return Committed::Failed;
                    }
                }
                st.aborts_in_a_row += 1;
                if st.aborts_in_a_row >= MAX_ABORTS_IN_A_ROW {
                    let why = format!(
                        "{MAX_ABORTS_IN_A_ROW} transactions in a row failed to commit (last: {})",
                        other
                            .as_ref()
                            .err()
                            .map_or_else(|| "a delivery failed".to_string(), |e| e.to_string())
                    );
                    error!(%why, "Stopping: the broker does not complete transactions.");
                    let _ = self.producer.abort_transaction(remaining);
                    st.fatal = Some(RuntimeError::Transactions(why));
                    return Committed::Failed;
                }
                warn!(result = ?other.err(), delivered, "Transaction not committed; aborting and reprocessing from the last commit.");
                if let Err(e) = self.producer.abort_transaction(remaining) {
                    error!(error = %e, "Could not abort the transaction; stopping.");
                    st.fatal = Some(RuntimeError::Transactions(e.to_string()));
                    return Committed::Failed;
                }
                self.rewind(consumer, st);
                if let Err(e) = self.producer.begin_transaction() {
                    st.fatal = Some(RuntimeError::Transactions(e.to_string()));
                    return Committed::Failed;
                }
                Committed::Rewound
            }
        }
    }

    /// After a failed delivery: drop uncommitted work and seek every partition back to its
    /// last commit, so the affected inputs are processed again (at-least-once).
    fn rewind(&self, consumer: &StreamConsumer, st: &mut LoopState) {
        self.metrics.rewinds.inc();
        st.pending.clear();
        // Dropping the tasks drops their uncommitted store writes; they are recreated (and
        // restored from what was committed) before processing goes on.
        st.tasks.clear();
        self.metrics.tasks_assigned.set(0);
        for (&(ti, p), ps) in st.partitions.iter_mut() {
            let target = if ps.committed >= 0 {
                ps.committed
            } else {
                ps.base
            };
            if target < 0 || ps.position == target {
                continue;
            }
            let topic = &self.sources[ti].name;
            match consumer.seek(topic, p, Offset::Offset(target), Duration::from_secs(10)) {
                Ok(()) => {
                    warn!(topic = %topic, partition = p, offset = target, "Rewound after a failed delivery.");
                    ps.position = if ps.committed >= 0 { ps.committed } else { -1 };
                }
                Err(e) => {
                    error!(topic = %topic, partition = p, offset = target, error = %e, "Seek failed; the group will redeliver from the last commit after the next rebalance.")
                }
            }
        }
    }
}

impl Shared {
    /// The input partitions (topic index, partition) of task `id`.
    fn task_inputs(&self, id: TaskId) -> Vec<(usize, i32)> {
        self.sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.subtopology == id.subtopology)
            .map(|(i, _)| (i, id.partition))
            .collect()
    }

    fn input_tpl(&self, inputs: &[(usize, i32)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &(i, p) in inputs {
            tpl.add_partition(&self.sources[i].name, p);
        }
        tpl
    }

    /// Creates the tasks of newly assigned partitions. Stateless ones start at once;
    /// stateful ones open their stores and, if logged, restore first with their inputs
    /// paused.
    fn ensure_tasks(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        now: i64,
    ) -> Result<(), RuntimeError> {
        let wanted: std::collections::BTreeSet<TaskId> = st
            .partitions
            .keys()
            .map(|&(i, p)| TaskId {
                subtopology: self.sources[i].subtopology,
                partition: p,
            })
            .collect();
        for id in wanted {
            let restoring = st.restorer.as_ref().is_some_and(|r| r.contains(&id));
            if st.tasks.contains_key(&id) || restoring {
                continue;
            }
            let mut task = StreamTask::new(&self.topology, id.subtopology, id.partition);
            let specs = self.topology.store_specs(id.subtopology);
            if specs.is_empty() {
                task.init(now)?;
                st.tasks.insert(id, task);
                info!(task = %id, "Task created.");
                continue;
            }
            let backend: Box<dyn Backend> = match (&self.stores.directory, &self.stores.rocks) {
                (Some(dir), Some(rocks))
                    if self.stores.settings.backend == StoreBackend::Rocksdb =>
                {
                    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
                    Box::new(
                        RocksBackend::open(&dir.task_path(id), &names, rocks)
                            .map_err(RuntimeError::State)?,
                    )
                }
                _ => Box::new(MemoryBackend::new(specs.len())),
            };
            let state =
                TaskState::open(backend, &specs, id.partition).map_err(RuntimeError::State)?;
            task.attach_state(state);
            let logged = specs.iter().any(|s| s.changelog.is_some());
            let Some(restorer) = st.restorer.as_mut().filter(|_| logged) else {
                task.init(now)?;
                st.tasks.insert(id, task);
                info!(task = %id, "Task created (stores not logged).");
                continue;
            };
            let inputs = self.task_inputs(id);
            let tpl = self.input_tpl(&inputs);
            if let Err(e) = consumer.pause(&tpl) {
                debug!(task = %id, error = %e, "Pause before restore failed.");
            }
            let committed = committed_offsets(consumer, tpl, Duration::from_secs(30))?;
            restorer.add(task, committed)?;
        }
        self.metrics.tasks_assigned.set(st.tasks.len() as i64);
        Ok(())
    }

    /// Restores for up to `budget`; starts the tasks that are done and resumes their inputs
    /// where they were held.
    fn drive_restore(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        budget: Duration,
    ) -> Result<(), RuntimeError> {
        let Some(restorer) = st.restorer.as_mut() else {
            return Ok(());
        };
        if restorer.is_idle() {
            return Ok(());
        }
        let done = restorer.poll(budget)?;
        let now = now_ms();
        for mut task in done {
            let id = task.id();
            task.init(now)?;
            st.tasks.insert(id, task);
            let inputs = self.task_inputs(id);
            for &(i, p) in &inputs {
                if let Some(offset) = st.held.remove(&(i, p)) {
                    if let Err(e) = consumer.seek(
                        &self.sources[i].name,
                        p,
                        Offset::Offset(offset),
                        Duration::from_secs(10),
                    ) {
                        warn!(topic = %self.sources[i].name, partition = p, offset, error = %e, "Seek after restore failed.");
                    }
                }
            }
            if !st.paused {
                let tpl = self.input_tpl(&inputs);
                if let Err(e) = consumer.resume(&tpl) {
                    warn!(task = %id, error = %e, "Resume after restore failed.");
                }
            }
            info!(task = %id, "Task running.");
        }
        self.metrics.tasks_assigned.set(st.tasks.len() as i64);
        Ok(())
    }

    /// Periodic housekeeping: store size metrics and removal of stale task directories.
    fn housekeeping(&self, st: &LoopState) {
        let mut sizes: HashMap<&str, u64> = HashMap::new();
        for task in st.tasks.values() {
            if let Some(state) = task.state() {
                for (name, n) in state.approximate_sizes() {
                    *sizes.entry(name).or_default() += n;
                }
            }
        }
        for (name, n) in sizes {
            self.metrics
                .store_keys
                .with_label_values(&[name])
                .set(n as i64);
        }
        if let Some(dir) = &self.stores.directory {
            let mut owned: std::collections::HashSet<TaskId> = st.tasks.keys().copied().collect();
            if let Some(r) = &st.restorer {
                owned.extend(r.task_ids());
            }
            dir.clean_stale(&owned, self.stores.settings.cleanup_delay);
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

/// Runs the loop until `shutdown` is set or a task fails.
pub(crate) fn run_loop(
    shared: Arc<Shared>,
    consumer_config: rdkafka::ClientConfig,
    shutdown: Arc<AtomicBool>,
) -> Result<(), RuntimeError> {
    let context = StreamContext {
        logging: LoggingContext::default(),
        shared: shared.clone(),
    };
    let consumer: StreamConsumer = consumer_config
        .create_with_context(context)
        .map_err(RuntimeError::Client)?;
    let topics: Vec<&str> = shared.sources.iter().map(|s| &*s.name).collect();
    consumer.subscribe(&topics).map_err(RuntimeError::Client)?;
    info!(topics = %topics.join(","), "Subscribed; waiting for partitions.");

    let commit_interval = shared.settings.commit_interval;
    let mut last_commit = Instant::now();
    let mut last_punctuate = Instant::now();
    let mut last_housekeeping = Instant::now();
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(1024);
    let result = loop {
        if shutdown.load(Ordering::Relaxed) {
            break Ok(());
        }
        let backlogged = {
            let mut st = shared.lock();
            let clear = shared.send_pending(&mut st);
            if !clear && !st.paused {
                shared.metrics.backpressure_waits.inc();
                if let Ok(a) = consumer.assignment() {
                    let _ = consumer.pause(&a);
                }
                st.paused = true;
                debug!(
                    pending = st.pending.len(),
                    "Producer queue full; pausing fetches."
                );
            } else if clear && st.paused {
                if let Ok(a) = consumer.assignment() {
                    let _ = consumer.resume(&a);
                }
                st.paused = false;
            }
            !clear
        };
        if backlogged {
            shared.producer.poll(Duration::from_millis(10));
        }
        let wait = if backlogged {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        match consumer.poll(wait) {
            None => {}
            Some(Err(e)) => warn!(error = %e, "Consumer error."),
            Some(Ok(m)) => {
                batch.push(m);
                while batch.len() < 1024 {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => batch.push(m),
                        Some(Err(e)) => {
                            warn!(error = %e, "Consumer error.");
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        {
            let now = now_ms();
            let mut st = shared.lock();
            if let Err(e) = shared.ensure_tasks(&consumer, &mut st, now) {
                error!(error = %e, "Could not create tasks; stopping.");
                break Err(e);
            }
            let budget = if batch.is_empty() {
                Duration::from_millis(50)
            } else {
                Duration::from_millis(5)
            };
            if let Err(e) = shared.drive_restore(&consumer, &mut st, budget) {
                error!(error = %e, "Restore failed; stopping.");
                break Err(e);
            }
        }
        if !batch.is_empty() {
            let now = now_ms();
            let mut st = shared.lock();
            let mut failed = None;
            for m in batch.drain(..) {
                if let Err(e) = shared.process_message(&mut st, &m, now) {
                    error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "Task failed; stopping.");
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
        }
        shared.producer.poll(Duration::ZERO);
        if last_punctuate.elapsed() >= Duration::from_millis(100) {
            last_punctuate = Instant::now();
            let now = now_ms();
            let mut st = shared.lock();
            let st = &mut *st;
            let mut failed = None;
            for task in st.tasks.values_mut() {
                if let Err(e) = task.punctuate_wall_clock(now) {
                    failed = Some(e);
                    break;
                }
                task.drain_outputs_into(&mut st.scratch);
            }
            st.pending.extend(st.scratch.drain(..));
            if let Some(e) = failed {
                break Err(e.into());
            }
        }
        if last_commit.elapsed() >= commit_interval {
            last_commit = Instant::now();
            let mut st = shared.lock();
            let deadline = Instant::now() + commit_interval.max(Duration::from_secs(5));
            shared.commit(&consumer, &mut st, deadline);
        }
        if last_housekeeping.elapsed() >= Duration::from_secs(10) {
            last_housekeeping = Instant::now();
            shared.housekeeping(&shared.lock());
        }
        if let Some(e) = shared.lock().fatal.take() {
            break Err(e);
        }
    };
    shutdown_sequence(&shared, &consumer, result.is_ok());
    drop(consumer);
    info!("Left the consumer group.");
    result
}

/// Stop fetching, close tasks, flush, commit, leave the group — within the shutdown timeout.
fn shutdown_sequence(shared: &Shared, consumer: &StreamConsumer, clean: bool) {
    let deadline = Instant::now() + shared.settings.shutdown_timeout;
    let mut st = shared.lock();
    if clean {
        let now = now_ms();
        // Close in place: the commit below still writes the tasks' final store batches.
        for (id, task) in st.tasks.iter_mut() {
            if let Err(e) = task.close(now) {
                warn!(task = %id, error = %e, "Task failed while closing.");
            }
        }
        match shared.commit(consumer, &mut st, deadline) {
            Committed::Failed => warn!("Shutdown: final commit failed; uncommitted inputs will be reprocessed by the next owner."),
            outcome => info!(?outcome, "Shutdown: final commit done."),
        }
    } else if shared.transactional {
        // Nothing of the failed transaction may become visible.
        let _ = shared
            .producer
            .abort_transaction(deadline.saturating_duration_since(Instant::now()));
    } else {
        // Do not commit after a failure, but do not leave acknowledged work unsent either.
        let _ = shared
            .producer
            .flush(deadline.saturating_duration_since(Instant::now()));
    }
    st.partitions.clear();
    for id in std::mem::take(&mut st.tasks).into_keys() {
        if let Some(dir) = &shared.stores.directory {
            dir.mark_released(id);
        }
    }
    st.restorer = None;
    drop(st);
    consumer.unsubscribe();
}
