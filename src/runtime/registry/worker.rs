//! The registry thread and its clients: it announces this instance's claim after every
//! change and every [`HEARTBEAT`], reads everyone's claims, and replaces its clients when
//! the broker comes back from an outage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::{Announcement, Assignment, Owners, HEARTBEAT};
use crate::runtime::client::LoggingContext;
use crate::runtime::now_ms;

/// The registry clients' callbacks: logging, and noticing that the connection to the
/// broker dropped. The broker watch asks every 2 s whether the cluster answers; a broker
/// restarted within that time (a memory broker back empty, the registry topic re-created)
/// would go unnoticed by it, and the old clients would go on with an idempotent producer
/// id the broker forgot and a read position past the new topic's end.
struct RegistryContext {
    logging: LoggingContext,
    /// Set when a client of this pair lost its broker connection.
    dropped: Arc<AtomicBool>,
}

impl ClientContext for RegistryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.logging.log(level, fac, log_message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if connection_lost(&error) {
            self.dropped.store(true, Ordering::Relaxed);
        }
        self.logging.error(error, reason)
    }
    fn stats(&self, _statistics: rdkafka::Statistics) {}
}

impl ConsumerContext for RegistryContext {}

impl ProducerContext for RegistryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// A connection to the broker dropped or could not be made (librdkafka's `_TRANSPORT`,
/// `_ALL_BROKERS_DOWN`): what a broker restart looks like to a client.
fn connection_lost(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
    )
}

/// The registry's producer and consumer. Replaced after the broker was unreachable: one
/// that came back without its data no longer knows the idempotent producer's id
/// (librdkafka never asks for a new one, see `runtime::producer`), and a consumer whose
/// metadata still names the registry topic the broker lost fetches it, which crashes
/// librdkafka 2.12 on Tansu's answer (an unknown topic's leader hint with no topic name or
/// id). The consumer is assigned only once the broker lists the topic again.
///
/// Replaced too when either lost its connection to the broker ([`RegistryContext`]), however
/// briefly: a claim is small and the topic compacted, so reading it again costs little.
pub(super) struct Clients {
    producer: BaseProducer<RegistryContext>,
    consumer: BaseConsumer<RegistryContext>,
    dropped: Arc<AtomicBool>,
}

impl Clients {
    /// New clients; the consumer reads `topic` from the beginning.
    pub(super) fn connect(
        topic: &str,
        producer: &ClientConfig,
        consumer: &ClientConfig,
    ) -> Result<Clients, rdkafka::error::KafkaError> {
        let dropped = Arc::new(AtomicBool::new(false));
        let context = || RegistryContext {
            logging: LoggingContext,
            dropped: dropped.clone(),
        };
        let producer: BaseProducer<RegistryContext> = producer.create_with_context(context())?;
        let consumer: BaseConsumer<RegistryContext> = consumer.create_with_context(context())?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        Ok(Clients {
            producer,
            consumer,
            dropped,
        })
    }

    /// Whether either client lost its broker connection since they were connected.
    fn dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Closes them on a thread of their own: closing may wait on the broker. The consumer
    /// stops fetching first (a fetch of a topic a restarted broker lost crashes librdkafka
    /// 2.12 on Tansu's answer).
    fn close(self) {
        let _ = self.consumer.unassign();
        std::thread::spawn(move || drop(self));
    }
}

pub(super) struct Worker {
    pub(super) topic: String,
    pub(super) advertised: String,
    /// `None` while the broker is unreachable, or back and the topic not listed yet.
    pub(super) clients: Option<Clients>,
    pub(super) producer_config: ClientConfig,
    pub(super) consumer_config: ClientConfig,
    pub(super) broker_reachable: IntGauge,
    pub(super) owners: Arc<RwLock<Owners>>,
    pub(super) stop: Arc<AtomicBool>,
}

