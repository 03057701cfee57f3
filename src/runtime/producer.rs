//! The producer of outputs and changelogs, replaceable while the loop runs: a broker that
//! restarted without its state no longer knows the idempotent producer's id, and
//! librdkafka never asks for a new one (it bumps the epoch itself, which Tansu refuses
//! forever). Only a new producer gets a new id. The methods are librdkafka's, forwarded.

use std::sync::atomic::Ordering;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaResult;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, PurgeConfig};
use rdkafka::{ClientConfig, TopicPartitionList};

use super::client::DeliveryContext;

/// At most this many report events (batches) served per [`ReplaceableProducer::serve_reports`],
/// so that a flood of reports cannot hold the loop for long.
const MAX_REPORT_EVENTS: usize = 4096;

pub struct ReplaceableProducer {
    current: RwLock<BaseProducer<DeliveryContext>>,
    /// To create the next one.
    config: ClientConfig,
    /// Shares the failure count and changelog ends with every producer created here.
    context: DeliveryContext,
}

impl ReplaceableProducer {
    /// Wraps `producer`, created from `config` with `context.share()`.
    pub fn new(
        producer: BaseProducer<DeliveryContext>,
        config: ClientConfig,
        context: DeliveryContext,
    ) -> Self {
        ReplaceableProducer {
            current: RwLock::new(producer),
            config,
            context,
        }
    }

    fn get(&self) -> RwLockReadGuard<'_, BaseProducer<DeliveryContext>> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The callbacks' state, the same for every producer this one becomes.
    pub fn context(&self) -> &DeliveryContext {
        &self.context
    }

    /// True once the broker refuses the producer's id over and over (it lost its state).
    pub fn forgotten_by_broker(&self) -> bool {
        self.context.forgotten().load(Ordering::Relaxed)
    }

    /// librdkafka's fatal error of the current producer, if it raised one. An idempotent
    /// producer raises one when a broker that lost its state answers out of sequence (it
    /// handed the same producer id to another client): it produces nothing after that.
    pub fn fatal_error(&self) -> Option<String> {
        self.get()
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Replaces the producer with a new one (a new producer id). What the old one had not
    /// delivered is purged and counted as failed deliveries, so the next commit rewinds
    /// and the inputs are processed again. Not for a transactional producer.
    pub fn replace(&self) -> KafkaResult<()> {
        let fresh: BaseProducer<DeliveryContext> =
            self.config.create_with_context(self.context.share())?;
        let old = {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, fresh)
        };
        self.context.failures.fetch_add(1, Ordering::Relaxed);
        self.context.forgotten().store(false, Ordering::Relaxed);
        old.purge(PurgeConfig::default().queue().inflight());
        // Closing it may wait on the broker: not on the processing thread.
        std::thread::spawn(move || drop(old));
        Ok(())
    }

    /// Enqueues `record`; the error without the record (callers retry from their own copy).
    pub fn send<K, P>(&self, record: BaseRecord<'_, K, P, usize>) -> KafkaResult<()>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.get().send(record).map_err(|(e, _)| e)
    }

    pub fn poll(&self, timeout: Duration) {
        self.get().poll(timeout)
    }

    /// Serves every delivery report waiting, without waiting for more. librdkafka's poll
    /// with a zero timeout serves one event, the reports of one produced batch; polled once
    /// per loop turn, acknowledgements came in one batch per turn, the producer queue filled
    /// up and fetching paused (issue 15: most of an end-to-end run was spent so).
    pub fn serve_reports(&self) {
        let producer = self.get();
        let reports = || producer.context().reports();
        for _ in 0..MAX_REPORT_EVENTS {
            let before = reports();
            producer.poll(Duration::ZERO);
            if reports() == before {
                break;
            }
        }
    }

    pub fn flush(&self, timeout: Duration) -> KafkaResult<()> {
        self.get().flush(timeout)
    }

    pub fn in_flight_count(&self) -> i32 {
        self.get().in_flight_count()
    }

