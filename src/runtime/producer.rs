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
