//! Task lifecycle: creating tasks for assigned partitions, restoring stateful ones before
//! they run, and periodic housekeeping of their stores.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::{now_ms, LoopState, Shared, StreamConsumer};
use crate::config::StoreBackend;
use crate::engine::{StreamTask, TaskId};
use crate::runtime::client::due;
use crate::runtime::hooks::{self, Point};
use crate::runtime::restore::committed_offsets;
use crate::runtime::restore::Restorer;
use crate::runtime::retry::{is_transient, Backoff, MAX_DELAY};
use crate::runtime::RuntimeError;
use crate::state::store::StoreSpec;
use crate::state::{Backend, MemoryBackend, RocksBackend, TaskState};

/// Committed input offsets by topic and partition, where a restored task starts.
type InputOffsets = HashMap<(String, i32), i64>;

/// The tasks of one stream thread (the data of Kafka Streams' `TaskManager`; creating,
/// restoring and closing them are the methods below and the rebalance callbacks).
pub(super) struct TaskManager {
    /// Running tasks (restored and initialised).
    pub running: BTreeMap<TaskId, StreamTask>,
    /// Tasks whose stores are being restored; their inputs are paused.
    pub restorer: Option<Restorer>,
    /// First offset fetched for a partition while its task did not run (restoring, or not
    /// yet created during an outage or a creation backoff); the partition is sought back
    /// there when the task starts, whichever way it starts.
    pub held: HashMap<(usize, i32), i64>,
    /// Creating tasks failed on a transient client error: when to try again.
    pub create_backoff: Backoff,
}

impl TaskManager {
    pub fn new(restorer: Option<Restorer>) -> TaskManager {
        TaskManager {
            running: BTreeMap::new(),
            restorer,
            held: HashMap::new(),
            create_backoff: Backoff::default(),
        }
    }

