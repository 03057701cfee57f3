//! A synchronous driver that pipes records through a topology with no Kafka, with explicit
//! control of wall-clock time, as Kafka Streams' `TopologyTestDriver`.
//!
//! Records written to a topic that the topology itself reads (a repartition topic) are fed
//! straight back in, to the partition murmur2 of the key selects, so multi-sub-topology
//! flows run end to end. Every record a sink writes is also kept for [`read_output`].
//!
//! [`read_output`]: TopologyTestDriver::read_output

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::collector::{self, RecordProducer, Refusal};
use super::dead_letter::{BadRecords, ErrorPolicy};
use super::record::{Record, SourcePosition};
use super::task::{SinkRecord, StreamTask, TaskError, TaskId};
use super::topology::Topology;

/// Drives a [`Topology`] in-process.
pub struct TopologyTestDriver {
    topology: Topology,
    partitions: i32,
    tasks: BTreeMap<TaskId, StreamTask>,
    wall_clock: i64,
    next_offset: HashMap<(String, i32), i64>,
    outputs: HashMap<String, Vec<(i32, Record)>>,
    /// Records written per output partition (the next offset).
    written: HashMap<(String, i32), i64>,
    /// Where tasks keep their stores; `None`: in memory.
    rocksdb: Option<RocksStores>,
    /// Emptied buffer for a task's outputs, kept to reuse its allocation.
    spare: Vec<SinkRecord>,
    /// Whether records written to sinks are kept for `read_output`.
    keep_outputs: bool,
    /// Records a task processes between commits (1: after every record).
    commit_every: usize,
    /// Records processed since the last commit, per task.
    uncommitted: HashMap<TaskId, usize>,
    /// Largest record the driver's topics take, as a broker's limit (`None`: any).
    max_message_bytes: Option<usize>,
    /// Outputs refused for good (too large), as deliveries that failed.
    failed_deliveries: Vec<(SinkRecord, Refusal)>,
    /// Outputs too large whose policy dropped them.
    dropped_outputs: Vec<SinkRecord>,
}

/// RocksDB stores for the driver's tasks, as the runtime opens them.
struct RocksStores {
    dir: PathBuf,
    resources: crate::state::RocksResources,
    cache: Arc<crate::state::CacheBudget>,
}

impl TopologyTestDriver {
    /// A driver where every topic has one partition, starting at `wall_clock` (epoch ms).
    pub fn new(topology: Topology, wall_clock: i64) -> Self {
        Self::with_partitions(topology, 1, wall_clock)
    }

    /// A driver where every topic has `partitions` partitions.
    pub fn with_partitions(topology: Topology, partitions: i32, wall_clock: i64) -> Self {
        TopologyTestDriver {
            topology,
            partitions: partitions.max(1),
            tasks: BTreeMap::new(),
            wall_clock,
            next_offset: HashMap::new(),
            outputs: HashMap::new(),
            written: HashMap::new(),
            rocksdb: None,
            commit_every: 1,
            uncommitted: HashMap::new(),
            keep_outputs: true,
            spare: Vec::new(),
            max_message_bytes: None,
            failed_deliveries: Vec::new(),
            dropped_outputs: Vec::new(),
        }
    }

    /// Drops what sinks write instead of keeping it for [`read_output`](Self::read_output)
    /// (records on the topology's own topics are still fed back in; [`written`](Self::written)
    /// still counts them): for long runs that only measure.
    pub fn discard_outputs(mut self) -> Self {
        self.keep_outputs = false;
        self
    }

    /// Refuses records larger than `bytes` (key, value and headers), as a broker whose
    /// limit that is: a dead letter is cut to fit and marked, as the runtime does
    /// (`engine::collector`); any other record fails (see
    /// [`failed_deliveries`](Self::failed_deliveries)).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// Outputs too large that the oversize policy dropped.
    pub fn dropped_outputs(&self) -> &[SinkRecord] {
        &self.dropped_outputs
    }

    /// Outputs refused for good, with the reason: the runtime would reprocess their inputs.
    pub fn failed_deliveries(&self) -> &[(SinkRecord, Refusal)] {
        &self.failed_deliveries
    }

