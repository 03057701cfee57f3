//! Application configuration: one TOML file plus environment overrides (DESIGN §5).
//!
//! Config is data; [`crate::runtime::Runtime`] is built from it. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod check;
mod errors;
mod file_errors;
pub mod kafka_env;
pub mod memory;
pub mod size;
pub mod suggest;
mod validate;

pub use errors::ErrorSettings;
use file_errors::file_errors;
pub use file_errors::WHOLE_FILE;
pub(crate) use validate::topic_error;

/// How outputs and offsets are committed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

/// The whole configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Consumer group id and prefix of every internal topic.
    pub application_id: String,
    /// Kafka bootstrap servers (`KAFKA_BOOTSTRAP_SERVERS`).
    pub bootstrap_servers: String,
    /// Where local state lives (`SCORESTREAM_STATE_DIR`).
    pub state_dir: PathBuf,
    /// HTTP listen address (`SCORESTREAM_HTTP_ADDR`).
    pub http_addr: String,
    /// `at_least_once` (default) or `exactly_once` (`SCORESTREAM_PROCESSING_GUARANTEE`).
    pub processing_guarantee: ProcessingGuarantee,
    /// Input topics. `customer-events` is the default and the only required one.
    pub inputs: Vec<String>,
    /// What the process may hold in its queues and caches together: librdkafka's fetch and
    /// producer queues, RocksDB's block cache and memtables, the read cache. Split by
    /// [`memory::MemoryPlan`]; a part set on its own key below takes that instead.
    #[serde(with = "size")]
    pub memory_budget_bytes: usize,
    pub runtime: RuntimeSettings,
    pub state: StateSettings,
    pub ingest: IngestSettings,
    pub errors: ErrorSettings,
    pub gamification: GamificationSettings,
    pub churn: ChurnSettings,
    pub http: HttpSettings,
    /// librdkafka properties passed through unchanged (SASL, TLS, tuning).
    pub kafka: KafkaPassthrough,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            application_id: "scorestream".into(),
            bootstrap_servers: "localhost:9092".into(),
            state_dir: PathBuf::from("/var/lib/scorestream"),
            http_addr: "0.0.0.0:8080".into(),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            inputs: vec!["customer-events".into()],
            memory_budget_bytes: memory::DEFAULT_BUDGET,
            runtime: RuntimeSettings::default(),
            state: StateSettings::default(),
            ingest: IngestSettings::default(),
            errors: ErrorSettings::default(),
            gamification: GamificationSettings::default(),
            churn: ChurnSettings::default(),
            http: HttpSettings::default(),
            kafka: KafkaPassthrough::default(),
        }
    }
}

/// Processing-loop settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSettings {
    /// How often outputs are flushed and input offsets committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Upper bound on records produced but not yet acknowledged (producer queue); absent:
    /// derived from the bytes bound ([`memory::MemoryPlan`]).
    pub max_in_flight_records: Option<usize>,
    /// Upper bound on bytes produced but not yet acknowledged; absent: a share of
    /// `memory_budget_bytes`.
    #[serde(with = "size::option")]
    pub max_in_flight_bytes: Option<usize>,
    /// How long a commit point may wait with none of its outputs acknowledged before it is
    /// abandoned as stuck and processing rewinds to the last commit (at-least-once: the
    /// inputs are processed again). Bounds how long librdkafka's retries (up to
    /// `message.timeout.ms`) can hold back every later commit; a point whose
    /// acknowledgements keep coming is waited for. Never less than `commit_interval`
    /// ([`RuntimeSettings::commit_deadline`]).
    #[serde(with = "humantime_serde")]
    pub commit_deadline: Duration,
    /// How long shutdown may take to flush and commit before giving up.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Replication factor of topics ScoreStream creates; -1 = the broker's default.
    pub replication_factor: i32,
    /// Partitions of the internal repartition topic; 0 = the largest input's count.
    pub internal_partitions: i32,
    /// Partitions of output topics created when missing.
    pub output_partitions: i32,
    /// Consumer session timeout.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How long start-up waits for an unreachable broker (retrying with backoff) before
    /// giving up with an error.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Stream threads of this instance (Kafka Streams' `num.stream.threads`): each has its
    /// own consumer in the group, producer and tasks. 0 (the default) = one per core.
    pub stream_threads: usize,
    /// `exactly_once`: at start-up, abort one probe transaction and commit another, and
    /// refuse to run unless a `read_committed` reader sees only the committed one (Tansu and
    /// librdkafka's mock cluster fail this). Turn off only to exercise the transactional
    /// path on such a broker, knowing aborted outputs will be visible.
    pub verify_transactions: bool,
}

