//! The stream thread's loop, as Kafka Streams' `StreamThread.runOnce`: each turn runs
//! named phases in order — backpressure, follow the broker, poll, restore, process,
//! punctuate, maybe-commit — and the thread's state lives in its task manager, record
//! collector and checkpoint (`LoopState`), shared with the rebalance callbacks.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::Message;
use tracing::{debug, error, info, warn};

use super::rebalance::StreamContext;
use super::{now_ms, Committed, LoopState, Shared, StreamConsumer};
use crate::engine::{Headers, Record, SinkRecord, SourcePosition, StreamTask, TaskId};
use crate::runtime::hooks::{self, Point};
use crate::runtime::undecodable::UndecodableWatch;
use crate::runtime::RuntimeError;

/// Records taken from the consumer in one poll phase, at most.
const MAX_BATCH: usize = 1024;

/// Runs the loop until `shutdown` is set or a task fails.
pub(crate) fn run_loop(
    shared: Arc<Shared>,
    consumer_config: rdkafka::ClientConfig,
    shutdown: Arc<AtomicBool>,
) -> Result<(), RuntimeError> {
    // Every line this thread logs says which thread it is.
    let _span = tracing::info_span!("stream_thread", thread = shared.thread).entered();
    let consumer: StreamConsumer = consumer_config
        .create_with_context(StreamContext::new(shared.clone()))
        .map_err(RuntimeError::Client)?;
    let topics = shared.source_names();
    consumer.subscribe(&topics).map_err(RuntimeError::Client)?;
    info!(topics = %topics.join(","), "Subscribed; waiting for partitions.");

    let result = StreamThread::new(&shared, &consumer).run(&shutdown);
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

/// One stream thread's loop: its consumer and what the phases carry from one turn to the
/// next. The tasks, collector and checkpoint are in `Shared`'s loop state, which each
/// phase locks for itself (never while polling: the rebalance callbacks run in `poll`).
struct StreamThread<'c> {
    shared: &'c Shared,
    consumer: &'c StreamConsumer,
    /// Records polled this turn, processed in the process phase.
    batch: Vec<BorrowedMessage<'c>>,
    /// Partitions sought back to held records during this turn (see `Shared::start_task`).
    stale: HashSet<(usize, i32)>,
    undecodable: UndecodableWatch,
    /// Input partitions that stopped advancing, compared with their ends (`input_end`).
    input_ends: super::input_end::InputEnds,
    /// Whether the producer's queue was full at the start of this turn.
    backlogged: bool,
    last_commit: Instant,
    last_punctuate: Instant,
    last_lag: Instant,
}

