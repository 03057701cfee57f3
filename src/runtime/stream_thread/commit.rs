//! Committing: outputs and changelog records acknowledged (or one Kafka transaction under
//! `exactly_once`), then each task's local store batch, then the input offsets; a failed
//! delivery or transaction rewinds to the last commit instead.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, warn};

use super::{now_ms, Committed, LoopState, Shared, StreamConsumer, MAX_ABORTS_IN_A_ROW};
use crate::runtime::client::due;
use crate::runtime::RuntimeError;

impl Shared {
    /// Flushes every output, then commits the positions of processed records. A delivery
    /// failure since the last commit rewinds instead: nothing past an unacknowledged
    /// output is ever committed.
    pub(super) fn commit(
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
                if let Some(repeated) = due("commit: queue full".into()) {
                    warn!(
                        pending = st.pending.len(),
                        repeated, "Commit skipped: the producer queue stayed full."
                    );
                }
                self.metrics.commit_failures.inc();
                return Committed::Failed;
            }
            self.producer.poll(Duration::from_millis(10));
        }
        crate::runtime::hooks::reach(crate::runtime::hooks::Point::Commit);
        if self.transactional {
            return self.commit_transaction(consumer, st, deadline, started);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = self.producer.flush(remaining) {
            if let Some(repeated) = due("commit: not acknowledged".into()) {
                warn!(error = %e, in_flight = self.producer.in_flight_count(), repeated, "Commit skipped: outputs not acknowledged in time.");
            }
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
                if let Some(repeated) = due("commit: offsets".into()) {
                    warn!(error = %e, partitions = n, repeated, "Offset commit failed; retrying at the next interval.");
                }
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