impl RuntimeSettings {
    /// How long a commit point may wait for its acknowledgements: `commit_deadline`, but
    /// never less than the commit interval.
    pub fn commit_deadline(&self) -> Duration {
        self.commit_deadline.max(self.commit_interval)
    }

    /// The stream threads to run: `stream_threads`, or one per core when 0.
    pub fn threads(&self) -> usize {
        match self.stream_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            commit_interval: Duration::from_secs(1),
            max_in_flight_records: None,
            max_in_flight_bytes: None,
            commit_deadline: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            replication_factor: -1,
            internal_partitions: 0,
            output_partitions: 6,
            session_timeout: Duration::from_secs(45),
            startup_timeout: Duration::from_secs(300),
            stream_threads: 0,
            verify_transactions: true,
        }
    }
}

/// Where stores keep their data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// RocksDB under `state_dir`: survives restarts, restores incrementally.
    #[default]
    Rocksdb,
    /// In memory: every assignment restores the whole changelog. Tests, small deployments.
    Memory,
}

/// How RocksDB compresses the stores' files (`state.compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreCompression {
    /// Kafka Streams' choice too: every flush and compaction skips LZ4, and a read of a
    /// block from a file skips decompressing it. The files are larger (2.2x in the restore
    /// bench, BENCHMARKS.md stop 25).
    #[default]
    None,
    /// Smaller files for more CPU: LZ4 in every flush and compaction and on every block
    /// read from a file.
    Lz4,
}

/// How RocksDB merges the stores' files in the background (`state.compaction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreCompaction {
    /// Kafka Streams' choice too: sorted runs merged by size, each entry rewritten a few
    /// times. A store updated everywhere all the time (every customer, every commit)
    /// otherwise pays for rewriting most of it at every level-0 compaction. Takes up to
    /// twice the store's size on disk while a large merge runs.
    #[default]
    Universal,
    /// RocksDB's default: less space, more rewriting.
    Level,
}

/// Local state settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    pub backend: StoreBackend,
    /// Compression of RocksDB's files (not of the changelogs: `compression.type`).
    pub compression: StoreCompression,
    /// RocksDB's compaction style.
    pub compaction: StoreCompaction,
    /// RocksDB reads its table files through a memory map (no `pread`, no copy into the
    /// block cache); the mapped pages then count in the process's resident memory.
    pub mmap_reads: bool,
    /// RocksDB block cache shared by every task of the process, in bytes; absent: a share
    /// of `memory_budget_bytes` ([`memory::MemoryPlan`]).
    #[serde(with = "size::option")]
    pub block_cache_bytes: Option<usize>,
    /// RocksDB memtables of every task together, in bytes (charged to the block cache);
    /// absent: half the block cache.
    #[serde(with = "size::option")]
    pub write_buffer_bytes: Option<usize>,
    /// Read cache of recently used committed entries in front of RocksDB, shared by every
    /// store of every task, in bytes; 0 turns it off; absent: a share of
    /// `memory_budget_bytes`. Not used with the memory backend.
    #[serde(with = "size::option")]
    pub cache_bytes: Option<usize>,
    /// State directories of tasks this instance no longer owns are deleted after this.
    #[serde(with = "humantime_serde")]
    pub cleanup_delay: Duration,
    /// Changelog records applied per local write while restoring.
    pub restore_batch_records: usize,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            backend: StoreBackend::Rocksdb,
            compression: StoreCompression::default(),
            compaction: StoreCompaction::default(),
            mmap_reads: false,
            block_cache_bytes: None,
            write_buffer_bytes: None,
            cache_bytes: None,
            cleanup_delay: Duration::from_secs(600),
            restore_batch_records: 10_000,
        }
    }
}

/// Input validation settings (DESIGN §2).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Records above this size are dead-lettered as `too_large`.
    #[serde(with = "size")]
    pub max_record_bytes: usize,
    /// JSON nesting deeper than this is dead-lettered as `too_deep`.
    pub max_depth: usize,
    /// Event times further ahead of the wall clock are `invalid_timestamp`.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Dead-letter event types no rule knows (`unknown_event_type`).
    pub strict_event_types: bool,
    /// Source mapping file; the bundled `topology/sources.toml` when absent.
    pub mapping_file: Option<PathBuf>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_record_bytes: 1 << 20,
            max_depth: 64,
            max_future_skew: Duration::from_secs(3600),
            strict_event_types: false,
            mapping_file: None,
        }
    }
}

/// The gamification sub-topologies (DESIGN §1, §3). Game semantics (time zone, grace
/// period, late policy, dedupe horizon) live in the rules file's `[settings]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GamificationSettings {
    /// Rules file; the bundled `topology/gamification.toml` when absent.
    pub rules_file: Option<PathBuf>,
    /// Where results go.
    pub results_topic: String,
}

