//! A synchronous driver that pipes records through a topology with no Kafka, with explicit
//! control of wall-clock time, as Kafka Streams' `TopologyTestDriver`.
//!
//! Records written to a topic that the topology itself reads (a repartition topic) are fed
//! straight back in, to the partition murmur2 of the key selects, so multi-sub-topology
//! flows run end to end. Every record a sink writes is also kept for [`read_output`].
//!
//! [`read_output`]: TopologyTestDriver::read_output

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::record::{Record, SourcePosition};
use super::task::{SinkRecord, StreamTask, TaskError, TaskId};
use super::topology::{Partitioning, Topology};
use crate::runtime::partitioner::partition_for_key;

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
        }
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
            task.process(&topic, record, now)?;
            // Commit after every record, as Kafka Streams' driver does: store writes
            // become changelog records and the local write happens at once.
            task.prepare_commit(now);
            let outputs = task.take_outputs();
            self.route(outputs, &mut queue);
            let written = &self.written;
            let task = self
                .tasks
                .get_mut(&TaskId {
                    subtopology: sub,
                    partition,
                })
                .expect("task exists");
            task.finish_commit(&|t, p| written.get(&(t.to_string(), p)).copied())
                .map_err(|e| TaskError::Processor {
                    task: task.id(),
                    processor: "commit".into(),
                    position: format!("{topic}-{partition}"),
                    source: e.into(),
                })?;
        }
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
                let backend = Box::new(crate::state::MemoryBackend::new(specs.len()));
                let state = crate::state::TaskState::open(backend, &specs, partition)
                    .expect("a memory backend opens");
                task.attach_state(state);
            }
            task.init(self.wall_clock)?;
            self.tasks.insert(id, task);
        }
        Ok(self.tasks.get_mut(&id).expect("just inserted"))
    }

    fn route(&mut self, outputs: Vec<SinkRecord>, queue: &mut VecDeque<(String, i32, Record)>) {
        for out in outputs {
            let partition = match out.partitioning {
                Partitioning::SameAsSource => out.record.source.as_ref().map_or(0, |p| p.partition),
                Partitioning::Partition(p) => p,
                Partitioning::ByKey => out
                    .record
                    .key
                    .as_deref()
                    .map_or(0, |k| partition_for_key(k, self.partitions)),
            };
            let topic = out.topic.to_string();
            *self.written.entry((topic.clone(), partition)).or_insert(0) += 1;
            if self.topology.subtopology_of(&topic).is_some() {
                let mut rec = out.record.clone();
                rec.source = None;
                queue.push_back((topic.clone(), partition, rec));
            }
            self.outputs
                .entry(topic)
                .or_default()
                .push((partition, out.record));
        }
    }
}
