//! The metrics of [`super::Metrics`] registered by idea, one group a function; the names,
//! help texts and labels are the exported contract (docs/operations.md lists them).

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use super::{counter, counter_vec, gauge, gauge_vec, histogram};

/// Records in and out: consumed, produced, not delivered, dead-lettered, bad.
pub(super) struct Flow {
    pub records_consumed: IntCounterVec,
    pub records_produced: IntCounterVec,
    pub delivery_failures: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub bad_records: IntCounterVec,
    pub dead_letters_truncated: IntCounter,
}

impl Flow {
    pub fn register(r: &Registry) -> Self {
        Flow {
            records_consumed: counter_vec(
                r,
                "scorestream_records_consumed_total",
                "Records read from Kafka, by topic.",
                &["topic"],
            ),
            records_produced: counter_vec(
                r,
                "scorestream_records_produced_total",
                "Records acknowledged by Kafka, by topic.",
                &["topic"],
            ),
            delivery_failures: counter_vec(
                r,
                "scorestream_delivery_failures_total",
                "Records Kafka did not acknowledge, by topic; their inputs are reprocessed.",
                &["topic"],
            ),
            dead_letters: counter_vec(
                r,
                "scorestream_dead_letters_total",
                "Records sent to a dead-letter topic, by input topic and reason.",
                &["topic", "reason"],
            ),
            bad_records: counter_vec(
                r,
                "scorestream_bad_records_total",
                "Bad records by reason and what their error policy did (dead_lettered, dropped, failed).",
                &["reason", "action"],
            ),
            dead_letters_truncated: counter(
                r,
                "scorestream_dead_letters_truncated_total",
                "Dead letters whose value was cut to fit the broker's limit.",
            ),
        }
    }
}

/// Commits, backpressure and what a rewind after a failed delivery costs.
pub(super) struct Commits {
    pub commits: IntCounter,
    pub commit_failures: IntCounter,
    pub commit_duration: Histogram,
    pub pending_outputs: IntGauge,
    pub backpressure_waits: IntCounter,
    pub rewinds: IntCounter,
    pub replayed_records_skipped: IntCounter,
}

impl Commits {
    pub fn register(r: &Registry) -> Self {
        Commits {
            commits: counter(r, "scorestream_commits_total", "Successful offset commits."),
            commit_failures: counter(
                r,
                "scorestream_commit_failures_total",
                "Offset commits that failed or were skipped (retried at the next interval).",
            ),
            commit_duration: histogram(
                r,
                "scorestream_commit_duration_seconds",
                "Time to flush outputs and commit input offsets.",
                vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            ),
            pending_outputs: gauge(
                r,
                "scorestream_pending_outputs",
                "Outputs waiting for room in the producer queue (backpressure).",
            ),
            backpressure_waits: counter(
                r,
                "scorestream_backpressure_waits_total",
                "Times processing paused because the producer queue was full.",
            ),
            rewinds: counter(
                r,
                "scorestream_rewinds_total",
                "Times partitions were rewound to the last commit after a delivery failure.",
            ),
            replayed_records_skipped: counter(
                r,
                "scorestream_replayed_records_skipped_total",
                "Input records skipped because the stored state already holds their effects.",
            ),
        }
    }
}

/// The work assigned to this instance and how fast it runs.
pub(super) struct Work {
    pub rebalances: IntCounterVec,
    pub tasks_assigned: IntGauge,
    pub thread_tasks: IntGaugeVec,
    pub partitions_assigned: IntGauge,
    pub consumer_lag: IntGaugeVec,
    pub record_process_seconds: Histogram,
    pub processor_records: IntCounterVec,
}

impl Work {
    pub fn register(r: &Registry) -> Self {
        Work {
            rebalances: counter_vec(
                r,
                "scorestream_rebalances_total",
                "Partition assignments and revocations, by kind.",
                &["kind"],
            ),
            tasks_assigned: gauge(
                r,
                "scorestream_tasks_assigned",
                "Tasks currently running on this instance.",
            ),
            thread_tasks: gauge_vec(
                r,
                "scorestream_thread_tasks",
                "Tasks running on each stream thread of this instance, by sub-topology.",
                &["thread", "subtopology"],
            ),
            partitions_assigned: gauge(
                r,
                "scorestream_partitions_assigned",
                "Input partitions currently assigned to this instance.",
            ),
            consumer_lag: gauge_vec(
                r,
                "scorestream_consumer_lag_records",
                "Records between the consumed position and the partition end.",
                &["topic", "partition"],
            ),
            record_process_seconds: histogram(
                r,
                "scorestream_record_process_seconds",
                "Time to run one input record through its task (every processor, store reads and writes, outputs queued).",
                vec![
                    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001,
                    0.002_5, 0.01, 0.05,
                ],
            ),
            processor_records: counter_vec(
                r,
                "scorestream_processor_records_total",
                "Records handed to each processor of the topology, by processor name.",
                &["processor"],
            ),
        }
    }
}

/// Local state: restoring it from the changelogs, its size.
pub(super) struct Restore {
    pub tasks_restoring: IntGauge,
    pub restore_records: IntCounter,
    pub restore_records_skipped: IntCounter,
    pub restore_remaining: IntGauge,
    pub store_keys: IntGaugeVec,
}