    /// How many records sinks have written to `topic` so far, over every partition.
    pub fn written(&self, topic: &str) -> i64 {
        self.written
            .iter()
            .filter(|((t, _), _)| t == topic)
            .map(|(_, n)| n)
            .sum()
    }

    /// Commits each task after every `records` records it processes instead of after each
    /// one, as the runtime's commit interval batches them (store writes of a batch become
    /// one changelog record per key and one local write). Outputs are routed after every
    /// record either way. [`commit`](Self::commit) commits what is pending.
    pub fn with_commit_every(mut self, records: usize) -> Self {
        self.commit_every = records.max(1);
        self
    }

    /// Keeps each task's stores in a RocksDB database under `dir` (one per task, as the
    /// runtime does), sharing a block cache and write buffers sized by `config`'s memory
    /// plan and laid out as its `state` settings say, behind its read cache, instead of in
    /// memory. Call before the first record.
    pub fn with_rocksdb(mut self, dir: impl Into<PathBuf>, config: &crate::config::Config) -> Self {
        let plan = config.memory();
        self.rocksdb = Some(RocksStores {
            dir: dir.into(),
            resources: crate::state::RocksResources::for_config(config),
            cache: crate::state::CacheBudget::new(plan.read_cache_bytes),
        });
        self
    }

    /// Pipes one record into partition 0 of `topic`.
    pub fn pipe(&mut self, topic: &str, record: Record) -> Result<(), TaskError> {
        self.pipe_to_partition(topic, 0, record)
    }

    /// Pipes one record into `partition` of `topic`; its offset is assigned here.
    pub fn pipe_to_partition(
        &mut self,
        topic: &str,
        partition: i32,
        record: Record,
    ) -> Result<(), TaskError> {
        let mut queue = VecDeque::new();
        queue.push_back((topic.to_string(), partition, record));
        while let Some((topic, partition, mut record)) = queue.pop_front() {
            let sub =
                self.topology
                    .subtopology_of(&topic)
                    .ok_or_else(|| TaskError::UnknownTopic {
                        task: TaskId {
                            subtopology: usize::MAX,
                            partition,
                        },
                        topic: topic.clone(),
                    })?;
            let offset = self
                .next_offset
                .entry((topic.clone(), partition))
                .or_insert(0);
            record.source = Some(SourcePosition {
                topic: Arc::from(topic.as_str()),
                partition,
                offset: *offset,
            });
            *offset += 1;
            let now = self.wall_clock;
            let task = self.task(sub, partition)?;
            let id = task.id();
            task.process(&topic, record, now)?;
            // By default commit after every record, as Kafka Streams' driver does: store
            // writes become changelog records and the local write happens at once.
            let pending = self.uncommitted.entry(id).or_insert(0);
            *pending += 1;
            let due = *pending >= self.commit_every;
            if due {
                *pending = 0;
                self.commit_task(id, Some((&topic, partition)), &mut queue)?;
            } else {
                self.route_from(id, &mut queue);
            }
        }
        Ok(())
    }

