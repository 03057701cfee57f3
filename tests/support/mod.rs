//! Shared harness for broker tests: a Tansu broker on a free port (killed by PID on drop),
//! librdkafka's mock cluster, random topic names, and bounded produce/consume helpers.
#![allow(dead_code)]

pub mod cases;
pub mod driver;
pub mod exact;
pub mod instance;
pub mod mock;
pub mod tansu;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A loopback port nobody listens on (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.1: (status, body), or `None` if nothing
/// answered within 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, &[], "").map(|r| (r.status, r.body))
}

/// An HTTP answer: status, headers (names lower-cased), body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on 127.0.0.1:`port` with the whole reply, or `None` if nothing answered.
pub fn http_get_reply(port: u16, path: &str) -> Option<HttpReply> {
    http_request(port, "GET", path, &[], "")
}

/// Polls `done` every 250 ms until it returns a value; panics naming `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = done() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One HTTP/1.1 request on 127.0.0.1:`port` (`Connection: close`), or `None` if nothing
/// answered within 10 s.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<HttpReply> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(HttpReply {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A topic name no other test uses.
pub fn random_topic(prefix: &str) -> String {
    format!("{prefix}-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// The configuration of a test application reading `inputs` on a one-broker `bootstrap`:
/// a random application id, replication factor 1, defaults otherwise.
pub fn app_config(bootstrap: &str, inputs: &[&str]) -> scorestream::config::Config {
    let mut config = scorestream::config::Config {
        application_id: random_topic("app"),
        bootstrap_servers: bootstrap.to_string(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    config.runtime.replication_factor = 1;
    config
}

/// Creates topics (name, partitions) and waits until metadata lists them. Panics after 30 s.
pub fn create_topics(bootstrap: &str, topics: &[(String, i32)]) {
    // Own thread: tests are async, and a runtime may not be dropped inside another one.
    let (b, t) = (bootstrap.to_string(), topics.to_vec());
    std::thread::spawn(move || create_topics_blocking(&b, &t))
        .join()
        .expect("create_topics");
}

fn create_topics_blocking(bootstrap: &str, topics: &[(String, i32)]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = rt
        .block_on(admin.create_topics(new.iter(), &opts))
        .expect("create_topics");
    for r in results {
        r.expect("topic created");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(5))
            .expect("metadata");
        let all = topics.iter().all(|(t, p)| {
            md.topics()
                .iter()
                .any(|m| m.name() == t && m.partitions().len() as i32 == *p)
        });
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topics never appeared in metadata"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A record to produce: topic, key, value, partition.
pub type Outgoing = (String, Option<Vec<u8>>, Vec<u8>, Option<i32>);

/// Produces records and waits for every acknowledgement.
pub fn produce_many(bootstrap: &str, records: &[Outgoing]) {
    let producer: BaseProducer<FailedDeliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create_with_context(FailedDeliveries::default())
        .expect("producer");
    // A flush only empties the queue: a record the broker refused (e.g. just after it
    // restarted) is reported failed and would be missing from the test's input. Send
    // those again, a bounded number of times, and say so.
    let mut pending: Vec<usize> = (0..records.len()).collect();
    for round in 0..5 {
        for &i in &pending {
            let (topic, key, value, partition) = &records[i];
            let mut rec =
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, i).payload(value.as_slice());
            if let Some(k) = key {
                rec = rec.key(k.as_slice());
            }
            if let Some(p) = partition {
                rec = rec.partition(*p);
            }
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(_), back)) => {
                        rec = back;
                        producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => panic!("produce failed: {e}"),
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer
            .flush(Duration::from_secs(30))
            .expect("every record acknowledged or failed");
        pending = std::mem::take(&mut *producer.context().0.lock().unwrap());
        if pending.is_empty() {
            return;
        }
        eprintln!(
            "produce_many: {} record(s) not delivered (round {round}); sending them again",
            pending.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("{} record(s) never delivered", pending.len());
}

/// Records (by index) whose delivery failed.
#[derive(Default)]
pub struct FailedDeliveries(Mutex<Vec<usize>>);

impl rdkafka::ClientContext for FailedDeliveries {}

impl rdkafka::producer::ProducerContext for FailedDeliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, index: usize) {
        if result.is_err() {
            self.0.lock().unwrap().push(index);
        }
    }
}

/// Reads every partition of `topic` from the beginning until partition EOF on all of them
/// (Tansu's listed end offsets are wrong after multi-record batches, DESIGN §6, so never
/// trust watermarks), bounded by `timeout`.
pub fn consume_all(bootstrap: &str, topic: &str, timeout: Duration) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", random_topic("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0) as i32;
    assert!(partitions > 0, "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_eof = vec![false; partitions as usize];
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    while !at_eof.iter().all(|e| *e) {
        assert!(
            Instant::now() < deadline,
            "consume_all({topic}) timed out with {} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                at_eof[m.partition() as usize] = false;
                out.push(m.detach());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_eof[p as usize] = true,
            Some(Err(e)) => panic!("consume error on {topic}: {e}"),
        }
    }
    out
}
