//! A task: one sub-topology instantiated for one partition. Synchronous; the runtime and
//! the test driver both feed it.

use std::fmt;
use std::sync::Arc;

use super::dead_letter::DeadLetterLimits;
use super::processor::{
    Processor, ProcessorContext, ProcessorError, Punctuation, PunctuationType, Schedule,
};
use super::record::{Record, SourcePosition};
use super::topology::{NodeKind, Partitioning, SinkTopic, Topology};
use crate::state::TaskState;

/// `(sub-topology, partition)`, printed `0_3` as in Kafka Streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: usize,
    pub partition: i32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// A record a sink emitted, for the runtime to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct SinkRecord {
    pub topic: Arc<str>,
    pub partitioning: Partitioning,
    pub record: Record,
    /// Set when it is a dead letter: what the record collector does if it is too large.
    pub dead_letter: Option<DeadLetterLimits>,
}

impl SinkRecord {
    /// The partition this record goes to on its topic of `count` partitions (when known):
    /// the rule the runtime and the test driver share. `None`: the producer chooses (a
    /// keyless record partitioned by key).
    pub fn partition(&self, count: Option<i32>) -> Option<i32> {
        match self.partitioning {
            Partitioning::SameAsSource => self
                .record
                .source
                .as_ref()
                .map(|s| count.map_or(s.partition, |c| s.partition % c.max(1))),
            Partitioning::Partition(p) => Some(p),
            Partitioning::ByKey => match (self.record.key.as_deref(), count) {
                (Some(k), Some(c)) => Some(super::partitioner::partition_for_key(k, c)),
                _ => None,
            },
        }
    }
}

/// Errors from running a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {task}: topic '{topic}' is not a source of this task")]
    UnknownTopic { task: TaskId, topic: String },
    #[error("task {task}: processor '{processor}' failed at {position}: {source}")]
    Processor {
        task: TaskId,
        processor: String,
        position: String,
        #[source]
        source: ProcessorError,
    },
}

enum Slot {
    Source,
    Processor(Box<dyn Processor>),
    Sink {
        topic: SinkTopic,
        fixed: Option<Arc<str>>,
        partitioning: Partitioning,
        dead_letter: Option<DeadLetterLimits>,
    },
}

struct TaskNode {
    name: String,
    slot: Slot,
    children: Vec<usize>,
    child_names: Vec<String>,
    /// Global indexes of the stores this node may use.
    stores: Vec<usize>,
}

/// One running instance of a sub-topology.
pub struct StreamTask {
    id: TaskId,
    nodes: Vec<TaskNode>,
    sources: Vec<(Arc<str>, usize)>,
    schedules: Vec<Schedule>,
    stream_time: Option<i64>,
    outputs: Vec<SinkRecord>,
    buffers: Vec<Vec<(usize, Record)>>,
    suffix_topics: Vec<(Arc<str>, String, Arc<str>)>,
    state: Option<TaskState>,
    /// Per node: counted once per record handed to it (processors only).
    counters: Vec<Option<prometheus::IntCounter>>,
}

impl StreamTask {
    /// Instantiates the processors of `subtopology` (one fresh instance each) for `partition`.
    pub fn new(topology: &Topology, subtopology: usize, partition: i32) -> StreamTask {
        let inner = &topology.inner;
        let st = &inner.subtopologies[subtopology];
        let local: std::collections::HashMap<usize, usize> = st
            .nodes
            .iter()
            .enumerate()
            .map(|(local, &global)| (global, local))
            .collect();
        let mut sources = Vec::new();
        let nodes = st
            .nodes
            .iter()
            .map(|&g| {
                let n = &inner.nodes[g];
                let stores = match &n.kind {
                    NodeKind::Processor { stores, .. } => stores
                        .iter()
                        .filter_map(|name| topology.store_index(name))
                        .collect(),
                    _ => Vec::new(),
                };
                let slot = match &n.kind {
                    NodeKind::Source { topics } => {
                        for t in topics {
                            sources.push((Arc::<str>::from(t.as_str()), local[&g]));
                        }
                        Slot::Source
                    }
                    NodeKind::Processor { supplier, .. } => Slot::Processor(supplier()),
                    NodeKind::Sink {
                        topic,
                        partitioning,
                    } => Slot::Sink {
                        fixed: match topic {
                            SinkTopic::Fixed(t) => Some(Arc::from(t.as_str())),
                            SinkTopic::DeadLetter { .. } => None,
                        },
                        dead_letter: match topic {
                            SinkTopic::Fixed(_) => None,
                            SinkTopic::DeadLetter { sink, .. } => Some(sink.limits()),
                        },
                        topic: topic.clone(),
                        partitioning: *partitioning,
                    },
                };
                TaskNode {
                    name: n.name.clone(),
                    slot,
                    children: n.children.iter().map(|c| local[c]).collect(),
                    child_names: n
                        .children
                        .iter()
                        .map(|&c| inner.nodes[c].name.clone())
                        .collect(),
                    stores,
                }
            })
            .collect();
        StreamTask {
            id: TaskId {
                subtopology,
                partition,
            },
            nodes,
            sources,
            schedules: Vec::new(),
            stream_time: None,
            outputs: Vec::new(),
            buffers: Vec::new(),
            suffix_topics: Vec::new(),
            state: None,
            counters: Vec::new(),
        }
    }