    /// Commits every task with uncommitted records (see
    /// [`with_commit_every`](Self::with_commit_every)) and routes what that emits.
    pub fn commit(&mut self) -> Result<(), TaskError> {
        let mut queue = VecDeque::new();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            if self.uncommitted.get(&id).is_some_and(|&n| n > 0) {
                self.uncommitted.insert(id, 0);
                self.commit_task(id, None, &mut queue)?;
            }
        }
        while let Some((topic, partition, record)) = queue.pop_front() {
            self.pipe_to_partition(&topic, partition, record)?;
        }
        Ok(())
    }

    fn commit_task(
        &mut self,
        id: TaskId,
        input: Option<(&str, i32)>,
        queue: &mut VecDeque<(String, i32, Record)>,
    ) -> Result<(), TaskError> {
        let now = self.wall_clock;
        let task = self.tasks.get_mut(&id).expect("task exists");
        task.prepare_commit(now);
        self.route_from(id, queue);
        let written = &self.written;
        let task = self.tasks.get_mut(&id).expect("task exists");
        task.finish_commit(&|t, p| written.get(&(t.to_string(), p)).copied())
            .map_err(|e| TaskError::Processor {
                task: id,
                processor: "commit".into(),
                position: input.map_or_else(|| format!("task {id}"), |(t, p)| format!("{t}-{p}")),
                source: e.into(),
            })?;
        Ok(())
    }

    /// The state of a task, if it exists and has stores.
    pub fn task_state(&mut self, task: TaskId) -> Option<&mut crate::state::TaskState> {
        self.tasks.get_mut(&task).and_then(StreamTask::state_mut)
    }

    /// Moves the wall clock forward and fires due wall-clock punctuations in every task.
    pub fn advance_wall_clock(&mut self, by: Duration) -> Result<(), TaskError> {
        self.wall_clock += by.as_millis() as i64;
        let now = self.wall_clock;
        let mut queue = VecDeque::new();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let task = self.tasks.get_mut(&id).expect("task exists");
            task.punctuate_wall_clock(now)?;
            let outputs = task.take_outputs();
            self.route(outputs, &mut queue);
        }
        while let Some((topic, partition, record)) = queue.pop_front() {
            self.pipe_to_partition(&topic, partition, record)?;
        }
        Ok(())
    }

    pub fn wall_clock(&self) -> i64 {
        self.wall_clock
    }

    /// Stream time of a task, if it exists and has seen a record.
    pub fn stream_time(&self, task: TaskId) -> Option<i64> {
        self.tasks.get(&task).and_then(StreamTask::stream_time)
    }

    /// Takes every record written to `topic` so far, in order.
    pub fn read_output(&mut self, topic: &str) -> Vec<Record> {
        self.read_output_with_partitions(topic)
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Like [`read_output`](Self::read_output), with the partition each record went to.
    pub fn read_output_with_partitions(&mut self, topic: &str) -> Vec<(i32, Record)> {
        self.outputs.remove(topic).unwrap_or_default()
    }

    /// Topics written so far that have unread records.
    /// The topology the driver runs.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn output_topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.outputs.keys().cloned().collect();
        t.sort();
        t
    }

    /// Closes every task (calling processors' `close`) and routes what they emit.
    pub fn close(mut self) -> Result<HashMap<String, Vec<(i32, Record)>>, TaskError> {
        let mut queue = VecDeque::new();
        let ids: Vec<TaskId> = self.tasks.keys().copied().collect();
        for id in ids {
            let task = self.tasks.get_mut(&id).expect("task exists");
            task.close(self.wall_clock)?;
            let outputs = task.take_outputs();
            self.route(outputs, &mut queue);
        }
        Ok(self.outputs)
    }

    fn task(&mut self, sub: usize, partition: i32) -> Result<&mut StreamTask, TaskError> {
        let id = TaskId {
            subtopology: sub,
            partition,
        };
        if !self.tasks.contains_key(&id) {
            let mut task = StreamTask::new(&self.topology, sub, partition);
            let specs = self.topology.store_specs(sub);
            if !specs.is_empty() {
                let state = match &self.rocksdb {
                    None => {
                        let backend = Box::new(crate::state::MemoryBackend::new(specs.len()));
                        crate::state::TaskState::open(backend, &specs, partition)
                    }
                    Some(r) => {
                        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
                        let path = r.dir.join(id.to_string());
                        crate::state::RocksBackend::open(&path, &names, &r.resources).and_then(
                            |backend| {
                                crate::state::TaskState::open_with_cache(
                                    Box::new(backend),
                                    &specs,
                                    partition,
                                    r.cache.clone(),
                                )
                            },
                        )
                    }
                }
                .expect("the driver's state opens");
                task.attach_state(state);
            }
            task.init(self.wall_clock)?;
            self.tasks.insert(id, task);
        }
        Ok(self.tasks.get_mut(&id).expect("just inserted"))
    }

    /// Routes what task `id` has emitted, through the reused buffer.
    fn route_from(&mut self, id: TaskId, queue: &mut VecDeque<(String, i32, Record)>) {
        let mut outputs = std::mem::take(&mut self.spare);
        let task = self.tasks.get_mut(&id).expect("task exists");
        task.drain_outputs_into(&mut outputs);
        self.route(outputs.drain(..), queue);
        self.spare = outputs;
    }

    fn route(
        &mut self,
        outputs: impl IntoIterator<Item = SinkRecord>,
        queue: &mut VecDeque<(String, i32, Record)>,
    ) {
        let mut topics = Topics {
            topology: &self.topology,
            written: &mut self.written,
            outputs: &mut self.outputs,
            keep_outputs: self.keep_outputs,
            max_message_bytes: self.max_message_bytes,
            queue,
        };
        for out in outputs {
            // The runtime's rules (engine::collector): partition, oversized dead letters.
            let limits = collector::Limits {
                max_message_bytes: self.max_message_bytes.unwrap_or(usize::MAX),
                oversize_output: self.topology.oversize_output(),
            };
            match collector::send(&mut topics, out, Some(self.partitions), limits) {
                collector::Sent::Taken(_) => {}
                collector::Sent::Dropped(out) => {
                    let at = collector::position_of(&out);
                    let (policy, reason) = (ErrorPolicy::Drop, collector::OVERSIZE_OUTPUT);
                    BadRecords::default().report(&at, policy, reason, "too large for the broker");
                    self.dropped_outputs.push(out);
                }
                collector::Sent::QueueFull(_) => unreachable!("the driver's topics never fill"),
                collector::Sent::Failed(out, why) => {
                    self.failed_deliveries.push((out, why));
                }
            }
        }
    }
}

