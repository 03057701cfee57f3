//! The ingest sub-topology end to end on real brokers: Tansu (started by the harness on a
//! free port) and librdkafka's mock cluster. Unkeyed seed events go to several input
//! topics; the repartition topic must hold every good event once, on its customer's
//! partition, and the dead-letter topics every bad one with the right headers.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::message::{Headers as _, OwnedMessage};
use rdkafka::Message;
use scorestream::config::Config;
use scorestream::generator::{Generated, Generator, GeneratorConfig};
use scorestream::ingest::event::CanonicalEvent;
use scorestream::metrics::Metrics;
use scorestream::runtime::{self, partitioner::partition_for_key, RuntimeHandle};
use scorestream::topology;

/// Partitions the group assigns: four input topics plus `events-by-customer` and
/// `leaderboard-points` (as many partitions as the largest input) read by the
/// per-customer and leaderboard sub-topologies.
const ASSIGNABLE: i64 = (PARTITIONS * 6) as i64;
const PARTITIONS: i32 = 3;

struct Scenario {
    config: Config,
    inputs: Vec<String>,
    sent: Vec<Generated>,
    /// Parent of every instance's state directory, removed with the scenario.
    _state: tempfile::TempDir,
}

fn scenario(bootstrap: &str, events: usize) -> Scenario {
    let run = support::random_topic("ingest");
    let inputs: Vec<String> = [
        "customer-events",
        "cdr-events",
        "billing-events",
        "app-events",
    ]
    .iter()
    .map(|t| format!("{run}-{t}"))
    .collect();
    let mut config = Config {
        application_id: format!("{run}-app"),
        bootstrap_servers: bootstrap.to_string(),
        inputs: inputs.clone(),
        ..Config::default()
    };
    config.runtime.replication_factor = 1;
    let state = tempfile::tempdir().unwrap();
    config.state_dir = state.path().to_path_buf();
    config.runtime.commit_interval = Duration::from_millis(300);
    config.runtime.session_timeout = Duration::from_secs(6);
    config.runtime.shutdown_timeout = Duration::from_secs(15);
    // One stream thread: the mock cluster refuses offset commits while its group rebalances
    // (tests/runtime_mock.rs `test_config`), and on stock Tansu an instance leaving with
    // several threads can wedge the group (docs/operations.md). Threads: task_balance.rs.
    config.runtime.stream_threads = 1;
    let mut g = Generator::new(GeneratorConfig {
        customers: 200,
        bad_ratio: 0.05,
        seed: 7,
        topics: [
            "customer-events",
            "cdr-events",
            "billing-events",
            "app-events",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    });
    let now = runtime::now_ms();
    let sent = (0..events).map(|_| g.next_event(now)).collect();
    Scenario {
        config,
        inputs,
        sent,
        _state: state,
    }
}

impl Scenario {
    /// The real input topic a generated record goes to.
    fn topic_of(&self, g: &Generated) -> String {
        let suffix = g.topic;
        self.inputs
            .iter()
            .find(|t| t.ends_with(suffix))
            .cloned()
            .expect("input topic")
    }

    fn produce(&self, bootstrap: &str, range: std::ops::Range<usize>) {
        let records: Vec<support::Outgoing> = self.sent[range]
            .iter()
            .map(|g| (self.topic_of(g), None, g.value.clone(), None))
            .collect();
        support::produce_many(bootstrap, &records);
    }

    fn out_topic(&self) -> String {
        format!(
            "{}-{}",
            self.config.application_id,
            topology::EVENTS_BY_CUSTOMER
        )
    }

    async fn start(&self) -> (RuntimeHandle, Metrics) {
        let metrics = Metrics::new();
        let parts = topology::Components::load(&self.config).unwrap();
        let topology =
            topology::build_topology(&self.config, &parts, Some(metrics.clone())).unwrap();
        // Each instance has its own state directory, as separate machines would.
        let mut config = self.config.clone();
        config.state_dir = self
            .config
            .state_dir
            .join(format!("{:08x}", rand::random::<u32>()));
        let handle = runtime::start(&config, topology, metrics.clone())
            .await
            .expect("runtime starts");
        (handle, metrics)
    }
}

/// Input records accounted for: re-keyed onto `events-by-customer` or dead-lettered
/// (acknowledged). Gamification results and changelog records are not counted.
fn acked(metrics: &Metrics) -> u64 {
    use prometheus::core::Collector;
    metrics
        .records_produced
        .collect()
        .iter()
        .flat_map(|mf| mf.get_metric().iter())
        .filter(|m| {
            m.get_label().iter().any(|l| {
                l.value().ends_with(topology::EVENTS_BY_CUSTOMER) || l.value().ends_with("-dlq")
            })
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop(handle: RuntimeHandle) {
    handle.shutdown();
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .expect("clean shutdown");
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).to_string())
}

/// Checks the repartition and dead-letter topics against what was sent. Returns the number
/// of duplicated good events (0 unless an instance crashed or was moved mid-commit).
fn verify(s: &Scenario, bootstrap: &str, allow_duplicates: bool) -> usize {
    let good: Vec<&Generated> = s
        .sent
        .iter()
        .filter(|g| g.expected_reason.is_none())
        .collect();
    let bad: Vec<&Generated> = s
        .sent
        .iter()
        .filter(|g| g.expected_reason.is_some())
        .collect();
    let out = support::consume_all(bootstrap, &s.out_topic(), Duration::from_secs(30));
    let mut by_origin: HashMap<(String, i32, i64), CanonicalEvent> = HashMap::new();
    let mut duplicates = 0;
    let mut partitions_of = HashMap::new();
    for m in &out {
        let ev = CanonicalEvent::decode(m.payload().expect("value")).expect("bincode event");
        let key = std::str::from_utf8(m.key().expect("key")).unwrap();
        assert_eq!(key, ev.customer_id, "key is the customer id");
        partitions_of.insert(m.topic().to_string(), ());
        let expected_partition = partition_for_key(key.as_bytes(), PARTITIONS);
        assert_eq!(
            m.partition(),
            expected_partition,
            "murmur2 partition for {key}"
        );
        let origin = (
            ev.origin.topic.clone(),
            ev.origin.partition,
            ev.origin.offset,
        );
        if let Some(prev) = by_origin.insert(origin, ev.clone()) {
            assert_eq!(prev, ev, "a repeat must be the same event");
            duplicates += 1;
        }
    }
    assert_eq!(
        by_origin.len(),
        good.len(),
        "every good event reached the repartition topic"
    );
    // Each customer's events are all there, with the id the generator used.
    let mut expected: HashMap<String, usize> = HashMap::new();
    for g in &good {
        *expected.entry(g.customer_id.clone().unwrap()).or_default() += 1;
    }
    let mut actual: HashMap<String, usize> = HashMap::new();
    for ev in by_origin.values() {
        *actual.entry(ev.customer_id.clone()).or_default() += 1;
    }
    assert_eq!(actual, expected, "events per customer");
    if !allow_duplicates {
        assert_eq!(duplicates, 0, "no duplicates without a crash or rebalance");
    }

    let mut dead = Vec::new();
    for t in &s.inputs {
        dead.extend(support::consume_all(
            bootstrap,
            &format!("{t}-dlq"),
            Duration::from_secs(30),
        ));
    }
    let mut dead_by_pos: HashMap<(String, String, String), &OwnedMessage> = HashMap::new();
    for m in &dead {
        let pos = (
            header(m, "scorestream.source.topic").expect("source topic header"),
            header(m, "scorestream.source.partition").expect("source partition header"),
            header(m, "scorestream.source.offset").expect("source offset header"),
        );
        assert_eq!(
            format!("{}-dlq", pos.0),
            m.topic(),
            "dead letter goes to <input>-dlq"
        );
        assert_eq!(
            pos.1,
            m.partition().to_string(),
            "dead letter keeps its partition"
        );
        dead_by_pos.insert(pos, m);
    }
    assert_eq!(
        dead_by_pos.len(),
        bad.len(),
        "every bad record was dead-lettered"
    );
    // Original bytes unchanged, reason as the generator predicts.
    let mut expected_bad: HashMap<Vec<u8>, Vec<&str>> = HashMap::new();
    for g in &bad {
        expected_bad
            .entry(g.value.clone())
            .or_default()
            .push(g.expected_reason.unwrap());
    }
    for m in dead_by_pos.values() {
        let value = m.payload().unwrap_or_default().to_vec();
        let reasons = expected_bad
            .get(&value)
            .expect("dead letter holds an original value");
        let reason = header(m, "scorestream.error.reason").unwrap();
        assert!(
            reasons.contains(&reason.as_str()),
            "reason {reason} for {:?}",
            String::from_utf8_lossy(&value)
        );
        assert!(!header(m, "scorestream.error.message").unwrap().is_empty());
    }
    duplicates
}

async fn single_instance(bootstrap: &str, create: impl Fn(&Scenario)) {
    let s = scenario(bootstrap, 3000);
    create(&s);
    s.produce(bootstrap, 0..s.sent.len());
    let (handle, metrics) = s.start().await;
    let total = s.sent.len() as u64;
    wait_for("every record acknowledged", Duration::from_secs(90), || {
        acked(&metrics) >= total
    })
    .await;
    stop(handle).await;
    verify(&s, bootstrap, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_on_tansu() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    single_instance(&bootstrap, |s| {
        let topics: Vec<(String, i32)> = s.inputs.iter().map(|t| (t.clone(), PARTITIONS)).collect();
        support::create_topics(&bootstrap, &topics);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_on_mock_cluster() {
    let mock = support::mock::Mock::start();
    let bootstrap = mock.bootstrap();
    single_instance(&bootstrap, |s| {
        // The mock cluster has no CreateTopics: make inputs and everything the runtime plans.
        let existing = s.inputs.iter().map(|t| (t.clone(), PARTITIONS)).collect();
        for t in &s.inputs {
            mock.create_topic(t, PARTITIONS);
        }
        let parts = topology::Components::load(&s.config).unwrap();
        let topology = topology::build_topology(&s.config, &parts, None).unwrap();
        for plan in runtime::admin::plan_topics(&s.config, &topology, &existing) {
            mock.create_topic(&plan.name, plan.partitions);
        }
    })
    .await;
}

/// Two instances share the group; partitions split; one leaves; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_and_hand_over_on_tansu() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let s = scenario(&bootstrap, 3000);
    let topics: Vec<(String, i32)> = s.inputs.iter().map(|t| (t.clone(), PARTITIONS)).collect();
    support::create_topics(&bootstrap, &topics);

    s.produce(&bootstrap, 0..1000);
    let (a, ma) = s.start().await;
    wait_for(
        "instance A gets partitions",
        Duration::from_secs(60),
        || ma.partitions_assigned.get() > 0,
    )
    .await;
    let (b, mb) = s.start().await;
    wait_for(
        "both instances own partitions",
        Duration::from_secs(90),
        || {
            ma.partitions_assigned.get() > 0
                && mb.partitions_assigned.get() > 0
                && ma.partitions_assigned.get() + mb.partitions_assigned.get() == ASSIGNABLE
        },
    )
    .await;
    let split = (ma.partitions_assigned.get(), mb.partitions_assigned.get());
    s.produce(&bootstrap, 1000..2000);
    wait_for("B processes some records", Duration::from_secs(60), || {
        use prometheus::core::Collector;
        mb.records_consumed
            .collect()
            .iter()
            .flat_map(|mf| mf.get_metric().iter())
            .any(|m| m.get_counter().get_value() > 0.0)
    })
    .await;
    stop(b).await;
    wait_for(
        "A takes every partition back",
        Duration::from_secs(90),
        || ma.partitions_assigned.get() == ASSIGNABLE,
    )
    .await;
    s.produce(&bootstrap, 2000..3000);
    let total = s.sent.len() as u64;
    wait_for(
        "every record acknowledged",
        Duration::from_secs(120),
        || acked(&ma) + acked(&mb) >= total,
    )
    .await;
    stop(a).await;
    let duplicates = verify(&s, &bootstrap, true);
    println!("two instances: split {split:?}, duplicates after hand-over: {duplicates}");
}