impl<'c> StreamThread<'c> {
    fn new(shared: &'c Shared, consumer: &'c StreamConsumer) -> StreamThread<'c> {
        StreamThread {
            shared,
            consumer,
            batch: Vec::with_capacity(MAX_BATCH),
            stale: HashSet::new(),
            undecodable: UndecodableWatch::default(),
            input_ends: Default::default(),
            backlogged: false,
            last_commit: Instant::now(),
            last_punctuate: Instant::now(),
            last_lag: Instant::now(),
        }
    }

    fn run(mut self, shutdown: &AtomicBool) -> Result<(), RuntimeError> {
        while !shutdown.load(Ordering::Relaxed) {
            self.run_once()?;
        }
        Ok(())
    }

    /// One turn of the loop.
    fn run_once(&mut self) -> Result<(), RuntimeError> {
        self.backpressure();
        self.follow_broker()?;
        self.poll();
        self.restore()?;
        self.process()?;
        self.punctuate()?;
        self.maybe_commit();
        self.report_lag();
        self.input_ends
            .check(self.shared, self.consumer, &mut self.shared.lock());
        match self.shared.lock().fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Hands waiting outputs to the producer; pauses fetching while its queue stays full
    /// and resumes it once the queue took everything.
    fn backpressure(&mut self) {
        let shared = self.shared;
        let clear = {
            let mut st = shared.lock();
            let clear = shared.send_pending(&mut st);
            if !clear && !st.paused {
                shared.metrics.backpressure_waits.inc();
                if let Ok(a) = self.consumer.assignment() {
                    let _ = self.consumer.pause(&a);
                }
                st.paused = true;
                debug!(
                    pending = st.collector.pending.len(),
                    "Producer queue full; pausing fetches."
                );
            } else if clear && st.paused {
                if let Some(a) = self.consumer.assignment().ok().filter(|_| !st.outage) {
                    let _ = self.consumer.resume(&a);
                }
                st.paused = false;
            }
            clear
        };
        self.backlogged = !clear;
        if self.backlogged {
            shared.producer.poll(Duration::from_millis(10));
        }
    }

    /// Follows the broker going away and coming back, and replaces a producer the broker
    /// forgot.
    fn follow_broker(&mut self) -> Result<(), RuntimeError> {
        self.shared
            .follow_outage(self.consumer, &mut self.shared.lock())?;
        self.shared.renew_forgotten_producer();
        Ok(())
    }

    /// Polls a batch of records (the rebalance callbacks run in here).
    fn poll(&mut self) {
        let (shared, consumer) = (self.shared, self.consumer);
        let wait = if self.backlogged {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        let undecodable = &mut self.undecodable;
        let mut consumer_error = |e: KafkaError| {
            if !undecodable.on_error(&e, &shared.metrics, Instant::now()) {
                crate::runtime::client::report(&e, "");
            }
        };
        match consumer.poll(wait) {
            None => {}
            Some(Err(e)) => consumer_error(e),
            Some(Ok(m)) => {
                self.batch.push(m);
                while self.batch.len() < MAX_BATCH {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => self.batch.push(m),
                        Some(Err(e)) => {
                            consumer_error(e);
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        self.undecodable.tick(&shared.metrics, Instant::now());
    }

    /// Creates the tasks of new partitions and restores their stores for a while (longer
    /// when nothing was polled).
    fn restore(&mut self) -> Result<(), RuntimeError> {
        let shared = self.shared;
        let mut st = shared.lock();
        if !st.tasks.held.is_empty() {
            self.stale.extend(shared.retry_held(self.consumer, &mut st));
        }
        match shared.ensure_tasks(self.consumer, &mut st, now_ms()) {
            Ok(sought) => self.stale.extend(sought),
            Err(e) => {
                error!(error = %e, "Could not create tasks; stopping.");
                return Err(e);
            }
        }
        let budget = if self.batch.is_empty() {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(5)
        };
        match shared.drive_restore(self.consumer, &mut st, budget) {
            Ok(sought) => {
                self.stale.extend(sought);
                shared.update_waiting(&st);
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "Restore failed; stopping.");
                Err(e)
            }
        }
    }

    /// Runs the polled records through their tasks, collecting their outputs.
    fn process(&mut self) -> Result<(), RuntimeError> {
        let shared = self.shared;
        if !self.batch.is_empty() {
            let now = now_ms();
            let mut st = shared.lock();
            for m in self.batch.drain(..) {
                // Polled before its partition was sought back to held records: it comes
                // again, in order, after them.
                if !self.stale.is_empty()
                    && shared
                        .topic_index(m.topic())
                        .is_some_and(|i| self.stale.contains(&(i, m.partition())))
                {
                    continue;
                }
                if let Err(e) = shared.process_message(self.consumer, &mut st, &m, now) {
                    error!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "Task failed; stopping.");
                    return Err(e);
                }
            }
        }
        // Only the batch polled before a seek is stale; later polls come after it.
        self.stale.clear();
        shared.producer.serve_reports();
        Ok(())
    }

    /// Fires wall-clock punctuations every 100 ms.
    fn punctuate(&mut self) -> Result<(), RuntimeError> {
        if self.last_punctuate.elapsed() < Duration::from_millis(100) {
            return Ok(());
        }
        self.last_punctuate = Instant::now();
        let now = now_ms();
        let shared = self.shared;
        let mut st = shared.lock();
        let st = &mut *st;
        let mut failed = None;
        for task in st.tasks.running.values_mut() {
            if let Err(e) = task.punctuate_wall_clock(now) {
                failed = Some(e);
                break;
            }
            task.drain_outputs_into(&mut st.collector.scratch);
        }
        shared.collect_scratch(st);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// At-least-once: completes the commit point in flight once acknowledged and takes the
    /// next one every commit interval (`commit.rs`); `exactly_once` commits its
    /// transaction every interval.
    fn maybe_commit(&mut self) {
        let shared = self.shared;
        let interval = shared.settings.commit_interval;
        if shared.transactional {
            if self.last_commit.elapsed() >= interval {
                self.last_commit = Instant::now();
                let mut st = shared.lock();
                let deadline = Instant::now() + interval.max(Duration::from_secs(5));
                shared.commit(self.consumer, &mut st, deadline);
            }
            return;
        }
        let mut st = shared.lock();
        let due = self.last_commit.elapsed() >= interval || shared.write_set_full(&st);
        let in_flight = st.checkpoint.in_flight.is_some();
        shared.maybe_commit(self.consumer, &mut st, due);
        if due && !in_flight {
            self.last_commit = Instant::now();
        }
    }

    /// Publishes consumer lag every 2 s.
    fn report_lag(&mut self) {
        if self.last_lag.elapsed() >= Duration::from_secs(2) {
            self.last_lag = Instant::now();
            self.shared
                .update_lag(self.consumer, &mut self.shared.lock());
        }
    }
}

impl Shared {
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
        let Some((_, high)) =
            crate::runtime::restore::cached_watermarks(consumer, topic, partition)
        else {
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
        // librdkafka gives the topic as a C string: each `topic()` is a strlen and a UTF-8
        // check, so it is taken once.
        let topic = m.topic();
        let Some(ti) = self.topic_index(topic) else {
            return Ok(());
        };
        let partition = m.partition();
        let offset = m.offset();
        let source = &self.sources[ti];
        let id = self.task_of((ti, partition));
        if !Self::runs_now(st, topic, (ti, partition), id, offset) {
            return Ok(());
        }
        if tracing::enabled!(tracing::Level::DEBUG)
            && st
                .checkpoint
                .partitions
                .get(&(ti, partition))
                .is_some_and(|ps| ps.base < 0)
        {
            debug!(
                topic,
                partition, offset, "First record of an input partition this assignment."
            );
        }
        st.checkpoint.advance((ti, partition), offset);
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
        let task = st.tasks.running.get_mut(&id).expect("checked above");
        self.check_replay(consumer, task, &source.name, partition, offset);
        let started = Instant::now();
        if !task.process(&source.name, record, now)? {
            self.metrics.replayed_records_skipped.inc();
            debug!(
                topic,
                partition, offset, "Replay skipped: the stored state already has it."
            );
        }
        self.metrics
            .record_process_seconds
            .observe(started.elapsed().as_secs_f64());
        task.drain_outputs_into(&mut st.collector.scratch);
        self.observe_e2e(&st.collector.scratch, now, record_time);
        self.collect_scratch(st);
        Ok(())
    }

    /// Whether a polled record at `offset` of input `tp` is processed now. Records of a
    /// revoked partition are skipped (the new owner has them); records of a task that does
    /// not run yet are held, and come again when it starts.
    fn runs_now(
        st: &mut LoopState,
        topic: &str,
        tp: (usize, i32),
        id: TaskId,
        offset: i64,
    ) -> bool {
        if !st.checkpoint.partitions.contains_key(&tp) {
            debug!(
                topic,
                partition = tp.1,
                offset,
                "Skipping record of a revoked partition."
            );
            return false;
        }
        if !st.tasks.running.contains_key(&id) {
            // Its task is restoring or not created yet: come back to this record when it
            // starts.
            let held = st.tasks.held.entry(tp).or_insert(offset);
            *held = (*held).min(offset);
            hooks::reach(Point::HoldRecord);
            return false;
        }
        // Its task runs, but the seek back to its held records failed: this record comes
        // again, in order, once a seek succeeds.
        st.tasks.held.is_empty() || !st.tasks.held.contains_key(&tp)
    }

    /// End-to-end latency of the results an input record at `record_time` gave.
    fn observe_e2e(&self, outputs: &[SinkRecord], now: i64, record_time: i64) {
        let app = self.topology.application_id();
        for out in outputs {
            if crate::metrics::latency::is_output(out, app) {
                let m = &self.metrics.latency;
                m.observe_e2e(now, out.record.timestamp, record_time);
            }
        }
    }
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
        for (id, task) in st.tasks.running.iter_mut() {
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
    st.checkpoint.partitions.clear();
    for id in std::mem::take(&mut st.tasks.running).into_keys() {
        if let Some(dir) = &shared.stores.directory {
            dir.mark_released(id);
        }
    }
    st.tasks.restorer = None;
    drop(st);
    consumer.unsubscribe();
}
