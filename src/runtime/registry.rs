//! Which instance owns which partition, so that any instance can answer an interactive
//! query (DESIGN §5) by forwarding it to the owner.
//!
//! Kafka Streams puts each member's `application.server` into the consumer group protocol's
//! user data; librdkafka does not let a client add its own assignment user data, so the
//! members announce themselves on a compacted internal topic instead,
//! `<application-id>-instances` (one partition): key = the instance's advertised HTTP
//! address, value = the partitions it owns and when it said so. Each instance announces
//! after every rebalance and every [`HEARTBEAT`], deletes its key when it stops cleanly,
//! and reads the topic from the beginning to know the others. A claim not renewed within
//! [`STALE_AFTER`] (a crashed instance) is ignored; when two fresh claims overlap during a
//! rebalance, the newer wins. A query forwarded on stale knowledge reaches an instance
//! that does not own the partition, which answers 503 with `Retry-After` instead of
//! forwarding again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::client::LoggingContext;

use super::now_ms;

/// How often an instance renews its claim.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A claim older than this is ignored (its instance is presumed gone).
pub const STALE_AFTER: Duration = Duration::from_secs(45);

/// The registry topic of an application.
pub fn registry_topic(application_id: &str) -> String {
    format!("{application_id}-instances")
}

/// Partitions by topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// One instance's claim, as written to the registry topic (JSON, so operators can read it
/// with any console consumer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// Where its HTTP listener is reachable by the other instances.
    pub http: String,
    pub partitions: Assignment,
    /// Wall-clock time of the claim, epoch milliseconds.
    pub at_ms: i64,
}

/// What this instance knows about every instance's claims.
#[derive(Default, Debug)]
pub struct Owners {
    by_instance: HashMap<String, Announcement>,
}

impl Owners {
    /// Applies a record of the registry topic (`None` = the instance left).
    pub fn apply(&mut self, key: &str, value: Option<Announcement>) {
        match value {
            Some(a) => {
                self.by_instance.insert(key.to_string(), a);
            }
            None => {
                self.by_instance.remove(key);
            }
        }
    }

    /// The advertised address of the instance owning `topic`/`partition` at `now_ms`: the
    /// newest claim not older than [`STALE_AFTER`].
    pub fn owner(&self, topic: &str, partition: i32, now_ms: i64) -> Option<&str> {
        let fresh_since = now_ms - STALE_AFTER.as_millis() as i64;
        self.by_instance
            .values()
            .filter(|a| a.at_ms >= fresh_since)
            .filter(|a| {
                a.partitions
                    .get(topic)
                    .is_some_and(|ps| ps.contains(&partition))
            })
            .max_by_key(|a| a.at_ms)
            .map(|a| a.http.as_str())
    }

    /// Every fresh instance, by advertised address.
    pub fn instances(&self, now_ms: i64) -> Vec<&Announcement> {
        let fresh_since = now_ms - STALE_AFTER.as_millis() as i64;
        let mut v: Vec<&Announcement> = self
            .by_instance
            .values()
            .filter(|a| a.at_ms >= fresh_since)
            .collect();
        v.sort_by(|a, b| a.http.cmp(&b.http));
        v
    }
}

/// The running registry: announces this instance's assignment and follows the others'.
pub struct Registry {
    advertised: String,
    owners: Arc<RwLock<Owners>>,
    updates: Sender<Assignment>,
    stop: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Hands assignment changes to the registry thread; cheap to clone. Each stream thread
/// announces its own partitions; the instance claims the union of all of them.
#[derive(Clone)]
pub struct Announcer {
    updates: Sender<Assignment>,
    thread: usize,
    parts: Arc<std::sync::Mutex<BTreeMap<usize, Assignment>>>,
}

impl Announcer {
    /// Replaces this stream thread's partitions in the instance's claim.
    pub fn announce(&self, assignment: Assignment) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        parts.insert(self.thread, assignment);
        let mut merged = Assignment::new();
        for part in parts.values() {
            for (topic, ps) in part {
                merged.entry(topic.clone()).or_default().extend(ps);
            }
        }
        for ps in merged.values_mut() {
            ps.sort_unstable();
            ps.dedup();
        }
        // Sent under the lock: the registry must receive the threads' unions in the order
        // they were made, or an older one would overwrite a newer one.
        // The registry thread only stops when the runtime does.
        let _ = self.updates.send(merged);
    }

    /// The announcer of stream thread `thread`.
    pub fn for_thread(&self, thread: usize) -> Announcer {
        Announcer {
            thread,
            ..self.clone()
        }
    }
}

