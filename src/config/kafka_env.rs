//! librdkafka properties from the environment (docs/configuration.md): one variable per
//! property, `SCORESTREAM_KAFKA_<SECTION>__<PROPERTY>`, so a SASL password can come from a
//! Kubernetes Secret and `group.instance.id` from the pod name while every replica shares
//! one image and one file.
//!
//! `SECTION` is `COMMON`, `CONSUMER`, `PRODUCER` or `ADMIN` (the `[kafka.*]` tables); a
//! double underscore ends it; in `PROPERTY` every single underscore is a dot and letters are
//! lower-cased: `SCORESTREAM_KAFKA_COMMON__SASL_PASSWORD` sets `[kafka.common]`
//! `sasl.password`. (No string-settable librdkafka property has an underscore in its name.)

use tracing::info;

use super::{ConfigError, KafkaPassthrough};

/// Every variable whose name starts with this is a librdkafka property.
pub const PREFIX: &str = "SCORESTREAM_KAFKA_";

/// The `[kafka.*]` tables, as written in a variable name after [`PREFIX`].
pub const SECTIONS: [&str; 4] = ["COMMON", "CONSUMER", "PRODUCER", "ADMIN"];

/// `SCORESTREAM_KAFKA_COMMON__SASL_PASSWORD` → (`common`, `sasl.password`); why not, for a
/// name with the prefix that does not follow the scheme.
pub fn parse_name(var: &str) -> Result<(&'static str, String), String> {
    let scheme = || {
        format!(
            "not {PREFIX}<SECTION>__<PROPERTY> with SECTION one of {} (e.g. {PREFIX}COMMON__SASL_PASSWORD)",
            SECTIONS.join(", ")
        )
    };
    let rest = var.strip_prefix(PREFIX).ok_or_else(scheme)?;
    let (section, property) = rest.split_once("__").ok_or_else(scheme)?;
    let section = SECTIONS
        .iter()
        .position(|s| s.eq_ignore_ascii_case(section))
        .map(|i| ["common", "consumer", "producer", "admin"][i])
        .ok_or_else(scheme)?;
    let words: Vec<&str> = property.split('_').collect();
    if words
        .iter()
        .any(|w| w.is_empty() || !w.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(format!(
            "'{property}' is not a property name: words of letters and digits joined by single underscores (dots in the property), e.g. SASL_PASSWORD for sasl.password"
        ));
    }
    Ok((section, words.join(".").to_ascii_lowercase()))
}

/// Whether a property's value must never appear in logs or debug output: passwords, secrets,
/// tokens, keys, JAAS and OAUTHBEARER configurations.
pub fn looks_secret(property: &str) -> bool {
    let p = property.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "key",
        "jaas",
        "credential",
        "oauthbearer.config",
    ]
    .iter()
    .any(|w| p.contains(w))
}

/// The value as logs may show it.
pub fn shown(property: &str, value: &str) -> String {
    if looks_secret(property) {
        "<redacted>".into()
    } else {
        value.to_string()
    }
}

/// The process's `SCORESTREAM_KAFKA_*` variables, sorted by name. A value that is not UTF-8
/// is an error (named, never printed).
pub fn from_process() -> (Vec<(String, String)>, Vec<ConfigError>) {
    let (mut vars, mut errors) = (Vec::new(), Vec::new());
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with(PREFIX)) else {
            continue;
        };
        match value.into_string() {
            Ok(v) => vars.push((name.to_string(), v)),
            Err(_) => errors.push(ConfigError {
                key: name.to_string(),
                message: "the value is not UTF-8".into(),
            }),
        }
    }
    vars.sort();
    (vars, errors)
}