/// The driver's topics, as a producer: what a sink writes is counted, kept for
/// `read_output` and, on the topology's own topics, fed back in. Where a real producer
/// would choose the partition, the driver takes 0.
struct Topics<'a> {
    topology: &'a Topology,
    written: &'a mut HashMap<(String, i32), i64>,
    outputs: &'a mut HashMap<String, Vec<(i32, Record)>>,
    keep_outputs: bool,
    max_message_bytes: Option<usize>,
    queue: &'a mut VecDeque<(String, i32, Record)>,
}

impl RecordProducer for Topics<'_> {
    fn send(
        &mut self,
        out: SinkRecord,
        partition: Option<i32>,
    ) -> Result<(), (Refusal, SinkRecord)> {
        if self
            .max_message_bytes
            .is_some_and(|max| out.record.size_hint() > max)
        {
            return Err((Refusal::TooLarge, out));
        }
        let partition = partition.unwrap_or(0);
        let topic = out.topic.to_string();
        *self.written.entry((topic.clone(), partition)).or_insert(0) += 1;
        if self.topology.subtopology_of(&topic).is_some() {
            let mut rec = out.record.clone();
            rec.source = None;
            self.queue.push_back((topic.clone(), partition, rec));
        }
        if self.keep_outputs {
            self.outputs
                .entry(topic)
                .or_default()
                .push((partition, out.record));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::generator::{Generator, GeneratorConfig, DEMO_TOPICS};

    /// 2030-01-01, events just before it.
    const NOW: i64 = 1_893_456_000_000;

    fn bundled(config: &Config) -> TopologyTestDriver {
        let parts = crate::topology::Components::load(config).unwrap();
        let topology = crate::topology::build_topology(config, &parts, None).unwrap();
        TopologyTestDriver::with_partitions(topology, 2, NOW)
    }

    #[test]
    fn rocksdb_stores_and_batched_commits_give_the_same_results() {
        let config = Config {
            inputs: DEMO_TOPICS.iter().map(|t| t.to_string()).collect(),
            ..Config::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut memory = bundled(&config);
        let mut rocks = bundled(&config)
            .with_rocksdb(dir.path(), &config)
            .with_commit_every(7);
        let mut g = Generator::new(GeneratorConfig {
            customers: 20,
            ..GeneratorConfig::default()
        });
        for i in 0..400 {
            let e = g.next_event(NOW - 60_000 + i * 100);
            for d in [&mut memory, &mut rocks] {
                d.pipe_to_partition(e.topic, (i % 2) as i32, Record::new(e.value.clone(), NOW))
                    .unwrap();
            }
        }
        rocks.commit().unwrap();
        let results = &config.gamification.results_topic;
        let from_memory = memory.read_output_with_partitions(results);
        assert!(from_memory.len() > 400, "{}", from_memory.len());
        assert_eq!(rocks.read_output_with_partitions(results), from_memory);
        assert_eq!(rocks.written(results), from_memory.len() as i64);
        // State went to RocksDB: one database per stateful task.
        assert!(std::fs::read_dir(dir.path()).unwrap().count() >= 2);
    }
}
