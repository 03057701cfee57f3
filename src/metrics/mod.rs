//! Prometheus metrics. Labels are low-cardinality only: topics, reasons, kinds — never a
//! customer id.

mod groups;
pub mod kafka_stats;
pub mod latency;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric ScoreStream exports, registered in one [`Registry`].
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub records_consumed: IntCounterVec,
    pub records_produced: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub dead_letters_truncated: IntCounter,
    pub bad_records: IntCounterVec,
    pub delivery_failures: IntCounterVec,
    pub commits: IntCounter,
    pub commit_failures: IntCounter,
    pub commit_duration: Histogram,
    pub rebalances: IntCounterVec,
    pub tasks_assigned: IntGauge,
    /// Running tasks per stream thread and sub-topology (how the work is spread).
    pub thread_tasks: IntGaugeVec,
    pub partitions_assigned: IntGauge,
    pub pending_outputs: IntGauge,
    pub backpressure_waits: IntCounter,
    pub rewinds: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub tasks_restoring: IntGauge,
    pub restore_records: IntCounter,
    pub restore_records_skipped: IntCounter,
    pub restore_remaining: IntGauge,
    /// Faults: local state found ahead of what the broker holds, by `kind` (changelog,
    /// input); whether the broker answers; input topics missing; tasks waiting to start.
    pub state_ahead_of_broker: IntCounterVec,
    pub broker_reachable: IntGauge,
    pub input_topics_missing: IntGauge,
    pub topics_recreated: IntCounter,
    pub tasks_waiting: IntGauge,
    /// Input record batches the consumer could not decode (corrupt, or a codec this build
    /// lacks), and whether one was seen in the last minute (`/ready` says so).
    pub undecodable_batches: IntCounter,
    pub input_undecodable: IntGauge,
    /// Input partitions whose position is past the end of what the broker has (the topic
    /// was re-created or the broker lost it, the group's offsets kept), until sought back.
    pub input_beyond_end: IntGauge,
    pub replayed_records_skipped: IntCounter,
    pub store_keys: IntGaugeVec,
    pub duplicate_events: IntCounter,
    pub corrupt_internal_records: IntCounter,
    pub late_events: IntCounterVec,
    pub game_results: IntCounterVec,
    pub leaderboard_updates: IntCounterVec,
    pub record_process_seconds: Histogram,
    pub processor_records: IntCounterVec,
    pub churn_predictions: IntCounterVec,
    pub churn_alerts: IntCounterVec,
    pub http_requests: IntCounterVec,
    pub webhook_events: IntCounterVec,
    /// End-to-end and store latency, read-cache hits and misses.
    pub latency: latency::LatencyMetrics,
    /// librdkafka's statistics.
    pub kafka: kafka_stats::KafkaClientMetrics,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// CPU seconds, resident memory, open file descriptors, threads of this process (Linux),
/// and which build runs where: always 1, the identity in the labels (the Prometheus
/// `*_build_info` convention), so dashboards can show versions per instance.
fn register_process_and_build(r: &Registry) {
    #[cfg(target_os = "linux")]
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
    .expect("unique metric");
    gauge_vec(
        r,
        "scorestream_build_info",
        "Always 1; the version and git commit of the running binary are its labels.",
        &["version", "commit"],
    )
    .with_label_values(&[crate::build_info::VERSION, crate::build_info::COMMIT])
    .set(1);
}

