//! librdkafka client configuration and the callbacks that turn client events into logs.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::Message;
use std::sync::Mutex;
use tracing::{debug, error, info, warn};

use crate::config::{Config, ProcessingGuarantee};
use crate::metrics::Metrics;

use crate::metrics::kafka_stats::DEFAULT_STATISTICS_INTERVAL_MS as STATISTICS_INTERVAL_MS;

/// `fetch.queue.backoff.ms` of both consumers (see [`consumer_config`]).
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// Common properties plus the `[kafka.common]` passthrough.
fn base(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers);
    c.set(
        "client.id",
        format!("{}-scorestream", config.application_id),
    );
    // Keep reconnect attempts polite while a broker is down.
    c.set("reconnect.backoff.ms", "100");
    c.set("reconnect.backoff.max.ms", "10000");
    for (k, v) in &config.kafka.common {
        c.set(k, v);
    }
    // librdkafka's own `debug` contexts (set under any `[kafka.*]`) log at debug level,
    // which would otherwise be filtered out here.
    let k = &config.kafka;
    let debugging = [&k.common, &k.consumer, &k.producer, &k.admin]
        .iter()
        .any(|t| t.contains_key("debug"));
    c.set_log_level(if debugging {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    });
    c
}

/// The consumer of every source topic (one per stream thread): one group per application
/// id, manual commits, range assignment.
///
/// Range assigns each topic's partitions in contiguous runs over the members sorted by
/// id, the same way for every topic of equal partition count: partition `p` of every
/// source topic of a sub-topology (co-partitioned, as Kafka Streams requires) lands on
/// one member — a whole task — and each sub-topology's tasks spread evenly over the
/// members (instances x stream threads). Cooperative-sticky balanced partition counts
/// over all topics together, which split tasks and left every stateful task on one
/// instance. librdkafka has no pluggable assignor to do Kafka Streams' own.
///
/// What it fetches ahead is bounded in bytes and records by the memory plan (64 MiB and
/// librdkafka's 100,000 records before: most of a 343 MiB peak, measured on Tansu), shared
/// among the stream threads.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let plan = config.memory();
    let mut c = base(config);
    c.set("group.id", &config.application_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set(
            "session.timeout.ms",
            config.runtime.session_timeout.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (config.runtime.session_timeout.as_millis() / 3)
                .max(100)
                .to_string(),
        )
        .set("max.poll.interval.ms", "300000")
        // An input topic created (or re-created) while running is seen within 10 s, not
        // librdkafka's default 5 min.
        .set("topic.metadata.refresh.interval.ms", "10000")
        // One shared queue for all partitions: librdkafka fetches while it holds fewer
        // records than `queued.min.messages` and fewer kilobytes than this. A fetch may
        // overshoot it by a response: up to `fetch.max.bytes` (which librdkafka caps at
        // this), or, from a broker that ignores that total (Tansu), up to
        // `max.partition.fetch.bytes` from every assigned partition.
        .set(
            "queued.max.messages.kbytes",
            (plan.consumer_queue_bytes / 1024).max(1).to_string(),
        )
        .set(
            "queued.min.messages",
            plan.consumer_queue_messages.to_string(),
        )
        .set(
            "max.partition.fetch.bytes",
            plan.consumer_partition_fetch_bytes.to_string(),
        )
        .set("fetch.wait.max.ms", "100")
        // With the queue above full, librdkafka waits this long before fetching again
        // (default 1 s): with queues sized by the memory budget the queue is full often,
        // and a second without fetching each time cost 80 % of the throughput (issue 15).
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    if config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
        c.set("isolation.level", "read_committed");
    }
    for (k, v) in &config.kafka.consumer {
        c.set(k, v);
    }
    c
}

