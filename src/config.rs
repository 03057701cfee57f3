//! Application configuration: one TOML file plus environment overrides (DESIGN §5).
//!
//! Config is data; [`crate::runtime::Runtime`] is built from it. Unknown keys are errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    pub runtime: RuntimeSettings,
    pub state: StateSettings,
    pub ingest: IngestSettings,
    pub gamification: GamificationSettings,
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
            runtime: RuntimeSettings::default(),
            state: StateSettings::default(),
            ingest: IngestSettings::default(),
            gamification: GamificationSettings::default(),
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
    /// Upper bound on records produced but not yet acknowledged (producer queue).
    pub max_in_flight_records: usize,
    /// Upper bound on bytes produced but not yet acknowledged.
    pub max_in_flight_bytes: usize,
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
    /// `exactly_once`: at start-up, abort one probe transaction and commit another, and
    /// refuse to run unless a `read_committed` reader sees only the committed one (Tansu and
    /// librdkafka's mock cluster fail this). Turn off only to exercise the transactional
    /// path on such a broker, knowing aborted outputs will be visible.
    pub verify_transactions: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            commit_interval: Duration::from_secs(1),
            max_in_flight_records: 500_000,
            max_in_flight_bytes: 64 << 20,
            shutdown_timeout: Duration::from_secs(30),
            replication_factor: -1,
            internal_partitions: 0,
            output_partitions: 6,
            session_timeout: Duration::from_secs(45),
            startup_timeout: Duration::from_secs(300),
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

/// Local state settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateSettings {
    pub backend: StoreBackend,
    /// RocksDB block cache shared by every task of the process, in bytes.
    pub block_cache_bytes: usize,
    /// RocksDB memtables of every task together, in bytes (charged to the block cache).
    pub write_buffer_bytes: usize,
    /// Read cache of recently used committed entries in front of RocksDB, shared by every
    /// store of every task, in bytes; 0 turns it off. Not used with the memory backend.
    pub cache_bytes: usize,
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
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 64 << 20,
            cache_bytes: 64 << 20,
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

/// librdkafka properties by client kind; `common` applies to all.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaPassthrough {
    pub common: BTreeMap<String, String>,
    pub consumer: BTreeMap<String, String>,
    pub producer: BTreeMap<String, String>,
    pub admin: BTreeMap<String, String>,
}

/// A configuration problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

/// Every configuration problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl Config {
    /// Parses TOML, applies environment overrides from `env`, validates. All errors at once.
    pub fn from_toml_with_env(
        text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut config = match text {
            None => Config::default(),
            Some(t) => toml::from_str::<Config>(t).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    key: "<file>".into(),
                    message: e.to_string().trim().to_string(),
                }])
            })?,
        };
        let mut errors = Vec::new();
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
        config.validate_into(&mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Loads from an optional file path and the process environment.
    pub fn load(path: Option<&std::path::Path>) -> Result<Config, ConfigErrors> {
        let text = match path {
            None => None,
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigErrors(vec![ConfigError {
                    key: p.display().to_string(),
                    message: format!("cannot read: {e}"),
                }])
            })?),
        };
        Config::from_toml_with_env(text.as_deref(), &|k| std::env::var(k).ok())
    }

    fn validate_into(&self, errors: &mut Vec<ConfigError>) {
        let mut err = |key: &str, message: String| {
            errors.push(ConfigError {
                key: key.into(),
                message,
            })
        };
        let id_ok = !self.application_id.is_empty()
            && self
                .application_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            err(
                "application_id",
                format!(
                    "'{}' must be non-empty and use only [a-zA-Z0-9._-] (it prefixes topic names)",
                    self.application_id
                ),
            );
        }
        if self.bootstrap_servers.trim().is_empty() {
            err("bootstrap_servers", "must not be empty".into());
        }
        if self.inputs.is_empty() {
            err("inputs", "at least one input topic is required".into());
        }
        for (i, t) in self.inputs.iter().enumerate() {
            if t.is_empty() || t.len() > 249 {
                err(
                    &format!("inputs[{i}]"),
                    format!("'{t}' is not a valid topic name"),
                );
            }
        }
        let r = &self.runtime;
        if r.commit_interval.is_zero() {
            err("runtime.commit_interval", "must be above zero".into());
        }
        if r.max_in_flight_records == 0 {
            err("runtime.max_in_flight_records", "must be above zero".into());
        }
        if r.max_in_flight_bytes < 1024 {
            err(
                "runtime.max_in_flight_bytes",
                "must be at least 1024".into(),
            );
        }
        if r.replication_factor == 0 || r.replication_factor < -1 {
            err(
                "runtime.replication_factor",
                "must be -1 (broker default) or positive".into(),
            );
        }
        if r.output_partitions <= 0 {
            err("runtime.output_partitions", "must be positive".into());
        }
        if self.state.block_cache_bytes < 1 << 20 {
            err("state.block_cache_bytes", "must be at least 1 MiB".into());
        }
        if self.state.write_buffer_bytes < 1 << 20 {
            err("state.write_buffer_bytes", "must be at least 1 MiB".into());
        }
        if self.state.restore_batch_records == 0 {
            err("state.restore_batch_records", "must be above zero".into());
        }
        if self.gamification.results_topic.is_empty() || self.gamification.results_topic.len() > 249
        {
            err(
                "gamification.results_topic",
                format!(
                    "'{}' is not a valid topic name",
                    self.gamification.results_topic
                ),
            );
        }
        if self.ingest.max_record_bytes == 0 {
            err("ingest.max_record_bytes", "must be above zero".into());
        }
        if self.ingest.max_depth == 0 {
            err("ingest.max_depth", "must be above zero".into());
        }
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
    fn reports_every_error_at_once() {
        let text = r#"
            application_id = "bad id!"
            inputs = []
            [runtime]
            commit_interval = "0s"
            replication_factor = 0
        "#;
        let env = |k: &str| (k == "SCORESTREAM_PROCESSING_GUARANTEE").then(|| "maybe".to_string());
        let errs = Config::from_toml_with_env(Some(text), &env).unwrap_err().0;
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "SCORESTREAM_PROCESSING_GUARANTEE",
                "application_id",
                "inputs",
                "runtime.commit_interval",
                "runtime.replication_factor"
            ]
        );
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
