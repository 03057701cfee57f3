//! Where time goes between an event and its results, as Kafka Streams reports it:
//! end-to-end latency (KIP-613's `record-e2e-latency`) measured when an output is handed
//! to the producer, store operation latency, and the read cache's hits and misses.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, Registry};

use crate::engine::SinkRecord;

/// End-to-end latency buckets: from a few milliseconds (live traffic) to a day (CDR and
/// billing batches arrive hours late; their event-time latency is that old).
const E2E_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 600.0, 3600.0, 86400.0,
];

#[derive(Clone)]
pub struct LatencyMetrics {
    /// `clock="event_time"`: wall clock minus the event's own time when its result is sent;
    /// `clock="record_time"`: wall clock minus the Kafka timestamp of the record the
    /// result was computed from. Only for records to output topics (not repartition or
    /// changelog topics, not dead letters).
    pub record_e2e: HistogramVec,
    /// Local store operations, by `op`: `read` (a lookup that missed the read cache and
    /// went to the backend) and `commit` (one atomic write of a task's changes).
    pub store_op: HistogramVec,
    /// Store reads answered by the read cache.
    pub cache_hits: IntCounter,
    /// Store reads the read cache did not hold (they went to the backend).
    pub cache_misses: IntCounter,
}

impl LatencyMetrics {
    pub(super) fn register(r: &Registry) -> LatencyMetrics {
        let record_e2e = HistogramVec::new(
            HistogramOpts::new(
                "scorestream_record_e2e_latency_seconds",
                "End-to-end latency of results sent to output topics: wall clock minus the event time (clock=event_time) or minus the input record's Kafka timestamp (clock=record_time).",
            )
            .buckets(E2E_BUCKETS.to_vec()),
            &["clock"],
        )
        .expect("valid metric");
        r.register(Box::new(record_e2e.clone()))
            .expect("unique metric");
        let store_op = HistogramVec::new(
            HistogramOpts::new(
                "scorestream_store_operation_seconds",
                "Local store operations: read (a read-cache miss served by the backend), commit (one atomic write of a task's changes and source offsets).",
            )
            .buckets(vec![
                0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01,
                0.05, 0.1, 0.5,
            ]),
            &["op"],
        )
        .expect("valid metric");
        r.register(Box::new(store_op.clone()))
            .expect("unique metric");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            r.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        LatencyMetrics {
            record_e2e,
            store_op,
            cache_hits: counter(
                "scorestream_store_cache_hits_total",
                "Store reads answered by the read cache (state.cache_bytes).",
            ),
            cache_misses: counter(
                "scorestream_store_cache_misses_total",
                "Store reads the read cache did not hold; served by the backend.",
            ),
        }
    }

    /// Observes one output sent at `now_ms` for an event of `event_time_ms`, computed from
    /// an input record stamped `record_time_ms`. Clocks running behind give 0, not a
    /// negative latency.
    pub fn observe_e2e(&self, now_ms: i64, event_time_ms: i64, record_time_ms: i64) {
        let secs = |t: i64| (now_ms.saturating_sub(t)).max(0) as f64 / 1000.0;
        self.record_e2e
            .with_label_values(&["event_time"])
            .observe(secs(event_time_ms));
        self.record_e2e
            .with_label_values(&["record_time"])
            .observe(secs(record_time_ms));
    }

    /// The handles the state layer counts and times with.
    pub fn store_metrics(&self) -> StoreMetrics {
        StoreMetrics {
            cache_hits: self.cache_hits.clone(),
            cache_misses: self.cache_misses.clone(),
            read: self.store_op.with_label_values(&["read"]),
            commit: self.store_op.with_label_values(&["commit"]),
        }
    }
}

/// What the stores record: cloned handles, so a read costs one atomic increment (a hit)
/// or an increment and a histogram observation (a miss, which goes to the backend anyway).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub read: Histogram,
    pub commit: Histogram,
}

/// Whether `out` counts for end-to-end latency: a result on an output topic, not a dead
/// letter (its sink says so, whatever the topic is called) nor a record on one of the
/// application's internal topics (`<app-id>-...`).
pub fn is_output(out: &SinkRecord, application_id: &str) -> bool {
    out.dead_letter.is_none()
        && !out
            .topic
            .strip_prefix(application_id)
            .is_some_and(|rest| rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2e_latency_is_observed_on_both_clocks_and_never_negative() {
        let m = LatencyMetrics::register(&Registry::new());
        m.observe_e2e(10_000, 4_000, 9_500);
        m.observe_e2e(10_000, 12_000, 10_000);
        let event = m.record_e2e.with_label_values(&["event_time"]);
        let record = m.record_e2e.with_label_values(&["record_time"]);
        assert_eq!(event.get_sample_count(), 2);
        assert_eq!(event.get_sample_sum(), 6.0);
        assert_eq!(record.get_sample_sum(), 0.5);
    }

    #[test]
    fn only_output_topics_count() {
        let dead_letter = Some(crate::engine::dead_letter::DeadLetterLimits {
            max_bytes: 1 << 20,
            on_too_large: crate::engine::OnTooLarge::Truncate,
        });
        let sent = |topic: &str, dead_letter| SinkRecord {
            topic: topic.into(),
            partitioning: crate::engine::Partitioning::ByKey,
            record: crate::engine::Record::new("v", 0),
            dead_letter,
        };
        assert!(is_output(&sent("gamification-results", None), "app"));
        assert!(is_output(&sent("apps-results", None), "app"));
        assert!(is_output(&sent("audit-dlq", None), "app"));
        assert!(!is_output(&sent("app-events-by-customer", None), "app"));
        assert!(!is_output(&sent("customer-events-dlq", dead_letter), "app"));
        assert!(!is_output(
            &sent("customer-events-rejected", dead_letter),
            "app"
        ));
    }
}
