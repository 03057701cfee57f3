//! Field mapping per source topic and per event type, declared in `topology/sources.toml`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::event_type::normalize_event_type;

/// The bundled mapping file.
pub const BUNDLED: &str = include_str!("../../topology/sources.toml");

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasesFile {
    customer_id: Option<Vec<String>>,
    event_type: Option<Vec<String>>,
    timestamp: Option<Vec<String>>,
    event_id: Option<Vec<String>>,
    source: Option<Vec<String>>,
    value: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventTypeFile {
    value_field: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    defaults: AliasesFile,
    #[serde(default)]
    sources: BTreeMap<String, AliasesFile>,
    #[serde(default)]
    event_types: BTreeMap<String, EventTypeFile>,
}

/// The field aliases for one source topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldAliases {
    pub customer_id: Vec<String>,
    pub event_type: Vec<String>,
    pub timestamp: Vec<String>,
    pub event_id: Vec<String>,
    pub source: Vec<String>,
    /// Dotted paths allowed.
    pub value: Vec<String>,
}

impl Default for FieldAliases {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        FieldAliases {
            customer_id: v(&["customer_id", "customerId", "user_id", "userId"]),
            event_type: v(&["event_type", "eventType"]),
            timestamp: v(&["timestamp"]),
            event_id: v(&["event_id", "eventId"]),
            source: v(&["source"]),
            value: v(&["value", "amount"]),
        }
    }
}

/// A mapping problem with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct MappingError {
    pub key: String,
    pub message: String,
}

/// Aliases per source topic, and value fields per event type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceMappings {
    defaults: FieldAliases,
    /// Looked up for every record: ordered maps, because for a handful of short keys a
    /// few comparisons cost less than hashing the key with SipHash (two lookups were
    /// ~3 % of normalize's instructions).
    per_source: BTreeMap<String, FieldAliases>,
    value_fields: BTreeMap<String, String>,
}

fn merge(
    base: &FieldAliases,
    f: &AliasesFile,
    path: &str,
    errors: &mut Vec<MappingError>,
) -> FieldAliases {
    let mut pick = |name: &str, given: &Option<Vec<String>>, fallback: &Vec<String>| match given {
        None => fallback.clone(),
        Some(list) => {
            if list.is_empty() {
                errors.push(MappingError {
                    key: format!("{path}.{name}"),
                    message: "must list at least one field".into(),
                });
            }
            for (i, a) in list.iter().enumerate() {
                let dotted_ok = name == "value";
                if a.trim().is_empty()
                    || (!dotted_ok && a.contains('.'))
                    || a.split('.').any(str::is_empty)
                {
                    errors.push(MappingError {
                        key: format!("{path}.{name}[{i}]"),
                        message: format!(
                            "'{a}' is not a valid field name{}",
                            if dotted_ok {
                                ""
                            } else {
                                " (only value fields may be dotted paths)"
                            }
                        ),
                    });
                }
            }
            list.clone()
        }
    };
    FieldAliases {
        customer_id: pick("customer_id", &f.customer_id, &base.customer_id),
        event_type: pick("event_type", &f.event_type, &base.event_type),
        timestamp: pick("timestamp", &f.timestamp, &base.timestamp),
        event_id: pick("event_id", &f.event_id, &base.event_id),
        source: pick("source", &f.source, &base.source),
        value: pick("value", &f.value, &base.value),
    }
}