impl Default for GamificationSettings {
    fn default() -> Self {
        GamificationSettings {
            rules_file: None,
            results_topic: "gamification-results".into(),
        }
    }
}

/// The churn branch: features, model, triggers and alerts per customer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnSettings {
    /// Score churn risk at all; off = no churn state, predictions or alerts.
    pub enabled: bool,
    /// Features, triggers, bands and alerts; the bundled `topology/churn.toml` when absent.
    pub rules_file: Option<PathBuf>,
    /// Logistic-regression model; the bundled `topology/churn-model.toml` when absent.
    pub model_file: Option<PathBuf>,
    /// Where predictions go.
    pub predictions_topic: String,
    /// Where alerts (critical events, entering high risk) go.
    pub alerts_topic: String,
}

impl Default for ChurnSettings {
    fn default() -> Self {
        ChurnSettings {
            enabled: true,
            rules_file: None,
            model_file: None,
            predictions_topic: "churn-predictions".into(),
            alerts_topic: "customer-alerts".into(),
        }
    }
}

impl Config {
    /// The input topic `POST /events` writes to.
    pub fn webhook_topic(&self) -> &str {
        self.http
            .webhook_topic
            .as_deref()
            .or(self.inputs.first().map(String::as_str))
            .unwrap_or("customer-events")
    }
}

/// Interactive queries between instances and the `POST /events` webhook (DESIGN §5).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// `host:port` other instances use to reach this one's HTTP listener when they forward a
    /// query (`SCORESTREAM_ADVERTISED_HTTP_ADDR`). Absent: `http_addr`, with an unspecified
    /// host (`0.0.0.0`) replaced by this machine's host name.
    pub advertised_addr: Option<String>,
    /// Bearer token `POST /events` requires (`SCORESTREAM_WEBHOOK_TOKEN`); absent = the
    /// webhook answers 403 to everyone.
    pub webhook_token: Option<String>,
    /// Input topic the webhook writes events to, one of `inputs`; absent: the first input.
    pub webhook_topic: Option<String>,
    /// Largest request body `POST /events` accepts (413 above).
    #[serde(with = "size")]
    pub max_body_bytes: usize,
    /// How long a forwarded query may take before the caller gets 504.
    #[serde(with = "humantime_serde")]
    pub forward_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            advertised_addr: None,
            webhook_token: None,
            webhook_topic: None,
            max_body_bytes: 4 << 20,
            forward_timeout: Duration::from_secs(5),
        }
    }
}

/// librdkafka properties by client kind; `common` applies to all. Also set by
/// `SCORESTREAM_KAFKA_<SECTION>__<PROPERTY>` variables ([`kafka_env`]).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaPassthrough {
    pub common: BTreeMap<String, String>,
    pub consumer: BTreeMap<String, String>,
    pub producer: BTreeMap<String, String>,
    pub admin: BTreeMap<String, String>,
}

/// Secret-looking values (passwords, keys, tokens) are shown as `<redacted>`.
impl std::fmt::Debug for KafkaPassthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |t: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            t.iter()
                .map(|(k, v)| (k.clone(), kafka_env::shown(k, v)))
                .collect()
        };
        f.debug_struct("KafkaPassthrough")
            .field("common", &redacted(&self.common))
            .field("consumer", &redacted(&self.consumer))
            .field("producer", &redacted(&self.producer))
            .field("admin", &redacted(&self.admin))
            .finish()
    }
}