impl Restore {
    pub fn register(r: &Registry) -> Self {
        Restore {
            tasks_restoring: gauge(
                r,
                "scorestream_tasks_restoring",
                "Tasks bringing their stores up to the changelog's end before processing.",
            ),
            restore_records: counter(
                r,
                "scorestream_restore_records_total",
                "Changelog records applied to local stores while restoring.",
            ),
            restore_records_skipped: counter(
                r,
                "scorestream_restore_records_skipped_total",
                "Changelog records not applied because their inputs were never committed.",
            ),
            restore_remaining: gauge(
                r,
                "scorestream_restore_remaining_records",
                "Changelog records left to restore across restoring tasks (estimate).",
            ),
            store_keys: gauge_vec(
                r,
                "scorestream_store_keys",
                "Estimated keys per store on this instance.",
                &["store"],
            ),
        }
    }
}

/// Faults of the broker and of the topics: what ScoreStream found and did about it.
pub(super) struct Faults {
    pub state_ahead_of_broker: IntCounterVec,
    pub broker_reachable: IntGauge,
    pub input_topics_missing: IntGauge,
    pub topics_recreated: IntCounter,
    pub tasks_waiting: IntGauge,
    pub undecodable_batches: IntCounter,
    pub input_undecodable: IntGauge,
    pub input_beyond_end: IntGauge,
}

impl Faults {
    pub fn register(r: &Registry) -> Self {
        Faults {
            state_ahead_of_broker: counter_vec(
                r,
                "scorestream_state_ahead_of_broker_total",
                "Times a task's local state was found ahead of the broker (kind=changelog: its changelog is shorter than restored, the local state was wiped and restored again; kind=input: an input partition is shorter than processed or than the group's committed offset, it is read again from its beginning and its records are processed, not skipped as replays; kind=producer: the broker refuses the producer id it lost, the producer was replaced and uncommitted inputs processed again).",
                &["kind"],
            ),
            broker_reachable: gauge(
                r,
                "scorestream_broker_reachable",
                "1 while the Kafka cluster answers metadata requests (checked every few seconds), else 0.",
            ),
            input_topics_missing: gauge(
                r,
                "scorestream_input_topics_missing",
                "Input topics the broker does not list.",
            ),
            topics_recreated: counter(
                r,
                "scorestream_topics_recreated_total",
                "Times topics ScoreStream owns (changelogs, repartition, outputs) were gone from the broker and created again; the stream threads then rejoin the group so that it assigns their partitions.",
            ),
            tasks_waiting: gauge(
                r,
                "scorestream_tasks_waiting",
                "Tasks assigned to this instance that could not start yet (the broker did not answer; retried with backoff).",
            ),
            undecodable_batches: counter(
                r,
                "scorestream_undecodable_batches_total",
                "Input record batches the consumer could not decode (corrupt, or compressed with a codec this build lacks); the partition cannot advance past them.",
            ),
            input_undecodable: gauge(
                r,
                "scorestream_input_undecodable",
                "1 while an input record batch that cannot be decoded was seen in the last minute.",
            ),
            input_beyond_end: gauge(
                r,
                "scorestream_input_partitions_beyond_end",
                "Input partitions whose committed position is past the end of what the broker has (re-created, or lost by the broker) and that are not yet read again from their beginning.",
            ),
        }
    }
}

/// What the bundled topology's processors did: duplicates, late events, results, rankings, churn.
pub(super) struct Game {
    pub duplicate_events: IntCounter,
    pub corrupt_internal_records: IntCounter,
    pub late_events: IntCounterVec,
    pub game_results: IntCounterVec,
    pub leaderboard_updates: IntCounterVec,
    pub churn_predictions: IntCounterVec,
    pub churn_alerts: IntCounterVec,
}

impl Game {
    pub fn register(r: &Registry) -> Self {
        Game {
            duplicate_events: counter(
                r,
                "scorestream_duplicate_events_total",
                "Events dropped because their event_id was already applied.",
            ),
            corrupt_internal_records: counter(
                r,
                "scorestream_corrupt_internal_records_total",
                "Records on internal topics that did not decode; skipped.",
            ),
            late_events: counter_vec(
                r,
                "scorestream_late_events_total",
                "Events older than stream time minus the rules' grace period, by what was done with them.",
                &["action"],
            ),
            game_results: counter_vec(
                r,
                "scorestream_game_results_total",
                "Records sent to the gamification results topic, by output type.",
                &["type"],
            ),
            leaderboard_updates: counter_vec(
                r,
                "scorestream_leaderboard_updates_total",
                "Leaderboard totals by stage: forwarded (entered a partition's partial top-N), skipped (could not), changed (changed a board's top-N).",
                &["stage"],
            ),
            churn_predictions: counter_vec(
                r,
                "scorestream_churn_predictions_total",
                "Churn predictions published, by what triggered them and the risk band.",
                &["trigger", "band"],
            ),
            churn_alerts: counter_vec(
                r,
                "scorestream_churn_alerts_total",
                "Customer alerts published, by kind (critical_event, high_risk).",
                &["kind"],
            ),
        }
    }
}

/// The HTTP interface and its webhook.
pub(super) struct Interfaces {
    pub http_requests: IntCounterVec,
    pub webhook_events: IntCounterVec,
}

impl Interfaces {
    pub fn register(r: &Registry) -> Self {
        Interfaces {
            http_requests: counter_vec(
                r,
                "scorestream_http_requests_total",
                "HTTP requests answered, by route template and status code.",
                &["route", "status"],
            ),
            webhook_events: counter_vec(
                r,
                "scorestream_webhook_events_total",
                "POST /events: events accepted, events failed (Kafka did not acknowledge them), requests rejected as invalid (nothing written), by outcome.",
                &["outcome"],
            ),
        }
    }
}
