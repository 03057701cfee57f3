//! The processing loop: one thread that polls the consumer, runs tasks, produces their
//! outputs, and commits input offsets only after those outputs are acknowledged.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::client::LoggingContext;
use super::producer::ReplaceableProducer;
use super::restore::Restorer;
use super::RuntimeError;
use crate::config::{RuntimeSettings, StateSettings};
use crate::engine::{Headers, Record, SinkRecord, SourcePosition, StreamTask, TaskId, Topology};
use crate::metrics::{GaugeShare, Metrics};
use crate::state::{RocksResources, StateDirectory};

mod commit;
mod input_end;
mod output;
mod tasks;

pub(crate) use tasks::housekeeping;

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
    /// Outputs waiting for room in the producer, with their commit epoch.
    pending: VecDeque<(u64, SinkRecord)>,
    /// The commit epoch of outputs produced now (see `runtime::acks`).
    epoch: u64,
    /// The prepared commit point waiting for its acknowledgements, if any.
    in_flight: Option<commit::CommitPoint>,
    /// Partitions whose lag this thread reported last time.
    lag_reported: Vec<(usize, i32)>,
    scratch: Vec<SinkRecord>,
    failures_seen: u64,
    paused: bool,
    /// Creating tasks failed on a transient client error: when to try again.
    create_backoff: super::retry::Backoff,
    /// The broker does not answer (`runtime::watch`): fetching is paused, no task starts.
    outage: bool,
    /// `scorestream_topics_recreated_total` when this thread last (re)subscribed.
    topics_recreated: u64,
}

/// The producer of outputs and changelogs, with what the loop must know about it.
pub(crate) struct OutputProducer {
    pub producer: ReplaceableProducer,
    /// Largest record the broker accepts (dead letters above it are truncated).
    pub max_message_bytes: usize,
    /// `exactly_once`: transactional, with a transaction always open.
    pub transactional: bool,
}

/// Where tasks' stores live.
pub(crate) struct StateContext {
    pub settings: StateSettings,
    /// Locked for this process (shared by its stream threads); `None` with the memory
    /// backend.
    pub directory: Option<Arc<StateDirectory>>,
    pub rocks: Option<RocksResources>,
    /// Read caches of every store of every task draw on this.
    pub cache: Arc<crate::state::CacheBudget>,
    /// Handed to the loop state at start (behind a mutex only to keep `Shared` `Sync`).
    pub restorer: Mutex<Option<Restorer>>,
}

/// One stream thread's shares of the instance-wide gauges.
pub(crate) struct ThreadGauges {
    pub tasks: GaugeShare,
    pub partitions: GaugeShare,
    pub waiting: GaugeShare,
    pub pending: GaugeShare,
}

impl ThreadGauges {
    /// The shares of `threads` stream threads.
    pub(crate) fn split(metrics: &Metrics, threads: usize) -> Vec<ThreadGauges> {
        let mut tasks = GaugeShare::split(&metrics.tasks_assigned, threads).into_iter();
        let mut partitions = GaugeShare::split(&metrics.partitions_assigned, threads).into_iter();
        let mut waiting = GaugeShare::split(&metrics.tasks_waiting, threads).into_iter();
        let mut pending = GaugeShare::split(&metrics.pending_outputs, threads).into_iter();
        (0..threads.max(1))
            .map(|_| ThreadGauges {
                tasks: tasks.next().expect("one per thread"),
                partitions: partitions.next().expect("one per thread"),
                waiting: waiting.next().expect("one per thread"),
                pending: pending.next().expect("one per thread"),
            })
            .collect()
    }
}

/// One stream thread: its loop state (shared with the rebalance callback and interactive
/// queries), producer, and what it knows of the topology.
impl StateContext {
    /// The same directory, RocksDB resources and cache budget, for a stream thread with
    /// its own restorer.
    pub(crate) fn for_thread(&self, restorer: Option<Restorer>) -> StateContext {
        StateContext {
            settings: self.settings.clone(),
            directory: self.directory.clone(),
            rocks: self.rocks.clone(),
            cache: self.cache.clone(),
            restorer: Mutex::new(restorer),
        }
    }
}

