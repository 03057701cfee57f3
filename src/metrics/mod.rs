//! Prometheus metrics. Labels are low-cardinality only: topics, reasons, kinds — never a
//! customer id.

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
        let commit_duration = histogram(
            &r,
            "scorestream_commit_duration_seconds",
            "Time to flush outputs and commit input offsets.",
            vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        let record_process_seconds = histogram(
            &r,
            "scorestream_record_process_seconds",
            "Time to run one input record through its task (every processor, store reads and writes, outputs queued).",
            vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001,
                0.002_5, 0.01, 0.05,
            ],
        );
        let consumer_lag = gauge_vec(
            &r,
            "scorestream_consumer_lag_records",
            "Records between the consumed position and the partition end.",
            &["topic", "partition"],
        );
        Metrics {
            records_consumed: counter_vec(
                &r,
                "scorestream_records_consumed_total",
                "Records read from Kafka, by topic.",
                &["topic"],
            ),
            records_produced: counter_vec(
                &r,
                "scorestream_records_produced_total",
                "Records acknowledged by Kafka, by topic.",
                &["topic"],
            ),
            dead_letters: counter_vec(
                &r,
                "scorestream_dead_letters_total",
                "Records sent to a dead-letter topic, by input topic and reason.",
                &["topic", "reason"],
            ),
            bad_records: counter_vec(
                &r,
                "scorestream_bad_records_total",
                "Bad records by reason and what their error policy did (dead_lettered, dropped, failed).",
                &["reason", "action"],
            ),
            dead_letters_truncated: counter(
                &r,
                "scorestream_dead_letters_truncated_total",
                "Dead letters whose value was cut to fit the broker's limit.",
            ),
            delivery_failures: counter_vec(
                &r,
                "scorestream_delivery_failures_total",
                "Records Kafka did not acknowledge, by topic; their inputs are reprocessed.",
                &["topic"],
            ),
            commits: counter(
                &r,
                "scorestream_commits_total",
                "Successful offset commits.",
            ),
            commit_failures: counter(
                &r,
                "scorestream_commit_failures_total",
                "Offset commits that failed or were skipped (retried at the next interval).",
            ),
            commit_duration,
            rebalances: counter_vec(
                &r,
                "scorestream_rebalances_total",
                "Partition assignments and revocations, by kind.",
                &["kind"],
            ),
            tasks_assigned: gauge(
                &r,
                "scorestream_tasks_assigned",
                "Tasks currently running on this instance.",
            ),
            thread_tasks: gauge_vec(
                &r,
                "scorestream_thread_tasks",
                "Tasks running on each stream thread of this instance, by sub-topology.",
                &["thread", "subtopology"],
            ),
            partitions_assigned: gauge(
                &r,
                "scorestream_partitions_assigned",
                "Input partitions currently assigned to this instance.",
            ),
            pending_outputs: gauge(
                &r,
                "scorestream_pending_outputs",
                "Outputs waiting for room in the producer queue (backpressure).",
            ),
            backpressure_waits: counter(
                &r,
                "scorestream_backpressure_waits_total",
                "Times processing paused because the producer queue was full.",
            ),
            rewinds: counter(
                &r,
                "scorestream_rewinds_total",
                "Times partitions were rewound to the last commit after a delivery failure.",
            ),
            consumer_lag,
            tasks_restoring: gauge(
                &r,
                "scorestream_tasks_restoring",
                "Tasks bringing their stores up to the changelog's end before processing.",
            ),
            restore_records: counter(
                &r,
                "scorestream_restore_records_total",
                "Changelog records applied to local stores while restoring.",
            ),
            restore_records_skipped: counter(
                &r,
                "scorestream_restore_records_skipped_total",
                "Changelog records not applied because their inputs were never committed.",
            ),
            restore_remaining: gauge(
                &r,
                "scorestream_restore_remaining_records",
                "Changelog records left to restore across restoring tasks (estimate).",
            ),
            state_ahead_of_broker: counter_vec(
                &r,
                "scorestream_state_ahead_of_broker_total",
                "Times a task's local state was found ahead of the broker (kind=changelog: its changelog is shorter than restored, the local state was wiped and restored again; kind=input: an input partition is shorter than processed or than the group's committed offset, it is read again from its beginning and its records are processed, not skipped as replays; kind=producer: the broker refuses the producer id it lost, the producer was replaced and uncommitted inputs processed again).",
                &["kind"],
            ),
            broker_reachable: gauge(
                &r,
                "scorestream_broker_reachable",
                "1 while the Kafka cluster answers metadata requests (checked every few seconds), else 0.",
            ),
            input_topics_missing: gauge(
                &r,
                "scorestream_input_topics_missing",
                "Input topics the broker does not list.",
            ),
            topics_recreated: counter(
                &r,
                "scorestream_topics_recreated_total",
                "Times topics ScoreStream owns (changelogs, repartition, outputs) were gone from the broker and created again; the stream threads then rejoin the group so that it assigns their partitions.",
            ),
            tasks_waiting: gauge(
                &r,
                "scorestream_tasks_waiting",
                "Tasks assigned to this instance that could not start yet (the broker did not answer; retried with backoff).",
            ),
            undecodable_batches: counter(
                &r,
                "scorestream_undecodable_batches_total",
                "Input record batches the consumer could not decode (corrupt, or compressed with a codec this build lacks); the partition cannot advance past them.",
            ),
            input_undecodable: gauge(
                &r,
                "scorestream_input_undecodable",
                "1 while an input record batch that cannot be decoded was seen in the last minute.",
            ),
            input_beyond_end: gauge(
                &r,
                "scorestream_input_partitions_beyond_end",
                "Input partitions whose committed position is past the end of what the broker has (re-created, or lost by the broker) and that are not yet read again from their beginning.",
            ),
            replayed_records_skipped: counter(
                &r,
                "scorestream_replayed_records_skipped_total",
                "Input records skipped because the stored state already holds their effects.",
            ),
            store_keys: gauge_vec(
                &r,
                "scorestream_store_keys",
                "Estimated keys per store on this instance.",
                &["store"],
            ),
            duplicate_events: counter(
                &r,
                "scorestream_duplicate_events_total",
                "Events dropped because their event_id was already applied.",
            ),
            corrupt_internal_records: counter(
                &r,
                "scorestream_corrupt_internal_records_total",
                "Records on internal topics that did not decode; skipped.",
            ),
            late_events: counter_vec(
                &r,
                "scorestream_late_events_total",
                "Events older than stream time minus the rules' grace period, by what was done with them.",
                &["action"],
            ),
            game_results: counter_vec(
                &r,
                "scorestream_game_results_total",
                "Records sent to the gamification results topic, by output type.",
                &["type"],
            ),
            leaderboard_updates: counter_vec(
                &r,
                "scorestream_leaderboard_updates_total",
                "Leaderboard totals by stage: forwarded (entered a partition's partial top-N), skipped (could not), changed (changed a board's top-N).",
                &["stage"],
            ),
            record_process_seconds,
            processor_records: counter_vec(
                &r,
                "scorestream_processor_records_total",
                "Records handed to each processor of the topology, by processor name.",
                &["processor"],
            ),
            churn_predictions: counter_vec(
                &r,
                "scorestream_churn_predictions_total",
                "Churn predictions published, by what triggered them and the risk band.",
                &["trigger", "band"],
            ),
            churn_alerts: counter_vec(
                &r,
                "scorestream_churn_alerts_total",
                "Customer alerts published, by kind (critical_event, high_risk).",
                &["kind"],
            ),
            http_requests: counter_vec(
                &r,
                "scorestream_http_requests_total",
                "HTTP requests answered, by route template and status code.",
                &["route", "status"],
            ),
            webhook_events: counter_vec(
                &r,
                "scorestream_webhook_events_total",
                "POST /events: events accepted, events failed (Kafka did not acknowledge them), requests rejected as invalid (nothing written), by outcome.",
                &["outcome"],
            ),
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