impl Metrics {
    /// The counters [`crate::engine::BadRecords`] keeps for every bad record.
    pub fn bad_record_counters(&self) -> crate::engine::dead_letter::BadRecordCounters {
        crate::engine::dead_letter::BadRecordCounters {
            dead_letters: self.dead_letters.clone(),
            bad_records: self.bad_records.clone(),
        }
    }

    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let r = Registry::new();
        register_process_and_build(&r);
        let flow = groups::Flow::register(&r);
        let commits = groups::Commits::register(&r);
        let work = groups::Work::register(&r);
        let restore = groups::Restore::register(&r);
        let faults = groups::Faults::register(&r);
        let game = groups::Game::register(&r);
        let interfaces = groups::Interfaces::register(&r);
        Metrics {
            records_consumed: flow.records_consumed,
            records_produced: flow.records_produced,
            delivery_failures: flow.delivery_failures,
            dead_letters: flow.dead_letters,
            bad_records: flow.bad_records,
            dead_letters_truncated: flow.dead_letters_truncated,
            commits: commits.commits,
            commit_failures: commits.commit_failures,
            commit_duration: commits.commit_duration,
            pending_outputs: commits.pending_outputs,
            backpressure_waits: commits.backpressure_waits,
            rewinds: commits.rewinds,
            replayed_records_skipped: commits.replayed_records_skipped,
            rebalances: work.rebalances,
            tasks_assigned: work.tasks_assigned,
            thread_tasks: work.thread_tasks,
            partitions_assigned: work.partitions_assigned,
            consumer_lag: work.consumer_lag,
            record_process_seconds: work.record_process_seconds,
            processor_records: work.processor_records,
            tasks_restoring: restore.tasks_restoring,
            restore_records: restore.restore_records,
            restore_records_skipped: restore.restore_records_skipped,
            restore_remaining: restore.restore_remaining,
            store_keys: restore.store_keys,
            state_ahead_of_broker: faults.state_ahead_of_broker,
            broker_reachable: faults.broker_reachable,
            input_topics_missing: faults.input_topics_missing,
            topics_recreated: faults.topics_recreated,
            tasks_waiting: faults.tasks_waiting,
            undecodable_batches: faults.undecodable_batches,
            input_undecodable: faults.input_undecodable,
            input_beyond_end: faults.input_beyond_end,
            duplicate_events: game.duplicate_events,
            corrupt_internal_records: game.corrupt_internal_records,
            late_events: game.late_events,
            game_results: game.game_results,
            leaderboard_updates: game.leaderboard_updates,
            churn_predictions: game.churn_predictions,
            churn_alerts: game.churn_alerts,
            http_requests: interfaces.http_requests,
            webhook_events: interfaces.webhook_events,
            latency: latency::LatencyMetrics::register(&r),
            kafka: kafka_stats::KafkaClientMetrics::register(&r),
            registry: r,
        }
    }

    /// Text exposition of every metric.
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One stream thread's share of an instance-wide gauge (tasks, partitions, pending
/// outputs...): each thread sets its own share and the gauge shows their sum, so the
/// metric means the same with one thread or many.
#[derive(Clone)]
pub struct GaugeShare {
    gauge: IntGauge,
    shares: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    index: usize,
}

impl GaugeShare {
    /// `threads` shares of `gauge`.
    pub fn split(gauge: &IntGauge, threads: usize) -> Vec<GaugeShare> {
        let shares = std::sync::Arc::new(std::sync::Mutex::new(vec![0; threads.max(1)]));
        (0..threads.max(1))
            .map(|index| GaugeShare {
                gauge: gauge.clone(),
                shares: shares.clone(),
                index,
            })
            .collect()
    }

    /// A gauge of one share (a restorer or loop used on its own, e.g. in tests).
    pub fn whole(gauge: &IntGauge) -> GaugeShare {
        Self::split(gauge, 1).remove(0)
    }

    pub fn set(&self, value: i64) {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares[self.index] = value;
        self.gauge.set(shares.iter().sum());
    }

    /// This share's last value.
    pub fn get(&self) -> i64 {
        self.shares.lock().unwrap_or_else(|e| e.into_inner())[self.index]
    }
}

#[cfg(test)]
mod share_tests {
    use super::*;

    #[test]
    fn a_gauge_shows_the_sum_of_its_shares() {
        let g = IntGauge::new("g", "g").unwrap();
        let shares = GaugeShare::split(&g, 3);
        shares[0].set(2);
        shares[2].set(5);
        assert_eq!(g.get(), 7);
        shares[2].set(1);
        assert_eq!(g.get(), 3);
        assert_eq!(shares[1].get(), 0);
    }
}
