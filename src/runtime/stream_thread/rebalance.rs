//! The consumer's callbacks: logging, statistics, offset commit results, and the
//! rebalance: partitions assigned are added to the checkpoint; partitions revoked close
//! their tasks after a synchronous commit (or without one when they were lost).

use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::{debug, info, warn};

use super::checkpoint::PartitionState;
use super::{now_ms, Shared, StreamConsumer};
use crate::engine::TaskId;
use crate::runtime::client::LoggingContext;

/// Consumer callbacks: logging, and commit-before-revoke.
pub(crate) struct StreamContext {
    logging: LoggingContext,
    shared: Arc<Shared>,
}

impl StreamContext {
    pub(super) fn new(shared: Arc<Shared>) -> StreamContext {
        StreamContext {
            logging: LoggingContext,
            shared,
        }
    }
}

impl ClientContext for StreamContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if fac == "OFFSET" && (level as i32) <= rdkafka::config::RDKafkaLogLevel::Warning as i32 {
            if let Some((topic, partition)) = super::input_end::reset_partition(log_message) {
                if self.shared.offset_reset(topic, partition, log_message) {
                    return;
                }
            }
        }
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
            // Before the instance's threads start together, nothing is fetched: its task
            // resumes it when it starts.
            let st = self.shared.lock();
            if !self.shared.start.is_open() {
                let _ = consumer.pause(tpl);
            } else if !st.paused && !st.outage {
                let _ = consumer.resume(tpl);
            }
        }
    }
}

impl Shared {
    pub(super) fn on_assign(&self, tpl: &TopicPartitionList) {
        self.metrics.rebalances.with_label_values(&["assign"]).inc();
        self.start.arrive(self.thread);
        let mut st = self.lock();
        let mut added = Vec::new();
        for e in tpl.elements() {
            if let Some(i) = self.topic_index(e.topic()) {
                st.checkpoint
                    .partitions
                    .entry((i, e.partition()))
                    .or_insert(PartitionState::NEW);
                added.push(format!("{}-{}", e.topic(), e.partition()));
            }
        }
        self.gauges
            .partitions
            .set(st.checkpoint.partitions.len() as i64);
        self.announce(&st);
        info!(partitions = %added.join(","), total = st.checkpoint.partitions.len(), "Partitions assigned.");
    }

    pub(super) fn on_revoke(&self, consumer: &StreamConsumer, tpl: &TopicPartitionList) {
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
            .checkpoint
            .partitions
            .keys()
            .filter(|k| !revoked.contains(k))
            .map(|&tp| self.task_of(tp))
            .collect();
        let closing: Vec<TaskId> = st
            .tasks
            .running
            .keys()
            .filter(|id| !remaining.contains(id))
            .copied()
            .collect();
        if let Some(r) = st.tasks.restorer.as_mut() {
            for id in r.task_ids() {
                if !remaining.contains(&id) {
                    r.remove(&id);
                    info!(task = %id, "Revoked while restoring.");
                }
            }
        }
        let now = now_ms();
        for id in &closing {
            if let Some(task) = st.tasks.running.get_mut(id) {
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
            st.tasks.running.remove(id);
            if let Some(dir) = &self.stores.directory {
                dir.mark_released(*id);
            }
        }
        for k in &revoked {
            st.checkpoint.revoke(*k);
            st.tasks.held.remove(k);
        }
        self.gauges
            .partitions
            .set(st.checkpoint.partitions.len() as i64);
        self.report_tasks(&st);
        self.announce(&st);
        info!(
            revoked = revoked.len(),
            closed_tasks = closing.len(),
            remaining = st.checkpoint.partitions.len(),
            "Partitions revoked."
        );
    }
}
