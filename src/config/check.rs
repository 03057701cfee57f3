//! Checks of settings that serde accepts as plain strings but that must name something
//! real: a listen address, a state directory, librdkafka properties. Each problem is added
//! to the list with the key it concerns, like the rest of [`super::Config`]'s validation.

use std::net::SocketAddr;
use std::path::Path;

use super::{ConfigError, KafkaPassthrough, StoreBackend};

fn push(errors: &mut Vec<ConfigError>, key: &str, message: String) {
    errors.push(ConfigError {
        key: key.into(),
        message,
    });
}

/// `http_addr` must be `host:port` (an IP, `[v6]` or a host name, and a port number), as
/// `TcpListener::bind` takes it.
pub(super) fn http_addr(addr: &str, errors: &mut Vec<ConfigError>) {
    if addr.parse::<SocketAddr>().is_ok() {
        return;
    }
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        port.parse::<u16>().is_ok()
            && !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    });
    if !ok {
        push(
            errors,
            "http_addr",
            format!("'{addr}' is not host:port (e.g. 0.0.0.0:8080)"),
        );
    }
}

/// With RocksDB, `state_dir` must be (or be creatable as) a directory: the nearest part of
/// the path that exists has to be a directory.
pub(super) fn state_dir(dir: &Path, backend: StoreBackend, errors: &mut Vec<ConfigError>) {
    if backend != StoreBackend::Rocksdb {
        return;
    }
    if dir.as_os_str().is_empty() {
        push(errors, "state_dir", "must not be empty".into());
        return;
    }
    let Some(existing) = dir.ancestors().find(|p| p.exists()) else {
        return;
    };
    if !existing.is_dir() {
        let message = if existing == dir {
            format!("'{}' exists and is not a directory", dir.display())
        } else {
            format!(
                "'{}' cannot be created: '{}' is not a directory",
                dir.display(),
                existing.display()
            )
        };
        push(errors, "state_dir", message);
    }
}

/// Every `[kafka.*]` property must be one librdkafka knows, with a value it accepts: each
/// is set on a fresh librdkafka configuration (`rd_kafka_conf_set`), which checks both
/// without connecting anywhere.
pub(super) fn kafka_properties(kafka: &KafkaPassthrough, errors: &mut Vec<ConfigError>) {
    for (section, props) in [
        ("common", &kafka.common),
        ("consumer", &kafka.consumer),
        ("producer", &kafka.producer),
        ("admin", &kafka.admin),
    ] {
        for (name, value) in props {
            let mut one = rdkafka::ClientConfig::new();
            one.set(name, value);
            if let Err(e) = one.create_native_config() {
                let message = match e {
                    rdkafka::error::KafkaError::ClientConfig(_, description, _, _) => description,
                    other => other.to_string(),
                };
                push(
                    errors,
                    &format!("kafka.{section}.\"{name}\""),
                    message.trim().to_string(),
                );
            }
        }
    }
}

/// librdkafka accepts any `sasl.mechanisms` text and fails only when a client starts; name
/// the problem now when the mechanism needs something this build left out (Kerberos needs
/// the `gssapi` cargo feature, which links the system's Cyrus SASL).
pub(super) fn sasl_mechanisms(kafka: &KafkaPassthrough, errors: &mut Vec<ConfigError>) {
    let builtin = rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .unwrap_or_default();
    for (section, props) in [
        ("common", &kafka.common),
        ("consumer", &kafka.consumer),
        ("producer", &kafka.producer),
        ("admin", &kafka.admin),
    ] {
        for name in ["sasl.mechanisms", "sasl.mechanism"] {
            let Some(value) = props.get(name) else {
                continue;
            };
            if value.to_ascii_uppercase().contains("GSSAPI")
                && !builtin.split(',').any(|f| f == "sasl_gssapi")
            {
                push(
                    errors,
                    &format!("kafka.{section}.\"{name}\""),
                    "GSSAPI (Kerberos) is not in this build: build ScoreStream with `--features gssapi` (needs libsasl2-dev)".into(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn listen_addresses() {
        for good in [
            "0.0.0.0:8080",
            "[::]:9000",
            "localhost:8080",
            "scorestream-0.svc:80",
        ] {
            let mut errors = Vec::new();
            http_addr(good, &mut errors);
            assert!(errors.is_empty(), "{good}: {errors:?}");
        }
        for bad in ["nonsense", ":8080", "host:", "host:99999", "http://h:80"] {
            let mut errors = Vec::new();
            http_addr(bad, &mut errors);
            assert_eq!(keys(&errors), ["http_addr"], "{bad}");
        }
    }

    #[test]
    fn a_state_dir_that_is_a_file_or_under_one() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        let mut errors = Vec::new();
        state_dir(&file, StoreBackend::Rocksdb, &mut errors);
        state_dir(&file.join("sub"), StoreBackend::Rocksdb, &mut errors);
        assert_eq!(keys(&errors), ["state_dir", "state_dir"]);
        assert!(errors[0].message.contains("not a directory"), "{errors:?}");
        // Not yet created is fine; the memory backend never opens it.
        let mut errors = Vec::new();
        state_dir(
            &tmp.path().join("new/deeper"),
            StoreBackend::Rocksdb,
            &mut errors,
        );
        state_dir(&file, StoreBackend::Memory, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn librdkafka_names_unknown_properties_and_bad_values() {
        let mut kafka = KafkaPassthrough::default();
        kafka
            .common
            .insert("security.protocol".into(), "SASL_SSL".into());
        kafka
            .common
            .insert("sasl.mechanisms".into(), "PLAIN".into());
        kafka
            .consumer
            .insert("fetch.wait.max.ms".into(), "100".into());
        kafka
            .producer
            .insert("compression.type".into(), "lz4".into());
        let mut errors = Vec::new();
        kafka_properties(&kafka, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        kafka.common.insert("sasl.pasword".into(), "x".into());
        kafka
            .producer
            .insert("compression.type".into(), "brotli".into());
        kafka_properties(&kafka, &mut errors);
        assert_eq!(
            keys(&errors),
            [
                "kafka.common.\"sasl.pasword\"",
                "kafka.producer.\"compression.type\""
            ]
        );
        assert!(
            errors[0].message.contains("No such configuration property"),
            "{errors:?}"
        );
    }

    /// OIDC needs libcurl: librdkafka itself refuses the setting in a build without it.
    #[cfg(not(feature = "oidc"))]
    #[test]
    fn oidc_needs_the_oidc_feature() {
        let mut kafka = KafkaPassthrough::default();
        kafka
            .common
            .insert("sasl.oauthbearer.method".into(), "oidc".into());
        let mut errors = Vec::new();
        kafka_properties(&kafka, &mut errors);
        assert_eq!(keys(&errors), ["kafka.common.\"sasl.oauthbearer.method\""]);
        assert!(errors[0].message.contains("libcurl"), "{errors:?}");
    }

    #[cfg(not(feature = "gssapi"))]
    #[test]
    fn kerberos_needs_the_gssapi_feature() {
        let mut kafka = KafkaPassthrough::default();
        kafka
            .common
            .insert("sasl.mechanisms".into(), "SCRAM-SHA-512".into());
        let mut errors = Vec::new();
        sasl_mechanisms(&kafka, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        kafka
            .common
            .insert("sasl.mechanisms".into(), "GSSAPI".into());
        sasl_mechanisms(&kafka, &mut errors);
        assert_eq!(keys(&errors), ["kafka.common.\"sasl.mechanisms\""]);
        assert!(
            errors[0].message.contains("--features gssapi"),
            "{errors:?}"
        );
    }
}