/// The consumer that restores stores from changelogs: no group (partitions are assigned
/// by hand), large fetches within the memory plan's restore queue, an event at each
/// partition's end.
pub fn restore_consumer_config(config: &Config) -> ClientConfig {
    let plan = config.memory();
    let queue = plan.restore_queue_bytes;
    let mut c = base(config);
    c.set(
        "client.id",
        format!("{}-scorestream-restore", config.application_id),
    )
    .set("group.id", format!("{}-restore", config.application_id))
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("enable.partition.eof", "true")
    .set("auto.offset.reset", "earliest")
    .set(
        "fetch.max.bytes",
        queue.clamp(1 << 20, 64 << 20).to_string(),
    )
    .set(
        "max.partition.fetch.bytes",
        (queue / 4).clamp(1 << 20, 16 << 20).to_string(),
    )
    .set(
        "queued.max.messages.kbytes",
        (queue / 1024).max(1).to_string(),
    )
    .set(
        "queued.min.messages",
        plan.restore_queue_messages.to_string(),
    )
    .set("fetch.wait.max.ms", "50")
    .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    if config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
        c.set("isolation.level", "read_committed");
    }
    c
}

/// The instance registry's consumer (`runtime::registry`): a restore consumer with a
/// `client.id` of its own, so its log lines and broker-side metrics tell it apart.
pub fn registry_consumer_config(config: &Config) -> ClientConfig {
    let mut c = restore_consumer_config(config);
    c.set("client.id", registry_client_id(config));
    c
}

/// The instance registry's producer: an output producer with the registry's `client.id`.
pub fn registry_producer_config(config: &Config) -> ClientConfig {
    let mut c = producer_config(config);
    c.set("client.id", registry_client_id(config));
    c
}

/// The common `client.id` (`<application-id>-scorestream` unless `[kafka.common]` sets
/// one) with `-registry` appended.
fn registry_client_id(config: &Config) -> String {
    let common = base(config);
    format!(
        "{}-registry",
        common.get("client.id").unwrap_or("scorestream")
    )
}

/// The producer of every output. Its queue bounds in-flight records and bytes (the memory
/// plan's producer part), which is what makes a slow broker slow ScoreStream down instead
/// of growing its memory.
pub fn producer_config(config: &Config) -> ClientConfig {
    let plan = config.memory();
    let mut c = base(config);
    let max_message = config.dead_letter_max_bytes();
    // Idempotence: a retried batch is never stored twice or after a later one.
    // Without it a retriable produce error could reorder internal records, and an event
    // stored behind later ones becomes `late_event`. librdkafka then also caps in-flight
    // requests at 5 and retries without limit within `message.timeout.ms`.
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
        // JSON results and changelog values compress several-fold; lz4 costs the least CPU
        // (docs/configuration.md). `[kafka.producer] "compression.type"` overrides it.
        .set("compression.type", "lz4")
        // ScoreStream creates every topic it writes with the right partition count; one
        // auto-created by a broker (after it lost its data) would break co-partitioning.
        .set("allow.auto.create.topics", "false")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("partitioner", "murmur2_random")
        .set("message.max.bytes", max_message.to_string())
        .set(
            "queue.buffering.max.messages",
            plan.producer_queue_records.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (plan.producer_queue_bytes / 1024).max(1).to_string(),
        );
    for (k, v) in &config.kafka.producer {
        c.set(k, v);
    }
    c
}

/// The admin client used at start-up.
pub fn admin_config(config: &Config) -> ClientConfig {
    let mut c = base(config);
    for (k, v) in &config.kafka.admin {
        c.set(k, v);
    }
    c
}

/// How often one cause of client errors may be logged.
const REPEAT_AFTER: Duration = Duration::from_secs(10);

/// Causes logged recently, process-wide: a broker that is down is reported by every
/// client (stream consumer, producer, restore consumer, registry), through both
/// librdkafka's log and error callbacks, many times a second. Each cause is logged once,
/// then at most once every 10 s with the number of repeats left out.
static RECENT: Mutex<Option<HashMap<String, (Instant, u64)>>> = Mutex::new(None);