/// Sets each variable's property, over the file's value. Names that do not follow the
/// scheme are errors; secret-looking values are logged as `<redacted>`.
pub(super) fn apply(
    kafka: &mut KafkaPassthrough,
    vars: &[(String, String)],
    errors: &mut Vec<ConfigError>,
) {
    for (var, value) in vars {
        match parse_name(var) {
            Ok((section, property)) => {
                info!(
                    variable = %var,
                    section,
                    property = %property,
                    value = %shown(&property, value),
                    "librdkafka property set from the environment."
                );
                let table = match section {
                    "common" => &mut kafka.common,
                    "consumer" => &mut kafka.consumer,
                    "producer" => &mut kafka.producer,
                    _ => &mut kafka.admin,
                };
                table.insert(property, value.clone());
            }
            Err(message) => errors.push(ConfigError {
                key: var.clone(),
                message,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_scheme() {
        for (var, section, property) in [
            (
                "SCORESTREAM_KAFKA_COMMON__SASL_PASSWORD",
                "common",
                "sasl.password",
            ),
            (
                "SCORESTREAM_KAFKA_CONSUMER__GROUP_INSTANCE_ID",
                "consumer",
                "group.instance.id",
            ),
            (
                "SCORESTREAM_KAFKA_PRODUCER__COMPRESSION_TYPE",
                "producer",
                "compression.type",
            ),
            (
                "SCORESTREAM_KAFKA_admin__request_timeout_ms",
                "admin",
                "request.timeout.ms",
            ),
            ("SCORESTREAM_KAFKA_COMMON__ACKS", "common", "acks"),
        ] {
            assert_eq!(
                parse_name(var),
                Ok((section, property.to_string())),
                "{var}"
            );
        }
        for bad in [
            "SCORESTREAM_KAFKA_SASL_PASSWORD",
            "SCORESTREAM_KAFKA_STREAMS__X",
            "SCORESTREAM_KAFKA_COMMON__",
            "SCORESTREAM_KAFKA_COMMON__SASL__PASSWORD",
            "SCORESTREAM_KAFKA_COMMON__SASL_",
            "SCORESTREAM_KAFKA_COMMON__SASL.PASSWORD",
            "SCORESTREAM_KAFKA___X",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_recognised_and_hidden() {
        for secret in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "ssl.keystore.password",
            "sasl.jaas.config",
        ] {
            assert!(looks_secret(secret), "{secret}");
            assert_eq!(shown(secret, "hunter2"), "<redacted>");
        }
        for plain in ["group.instance.id", "compression.type", "sasl.username"] {
            assert!(!looks_secret(plain), "{plain}");
            assert_eq!(shown(plain, "pod-0"), "pod-0");
        }
    }

    #[test]
    fn kafka_properties_come_from_the_environment_over_the_file() {
        let text = r#"
            [kafka.common]
            "sasl.password" = "from-file"
            "sasl.username" = "scorestream"
        "#;
        let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = crate::config::Config::from_toml_with_env_vars(
            Some(text),
            &|_| None,
            &vars(&[
                ("SCORESTREAM_KAFKA_COMMON__SASL_PASSWORD", "from-secret"),
                (
                    "SCORESTREAM_KAFKA_CONSUMER__GROUP_INSTANCE_ID",
                    "scorestream-0",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.common["sasl.password"], "from-secret");
        assert_eq!(c.kafka.common["sasl.username"], "scorestream");
        assert_eq!(c.kafka.consumer["group.instance.id"], "scorestream-0");
        assert!(c.kafka.producer.is_empty() && c.kafka.admin.is_empty());
        // Never in debug output.
        let shown = format!("{c:?}");
        assert!(!shown.contains("from-secret"), "{shown}");
        assert!(shown.contains("scorestream-0"), "{shown}");
        // A name off the scheme is reported with the other problems, by name.
        let errs = crate::config::Config::from_toml_with_env_vars(
            Some("inputs = []"),
            &|_| None,
            &vars(&[("SCORESTREAM_KAFKA_SASL_PASSWORD", "hunter2")]),
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["SCORESTREAM_KAFKA_SASL_PASSWORD", "inputs"]);
        assert!(!errs.to_string().contains("hunter2"), "{errs}");
    }
}