    /// Whether task `id` is assigned here and runs or restores.
    pub fn owns(&self, id: &TaskId) -> bool {
        self.running.contains_key(id) || self.restorer.as_ref().is_some_and(|r| r.contains(id))
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

    /// Creates the tasks of newly assigned partitions, once the instance's stream threads
    /// start together ([`StartGate`](super::StartGate)). Stateless ones start at once;
    /// stateful ones open their stores and, if logged, restore first with their inputs
    /// paused. Returns the input partitions sought back to held records (see
    /// [`Shared::start_task`]).
    pub(super) fn ensure_tasks(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        now: i64,
    ) -> Result<Vec<(usize, i32)>, RuntimeError> {
        let mut sought = Vec::new();
        if !st.tasks.create_backoff.due()
            || st.outage
            || hooks::task_creation_deferred()
            || !self.start.is_open()
        {
            return Ok(sought);
        }
        for id in self.assigned_tasks(st) {
            if st.tasks.owns(&id) {
                continue;
            }
            let mut task = StreamTask::new(&self.topology, id.subtopology, id.partition);
            let counters = &self.metrics.processor_records;
            task.count_processed(|name| counters.with_label_values(&[name]));
            let specs = self.topology.store_specs(id.subtopology);
            if specs.is_empty() {
                sought.extend(self.start_task(consumer, st, task, now)?);
                info!(task = %id, "Task created.");
                continue;
            }
            let state = self.open_task_state(id, &specs)?;
            task.attach_state(state);
            let logged = specs.iter().any(|s| s.changelog.is_some());
            if st.tasks.restorer.is_none() || !logged {
                sought.extend(self.start_task(consumer, st, task, now)?);
                info!(task = %id, "Task created (stores not logged).");
                continue;
            }
            let Some(committed) = self.before_restore(consumer, st, id, &specs)? else {
                break;
            };
            st.tasks.create_backoff.succeeded();
            if let Some(restorer) = st.tasks.restorer.as_mut() {
                restorer.add(task, committed)?;
            }
        }
        self.report_tasks(st);
        Ok(sought)
    }

    /// The tasks of the partitions assigned to this thread.
    fn assigned_tasks(&self, st: &LoopState) -> std::collections::BTreeSet<TaskId> {
        st.checkpoint
            .partitions
            .keys()
            .map(|&tp| self.task_of(tp))
            .collect()
    }

    /// Opens task `id`'s stores: RocksDB under the state directory when configured, else
    /// in memory; reads go through the thread's share of the read cache.
    fn open_task_state(&self, id: TaskId, specs: &[StoreSpec]) -> Result<TaskState, RuntimeError> {
        let backend: Box<dyn Backend> = match (&self.stores.directory, &self.stores.rocks) {
            (Some(dir), Some(rocks)) if self.stores.settings.backend == StoreBackend::Rocksdb => {
                let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
                Box::new(
                    RocksBackend::open(&dir.task_path(id), &names, rocks)
                        .map_err(RuntimeError::State)?,
                )
            }
            _ => Box::new(MemoryBackend::new(specs.len())),
        };
        TaskState::open_with_cache(backend, specs, id.partition, self.stores.cache.clone())
            .map_err(RuntimeError::State)
    }

    /// Readies task `id` for its restore: forgets its changelogs' known ends, pauses its
    /// inputs, reads their committed offsets and checks its changelogs exist. `None` when
    /// the broker is not ready for it: creating tasks backs off.
    fn before_restore(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        id: TaskId,
        specs: &[StoreSpec],
    ) -> Result<Option<InputOffsets>, RuntimeError> {
        for topic in specs.iter().filter_map(|s| s.changelog.as_deref()) {
            self.producer
                .context()
                .forget_changelog_end(topic, id.partition);
        }
        let inputs = self.task_inputs(id);
        let tpl = self.input_tpl(&inputs);
        if let Err(e) = consumer.pause(&tpl) {
            debug!(task = %id, error = %e, "Pause before restore failed.");
        }
        hooks::reach(Point::CreateTask);
        // A broker restarting or a coordinator moving makes this fail for a while:
        // the task is dropped (its stores close) and created again after a backoff.
        let committed = match committed_offsets(consumer, tpl, Duration::from_secs(5)) {
            Ok(c) => c,
            Err(RuntimeError::Client(e)) if is_transient(&e) => {
                let wait = st.tasks.create_backoff.failed();
                if st.tasks.create_backoff.failures() == 1 || wait == MAX_DELAY {
                    warn!(task = %id, error = %e, failures = st.tasks.create_backoff.failures(), retry_in = ?wait, "Could not read the committed offsets of a new task; retrying.");
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // A broker that lost its data comes back without the changelogs until they are
        // created again (runtime::watch); restoring waits for them. (Reading a topic
        // Tansu does not know also crashes librdkafka 2.12: Tansu's answer carries a
        // leader hint with no topic name or id.)
        let changelogs: Vec<&str> = specs
            .iter()
            .filter_map(|s| s.changelog.as_deref())
            .collect();
        match missing_topics(consumer, &changelogs) {
            Ok(missing) if missing.is_empty() => {}
            Ok(missing) => {
                let wait = st.tasks.create_backoff.failed();
                if st.tasks.create_backoff.failures() == 1 || wait == MAX_DELAY {
                    warn!(task = %id, topics = %missing.join(","), retry_in = ?wait, "The changelog topics of a new task do not exist; waiting for them before restoring.");
                }
                return Ok(None);
            }
            Err(e) if is_transient(&e) => {
                st.tasks.create_backoff.failed();
                return Ok(None);
            }
            Err(e) => return Err(RuntimeError::Client(e)),
        }
        Ok(Some(committed))
    }

    /// Starts `task`: it runs from now on. Records of its inputs polled while it did not
    /// run were held (not processed): each such input is sought back to the first of them,
    /// and returned, so that the rest of the batch in hand is skipped and comes again in
    /// order. Inputs paused for a restore are resumed unless fetching is paused as a whole.
    fn start_task(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        mut task: StreamTask,
        now: i64,
    ) -> Result<Vec<(usize, i32)>, RuntimeError> {
        let id = task.id();
        task.init(now)?;
        let inputs = self.task_inputs(id);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let held: Vec<_> = inputs
                .iter()
                .filter_map(|tp| st.tasks.held.get(tp))
                .collect();
            let positions = consumer.position().ok().map(|tpl| {
                tpl.elements()
                    .iter()
                    .filter(|e| {
                        inputs.iter().any(|&(i, p)| {
                            e.partition() == p && *self.sources[i].name == *e.topic()
                        })
                    })
                    .map(|e| format!("{}-{}@{:?}", e.topic(), e.partition(), e.offset()))
                    .collect::<Vec<_>>()
            });
            let applied = task.state().map(|s| s.applied_positions().to_vec());
            debug!(task = %id, ?positions, ?held, ?applied, "Task starting: the consumer's positions of its inputs, held records, stored input positions.");
        }
        st.tasks.running.insert(id, task);
        let sought = self.seek_back_held(consumer, st, &inputs);
        if !st.paused && !st.outage {
            let tpl = self.input_tpl(&inputs);
            if let Err(e) = consumer.resume(&tpl) {
                warn!(task = %id, error = %e, "Resume of a starting task's inputs failed.");
            }
        }
        Ok(sought)
    }

    /// Counts the tasks assigned here that neither run nor restore (their creation is
    /// being retried): `/ready` is not ready while there are any.
    pub(super) fn update_waiting(&self, st: &LoopState) {
        let waiting = self.assigned_tasks(st);
        let waiting = waiting.iter().filter(|id| !st.tasks.owns(id)).count();
        self.gauges.waiting.set(waiting as i64);
    }

    /// Seeks each of `inputs` that has held records back to the first of them; returns
    /// them (the rest of the batch in hand is skipped: it comes again after the seek). A
    /// failed seek keeps the partition held: its records are not processed until a later
    /// turn's seek succeeds ([`Shared::retry_held`]), or they would be skipped for good.
    fn seek_back_held(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        inputs: &[(usize, i32)],
    ) -> Vec<(usize, i32)> {
        let mut sought = Vec::new();
        for &(i, p) in inputs {
            let Some(&offset) = st.tasks.held.get(&(i, p)) else {
                continue;
            };
            sought.push((i, p));
            let topic = &self.sources[i].name;
            match consumer.seek(topic, p, Offset::Offset(offset), Duration::from_secs(10)) {
                Ok(()) => {
                    st.tasks.held.remove(&(i, p));
                }
                Err(e) => {
                    // Tried again every loop turn: said at most once per 10 s.
                    if let Some(repeated) = due(format!("seek back {topic}-{p}")) {
                        warn!(topic = %topic, partition = p, offset, error = %e, repeated, "Seek back to held records failed; its records wait for the next try.");
                    }
                }
            }
        }
        sought
    }

    /// Tries again the seeks back to held records that failed for running tasks.
    pub(super) fn retry_held(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
    ) -> Vec<(usize, i32)> {
        let waiting: Vec<(usize, i32)> = st
            .tasks
            .held
            .keys()
            .filter(|&&tp| st.tasks.running.contains_key(&self.task_of(tp)))
            .copied()
            .collect();
        if waiting.is_empty() {
            return waiting;
        }
        self.seek_back_held(consumer, st, &waiting)
    }

    /// Restores for up to `budget`; starts the tasks that are done and resumes their inputs
    /// where they were held. Returns the input partitions it sought back: records of theirs
    /// already polled (the batch in hand) come again after the seek and must be skipped now,
    /// or the task would see later records before earlier ones.
    pub(super) fn drive_restore(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        budget: Duration,
    ) -> Result<Vec<(usize, i32)>, RuntimeError> {
        let mut sought = Vec::new();
        let Some(restorer) = st.tasks.restorer.as_mut() else {
            return Ok(sought);
        };
        if restorer.is_idle() {
            return Ok(sought);
        }
        let done = restorer.poll(budget)?;
        let ahead = restorer.take_ahead();
        for (task, why) in ahead {
            let id = task.id();
            // Closes its stores before their files go.
            drop(task);
            self.metrics
                .state_ahead_of_broker
                .with_label_values(&["changelog"])
                .inc();
            error!(task = %id, %why, "Local state is ahead of the broker: the broker lost records this instance processed (restarted without its storage, or topics deleted and re-created). Wiping this task's local state and restoring it from what the broker has; inputs the broker still has are processed again.");
            if let Some(dir) = &self.stores.directory {
                dir.wipe_task(id).map_err(RuntimeError::State)?;
            }
        }
        let now = now_ms();
        for task in done {
            let id = task.id();
            sought.extend(self.start_task(consumer, st, task, now)?);
            info!(task = %id, "Task running.");
        }
        self.report_tasks(st);
        Ok(sought)
    }
}

/// Periodic housekeeping of the instance, across its stream threads: store size metrics
/// and removal of task directories no thread owns any more (each thread's loop state is
/// locked in turn, briefly).
pub(crate) fn housekeeping(threads: &[Arc<Shared>]) {
    let Some(first) = threads.first() else {
        return;
    };
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut owned: HashSet<TaskId> = HashSet::new();
    for shared in threads {
        let st = shared.lock();
        for task in st.tasks.running.values() {
            if let Some(state) = task.state() {
                for (name, n) in state.approximate_sizes() {
                    *sizes.entry(name.to_string()).or_default() += n;
                }
            }
        }
        owned.extend(st.tasks.running.keys().copied());
        if let Some(r) = &st.tasks.restorer {
            owned.extend(r.task_ids());
        }
        // A task between assignment and creation is owned too.
        owned.extend(
            st.checkpoint
                .partitions
                .keys()
                .map(|&tp| shared.task_of(tp)),
        );
    }
    for (name, n) in sizes {
        first
            .metrics
            .store_keys
            .with_label_values(&[&name])
            .set(n as i64);
    }
    if let Some(dir) = &first.stores.directory {
        dir.clean_stale(&owned, first.stores.settings.cleanup_delay);
    }
}

/// Which of `topics` the broker does not list.
fn missing_topics<'a>(
    consumer: &StreamConsumer,
    topics: &[&'a str],
) -> Result<Vec<&'a str>, rdkafka::error::KafkaError> {
    let mut missing = Vec::new();
    for &topic in topics {
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let listed = md
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if !listed {
            missing.push(topic);
        }
    }
    Ok(missing)
}
