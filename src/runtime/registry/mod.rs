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

//!
//! This file holds the claims and the handle the runtime keeps; [`worker`] is the thread
//! that announces and reads them through its own clients, [`live`] reads them once.

mod live;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::IntGauge;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use super::now_ms;
pub use live::live_instances;
use worker::{Clients, Worker};

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
