//! The checks every section of a rules file shares: reading a section or its entries on
//! their own, references to point types and event types, ids, caps, durations, filters. A
//! leaf: [`super::compile`], [`super::compile_game`] and [`super::compile_missions`] use it,
//! it uses none of them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono_tz::Tz;
use serde::de::DeserializeOwned;

use super::rules::{Filter, FilterValue, RuleError, Tiers, UnitSource};

/// Collects problems; `key` is the dotted path of the offending setting.
#[derive(Default)]
pub(super) struct Errs(pub Vec<RuleError>);

impl Errs {
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(RuleError {
            key: key.into(),
            message: message.into(),
        });
    }
}

/// Deserializes one top-level section, reporting a shape error under its name.
pub(super) fn section<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    errs: &mut Errs,
) -> Option<T> {
    let value = table.get(key)?;
    lenient(value, key, errs)
}

/// Deserializes `value`; an unknown key is reported (with the closest known one) and left
/// out, and the rest tried again, so a typo does not hide the problems of its neighbours.
fn lenient<T: DeserializeOwned>(value: &toml::Value, path: &str, errs: &mut Errs) -> Option<T> {
    let mut value = value.clone();
    loop {
        let e = match value.clone().try_into::<T>() {
            Ok(v) => return Some(v),
            Err(e) => clean(&e.to_string()),
        };
        let unknown = e
            .strip_prefix("unknown field `")
            .and_then(|r| r.split_once('`'))
            .map(|(k, _)| k.to_string());
        match (unknown, &mut value) {
            (Some(k), toml::Value::Table(t)) if t.contains_key(&k) => {
                t.remove(&k);
                let message = crate::config::suggest::unknown_field(&e).unwrap_or(e);
                errs.push(format!("{path}.{k}"), message);
            }
            _ => {
                errs.push(path, e);
                return None;
            }
        }
    }
}

/// Deserializes each entry of a `[section.<id>]` table on its own, so one bad entry does
/// not hide the problems of the others. Entries that fail are left out.
pub(super) fn entries<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    errs: &mut Errs,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let Some(value) = table.get(key) else {
        return out;
    };
    let Some(map) = value.as_table() else {
        errs.push(
            key,
            format!("must be a table of entries, found {}", value.type_str()),
        );
        return out;
    };
    for (id, v) in map {
        let path = format!("{key}.{id}");
        check_id(&path, id, errs);
        if let Some(spec) = lenient(v, &path, errs) {
            out.insert(id.clone(), spec);
        }
    }
    out
}

/// Ids appear in output records and state keys: keep them plain.
fn check_id(path: &str, id: &str, errs: &mut Errs) {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        errs.push(path, "id must be non-empty and use only [A-Za-z0-9_-]");
    }
}

/// serde's messages through `toml::Value` end in a newline and sometimes mention a
/// meaningless position; keep the sentence.
fn clean(message: &str) -> String {
    message.trim().replace('\n', " ")
}

pub(super) fn time_zone(key: &str, name: &str, errs: &mut Errs) -> Option<Tz> {
    match name.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            errs.push(key, format!("'{name}' is not an IANA time zone name"));
            None
        }
    }
}

pub(super) fn non_negative_cap(key: String, cap: Option<i64>, errs: &mut Errs) -> Option<i64> {
    match cap {
        Some(c) if c < 0 => {
            errs.push(key, format!("{c} is negative; a cap must be 0 or more"));
            None
        }
        other => other,
    }
}

/// A required reference to a point type; reports missing or unknown ones.
pub(super) fn point_type_ref(
    key: String,
    name: Option<&str>,
    known: &BTreeSet<String>,
    errs: &mut Errs,
) -> String {
    match name {
        None => {
            errs.push(key, "required");
            String::new()
        }
        Some(n) if !known.contains(n) => {
            errs.push(
                key,
                format!("unknown point type '{n}' (declare it under [point_types.{n}])"),
            );
            n.to_string()
        }
        Some(n) => n.to_string(),
    }
}

/// A non-empty event type name.
pub(super) fn event_type_ref(key: String, name: Option<&str>, errs: &mut Errs) -> String {
    match name.map(str::trim) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            errs.push(key, "required: a non-empty event type (lower snake case)");
            String::new()
        }
    }
}

pub(super) fn filters(
    key: &str,
    when: &BTreeMap<String, toml::Value>,
    errs: &mut Errs,
) -> Vec<Filter> {
    when.iter()
        .filter_map(|(path, v)| {
            let equals = match v {
                toml::Value::Boolean(b) => FilterValue::Bool(*b),
                toml::Value::Integer(i) => FilterValue::Int(*i),
                toml::Value::Float(f) => FilterValue::Float(*f),
                toml::Value::String(s) => FilterValue::Str(s.clone()),
                other => {
                    errs.push(
                        format!("{key}.when.{path}"),
                        format!(
                            "must be a string, number or boolean, found {}",
                            other.type_str()
                        ),
                    );
                    return None;
                }
            };
            Some(Filter {
                path: path.clone(),
                equals,
            })
        })
        .collect()
}

pub(super) fn unit_source(attribute: Option<&String>) -> UnitSource {
    attribute.map_or(UnitSource::Value, |a| UnitSource::Attribute(a.clone()))
}

/// Ids that sections may refer to.
pub(super) struct Refs<'a> {
    pub points: &'a BTreeSet<String>,
    pub streaks: BTreeSet<String>,
    pub missions: BTreeSet<String>,
    pub badge_levels: BTreeMap<String, usize>,
    pub tiers: Option<&'a Tiers>,
}

pub(super) fn positive_duration(
    key: String,
    d: Option<Duration>,
    errs: &mut Errs,
) -> Option<Duration> {
    match d {
        Some(d) if d.is_zero() => {
            errs.push(key, "must be above zero");
            None
        }
        other => other,
    }
}

pub(super) fn event_types(key: String, types: &[String], errs: &mut Errs) -> Vec<String> {
    if types.is_empty() {
        errs.push(key.clone(), "must list at least one event type");
    }
    for (i, t) in types.iter().enumerate() {
        event_type_ref(format!("{key}[{i}]"), Some(t), errs);
    }
    types.to_vec()
}

pub(super) fn unused(key: String, is_set: bool, kind: &str, errs: &mut Errs) {
    if is_set {
        errs.push(key, format!("is not used by {kind}; remove it"));
    }
}
