//! A stream thread (Kafka Streams' `StreamThread`): one consumer in the group, a producer,
//! and the tasks of the partitions assigned to it. It polls, runs tasks, produces their
//! outputs, and commits input offsets only after those outputs are acknowledged.
//!
//! - `thread.rs`: the loop, one named phase per method (poll, restore, process,
//!   punctuate, maybe-commit), and shutdown;
//! - `tasks.rs`: the task manager (create, restore, start tasks; housekeeping);
//! - `output.rs`: the record collector (outputs into the producer, backpressure);
//! - `checkpoint.rs` and `commit.rs`: the checkpoint's bookkeeping and its numbered steps;
//! - `rebalance.rs`: the consumer's callbacks (assign, revoke, commit results).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::{info, warn};

use super::producer::ReplaceableProducer;
use super::restore::Restorer;
use super::RuntimeError;
use crate::config::{RuntimeSettings, StateSettings};
use crate::engine::{TaskId, Topology};
use crate::metrics::{GaugeShare, Metrics};
use crate::state::{RocksResources, StateDirectory, TaskState};

mod checkpoint;
mod commit;
mod input_end;
mod output;
mod rebalance;
mod start_gate;
mod tasks;
mod thread;

pub(crate) use start_gate::StartGate;
pub(crate) use tasks::housekeeping;
pub(crate) use thread::run_loop;

/// `exactly_once`: consecutive failed transactions after which the instance stops.
const MAX_ABORTS_IN_A_ROW: u32 = 5;

pub use crate::engine::collector::TRUNCATED_HEADER;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    /// Tasks, their restoration and the records held for them (Kafka Streams' task manager).
    tasks: tasks::TaskManager,
    /// Outputs on their way to the producer (Kafka Streams' record collector).
    collector: output::RecordCollector,
    /// Input positions, commit epochs and the commit point in flight.
    checkpoint: checkpoint::Checkpoint,
    /// An error raised inside a rebalance callback, ending the loop.
    fatal: Option<RuntimeError>,
    /// Partitions whose lag this thread reported last time.
    lag_reported: Vec<(usize, i32)>,
    /// Fetching is paused because the producer queue is full (backpressure).
    paused: bool,
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
    /// A commit point is prepared before the interval is up once the tasks' uncommitted
    /// writes hold this many bytes ([`Shared::with_write_set_limit`]).
    write_set_limit: usize,
    /// No task is created before every stream thread of the instance has its first
    /// assignment ([`Shared::with_start_gate`]).
    start: Arc<StartGate>,
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

type StreamConsumer = BaseConsumer<rebalance::StreamContext>;

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
    /// Bounds the tasks' uncommitted writes (see [`Shared::write_set_full`]): the runtime
    /// gives each thread its share of half the read cache's budget, as Kafka Streams
    /// flushes its record cache when it is full instead of waiting for the commit interval.
    pub(crate) fn with_write_set_limit(mut self, bytes: usize) -> Shared {
        self.write_set_limit = bytes;
        self
    }

    /// The gate the instance's stream threads start processing through together (by
    /// default this thread's own: open at once).
    pub(crate) fn with_start_gate(mut self, gate: Arc<StartGate>) -> Shared {
        self.start = gate;
        self
    }

    /// Whether the tasks' writes since the last commit point reached the limit.
    fn write_set_full(&self, st: &LoopState) -> bool {
        let mut bytes = 0;
        for task in st.tasks.running.values() {
            bytes += task.state().map_or(0, TaskState::uncommitted_bytes);
            if bytes >= self.write_set_limit {
                return true;
            }
        }
        false
    }

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
                tasks: tasks::TaskManager::new(restorer),
                collector: output::RecordCollector::default(),
                checkpoint: checkpoint::Checkpoint::default(),
                fatal: None,
                lag_reported: Vec::new(),
                paused: false,
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
            write_set_limit: usize::MAX,
            start: Arc::new(StartGate::new(1, std::time::Duration::ZERO)),
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
        let id = self.task_of((ti, partition));
        let st = self.lock();
        if let Some(task) = st.tasks.running.get(&id) {
            return match task.state() {
                Some(state) => state.read_raw(store, key).map(LocalRead::Value),
                None => Err(crate::state::StateError::UnknownStore(store.to_string())),
            };
        }
        if st.tasks.restorer.as_ref().is_some_and(|r| r.contains(&id)) {
            return Ok(LocalRead::Restoring {
                remaining: self.metrics.restore_remaining.get(),
            });
        }
        if st.checkpoint.partitions.contains_key(&(ti, partition)) {
            return Ok(LocalRead::Starting);
        }
        Ok(LocalRead::NotOwned)
    }

    /// Consumer lag per assigned partition: the high watermark librdkafka last saw in a fetch
    /// response (cached, no broker round trip) minus the next offset to process. Partitions
    /// no longer assigned disappear from the gauge.
    fn update_lag(&self, consumer: &StreamConsumer, st: &mut LoopState) {
        let lag = &self.metrics.consumer_lag;
        let mut reported = Vec::with_capacity(st.checkpoint.partitions.len());
        for (&(ti, partition), ps) in &st.checkpoint.partitions {
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
        for &(ti, p) in st.checkpoint.partitions.keys() {
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
        self.gauges.tasks.set(st.tasks.running.len() as i64);
        let thread = self.thread.to_string();
        for sub in 0..self.topology.subtopologies().len() {
            let n = st
                .tasks
                .running
                .keys()
                .filter(|id| id.subtopology == sub)
                .count();
            self.metrics
                .thread_tasks
                .with_label_values(&[thread.as_str(), &sub.to_string()])
                .set(n as i64);
        }
    }

    fn lock(&self) -> MutexGuard<'_, LoopState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task that input partition `p` of source `ti` belongs to.
    fn task_of(&self, (ti, p): (usize, i32)) -> TaskId {
        TaskId {
            subtopology: self.sources[ti].subtopology,
            partition: p,
        }
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.sources.iter().position(|s| &*s.name == topic)
    }

    /// The topics this thread's consumer subscribes to.
    fn source_names(&self) -> Vec<&str> {
        self.sources.iter().map(|s| &*s.name).collect()
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
            let topics = self.source_names();
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
                .tasks
                .restorer
                .as_mut()
                .map(Restorer::stop_all)
                .unwrap_or_default();
            warn!(
                restores_stopped = stopped.len(),
                "The broker does not answer: fetching paused until it does."
            );
        } else {
            if let Some(r) = st.tasks.restorer.as_mut() {
                r.reconnect()?;
            }
            if !st.paused {
                let _ = consumer.resume(&assignment);
            }
            info!("The broker answers again: fetching resumed.");
        }
        Ok(())
    }
}
