//! Committing, as numbered steps (the checkpoint):
//!
//! 1. **Prepare** a commit point: every task's store writes become changelog records
//!    (produced with the outputs) and a staged set; the input positions reached are
//!    remembered, and the point closes the current commit epoch. Processing goes on.
//! 2. **Settle**: the point waits until every output and changelog record of its epoch
//!    and of earlier ones is acknowledged (`runtime::acks`), checked each loop turn
//!    without blocking. A failed delivery rewinds instead (step 5).
//! 3. **Write local state**: each task's staged set and input positions, one atomic batch.
//! 4. **Commit offsets** of the point's positions (asynchronously; a failure is retried
//!    with the next point).
//! 5. **Rewind** after a failed delivery, or when none of a point's records was
//!    acknowledged for `runtime.commit_deadline` (it is abandoned as stuck): drop
//!    uncommitted work and seek back to the last commit, so the affected inputs are
//!    processed again.
//!
//! Nothing past an unacknowledged output is ever committed. Revocation and shutdown
//! commit synchronously (prepare, then wait for the flush), as does `exactly_once`, where
//! outputs, changelogs and offsets are one Kafka transaction.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, warn};

use super::{now_ms, Committed, LoopState, Shared, StreamConsumer, MAX_ABORTS_IN_A_ROW};
use crate::runtime::client::due;
use crate::runtime::hooks::{self, Point};
use crate::runtime::RuntimeError;

impl Shared {
    /// Every task's buffered store writes become changelog records and a staged set; the
    /// records go to the collector with the current epoch.
    fn stage_tasks(&self, st: &mut LoopState) {
        let now = now_ms();
        {
            let st = &mut *st;
            for task in st.tasks.running.values_mut() {
                task.prepare_commit(now);
                task.drain_outputs_into(&mut st.collector.scratch);
            }
        }
        self.collect_scratch(st);
    }

    /// Step 1: prepares a commit point of everything processed so far. With a point
    /// already in flight, extends it (its staged sets grow; it now covers this epoch too).
    fn prepare(&self, st: &mut LoopState) {
        self.stage_tasks(st);
        let all = self.recommit.swap(false, Ordering::Relaxed);
        st.checkpoint.prepare(all, Instant::now());
    }

    /// The maybe-commit phase of the loop (at-least-once): completes the point in flight
    /// if its outputs are acknowledged, and prepares the next one when `due` and none is
    /// in flight. Never waits for the producer.
    pub(super) fn maybe_commit(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        due: bool,
    ) -> Committed {
        let outcome = self.try_complete(consumer, st, CommitMode::Async);
        if due
            && st.checkpoint.in_flight.is_none()
            && matches!(outcome, Committed::Nothing | Committed::Offsets(_))
        {
            self.prepare(st);
            hooks::reach(Point::Commit);
        }
        outcome
    }