pub(crate) struct Shared {
    /// This thread's number in the instance (0-based), for logs and ids.
    thread: usize,
    gauges: ThreadGauges,
    state: Mutex<LoopState>,
    stores: StateContext,
    producer: ReplaceableProducer,
    topology: Topology,
    metrics: Metrics,
    settings: RuntimeSettings,
    sources: Vec<SourceTopic>,
    partition_counts: HashMap<String, i32>,
    /// `exactly_once`: the producer is transactional and a transaction is always open.
    transactional: bool,
    max_message_bytes: usize,
    /// Tells the other instances which partitions this one owns (interactive queries).
    announcer: Option<super::registry::Announcer>,
    /// An asynchronous offset commit failed: the next commit point commits every position.
    recommit: AtomicBool,
}

/// What a local read of a task's store found.
#[derive(Debug, PartialEq, Eq)]
pub enum LocalRead {
    /// The task runs here: the value (`None`: no such key).
    Value(Option<Vec<u8>>),
    /// The task is assigned here and is restoring its stores; records still to restore
    /// across all restoring tasks.
    Restoring { remaining: i64 },
    /// The partition is assigned here but its task has not started yet.
    Starting,
    /// Another instance (or none) owns the partition.
    NotOwned,
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
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.shared.metrics.kafka.record(&statistics)
    }
}

impl ConsumerContext for StreamContext {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        if let Err(e) = result {
            self.shared.offset_commit_failed(&e, offsets.count());
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.shared.on_revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "Rebalance error."),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.shared.on_assign(tpl);
            // A partition paused before it was lost (an outage, backpressure) comes back
            // paused: librdkafka keeps the flag. Fetch it unless fetching is paused now.
            let st = self.shared.lock();
            if !st.paused && !st.outage {
                let _ = consumer.resume(tpl);
            }
        }
    }
}

type StreamConsumer = BaseConsumer<StreamContext>;