impl SourceMappings {
    /// Parses and checks a mapping file; every error is returned, each with its key path.
    pub fn from_toml_str(text: &str) -> Result<SourceMappings, Vec<MappingError>> {
        let file: MappingFile = toml::from_str(text).map_err(|e| {
            vec![MappingError {
                key: "<file>".into(),
                message: e.to_string().trim().to_string(),
            }]
        })?;
        let mut errors = Vec::new();
        let defaults = merge(
            &FieldAliases::default(),
            &file.defaults,
            "defaults",
            &mut errors,
        );
        let per_source = file
            .sources
            .iter()
            .map(|(topic, f)| {
                let path = format!("sources.\"{topic}\"");
                (topic.clone(), merge(&defaults, f, &path, &mut errors))
            })
            .collect();
        let mut value_fields = BTreeMap::new();
        for (t, rule) in &file.event_types {
            let normalized = normalize_event_type(t);
            if normalized != *t {
                errors.push(MappingError {
                    key: format!("event_types.{t}"),
                    message: format!("event types are written normalized: '{normalized}'"),
                });
            }
            if let Some(f) = &rule.value_field {
                if f.trim().is_empty() || f.split('.').any(str::is_empty) {
                    errors.push(MappingError {
                        key: format!("event_types.{t}.value_field"),
                        message: format!("'{f}' is not a valid dotted path"),
                    });
                }
                value_fields.insert(normalized, f.clone());
            } else {
                value_fields.entry(normalized).or_insert_with(String::new);
            }
        }
        if errors.is_empty() {
            Ok(SourceMappings {
                defaults,
                per_source,
                value_fields,
            })
        } else {
            Err(errors)
        }
    }

    /// The mapping shipped in `topology/sources.toml`.
    pub fn bundled() -> SourceMappings {
        SourceMappings::from_toml_str(BUNDLED).expect("the bundled sources.toml is valid")
    }

    /// The aliases for records read from `topic`.
    pub fn for_topic(&self, topic: &str) -> &FieldAliases {
        self.per_source.get(topic).unwrap_or(&self.defaults)
    }

    /// The value field declared for an event type, if any.
    pub fn value_field(&self, event_type: &str) -> Option<&str> {
        self.value_fields
            .get(event_type)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Event types the mapping declares.
    pub fn known_event_types(&self) -> HashSet<String> {
        self.value_fields.keys().cloned().collect()
    }
}

/// Everything the normalizer needs.
#[derive(Debug, Clone)]
pub struct NormalizerConfig {
    pub mapping: SourceMappings,
    /// Larger records are `too_large`.
    pub max_record_bytes: usize,
    /// Deeper JSON is `too_deep`.
    pub max_depth: usize,
    /// Event times further ahead of the wall clock are `invalid_timestamp`.
    pub max_future_skew_ms: i64,
    /// When set, event types outside it are `unknown_event_type`.
    pub strict_event_types: Option<HashSet<String>>,
}

impl Default for NormalizerConfig {
    fn default() -> Self {
        NormalizerConfig {
            mapping: SourceMappings::bundled(),
            max_record_bytes: 1 << 20,
            max_depth: 64,
            max_future_skew_ms: 3_600_000,
            strict_event_types: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_loads_with_overrides() {
        let m = SourceMappings::bundled();
        assert_eq!(m.value_field("order_placed"), Some("data.order_value"));
        assert!(m
            .for_topic("quiz-events")
            .customer_id
            .contains(&"session_id".to_string()));
        assert_eq!(m.for_topic("customer-events").value, ["value", "amount"]);
        assert!(m.known_event_types().contains("recharge"));
    }

    #[test]
    fn every_error_at_once() {
        let text = r#"
            [defaults]
            customer_id = []
            event_type = ["a.b"]
            [sources."x"]
            value = ["data..v"]
            [event_types.OrderPlaced]
            value_field = ""
        "#;
        let errs = SourceMappings::from_toml_str(text).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "defaults.customer_id",
                "defaults.event_type[0]",
                "sources.\"x\".value[0]",
                "event_types.OrderPlaced",
                "event_types.OrderPlaced.value_field"
            ]
        );
    }

    #[test]
    fn unknown_keys_rejected() {
        let errs = SourceMappings::from_toml_str("[defaults]\ncustomer = ['x']").unwrap_err();
        assert!(errs[0].message.contains("customer"), "{errs:?}");
    }
}