    /// Counts the records each processor receives with the counter `counter(name)` gives.
    pub fn count_processed(&mut self, counter: impl Fn(&str) -> prometheus::IntCounter) {
        self.counters = self
            .nodes
            .iter()
            .map(|n| matches!(n.slot, Slot::Processor(_)).then(|| counter(&n.name)))
            .collect();
    }

    /// Gives the task its stores (before `init`).
    pub fn attach_state(&mut self, state: TaskState) {
        self.state = Some(state);
    }

    pub fn state(&self) -> Option<&TaskState> {
        self.state.as_ref()
    }

    pub fn state_mut(&mut self) -> Option<&mut TaskState> {
        self.state.as_mut()
    }

    /// Turns this batch's store writes into changelog records (kept with the outputs) and
    /// stages the local write. See [`TaskState::prepare_commit`].
    pub fn prepare_commit(&mut self, wall_clock: i64) {
        if let Some(state) = self.state.as_mut() {
            let ts = self.stream_time.unwrap_or(wall_clock);
            state.prepare_commit(ts, &mut self.outputs);
        }
    }

    /// Writes the staged batch once every output is acknowledged.
    pub fn finish_commit(
        &mut self,
        changelog_end: &dyn Fn(&str, i32) -> Option<i64>,
    ) -> Result<(), crate::state::StateError> {
        match self.state.as_mut() {
            Some(state) => state.finish_commit(changelog_end),
            None => Ok(()),
        }
    }

    pub fn id(&self) -> TaskId {
        self.id
    }

    pub fn stream_time(&self) -> Option<i64> {
        self.stream_time
    }

    /// Calls `init` on every processor, in declaration order.
    pub fn init(&mut self, wall_clock: i64) -> Result<(), TaskError> {
        for i in 0..self.nodes.len() {
            self.run_node(i, wall_clock, None, |p, ctx| p.init(ctx))?;
        }
        Ok(())
    }

    /// Feeds one record read from `topic`. Advances stream time to the record's timestamp
    /// (never backwards) and fires due stream-time punctuations afterwards. Returns false,
    /// doing nothing, for a record whose effects the task's stored state already holds (a
    /// replay after a crash).
    pub fn process(
        &mut self,
        topic: &str,
        record: Record,
        wall_clock: i64,
    ) -> Result<bool, TaskError> {
        let Some((name, source)) = self
            .sources
            .iter()
            .find(|(t, _)| &**t == topic)
            .map(|(t, s)| (t.clone(), *s))
        else {
            return Err(TaskError::UnknownTopic {
                task: self.id,
                topic: topic.to_string(),
            });
        };
        if let (Some(state), Some(pos)) = (self.state.as_mut(), record.source.as_ref()) {
            if state.is_applied(topic, pos.partition, pos.offset) {
                return Ok(false);
            }
            state.record_position(&name, pos.partition, pos.offset);
        }
        let ts = record.timestamp;
        let first = self.stream_time.is_none();
        if self.stream_time.is_none_or(|t| ts > t) {
            self.stream_time = Some(ts);
        }
        if first {
            let now = self.stream_time.unwrap_or(ts);
            for s in &mut self.schedules {
                if s.kind == PunctuationType::StreamTime && s.next.is_none() {
                    s.next = Some(now + s.interval_ms);
                }
            }
        }
        self.dispatch(source, record, wall_clock)?;
        if let Some(now) = self.stream_time {
            self.punctuate(PunctuationType::StreamTime, now, wall_clock)?;
        }
        Ok(true)
    }

    /// Fires wall-clock punctuations due at `wall_clock`. Returns how many fired.
    pub fn punctuate_wall_clock(&mut self, wall_clock: i64) -> Result<usize, TaskError> {
        self.punctuate(PunctuationType::WallClock, wall_clock, wall_clock)
    }

    fn punctuate(
        &mut self,
        kind: PunctuationType,
        now: i64,
        wall_clock: i64,
    ) -> Result<usize, TaskError> {
        let mut fired = 0;
        for i in 0..self.schedules.len() {
            let s = &self.schedules[i];
            let due = matches!(s.next, Some(next) if next <= now);
            if s.cancelled || s.kind != kind || !due {
                continue;
            }
            // Fire once, then skip the intervals already missed.
            let (node, id, interval, next) = (s.node, s.id, s.interval_ms, s.next.unwrap_or(now));
            let missed = (now - next) / interval + 1;
            self.schedules[i].next = Some(next + missed * interval);
            let p = Punctuation {
                schedule: id,
                kind,
                time: now,
            };
            self.run_node(node, wall_clock, None, |proc, ctx| proc.punctuate(ctx, p))?;
            fired += 1;
        }
        Ok(fired)
    }