/// Outcome of a commit attempt.
#[derive(Debug, PartialEq, Eq)]
enum Committed {
    Nothing,
    Offsets(usize),
    /// A commit point waits for acknowledgements.
    Pending,
    Rewound,
    Failed,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        thread: usize,
        gauges: ThreadGauges,
        topology: Topology,
        metrics: Metrics,
        settings: RuntimeSettings,
        producer: OutputProducer,
        partition_counts: HashMap<String, i32>,
        mut stores: StateContext,
        announcer: Option<super::registry::Announcer>,
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
            thread,
            gauges,
            stores,
            state: Mutex::new(LoopState {
                tasks: BTreeMap::new(),
                restorer,
                held: HashMap::new(),
                fatal: None,
                aborts_in_a_row: 0,
                partitions: HashMap::new(),
                pending: VecDeque::new(),
                epoch: 0,
                in_flight: None,
                lag_reported: Vec::new(),
                scratch: Vec::new(),
                failures_seen: 0,
                paused: false,
                create_backoff: Default::default(),
                outage: false,
                topics_recreated: metrics.topics_recreated.get(),
            }),
            producer,
            topology,
            metrics,
            settings,
            sources,
            partition_counts,
            max_message_bytes,
            transactional,
            announcer,
            recommit: AtomicBool::new(false),
        }
    }

    /// Partitions of `topic` (as the broker listed them at start-up).
    pub(crate) fn partition_count(&self, topic: &str) -> Option<i32> {
        self.partition_counts.get(topic).copied()
    }

    /// Reads `key` (encoded) from `store` of the task owning `partition` of source
    /// `topic`, if this instance runs it. Waits for the batch being processed.
    pub(crate) fn read_local(
        &self,
        topic: &str,
        partition: i32,
        store: &str,
        key: &[u8],
    ) -> Result<LocalRead, crate::state::StateError> {
        let Some(ti) = self.topic_index(topic) else {
            return Ok(LocalRead::NotOwned);
        };
        let id = TaskId {
            subtopology: self.sources[ti].subtopology,
            partition,
        };
        let st = self.lock();
        if let Some(task) = st.tasks.get(&id) {
            return match task.state() {
                Some(state) => state.read_raw(store, key).map(LocalRead::Value),
                None => Err(crate::state::StateError::UnknownStore(store.to_string())),
            };
        }
        if st.restorer.as_ref().is_some_and(|r| r.contains(&id)) {
            return Ok(LocalRead::Restoring {
                remaining: self.metrics.restore_remaining.get(),
            });
        }
        if st.partitions.contains_key(&(ti, partition)) {
            return Ok(LocalRead::Starting);
        }
        Ok(LocalRead::NotOwned)
    }

    /// Consumer lag per assigned partition: the high watermark librdkafka last saw in a fetch
    /// response (cached, no broker round trip) minus the next offset to process. Partitions
    /// no longer assigned disappear from the gauge.
    fn update_lag(&self, consumer: &StreamConsumer, st: &mut LoopState) {
        let lag = &self.metrics.consumer_lag;
        let mut reported = Vec::with_capacity(st.partitions.len());
        for (&(ti, partition), ps) in &st.partitions {
            let topic = &*self.sources[ti].name;
            // librdkafka's cached watermarks (no broker request), as restore reads them.
            let Some((_, high)) = super::restore::cached_watermarks(consumer, topic, partition)
            else {
                continue;
            };
            if high < 0 {
                continue;
            }
            let next = if ps.position >= 0 {
                ps.position
            } else {
                ps.committed.max(0)
            };
            lag.with_label_values(&[topic, &partition.to_string()])
                .set((high - next).max(0));
            reported.push((ti, partition));
        }
        // Partitions this thread no longer owns leave the gauge (other threads' stay).
        for &(ti, partition) in &st.lag_reported {
            if !reported.contains(&(ti, partition)) {
                let _ = lag.remove_label_values(&[&*self.sources[ti].name, &partition.to_string()]);
            }
        }
        st.lag_reported = reported;
    }

    /// Sends the current assignment to the instance registry.
    fn announce(&self, st: &LoopState) {
        let Some(announcer) = &self.announcer else {
            return;
        };
        let mut assignment = super::registry::Assignment::new();
        for &(ti, p) in st.partitions.keys() {
            assignment
                .entry(self.sources[ti].name.to_string())
                .or_default()
                .push(p);
        }
        for ps in assignment.values_mut() {
            ps.sort_unstable();
        }
        announcer.announce(assignment);
    }

    /// Publishes how many tasks this thread runs, in total and per sub-topology.
    fn report_tasks(&self, st: &LoopState) {
        self.gauges.tasks.set(st.tasks.len() as i64);
        let thread = self.thread.to_string();
        for sub in 0..self.topology.subtopologies().len() {
            let n = st.tasks.keys().filter(|id| id.subtopology == sub).count();
            self.metrics
                .thread_tasks
                .with_label_values(&[thread.as_str(), &sub.to_string()])
                .set(n as i64);
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
        self.gauges.partitions.set(st.partitions.len() as i64);
        self.announce(&st);
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
        self.gauges.partitions.set(st.partitions.len() as i64);
        self.report_tasks(&st);
        self.announce(&st);
        info!(
            revoked = revoked.len(),
            closed_tasks = closing.len(),
            remaining = st.partitions.len(),
            "Partitions revoked."
        );
    }

    /// While the broker does not answer, nothing is fetched and no restore runs: a broker
    /// that comes back without its data must not be asked for partitions it lost (Tansu
    /// answers with a leader hint that crashes librdkafka 2.12), and the group re-assigns
    /// the partitions anyway. When it answers again, fetching resumes and tasks start over.
    fn follow_outage(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
    ) -> Result<(), RuntimeError> {
        let recreated = self.metrics.topics_recreated.get();
        if recreated != st.topics_recreated {
            // An assignment made while the broker lacked them holds none of their
            // partitions, and nothing else makes the group assign again: rejoin.
            st.topics_recreated = recreated;
            let topics: Vec<&str> = self.sources.iter().map(|s| &*s.name).collect();
            info!(topics = %topics.join(","), "Topics were created again: rejoining the group so that their partitions are assigned.");
            consumer.subscribe(&topics).map_err(RuntimeError::Client)?;
        }
        let down = self.metrics.broker_reachable.get() == 0;
        if down == st.outage {
            return Ok(());
        }
        st.outage = down;
        let assignment = consumer.assignment().map_err(RuntimeError::Client)?;
        if down {
            let _ = consumer.pause(&assignment);
            let stopped = st
                .restorer
                .as_mut()
                .map(Restorer::stop_all)
                .unwrap_or_default();
            warn!(
                restores_stopped = stopped.len(),
                "The broker does not answer: fetching paused until it does."
            );
        } else {
            if let Some(r) = st.restorer.as_mut() {
                r.reconnect()?;
            }
            if !st.paused {
                let _ = consumer.resume(&assignment);
            }
            info!("The broker answers again: fetching resumed.");
        }
        Ok(())
    }

    /// A record below the task's stored position is a replay (skipped) only if the
    /// partition still reaches that position. When the partition's end (from the fetch
    /// that brought the record) is below it, the broker lost the partition or it was
    /// re-created: its records are new and must be processed, never skipped.
    fn check_replay(
        &self,
        consumer: &StreamConsumer,
        task: &mut StreamTask,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        let Some(state) = task.state_mut() else {
            return;
        };
        let Some(next) = state.applied_next(topic, partition) else {
            return;
        };
        if offset >= next {
            return;
        }
        let Some((_, high)) = super::restore::cached_watermarks(consumer, topic, partition) else {
            return;
        };
        if high >= next {
            return;
        }
        state.forget_applied(topic, partition);
        self.metrics
            .state_ahead_of_broker
            .with_label_values(&["input"])
            .inc();
        error!(task = %task.id(), topic, partition, stored_position = next, partition_end = high, "Local state is ahead of an input partition: the broker lost it or it was re-created. Its records are processed as new ones, not skipped as replays.");
    }

    /// Runs one polled record through its task. Records of partitions no longer assigned
    /// (revoked during the poll that returned them) are skipped: the new owner has them.
    fn process_message(
        &self,
        consumer: &StreamConsumer,
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
        let record_time = record.timestamp;
        let task = st.tasks.get_mut(&id).expect("checked above");
        self.check_replay(consumer, task, &source.name, partition, offset);
        let started = Instant::now();
        if !task.process(&source.name, record, now)? {
            self.metrics.replayed_records_skipped.inc();
        }
        self.metrics
            .record_process_seconds
            .observe(started.elapsed().as_secs_f64());
        task.drain_outputs_into(&mut st.scratch);
        let app = self.topology.application_id();
        for out in &st.scratch {
            if crate::metrics::latency::is_output_topic(&out.topic, app) {
                let m = &self.metrics.latency;
                m.observe_e2e(now, out.record.timestamp, record_time);
            }
        }
        self.collect_scratch(st);
        Ok(())
    }
}