    /// Steps 2–4 for the point in flight, if it has settled; step 5 if a delivery failed.
    fn try_complete(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        mode: CommitMode,
    ) -> Committed {
        let failures = self.producer.context().failures.load(Ordering::Relaxed);
        if st.checkpoint.failed_since(failures) {
            self.rewind(consumer, st);
            return Committed::Rewound;
        }
        let Some(epoch) = st.checkpoint.in_flight.as_ref().map(|p| p.epoch) else {
            return Committed::Nothing;
        };
        {
            let mut ledger = self.producer.context().ledger();
            if !ledger.settled_through(epoch) {
                let progress = ledger.progress_through(epoch);
                drop(ledger);
                // A synchronous commit has its own deadline (the caller's).
                let deadline = self.settings.commit_deadline();
                if matches!(mode, CommitMode::Async)
                    && st.checkpoint.overdue(Instant::now(), deadline, progress)
                {
                    self.abandon(consumer, st);
                    return Committed::Rewound;
                }
                return Committed::Pending;
            }
            ledger.close_through(epoch);
        }
        hooks::reach(Point::CommitSettled);
        if !self.write_local_state(st) {
            return Committed::Failed;
        }
        let (point, positions) = st.checkpoint.complete().expect("checked above");
        let n = positions.len();
        if n == 0 {
            return Committed::Nothing;
        }
        let tpl = self.offsets(&positions);
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                self.metrics.commits.inc();
                self.metrics
                    .commit_duration
                    .observe(point.prepared.elapsed().as_secs_f64());
                debug!(partitions = n, epoch = point.epoch, positions = ?positions, "Committed offsets.");
                Committed::Offsets(n)
            }
            Err(e) => {
                self.offset_commit_failed(&e, n);
                Committed::Failed
            }
        }
    }

    /// Step 2b: a point none of whose records was acknowledged for `runtime.commit_deadline`
    /// (librdkafka still retrying records sent while the broker was away, up to
    /// `message.timeout.ms`) would hold back every later commit: it is abandoned, and
    /// processing rewinds to the last committed positions as after a failed delivery.
    /// Nothing of it is committed. A point whose acknowledgements keep coming is waited for.
    fn abandon(&self, consumer: &StreamConsumer, st: &mut LoopState) {
        let age = st
            .checkpoint
            .in_flight
            .as_ref()
            .map(|p| p.prepared.elapsed());
        warn!(
            epoch = st.checkpoint.in_flight.as_ref().map(|p| p.epoch),
            age = ?age,
            deadline = ?self.settings.commit_deadline(),
            in_flight = self.producer.in_flight_count(),
            "Commit point stuck: none of its records acknowledged within runtime.commit_deadline; abandoned, its inputs are processed again from the last commit."
        );
        self.metrics.commit_failures.inc();
        self.rewind(consumer, st);
    }

    /// An offset commit failed (here or in the consumer's callback for an asynchronous
    /// one): the next commit point commits every position again.
    pub(super) fn offset_commit_failed(&self, e: &KafkaError, partitions: usize) {
        self.recommit.store(true, Ordering::Relaxed);
        self.metrics.commit_failures.inc();
        if let Some(repeated) = due("commit: offsets".into()) {
            warn!(error = %e, partitions, repeated, "Offset commit failed; retrying with the next commit.");
        }
    }

    /// Commits everything processed so far and waits for it, until `deadline`: for a
    /// revocation, shutdown, and every `exactly_once` commit. A delivery failure since the
    /// last commit rewinds instead: nothing past an unacknowledged output is committed.
    pub(super) fn commit(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        deadline: Instant,
    ) -> Committed {
        if self.transactional {
            let started = Instant::now();
            self.stage_tasks(st);
            if !self.flush_pending(st, deadline) {
                return Committed::Failed;
            }
            hooks::reach(Point::Commit);
            return self.commit_transaction(consumer, st, deadline, started);
        }
        self.prepare(st);
        if !self.flush_pending(st, deadline) {
            return Committed::Failed;
        }
        hooks::reach(Point::Commit);
        loop {
            match self.try_complete(consumer, st, CommitMode::Sync) {
                Committed::Pending => {}
                outcome => return outcome,
            }
            if Instant::now() >= deadline {
                if let Some(repeated) = due("commit: not acknowledged".into()) {
                    warn!(
                        in_flight = self.producer.in_flight_count(),
                        repeated, "Commit not done: outputs not acknowledged in time."
                    );
                }
                self.metrics.commit_failures.inc();
                return Committed::Failed;
            }
            self.producer.poll(Duration::from_millis(10));
        }
    }

    /// Hands every pending output to the producer, waiting for room until `deadline`.
    fn flush_pending(&self, st: &mut LoopState, deadline: Instant) -> bool {
        while !self.send_pending(st) {
            if Instant::now() >= deadline {
                if let Some(repeated) = due("commit: queue full".into()) {
                    warn!(
                        pending = st.collector.pending.len(),
                        repeated, "Commit not done: the producer queue stayed full."
                    );
                }
                self.metrics.commit_failures.inc();
                return false;
            }
            self.producer.poll(Duration::from_millis(10));
        }
        true
    }

    /// Writes every task's staged store batch. False (and a fatal error recorded) when the
    /// local write failed.
    fn write_local_state(&self, st: &mut LoopState) -> bool {
        let ctx = self.producer.context();
        for task in st.tasks.running.values_mut() {
            if let Err(e) = task.finish_commit(&|t, p| ctx.changelog_end(t, p)) {
                error!(task = %task.id(), error = %e, "Could not write local state; stopping without committing offsets (a restart restores from the changelog).");
                self.metrics.commit_failures.inc();
                st.fatal = Some(RuntimeError::State(e));
                return false;
            }
        }
        true
    }

    /// `positions` as the consumer commits them.
    fn offsets(&self, positions: &[((usize, i32), i64)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &((ti, p), position) in positions {
            let _ = tpl.add_partition_offset(&self.sources[ti].name, p, Offset::Offset(position));
        }
        tpl
    }

    fn mark_committed(&self, st: &mut LoopState, started: Instant, n: usize) {
        st.checkpoint.mark_all_committed();
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
        let positions = st.checkpoint.uncommitted();
        let (tpl, n) = (self.offsets(&positions), positions.len());
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
        let delivered = !st.checkpoint.failed_since(failures);
        match result {
            Ok(()) if delivered => self.transaction_committed(st, started, n),
            other => self.transaction_failed(consumer, st, other, delivered, remaining),
        }
    }

    /// The transaction committed and every delivery succeeded: settle the epoch, write the
    /// local state, mark the offsets committed and begin the next transaction.
    fn transaction_committed(&self, st: &mut LoopState, started: Instant, n: usize) -> Committed {
        st.checkpoint.aborts_in_a_row = 0;
        // The transaction's commit flushed it: every epoch so far is settled.
        self.producer
            .context()
            .ledger()
            .close_through(st.checkpoint.epoch);
        st.checkpoint.epoch += 1;
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

    /// The transaction did not commit (or a delivery in it failed): stop on a fatal error
    /// or too many aborts in a row, else abort it and rewind to the last commit.
    fn transaction_failed(
        &self,
        consumer: &StreamConsumer,
        st: &mut LoopState,
        other: Result<(), KafkaError>,
        delivered: bool,
        remaining: Duration,
    ) -> Committed {
        self.metrics.commit_failures.inc();
        if let Err(KafkaError::Transaction(e)) = &other {
            if e.is_fatal() {
                error!(error = %e, "Fatal transaction error (fenced by another instance with the same transactional id?); stopping.");
                st.fatal = Some(RuntimeError::Transactions(e.to_string()));
                return Committed::Failed;
            }
        }
        st.checkpoint.aborts_in_a_row += 1;
        if st.checkpoint.aborts_in_a_row >= MAX_ABORTS_IN_A_ROW {
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

    /// After a failed delivery: drop uncommitted work and seek every partition back to its
    /// last commit, so the affected inputs are processed again (at-least-once).
    fn rewind(&self, consumer: &StreamConsumer, st: &mut LoopState) {
        self.metrics.rewinds.inc();
        st.collector.pending.clear();
        let targets = st.checkpoint.rewind();
        // Let what is still in flight land (or fail) before tasks restore from their
        // changelogs again, so no abandoned changelog record lands after a restore.
        if !self.transactional {
            let _ = self.producer.flush(self.settings.shutdown_timeout);
        }
        self.producer
            .context()
            .ledger()
            .abandon_before(st.checkpoint.epoch);
        // Dropping the tasks drops their uncommitted store writes; they are recreated (and
        // restored from what was committed) before processing goes on.
        st.tasks.running.clear();
        self.report_tasks(st);
        for ((ti, p), target) in targets {
            let topic = &self.sources[ti].name;
            match consumer.seek(topic, p, Offset::Offset(target), Duration::from_secs(10)) {
                Ok(()) => {
                    warn!(topic = %topic, partition = p, offset = target, "Rewound after a failed delivery.");
                    st.checkpoint.rewound((ti, p));
                }
                Err(e) => {
                    error!(topic = %topic, partition = p, offset = target, error = %e, "Seek failed; the group will redeliver from the last commit after the next rebalance.")
                }
            }
        }
    }
}