/// A configuration problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// The keys of the errors `text` is rejected with (no environment), in order.
#[cfg(test)]
pub(crate) fn error_keys(text: &str) -> Vec<String> {
    let errors = Config::from_toml_with_env(Some(text), &|_| None)
        .expect_err("the text is rejected")
        .0;
    errors.into_iter().map(|e| e.key).collect()
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Every configuration problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Parses TOML, applies environment overrides from `env`, validates. All errors at once.
    /// `env` answers variables by name; the `SCORESTREAM_KAFKA_*` family is found by listing
    /// the environment, so only [`Config::from_toml_with_env_vars`] applies it.
    pub fn from_toml_with_env(
        text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        Config::from_toml_with_env_vars(text, env, &[])
    }

    /// [`Config::from_toml_with_env`] plus `kafka_vars`, every `SCORESTREAM_KAFKA_*`
    /// variable of the environment (name, value), which set librdkafka properties over the
    /// file's.
    pub fn from_toml_with_env_vars(
        text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        kafka_vars: &[(String, String)],
    ) -> Result<Config, ConfigErrors> {
        match Config::check_with_env_vars(text, env, kafka_vars) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(ConfigErrors(errors)),
        }
    }

    /// Like [`Config::from_toml_with_env`], but also returns the configuration made of the
    /// keys that did parse (`None` when the text is not TOML at all), so `validate` can go
    /// on to check the files it names.
    pub fn check_with_env(
        text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Option<Config>, Vec<ConfigError>) {
        Config::check_with_env_vars(text, env, &[])
    }

    /// [`Config::check_with_env`] with the `SCORESTREAM_KAFKA_*` variables.
    pub fn check_with_env_vars(
        text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        kafka_vars: &[(String, String)],
    ) -> (Option<Config>, Vec<ConfigError>) {
        let (mut config, mut errors) = match text {
            None => (Config::default(), Vec::new()),
            Some(t) => match toml::from_str::<Config>(t) {
                Ok(c) => (c, Vec::new()),
                // Go on with the keys that did parse, so their problems are listed too.
                Err(e) => {
                    let (errors, rest) = file_errors(t, e);
                    match rest {
                        Some(c) => (c, errors.0),
                        None => return (None, errors.0),
                    }
                }
            },
        };
        if let Some(v) = env("KAFKA_BOOTSTRAP_SERVERS") {
            config.bootstrap_servers = v;
        }
        if let Some(v) = env("SCORESTREAM_APPLICATION_ID") {
            config.application_id = v;
        }
        if let Some(v) = env("SCORESTREAM_STATE_DIR") {
            config.state_dir = PathBuf::from(v);
        }
        if let Some(v) = env("SCORESTREAM_HTTP_ADDR") {
            config.http_addr = v;
        }
        if let Some(v) = env("SCORESTREAM_ADVERTISED_HTTP_ADDR") {
            config.http.advertised_addr = Some(v);
        }
        if let Some(v) = env("SCORESTREAM_WEBHOOK_TOKEN") {
            config.http.webhook_token = Some(v);
        }
        if let Some(v) = env("SCORESTREAM_PROCESSING_GUARANTEE") {
            match v.as_str() {
                "at_least_once" => config.processing_guarantee = ProcessingGuarantee::AtLeastOnce,
                "exactly_once" => config.processing_guarantee = ProcessingGuarantee::ExactlyOnce,
                other => errors.push(ConfigError {
                    key: "SCORESTREAM_PROCESSING_GUARANTEE".into(),
                    message: format!("'{other}' is not one of at_least_once, exactly_once"),
                }),
            }
        }
        kafka_env::apply(&mut config.kafka, kafka_vars, &mut errors);
        config.validate_into(&mut errors);
        (Some(config), errors)
    }

    /// Loads from an optional file path and the process environment.
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigErrors> {
        match Config::check_file(path) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(ConfigErrors(errors)),
        }
    }

    /// [`Config::check_with_env`] for a file and the process environment; a problem of the
    /// whole file (unreadable, not TOML) is reported under the file's path.
    pub fn check_file(path: Option<&std::path::Path>) -> (Option<Config>, Vec<ConfigError>) {
        let text = match path {
            None => None,
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => Some(t),
                Err(e) => {
                    let e = ConfigError {
                        key: p.display().to_string(),
                        message: format!("cannot read: {e}"),
                    };
                    return (None, vec![e]);
                }
            },
        };
        let (kafka_vars, mut errors) = kafka_env::from_process();
        let (config, mut more) =
            Config::check_with_env_vars(text.as_deref(), &|k| std::env::var(k).ok(), &kafka_vars);
        errors.append(&mut more);
        if let Some(p) = path {
            for e in &mut errors {
                if e.key == WHOLE_FILE {
                    e.key = p.display().to_string();
                }
            }
        }
        (config, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_env_overrides_apply() {
        let env = |k: &str| match k {
            "KAFKA_BOOTSTRAP_SERVERS" => Some("b1:9092,b2:9092".to_string()),
            "SCORESTREAM_APPLICATION_ID" => Some("app-2".to_string()),
            _ => None,
        };
        let c = Config::from_toml_with_env(None, &env).unwrap();
        assert_eq!(c.bootstrap_servers, "b1:9092,b2:9092");
        assert_eq!(c.application_id, "app-2");
        assert_eq!(c.inputs, vec!["customer-events".to_string()]);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml_with_env(Some("aplication_id = 'x'"), &|_| None).unwrap_err();
        assert!(err.to_string().contains("aplication_id"), "{err}");
    }

    #[test]
    fn durations_are_human_readable() {
        let c = Config::from_toml_with_env(Some("[runtime]\ncommit_interval = '250ms'"), &|_| None)
            .unwrap();
        assert_eq!(c.runtime.commit_interval, Duration::from_millis(250));
    }
}
