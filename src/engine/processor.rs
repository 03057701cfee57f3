//! The processor contract: small synchronous steps, as Kafka Streams' `Processor`.

use std::time::Duration;

use super::record::{Record, SourcePosition};
use super::task::TaskId;

/// How a punctuation is driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// Fires when stream time (the largest record timestamp seen by the task) passes the
    /// next due time. Never fires without input.
    StreamTime,
    /// Fires when the wall clock passes the next due time, input or not.
    WallClock,
}

/// Identifies one schedule made by a processor through [`ProcessorContext::schedule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScheduleId(pub(crate) u32);

/// Passed to [`Processor::punctuate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Punctuation {
    pub schedule: ScheduleId,
    pub kind: PunctuationType,
    /// Stream time or wall-clock time (epoch ms) at which it fired.
    pub time: i64,
}

/// A child of the current node, resolved once (in `init`) by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Child(pub(crate) usize);

/// Errors a processor reports. Bad input is not an error (route it to a dead-letter
/// child); an error here means the task cannot go on, and the runtime stops it.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("processor '{processor}' has no child named '{child}'")]
    UnknownChild { processor: String, child: String },
    #[error("processor '{processor}' is not connected to store '{store}' (connect it in add_state_store)")]
    StoreNotConnected { processor: String, store: String },
    #[error(transparent)]
    State(Box<crate::state::StateError>),
    #[error("{0}")]
    Failed(String),
    /// A bad record whose reason's policy is `fail` (see [`super::dead_letter`]).
    #[error(transparent)]
    BadRecord(Box<super::dead_letter::BadRecordError>),
}

impl From<crate::state::StateError> for ProcessorError {
    fn from(e: crate::state::StateError) -> Self {
        ProcessorError::State(Box::new(e))
    }
}

/// A synchronous processing step. One instance per task; never shared between threads
/// while running, but moved between them, hence `Send`.
pub trait Processor: Send {
    /// Called once before the first record. Resolve children and schedule punctuation here.
    fn init(&mut self, _ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// Handles one record. Forward results with `ctx.forward*`. Must not block on I/O other
    /// than local state.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        record: Record,
    ) -> Result<(), ProcessorError>;

    /// Called when a schedule made in `init` (or later) is due.
    fn punctuate(
        &mut self,
        _ctx: &mut ProcessorContext<'_>,
        _punctuation: Punctuation,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }

    /// Called once when the task closes (revocation, shutdown). Forwarding is still allowed.
    fn close(&mut self, _ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// A schedule registered by a processor.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    pub id: ScheduleId,
    pub node: usize,
    pub kind: PunctuationType,
    pub interval_ms: i64,
    /// Next due time; `None` for stream time until the first record sets an anchor.
    pub next: Option<i64>,
    pub cancelled: bool,
}

/// What a processor sees of its task while it runs.
pub struct ProcessorContext<'a> {
    pub(crate) node_name: &'a str,
    pub(crate) node: usize,
    pub(crate) child_names: &'a [String],
    pub(crate) children: &'a [usize],
    pub(crate) out: &'a mut Vec<(usize, Record)>,
    pub(crate) schedules: &'a mut Vec<Schedule>,
    pub(crate) stream_time: Option<i64>,
    pub(crate) wall_clock: i64,
    pub(crate) task_id: TaskId,
    pub(crate) position: Option<&'a SourcePosition>,
    /// Global indexes of the stores this processor is connected to.
    pub(crate) stores: &'a [usize],
    pub(crate) state: Option<&'a mut crate::state::TaskState>,
}

impl ProcessorContext<'_> {
    /// Forwards to every child (cloning for all but the last).
    pub fn forward(&mut self, record: Record) {
        match self.children.split_last() {
            None => {}
            Some((last, rest)) => {
                for &c in rest {
                    self.out.push((c, record.clone()));
                }
                self.out.push((*last, record));
            }
        }
    }

    /// Forwards to one child.
    pub fn forward_to(&mut self, child: Child, record: Record) {
        self.out.push((self.children[child.0], record));
    }

    /// Resolves a child by name; do it once in `init` and keep the handle.
    pub fn child(&self, name: &str) -> Result<Child, ProcessorError> {
        self.child_names
            .iter()
            .position(|n| n == name)
            .map(Child)
            .ok_or_else(|| ProcessorError::UnknownChild {
                processor: self.node_name.to_string(),
                child: name.to_string(),
            })
    }

    /// Schedules `punctuate` every `interval`. Stream-time schedules are anchored at the first
    /// stream time the task sees; wall-clock ones at the current wall clock. A late call fires
    /// once and skips the missed intervals, as in Kafka Streams.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> ScheduleId {
        let id = ScheduleId(self.schedules.len() as u32);
        let interval_ms = (interval.as_millis() as i64).max(1);
        let next = match kind {
            PunctuationType::WallClock => Some(self.wall_clock + interval_ms),
            PunctuationType::StreamTime => self.stream_time.map(|t| t + interval_ms),
        };
        self.schedules.push(Schedule {
            id,
            node: self.node,
            kind,
            interval_ms,
            next,
            cancelled: false,
        });
        id
    }

    /// Stops a schedule; idempotent.
    pub fn cancel(&mut self, id: ScheduleId) {
        if let Some(s) = self.schedules.get_mut(id.0 as usize) {
            s.cancelled = true;
        }
    }

    /// The largest record timestamp this task has seen, if any.
    pub fn stream_time(&self) -> Option<i64> {
        self.stream_time
    }

    /// Wall-clock time as the task sees it (controllable in the test driver).
    pub fn wall_clock_time(&self) -> i64 {
        self.wall_clock
    }

    pub fn task_id(&self) -> TaskId {
        self.task_id
    }

    /// Where the record being processed came from (`None` during punctuation).
    pub fn position(&self) -> Option<&SourcePosition> {
        self.position
    }

    /// The typed view of a connected store. Reads see this task's uncommitted writes; writes
    /// are committed with the input offsets that caused them.
    pub fn store<K, V>(
        &mut self,
        handle: &crate::state::StoreHandle<K, V>,
    ) -> Result<crate::state::KvStore<'_, K, V>, ProcessorError> {
        let not_connected = || ProcessorError::StoreNotConnected {
            processor: self.node_name.to_string(),
            store: handle.name().to_string(),
        };
        if !self.stores.contains(&handle.index) {
            return Err(not_connected());
        }
        match self.state.as_deref_mut() {
            Some(state) => Ok(state.view(handle)?),
            None => Err(not_connected()),
        }
    }

    pub fn processor_name(&self) -> &str {
        self.node_name
    }
}