/// The cause of a client error, without what varies between repeats (broker ids, ports,
/// timings, "N identical errors suppressed").
fn cause_key(text: &str) -> String {
    let mut key = String::with_capacity(text.len());
    let mut depth = 0u32;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 || c.is_ascii_digit() => {}
            _ => key.push(c),
        }
    }
    key
}

/// Should `key` be logged now? `Some(n)`: yes, `n` repeats were suppressed since last time.
pub(crate) fn due(key: String) -> Option<u64> {
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    let recent = recent.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    if recent.len() > 1000 {
        recent.retain(|_, (t, _)| now.duration_since(*t) < REPEAT_AFTER);
    }
    match recent.get_mut(&key) {
        Some((t, n)) if now.duration_since(*t) < REPEAT_AFTER => {
            *n += 1;
            None
        }
        Some((t, n)) => {
            *t = now;
            Some(std::mem::take(n))
        }
        None => {
            recent.insert(key, (now, 0));
            Some(0)
        }
    }
}

/// Logs a Kafka client error once per cause and 10 s, whichever client saw it: at ERROR
/// only when retrying cannot fix it (credentials, authorisation, a fatal client state),
/// else at WARN — the clients and the runtime retry with backoff.
pub(crate) fn report(error: &KafkaError, context: &str) {
    let code = error.rdkafka_error_code();
    let fatal = !super::retry::is_transient(error);
    let what = if context.is_empty() {
        error.to_string()
    } else {
        format!("{error}: {context}")
    };
    // The same text also arrives through librdkafka's log callback: key on the context.
    let key = if context.is_empty() { &what } else { context };
    let Some(repeated) = due(format!("{fatal}{}", cause_key(key))) else {
        return;
    };
    if fatal {
        error!(error = %what, ?code, repeated, "Kafka client error that retrying cannot fix; check the Kafka settings and credentials.");
    } else {
        warn!(error = %what, repeated, "Kafka client error; retrying with backoff.");
    }
}

/// Logs librdkafka's own log lines and errors through `tracing`, each cause once per 10 s
/// (see [`report`]). librdkafka logs at its error level what it retries by itself (a
/// broker connection refused); those are warnings here.
#[derive(Default)]
pub struct LoggingContext;

impl ClientContext for LoggingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                if let Some(repeated) = due(format!("false{}", cause_key(log_message))) {
                    warn!(facility = fac, repeated, "{log_message}");
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => debug!(facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // End of partition is an event the restore consumer asks for, not a problem.
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        report(&error, reason);
    }

    /// Clients without metrics (admin, restore) ignore statistics a `[kafka.common]`
    /// `statistics.interval.ms` asks for, instead of logging each report.
    fn stats(&self, _statistics: rdkafka::Statistics) {}
}

impl rdkafka::consumer::ConsumerContext for LoggingContext {}

/// For producers whose deliveries need no callback (the instance registry).
impl ProducerContext for LoggingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Producer callbacks: count acknowledgements and failures per commit epoch. Runs on the
/// thread that polls the producer (the stream thread that owns it).
pub struct DeliveryContext {
    pub logging: LoggingContext,
    pub metrics: Metrics,
    /// Deliveries that failed since start; a change means some input must be reprocessed.
    /// Shared with the producers that replace this one ([`share`](Self::share)).
    pub failures: Arc<AtomicU64>,
    /// Changelog topics, whose acknowledged end offsets are tracked.
    changelogs: Arc<HashSet<String>>,
    /// Records owed per commit epoch, and changelog ends (see [`super::acks`]); shared with
    /// the producers that replace this one.
    ledger: Arc<Mutex<super::acks::Ledger>>,
    /// Per topic, resolved once instead of per record: its `records_produced` counter and
    /// whether it is a changelog.
    produced: Arc<Mutex<HashMap<String, (prometheus::IntCounter, bool)>>>,
    /// Set when the broker keeps refusing this producer's id (see [`forgotten`](Self::forgotten)).
    forgotten: Arc<AtomicBool>,
    /// The idempotent producer epoch in the last statistics report of this producer.
    last_epoch: AtomicI64,
    /// Delivery reports served (acknowledged or failed records), to tell whether a poll
    /// served any ([`ReplaceableProducer::serve_reports`]); shared like `failures`.
    ///
    /// [`ReplaceableProducer::serve_reports`]: super::producer::ReplaceableProducer::serve_reports
    reports: Arc<AtomicU64>,
}