/// Runs the loop until `shutdown` is set or a task fails.
pub(crate) fn run_loop(
    shared: Arc<Shared>,
    consumer_config: rdkafka::ClientConfig,
    shutdown: Arc<AtomicBool>,
) -> Result<(), RuntimeError> {
    // Every line this thread logs says which thread it is.
    let _span = tracing::info_span!("stream_thread", thread = shared.thread).entered();
    let context = StreamContext {
        logging: LoggingContext,
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
    let mut last_lag = Instant::now();
    // Partitions sought back during this iteration (see `drive_restore`).
    let mut stale: std::collections::HashSet<(usize, i32)> = std::collections::HashSet::new();
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(1024);
    let mut undecodable = super::undecodable::UndecodableWatch::default();
    let mut input_ends = input_end::InputEnds::default();
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
                if let Some(a) = consumer.assignment().ok().filter(|_| !st.outage) {
                    let _ = consumer.resume(&a);
                }
                st.paused = false;
            }
            !clear
        };
        if backlogged {
            shared.producer.poll(Duration::from_millis(10));
        }
        if let Err(e) = shared.follow_outage(&consumer, &mut shared.lock()) {
            break Err(e);
        }
        shared.renew_forgotten_producer();
        let wait = if backlogged {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        let mut consumer_error = |e: KafkaError| {
            if !undecodable.on_error(&e, &shared.metrics, Instant::now()) {
                super::client::report(&e, "");
            }
        };
        match consumer.poll(wait) {
            None => {}
            Some(Err(e)) => consumer_error(e),
            Some(Ok(m)) => {
                batch.push(m);
                while batch.len() < 1024 {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => batch.push(m),
                        Some(Err(e)) => {
                            consumer_error(e);
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        undecodable.tick(&shared.metrics, Instant::now());
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
            match shared.drive_restore(&consumer, &mut st, budget) {
                Ok(sought) => {
                    stale.extend(sought);
                    shared.update_waiting(&st);
                }
                Err(e) => {
                    error!(error = %e, "Restore failed; stopping.");
                    break Err(e);
                }
            }
        }
        if !batch.is_empty() {
            let now = now_ms();
            let mut st = shared.lock();
            let mut failed = None;
            for m in batch.drain(..) {
                // Polled before its partition was sought back to held records: it comes
                // again, in order, after them.
                if !stale.is_empty()
                    && shared
                        .topic_index(m.topic())
                        .is_some_and(|i| stale.contains(&(i, m.partition())))
                {
                    continue;
                }
                if let Err(e) = shared.process_message(&consumer, &mut st, &m, now) {
                    error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "Task failed; stopping.");
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
        }
        // Only the batch polled before a seek is stale; later polls come after it.
        stale.clear();
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
            shared.collect_scratch(st);
            if let Some(e) = failed {
                break Err(e.into());
            }
        }
        if shared.transactional {
            if last_commit.elapsed() >= commit_interval {
                last_commit = Instant::now();
                let mut st = shared.lock();
                let deadline = Instant::now() + commit_interval.max(Duration::from_secs(5));
                shared.commit(&consumer, &mut st, deadline);
            }
        } else {
            let due = last_commit.elapsed() >= commit_interval;
            let mut st = shared.lock();
            let in_flight = st.in_flight.is_some();
            shared.maybe_commit(&consumer, &mut st, due);
            if due && !in_flight {
                last_commit = Instant::now();
            }
        }
        if last_lag.elapsed() >= Duration::from_secs(2) {
            last_lag = Instant::now();
            shared.update_lag(&consumer, &mut shared.lock());
        }
        input_ends.check(&shared, &consumer, &mut shared.lock());
        if let Some(e) = shared.lock().fatal.take() {
            break Err(e);
        }
    };
    shutdown_sequence(&shared, &consumer, result.is_ok());
    close_consumer(
        consumer,
        shared
            .settings
            .shutdown_timeout
            .min(Duration::from_secs(10)),
    );
    result
}

/// Leaves the group, for at most `timeout`. librdkafka's close waits for the group
/// coordinator to answer and can wait forever while the broker is down (seen with two
/// stream threads' consumers in one process); then the member is left to expire with its
/// session, and shutdown stays bounded.
fn close_consumer(consumer: StreamConsumer, timeout: Duration) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let closing = std::thread::Builder::new()
        .name("scorestream-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = done_tx.send(());
        });
    if closing.is_err() {
        warn!("Could not start closing the consumer; leaving the group to the session timeout.");
        return;
    }
    match done_rx.recv_timeout(timeout.max(Duration::from_secs(1))) {
        Ok(()) => info!("Left the consumer group."),
        Err(_) => warn!(
            ?timeout,
            "The consumer did not leave the group in time (is the broker down?); the group drops this member after its session timeout."
        ),
    }
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