    /// Calls `close` on every processor. Outputs produced while closing are kept.
    pub fn close(&mut self, wall_clock: i64) -> Result<(), TaskError> {
        for i in 0..self.nodes.len() {
            self.run_node(i, wall_clock, None, |p, ctx| p.close(ctx))?;
        }
        Ok(())
    }

    /// Takes the records sinks have emitted since the last call.
    pub fn take_outputs(&mut self) -> Vec<SinkRecord> {
        std::mem::take(&mut self.outputs)
    }

    /// Moves emitted records into `out`, keeping this task's buffer allocation.
    pub fn drain_outputs_into(&mut self, out: &mut Vec<SinkRecord>) {
        out.append(&mut self.outputs);
    }

    fn dispatch(&mut self, node: usize, record: Record, wall_clock: i64) -> Result<(), TaskError> {
        match &self.nodes[node].slot {
            Slot::Source => {
                let children = self.nodes[node].children.clone();
                if let Some((last, rest)) = children.split_last() {
                    for &c in rest {
                        self.dispatch(c, record.clone(), wall_clock)?;
                    }
                    self.dispatch(*last, record, wall_clock)?;
                }
                Ok(())
            }
            Slot::Sink {
                topic,
                fixed,
                partitioning,
                dead_letter,
            } => {
                let (partitioning, dead_letter) = (*partitioning, *dead_letter);
                let topic = match (fixed, topic) {
                    (Some(t), _) => t.clone(),
                    (None, SinkTopic::DeadLetter { sink, .. }) => {
                        let sfx = sink.suffix.clone();
                        let src = record.source.as_ref().map(|p| p.topic.clone());
                        self.suffixed(src.as_deref().unwrap_or(""), &sfx)
                    }
                    (None, SinkTopic::Fixed(t)) => Arc::from(t.as_str()),
                };
                self.outputs.push(SinkRecord {
                    topic,
                    partitioning,
                    record,
                    dead_letter,
                });
                Ok(())
            }
            Slot::Processor(_) => {
                if let Some(Some(c)) = self.counters.get(node) {
                    c.inc();
                }
                let position = record.source.clone();
                self.run_node(node, wall_clock, position.as_ref(), |p, ctx| {
                    p.process(ctx, record)
                })
            }
        }
    }

    fn suffixed(&mut self, src: &str, sfx: &str) -> Arc<str> {
        if let Some((_, _, t)) = self
            .suffix_topics
            .iter()
            .find(|(s, x, _)| &**s == src && x == sfx)
        {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(format!("{src}{sfx}"));
        self.suffix_topics
            .push((Arc::from(src), sfx.to_string(), t.clone()));
        t
    }

    /// Runs `f` on node `node` (a processor; other kinds are skipped) and dispatches what it
    /// forwarded.
    fn run_node<F>(
        &mut self,
        node: usize,
        wall_clock: i64,
        position: Option<&SourcePosition>,
        f: F,
    ) -> Result<(), TaskError>
    where
        F: FnOnce(&mut dyn Processor, &mut ProcessorContext<'_>) -> Result<(), ProcessorError>,
    {
        if !matches!(self.nodes[node].slot, Slot::Processor(_)) {
            return Ok(());
        }
        let mut out = self.buffers.pop().unwrap_or_default();
        let result = self
            .run_node_with(node, wall_clock, position, &mut out, f)
            .and_then(|()| {
                for (child, rec) in out.drain(..) {
                    self.dispatch(child, rec, wall_clock)?;
                }
                Ok(())
            });
        out.clear();
        self.buffers.push(out);
        result
    }

    fn run_node_with<F>(
        &mut self,
        node: usize,
        wall_clock: i64,
        position: Option<&SourcePosition>,
        out: &mut Vec<(usize, Record)>,
        f: F,
    ) -> Result<(), TaskError>
    where
        F: FnOnce(&mut dyn Processor, &mut ProcessorContext<'_>) -> Result<(), ProcessorError>,
    {
        let id = self.id;
        let stream_time = self.stream_time;
        let TaskNode {
            name,
            slot,
            children,
            child_names,
            stores,
        } = &mut self.nodes[node];
        let Slot::Processor(p) = slot else {
            return Ok(());
        };
        let mut ctx = ProcessorContext {
            node_name: name,
            node,
            child_names,
            children,
            out,
            schedules: &mut self.schedules,
            stream_time,
            wall_clock,
            task_id: id,
            position,
            stores,
            state: self.state.as_mut(),
        };
        f(p.as_mut(), &mut ctx).map_err(|source| TaskError::Processor {
            task: id,
            processor: name.clone(),
            position: position.map_or_else(|| "punctuation".to_string(), |p| p.to_string()),
            source,
        })
    }
}