impl Worker {
    pub(super) fn run(mut self, updates: Receiver<Assignment>) {
        let mut current: Option<Assignment> = None;
        let mut last_sent = Instant::now();
        let mut last_connect = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if self.follow_outage(&mut last_connect) {
                // New clients: claim again at once.
                if current.is_some() {
                    self.send(current.as_ref());
                    last_sent = Instant::now();
                }
            }
            match updates.recv_timeout(Duration::from_millis(100)) {
                Ok(mut a) => {
                    // Only the latest of a burst of rebalance callbacks matters.
                    while let Ok(newer) = updates.try_recv() {
                        a = newer;
                    }
                    current = Some(a);
                    self.send(current.as_ref());
                    last_sent = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if current.is_some() && last_sent.elapsed() >= HEARTBEAT {
                self.send(current.as_ref());
                last_sent = Instant::now();
            }
            if let Some(c) = &self.clients {
                c.producer.poll(Duration::ZERO);
            }
            self.read_claims();
        }
        if current.is_some() {
            self.send(None);
            let flushed = match &self.clients {
                Some(c) => c.producer.flush(Duration::from_secs(3)),
                None => Err(rdkafka::error::KafkaError::Global(
                    rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
                )),
            };
            if let Err(e) = flushed {
                warn!(error = %e, topic = %self.topic, "Could not withdraw this instance's partition claims; they expire by themselves.");
            }
        }
    }

    /// Drops the clients while the broker does not answer and connects new ones once it
    /// answers and lists the registry topic (checked at most every 2 s). True when new
    /// clients were connected.
    fn follow_outage(&mut self, last_connect: &mut Instant) -> bool {
        let reachable = self.broker_reachable.get() == 1;
        if !reachable {
            if let Some(c) = self.clients.take() {
                info!(topic = %self.topic, "The broker does not answer: the instance registry's clients are closed until it does.");
                c.close();
            }
            return false;
        }
        let fatal = self
            .clients
            .as_ref()
            .and_then(|c| c.producer.client().fatal_error());
        if let Some((code, reason)) = fatal {
            warn!(error = ?code, reason, topic = %self.topic, "The instance registry's producer failed for good (out of sequence with a broker that restarted without its state); replacing its clients.");
            if let Some(c) = self.clients.take() {
                c.close();
            }
        } else if self.clients.as_ref().is_some_and(Clients::dropped) {
            info!(topic = %self.topic, "The instance registry lost its broker connection (a broker restart, maybe too short for the broker watch to see); replacing its clients.");
            if let Some(c) = self.clients.take() {
                c.close();
            }
            *last_connect = Instant::now();
        }
        if self.clients.is_some() || last_connect.elapsed() < Duration::from_secs(2) {
            return false;
        }
        *last_connect = Instant::now();
        let clients = match Clients::connect(
            &self.topic,
            &self.producer_config,
            &self.consumer_config,
        ) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, topic = %self.topic, "Could not create the instance registry's clients; retrying.");
                return false;
            }
        };
        // Assigned above, but nothing is fetched before the metadata says the topic
        // exists; if it does not, these clients go and new ones are tried later.
        let listed = clients
            .consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(5))
            .map(|md| {
                md.topics().iter().any(|t| {
                    t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty()
                })
            })
            .unwrap_or(false);
        if !listed {
            clients.close();
            return false;
        }
        info!(topic = %self.topic, "The broker answers again: the instance registry has new clients.");
        self.clients = Some(clients);
        true
    }

    /// Writes this instance's claim; `None` withdraws it.
    fn send(&self, assignment: Option<&Assignment>) {
        let value = assignment.map(|a| {
            serde_json::to_vec(&Announcement {
                http: self.advertised.clone(),
                partitions: a.clone(),
                at_ms: now_ms(),
            })
            .expect("an announcement serializes")
        });
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic)
            .key(&self.advertised)
            .partition(0);
        if let Some(v) = &value {
            record = record.payload(v);
        }
        let Some(clients) = &self.clients else {
            return;
        };
        if let Err((e, _)) = clients.producer.send(record) {
            warn!(error = %e, topic = %self.topic, "Could not announce this instance's partitions; retrying at the next heartbeat.");
        } else {
            debug!(instance = %self.advertised, partitions = ?assignment, "Announced partitions.");
        }
    }

    fn read_claims(&self) {
        let Some(clients) = &self.clients else {
            return;
        };
        let mut owners = None;
        while let Some(m) = clients.consumer.poll(Duration::ZERO) {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    // The consumer's errors come here, not to its context.
                    if connection_lost(&e) {
                        clients.dropped.store(true, Ordering::Relaxed);
                    }
                    debug!(error = %e, topic = %self.topic, "Registry read error.");
                    break;
                }
            };
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            let value = match m.payload() {
                None => None,
                Some(p) => match serde_json::from_slice::<Announcement>(p) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "Skipping an unreadable instance announcement.");
                        continue;
                    }
                },
            };
            if value.is_none() {
                info!(instance = key, "Instance left.");
            }
            owners
                .get_or_insert_with(|| self.owners.write().unwrap_or_else(|e| e.into_inner()))
                .apply(key, value);
        }
    }
}