/// Epoch bumps between two statistics reports that mean the broker does not know the
/// producer id: librdkafka bumps it on every `UNKNOWN_PRODUCER_ID` answer, several times a
/// second; a healthy producer bumps it only when messages time out.
const EPOCH_BUMPS_FORGOTTEN: i64 = 5;

impl DeliveryContext {
    pub fn new(metrics: Metrics, changelogs: HashSet<String>) -> Self {
        DeliveryContext {
            logging: LoggingContext,
            metrics,
            failures: Arc::new(AtomicU64::new(0)),
            changelogs: Arc::new(changelogs),
            ledger: Arc::default(),
            produced: Arc::default(),
            forgotten: Arc::new(AtomicBool::new(false)),
            last_epoch: AtomicI64::new(-1),
            reports: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A context for a producer replacing this one's: the same failure count, ledger and
    /// flag.
    pub fn share(&self) -> Self {
        DeliveryContext {
            logging: LoggingContext,
            metrics: self.metrics.clone(),
            failures: self.failures.clone(),
            changelogs: self.changelogs.clone(),
            ledger: self.ledger.clone(),
            produced: self.produced.clone(),
            forgotten: self.forgotten.clone(),
            last_epoch: AtomicI64::new(-1),
            reports: self.reports.clone(),
        }
    }

    /// Delivery reports served so far by the producers sharing this context.
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// The broker no longer knows the idempotent producer's id (it restarted without its
    /// state): librdkafka bumps the epoch itself and retries, and a broker that only accepts
    /// ids it handed out (Tansu) refuses every retry, so nothing is delivered again. Seen in
    /// the statistics reports as the epoch running away while messages wait.
    pub fn forgotten(&self) -> &AtomicBool {
        &self.forgotten
    }

    fn watch_epoch(&self, statistics: &rdkafka::Statistics) {
        let Some(eos) = &statistics.eos else {
            return;
        };
        let last = self.last_epoch.swap(eos.producer_epoch, Ordering::Relaxed);
        if last >= 0 && eos.producer_epoch - last >= EPOCH_BUMPS_FORGOTTEN && statistics.msg_cnt > 0
        {
            self.forgotten.store(true, Ordering::Relaxed);
        }
    }

    /// The acknowledgement ledger (locked briefly by the stream thread and the callbacks,
    /// which run on the same thread).
    pub(crate) fn ledger(&self) -> std::sync::MutexGuard<'_, super::acks::Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the acknowledged end of changelog partition `topic`/`partition`: a task
    /// starting there records only ends acknowledged from now on (after a broker lost its
    /// data, offsets start again below the old ones).
    pub fn forget_changelog_end(&self, topic: &str, partition: i32) {
        self.ledger().forget_changelog_end(topic, partition);
    }

    /// The next offset after the last acknowledged record of a changelog partition, as of
    /// the last settled commit point.
    pub fn changelog_end(&self, topic: &str, partition: i32) -> Option<i64> {
        self.ledger().changelog_end(topic, partition)
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.logging.log(level, fac, log_message)
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.logging.error(error, reason)
    }
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.watch_epoch(&statistics);
        self.metrics.kafka.record(&statistics)
    }
}

impl ProducerContext for DeliveryContext {
    /// The commit epoch the record belongs to.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, epoch: usize) {
        let epoch = epoch as u64;
        self.reports.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(m) => {
                // The topic name is a C string: each `topic()` is a strlen and a UTF-8
                // check, so it is taken once, and looked up once.
                let topic = m.topic();
                let is_changelog = {
                    let mut produced = self.produced.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some((counter, is_changelog)) = produced.get(topic) {
                        counter.inc();
                        *is_changelog
                    } else {
                        let counter = self.metrics.records_produced.with_label_values(&[topic]);
                        counter.inc();
                        let is_changelog = self.changelogs.contains(topic);
                        produced.insert(topic.to_string(), (counter, is_changelog));
                        is_changelog
                    }
                };
                let changelog = is_changelog.then(|| (topic, m.partition(), m.offset()));
                self.ledger().acked(epoch, changelog);
            }
            Err((e, m)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.ledger().failed(epoch);
                self.metrics
                    .delivery_failures
                    .with_label_values(&[m.topic()])
                    .inc();
                warn!(
                    topic = m.topic(),
                    partition = m.partition(),
                    error = %e,
                    "Output not acknowledged by Kafka; its input will be reprocessed."
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &ClientConfig, key: &str) -> usize {
        c.get(key)
            .unwrap_or_else(|| panic!("{key} not set"))
            .parse()
            .unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    /// A full fetch queue (frequent with budget-sized queues) holds fetching back briefly,
    /// not librdkafka's default second.
    #[test]
    fn consumers_fetch_again_soon_after_a_full_queue() {
        let config = Config::default();
        for c in [consumer_config(&config), restore_consumer_config(&config)] {
            assert!(get(&c, "fetch.queue.backoff.ms") <= 50);
        }
    }

    /// The clients' queue bounds are the budget's shares: a sixteenth for the group
    /// consumer's fetch queue (a sixteenth of that per partition and fetch), three for the
    /// restore consumer's, a quarter for the producer, one message per 256 bytes.
    #[test]
    fn client_queues_follow_the_memory_budget() {
        for budget_mib in [64usize, 1024] {
            let config = Config {
                memory_budget_bytes: budget_mib << 20,
                ..Config::default()
            };
            let kib = budget_mib << 10;
            let consumer = consumer_config(&config);
            assert_eq!(get(&consumer, "queued.max.messages.kbytes"), kib / 16);
            assert_eq!(get(&consumer, "queued.min.messages"), kib / 16 * 4);
            assert_eq!(
                get(&consumer, "max.partition.fetch.bytes"),
                (kib / 16 / 16 * 1024).min(1 << 20)
            );
            let restore = restore_consumer_config(&config);
            assert_eq!(get(&restore, "queued.max.messages.kbytes"), kib / 16 * 3);
            assert_eq!(get(&restore, "queued.min.messages"), kib / 16 * 3 * 4);
            assert!(get(&restore, "fetch.max.bytes") <= (kib / 16 * 3) << 10);
            let producer = producer_config(&config);
            assert_eq!(get(&producer, "queue.buffering.max.kbytes"), kib / 4);
            assert_eq!(get(&producer, "queue.buffering.max.messages"), kib / 4 * 4);
        }
    }

    /// A size set on its own key replaces that share only; a librdkafka property set in
    /// `[kafka.*]` wins over both.
    #[test]
    fn explicit_sizes_and_passthrough_properties_win_over_the_budget() {
        let text = r#"
            memory_budget_bytes = "256 MiB"
            [runtime]
            max_in_flight_bytes = "10 MiB"
            max_in_flight_records = 7000
            [kafka.consumer]
            "queued.min.messages" = "123"
        "#;
        let config = Config::from_toml_with_env(Some(text), &|_| None).unwrap();
        let producer = producer_config(&config);
        assert_eq!(get(&producer, "queue.buffering.max.kbytes"), 10 << 10);
        assert_eq!(get(&producer, "queue.buffering.max.messages"), 7000);
        let consumer = consumer_config(&config);
        assert_eq!(get(&consumer, "queued.max.messages.kbytes"), 16 << 10);
        assert_eq!(get(&consumer, "queued.min.messages"), 123);
    }
}