impl Registry {
    /// Starts the registry thread: `producer` writes this instance's claims, `consumer`
    /// (no group needed) reads everyone's from the beginning. `broker_reachable` (the
    /// broker watch's gauge) tells it when to replace both after an outage.
    pub fn start(
        application_id: &str,
        advertised: String,
        producer: ClientConfig,
        consumer: ClientConfig,
        broker_reachable: IntGauge,
    ) -> Result<Registry, rdkafka::error::KafkaError> {
        let topic = registry_topic(application_id);
        let clients = Clients::connect(&topic, &producer, &consumer)?;
        let owners = Arc::new(RwLock::new(Owners::default()));
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            topic,
            advertised: advertised.clone(),
            clients: Some(clients),
            producer_config: producer,
            consumer_config: consumer,
            broker_reachable,
            owners: owners.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("scorestream-registry".into())
            .spawn(move || worker.run(rx))
            .expect("spawn registry thread");
        Ok(Registry {
            advertised,
            owners,
            updates: tx,
            stop,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// The instance's announcer (of thread 0; [`Announcer::for_thread`] gives the others
    /// theirs). Call once: each call starts a separate claim.
    pub fn announcer(&self) -> Announcer {
        Announcer {
            updates: self.updates.clone(),
            thread: 0,
            parts: Arc::default(),
        }
    }

    /// This instance's advertised HTTP address.
    pub fn advertised(&self) -> &str {
        &self.advertised
    }

    /// The advertised address of the owner of `topic`/`partition`, if any instance claims it.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<String> {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        owners.owner(topic, partition, now_ms()).map(str::to_string)
    }

    /// Every live instance's claim.
    pub fn instances(&self) -> Vec<Announcement> {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        owners.instances(now_ms()).into_iter().cloned().collect()
    }
}

impl Registry {
    /// Withdraws this instance's claims and stops the registry thread.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the whole registry topic once (to its end) and returns the instances whose claims
/// are fresh: the members running now, whatever the broker says of the group. Used by
/// `scorestream reset` to refuse while any instance runs. `consumer` must report partition
/// EOF (`enable.partition.eof`).
pub fn live_instances(
    consumer: ClientConfig,
    application_id: &str,
    timeout: Duration,
) -> Result<Vec<Announcement>, String> {
    let topic = registry_topic(application_id);
    let consumer: BaseConsumer<LoggingContext> = consumer
        .create_with_context(LoggingContext)
        .map_err(|e| e.to_string())?;
    let exists = consumer
        .fetch_metadata(Some(&topic), timeout)
        .map_err(|e| format!("cannot read topic metadata: {e}"))?
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut owners = Owners::default();
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    let value = m.payload().and_then(|p| serde_json::from_slice(p).ok());
                    owners.apply(key, value);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None if Instant::now() > deadline => {
                return Err(format!("reading {topic}: no end within {timeout:?}"))
            }
            None => {}
        }
    }
    Ok(owners.instances(now_ms()).into_iter().cloned().collect())
}

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
struct Clients {
    producer: BaseProducer<RegistryContext>,
    consumer: BaseConsumer<RegistryContext>,
    dropped: Arc<AtomicBool>,
}

impl Clients {
    /// New clients; the consumer reads `topic` from the beginning.
    fn connect(
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

struct Worker {
    topic: String,
    advertised: String,
    /// `None` while the broker is unreachable, or back and the topic not listed yet.
    clients: Option<Clients>,
    producer_config: ClientConfig,
    consumer_config: ClientConfig,
    broker_reachable: IntGauge,
    owners: Arc<RwLock<Owners>>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self, updates: Receiver<Assignment>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_claims_the_union_of_its_stream_threads_partitions() {
        let (tx, rx) = mpsc::channel();
        let first = Announcer {
            updates: tx,
            thread: 0,
            parts: Arc::default(),
        };
        let second = first.for_thread(1);
        first.announce(Assignment::from([("t".to_string(), vec![2])]));
        second.announce(Assignment::from([("t".to_string(), vec![0, 1])]));
        first.announce(Assignment::from([("t".to_string(), vec![3])]));
        let last = rx.try_iter().last().unwrap();
        assert_eq!(last, Assignment::from([("t".to_string(), vec![0, 1, 3])]));
    }

    fn claim(http: &str, parts: &[i32], at_ms: i64) -> Announcement {
        Announcement {
            http: http.into(),
            partitions: [("t".to_string(), parts.to_vec())].into(),
            at_ms,
        }
    }

    #[test]
    fn newest_fresh_claim_wins_and_stale_or_withdrawn_claims_do_not_count() {
        let now = 1_000_000;
        let stale = now - STALE_AFTER.as_millis() as i64 - 1;
        let mut o = Owners::default();
        o.apply("a:1", Some(claim("a:1", &[0, 1], now - 5_000)));
        o.apply("b:1", Some(claim("b:1", &[1, 2], now - 1_000)));
        o.apply("c:1", Some(claim("c:1", &[3], stale)));
        assert_eq!(o.owner("t", 0, now), Some("a:1"));
        // Both claim 1 during a rebalance: the newer announcement is the newer assignment.
        assert_eq!(o.owner("t", 1, now), Some("b:1"));
        assert_eq!(
            o.owner("t", 3, now),
            None,
            "a crashed instance's claim expires"
        );
        assert_eq!(o.owner("other", 0, now), None);
        o.apply("b:1", None);
        assert_eq!(o.owner("t", 1, now), Some("a:1"));
        assert_eq!(o.owner("t", 2, now), None);
        let live: Vec<&str> = o.instances(now).iter().map(|a| a.http.as_str()).collect();
        assert_eq!(live, ["a:1"]);
    }

    #[test]
    fn a_renewed_claim_replaces_the_previous_one() {
        let mut o = Owners::default();
        o.apply("a:1", Some(claim("a:1", &[0, 1], 10)));
        o.apply("a:1", Some(claim("a:1", &[1], 20)));
        assert_eq!(o.owner("t", 0, 30), None);
        assert_eq!(o.owner("t", 1, 30), Some("a:1"));
    }
}
