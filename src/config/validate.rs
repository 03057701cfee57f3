//! The validation pass over a parsed [`Config`]: every problem at once, in file order.

use super::{check, memory, size, Config, ConfigError};

/// Pushes `message` for `key`.
fn err(errors: &mut Vec<ConfigError>, key: &str, message: String) {
    errors.push(ConfigError {
        key: key.into(),
        message,
    })
}

/// A Kafka topic name the broker will accept (non-empty, at most 249 characters).
fn topic_ok(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 249
}

/// The error for `key` when `topic` is not a topic name the broker will accept.
pub(crate) fn topic_error(key: &str, topic: &str) -> Option<ConfigError> {
    (!topic_ok(topic))
        .then(|| ConfigError::new(key, format!("'{topic}' is not a valid topic name")))
}

impl Config {
    pub(super) fn validate_into(&self, errors: &mut Vec<ConfigError>) {
        self.validate_identity(errors);
        self.validate_runtime(errors);
        self.validate_state(errors);
        crate::topology::validate_parts(self, errors);
        self.validate_errors(errors);
        self.validate_http(errors);
        check::http_addr(&self.http_addr, errors);
        check::state_dir(&self.state_dir, self.state.backend, errors);
        check::kafka_properties(&self.kafka, errors);
        check::sasl_mechanisms(&self.kafka, errors);
    }

    /// The application id, the brokers and the input topics.
    fn validate_identity(&self, errors: &mut Vec<ConfigError>) {
        let id_ok = !self.application_id.is_empty()
            && self
                .application_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            err(
                errors,
                "application_id",
                format!(
                    "'{}' must be non-empty and use only [a-zA-Z0-9._-] (it prefixes topic names)",
                    self.application_id
                ),
            );
        }
        if self.bootstrap_servers.trim().is_empty() {
            err(errors, "bootstrap_servers", "must not be empty".into());
        }
        if self.inputs.is_empty() {
            err(
                errors,
                "inputs",
                "at least one input topic is required".into(),
            );
        }
        for (i, t) in self.inputs.iter().enumerate() {
            if !topic_ok(t) {
                err(
                    errors,
                    &format!("inputs[{i}]"),
                    format!("'{t}' is not a valid topic name"),
                );
            }
        }
    }

    /// `[runtime]`: commits, backpressure, topic creation.
    fn validate_runtime(&self, errors: &mut Vec<ConfigError>) {
        let r = &self.runtime;
        if r.commit_interval.is_zero() {
            err(
                errors,
                "runtime.commit_interval",
                "must be above zero".into(),
            );
        }
        if r.max_in_flight_records == Some(0) {
            err(
                errors,
                "runtime.max_in_flight_records",
                "must be above zero".into(),
            );
        }
        if r.max_in_flight_bytes.is_some_and(|b| b < 1024) {
            err(
                errors,
                "runtime.max_in_flight_bytes",
                "must be at least 1024".into(),
            );
        }
        if r.replication_factor == 0 || r.replication_factor < -1 {
            err(
                errors,
                "runtime.replication_factor",
                "must be -1 (broker default) or positive".into(),
            );
        }
        if r.output_partitions <= 0 {
            err(
                errors,
                "runtime.output_partitions",
                "must be positive".into(),
            );
        }
    }

    /// The memory budget and `[state]`.
    fn validate_state(&self, errors: &mut Vec<ConfigError>) {
        if self.memory_budget_bytes < memory::MIN_BUDGET {
            err(
                errors,
                "memory_budget_bytes",
                format!("must be at least {}", size::format(memory::MIN_BUDGET)),
            );
        }
        if self.state.block_cache_bytes.is_some_and(|b| b < 1 << 20) {
            err(
                errors,
                "state.block_cache_bytes",
                "must be at least 1 MiB".into(),
            );
        }
        if self.state.write_buffer_bytes.is_some_and(|b| b < 1 << 20) {
            err(
                errors,
                "state.write_buffer_bytes",
                "must be at least 1 MiB".into(),
            );
        }
        if self.state.restore_batch_records == 0 {
            err(
                errors,
                "state.restore_batch_records",
                "must be above zero".into(),
            );
        }
    }

    /// `[http]`: the webhook and the address other instances reach this one at.
    fn validate_http(&self, errors: &mut Vec<ConfigError>) {
        if let Some(t) = &self.http.webhook_topic {
            if !self.inputs.contains(t) {
                err(
                    errors,
                    "http.webhook_topic",
                    format!(
                        "'{t}' is not one of the input topics ({})",
                        self.inputs.join(", ")
                    ),
                );
            }
        }
        if self.http.webhook_token.as_deref() == Some("") {
            err(
                errors,
                "http.webhook_token",
                "must not be empty (leave it out to disable the webhook)".into(),
            );
        }
        if let Some(a) = &self.http.advertised_addr {
            if a.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                err(
                    errors,
                    "http.advertised_addr",
                    format!("'{a}' is not host:port"),
                );
            }
        }
        if self.http.max_body_bytes == 0 {
            err(errors, "http.max_body_bytes", "must be above zero".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

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
    fn http_settings_are_checked_together() {
        let text = r#"
            [http]
            webhook_topic = "nowhere"
            webhook_token = ""
            advertised_addr = "no-port"
        "#;
        assert_eq!(
            crate::config::error_keys(text),
            [
                "http.webhook_topic",
                "http.webhook_token",
                "http.advertised_addr"
            ]
        );
        let env = |k: &str| match k {
            "SCORESTREAM_WEBHOOK_TOKEN" => Some("s3cret".to_string()),
            "SCORESTREAM_ADVERTISED_HTTP_ADDR" => Some("replica-2:8080".to_string()),
            _ => None,
        };
        let c = Config::from_toml_with_env(None, &env).unwrap();
        assert_eq!(c.http.webhook_token.as_deref(), Some("s3cret"));
        assert_eq!(c.http.advertised_addr.as_deref(), Some("replica-2:8080"));
    }

    #[test]
    fn every_part_checks_its_own_keys_and_a_shared_key_is_reported_once() {
        let text = r#"
            [ingest]
            max_depth = 0
            [gamification]
            results_topic = ""
            [churn]
            alerts_topic = ""
        "#;
        assert_eq!(
            crate::config::error_keys(text),
            [
                "ingest.max_depth",
                "gamification.results_topic",
                "churn.alerts_topic"
            ]
        );
    }
}