    pub fn begin_transaction(&self) -> KafkaResult<()> {
        self.get().begin_transaction()
    }

    pub fn commit_transaction(&self, timeout: Duration) -> KafkaResult<()> {
        self.get().commit_transaction(timeout)
    }

    pub fn abort_transaction(&self, timeout: Duration) -> KafkaResult<()> {
        self.get().abort_transaction(timeout)
    }

    pub fn send_offsets_to_transaction(
        &self,
        offsets: &TopicPartitionList,
        cgm: &ConsumerGroupMetadata,
        timeout: Duration,
    ) -> KafkaResult<()> {
        self.get()
            .send_offsets_to_transaction(offsets, cgm, timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;

    use super::*;
    use crate::metrics::Metrics;

    fn mock_producer(
        mock: &MockCluster<'static, DefaultProducerContext>,
        context: DeliveryContext,
    ) -> ReplaceableProducer {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("linger.ms", "0");
        ReplaceableProducer::new(
            config.create_with_context(context.share()).unwrap(),
            config,
            context,
        )
    }

    /// Waits until the broker holds `expected` records of `topic`'s first `partitions`.
    /// Offsets are answered on the same connection after the produce responses: once the
    /// broker holds every record, every report is waiting in the producer's queue.
    fn wait_stored(producer: &ReplaceableProducer, topic: &str, partitions: i32, expected: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stored: i64 = (0..partitions)
                .map(|p| {
                    producer
                        .get()
                        .client()
                        .fetch_watermarks(topic, p, Duration::from_secs(5))
                        .map_or(0, |(_, high)| high)
                })
                .sum();
            if stored == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{stored} records of {topic} stored"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An acknowledged record counts in `records_produced` of its topic, and only a
    /// changelog's records move the changelog end a commit point writes locally.
    #[test]
    fn reports_count_per_topic_and_track_changelog_ends() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        mock.create_topic("c", 1, 1).unwrap();
        mock.create_topic("out", 1, 1).unwrap();
        let metrics = Metrics::new();
        let context = DeliveryContext::new(metrics.clone(), HashSet::from(["c".to_string()]));
        let producer = mock_producer(&mock, context);
        for (topic, n) in [("c", 3), ("out", 2)] {
            for _ in 0..n {
                producer.context().ledger().sent(0);
                let record = BaseRecord::with_opaque_to(topic, 0usize)
                    .partition(0)
                    .key("k")
                    .payload("v");
                producer.send(record).unwrap();
            }
        }
        wait_stored(&producer, "c", 1, 3);
        wait_stored(&producer, "out", 1, 2);
        producer.serve_reports();
        let mut ledger = producer.context().ledger();
        assert!(ledger.settled_through(0));
        ledger.close_through(0);
        assert_eq!(ledger.changelog_end("c", 0), Some(3));
        assert_eq!(ledger.changelog_end("out", 0), None);
        let produced = |t: &str| metrics.records_produced.with_label_values(&[t]).get();
        assert_eq!((produced("c"), produced("out")), (3, 2));
    }

    /// Every report waiting is served by one call, not one produced batch per call.
    #[test]
    fn serve_reports_serves_every_batch_waiting() {
        const PARTITIONS: i32 = 8;
        const PER_PARTITION: i32 = 10;
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        mock.create_topic("t", PARTITIONS, 1).unwrap();
        let producer = mock_producer(&mock, DeliveryContext::new(Metrics::new(), HashSet::new()));
        for p in 0..PARTITIONS {
            for i in 0..PER_PARTITION {
                let value = format!("{p}-{i}");
                let record = BaseRecord::with_opaque_to("t", 0usize)
                    .partition(p)
                    .key("k")
                    .payload(&value);
                producer.send(record).unwrap();
            }
        }
        wait_stored(
            &producer,
            "t",
            PARTITIONS,
            i64::from(PARTITIONS * PER_PARTITION),
        );
        producer.serve_reports();
        assert_eq!(
            producer.context().reports(),
            u64::try_from(PARTITIONS * PER_PARTITION).unwrap()
        );
    }
}
