//! Turns a rules file into [`Rules`], collecting every problem with its key path.
//!
//! The file is first parsed as a plain TOML table (a syntax error stops here: nothing after
//! it can be trusted), then each section and each entry is deserialized on its own, so that
//! shape errors in `missions.a` and `badges.b` are reported together, followed by the
//! semantic checks (references, thresholds, windows) in [`super::compile_game`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono_tz::Tz;
use serde::de::DeserializeOwned;

use super::compile_game;
use super::rules::{
    Filter, FilterValue, LatePolicy, PointType, PointsRule, RuleError, RuleErrors, Rules, Settings,
    UnitSource,
};
use super::spec::{PointTypeSpec, PointsRuleSpec, SettingsSpec};
use super::time::whole_days;

const SECTIONS: [&str; 10] = [
    "rules_version",
    "settings",
    "point_types",
    "points",
    "missions",
    "badges",
    "streaks",
    "tiers",
    "scores",
    "leaderboards",
];

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

pub(super) fn compile(text: &str) -> Result<Rules, RuleErrors> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        RuleErrors(vec![RuleError {
            key: "<toml>".into(),
            message: e.to_string().trim().to_string(),
        }])
    })?;
    let mut errs = Errs::default();
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errs.push(
                key.clone(),
                format!("unknown section (expected one of {})", SECTIONS.join(", ")),
            );
        }
    }
    let declared_version = match table.get("rules_version") {
        None => None,
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => {
            errs.push("rules_version", "must be a non-empty string");
            None
        }
    };
    let settings_spec: SettingsSpec = section(&table, "settings", &mut errs).unwrap_or_default();
    let settings = settings(&settings_spec, &mut errs);
    let point_types = point_types(&entries(&table, "point_types", &mut errs), &mut errs);
    let known_points: BTreeSet<String> = point_types.iter().map(|p| p.id.clone()).collect();
    let game = compile_game::compile_game(&table, &settings, &known_points, &mut errs);
    let tier_ids: BTreeSet<String> = game
        .tiers
        .iter()
        .flat_map(|t| t.levels.iter().map(|l| l.id.clone()))
        .collect();
    let points = points_rules(
        &entries(&table, "points", &mut errs),
        &known_points,
        &tier_ids,
        &mut errs,
    );
    if !errs.0.is_empty() {
        // Sections are checked in dependency order; report them in the file's usual order.
        let rank = |e: &RuleError| {
            let section = e.key.split(['.', '[']).next().unwrap_or("");
            SECTIONS.iter().position(|s| *s == section).unwrap_or(0)
        };
        errs.0.sort_by_key(rank);
        return Err(RuleErrors(errs.0));
    }
    let mut known_event_types: BTreeSet<String> =
        points.iter().map(|r| r.event_type.clone()).collect();
    known_event_types.extend(game.event_types.iter().cloned());
    let grace_days = whole_days(settings.lateness_grace);
    let retention_days = game
        .largest_window_days
        .max(7)
        .saturating_add(grace_days + 2);
    Ok(Rules {
        version: version(declared_version.as_deref(), text),
        settings,
        point_types,
        points,
        missions: game.missions,
        badges: game.badges,
        streaks: game.streaks,
        tiers: game.tiers,
        scores: game.scores,
        leaderboards: game.leaderboards,
        known_event_types,
        retention_days,
    })
}

/// `<declared>+<hash>` or `<hash>`: the hash makes any edit visible in outputs even when
/// the operator forgot to bump `rules_version`.
fn version(declared: Option<&str>, text: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes()) >> 32;
    match declared {
        Some(v) => format!("{v}+{hash:08x}"),
        None => format!("{hash:08x}"),
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

fn settings(s: &SettingsSpec, errs: &mut Errs) -> Settings {
    let time_zone = s
        .time_zone
        .as_deref()
        .and_then(|n| time_zone("settings.time_zone", n, errs))
        .unwrap_or(Tz::UTC);
    let late_policy = match s.late_policy.as_deref() {
        None | Some("dead_letter") => LatePolicy::DeadLetter,
        Some("drop") => LatePolicy::Drop,
        Some(other) => {
            errs.push(
                "settings.late_policy",
                format!("'{other}' is not one of dead_letter, drop"),
            );
            LatePolicy::DeadLetter
        }
    };
    let lateness_grace = s.lateness_grace.unwrap_or(Duration::from_secs(24 * 3600));
    let dedupe_horizon = s
        .dedupe_horizon
        .unwrap_or(Duration::from_secs(7 * 24 * 3600));
    if dedupe_horizon < lateness_grace {
        errs.push(
            "settings.dedupe_horizon",
            "must be at least settings.lateness_grace, or a repeat arriving within grace \
             would be counted twice",
        );
    }
    if let Some(attr) = &s.customer_time_zone_attribute {
        if attr.trim().is_empty() {
            errs.push("settings.customer_time_zone_attribute", "must not be empty");
        }
    }
    Settings {
        time_zone,
        customer_time_zone_attribute: s.customer_time_zone_attribute.clone(),
        lateness_grace,
        late_policy,
        dedupe_horizon,
        strict_event_types: s.strict_event_types.unwrap_or(false),
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

fn point_types(specs: &BTreeMap<String, PointTypeSpec>, errs: &mut Errs) -> Vec<PointType> {
    specs
        .iter()
        .map(|(id, s)| PointType {
            id: id.clone(),
            description: s.description.clone().unwrap_or_default(),
            daily_cap: non_negative_cap(format!("point_types.{id}.daily_cap"), s.daily_cap, errs),
            weekly_cap: non_negative_cap(
                format!("point_types.{id}.weekly_cap"),
                s.weekly_cap,
                errs,
            ),
        })
        .collect()
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

fn finite_non_negative(key: String, v: Option<f64>, errs: &mut Errs) -> f64 {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => {
            errs.push(key, format!("{x} must be a finite number, 0 or more"));
            0.0
        }
        Some(x) => x,
        None => 0.0,
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

fn points_rules(
    specs: &BTreeMap<String, PointsRuleSpec>,
    known_points: &BTreeSet<String>,
    tier_ids: &BTreeSet<String>,
    errs: &mut Errs,
) -> Vec<PointsRule> {
    let mut rules = Vec::new();
    for (id, s) in specs {
        let k = |f: &str| format!("points.{id}.{f}");
        let base = finite_non_negative(k("base"), s.base, errs);
        let per_unit = finite_non_negative(k("per_unit"), s.per_unit, errs);
        if s.base.unwrap_or(0.0) == 0.0 && s.per_unit.unwrap_or(0.0) == 0.0 {
            errs.push(
                format!("points.{id}"),
                "earns nothing: set base or per_unit above 0",
            );
        }
        if s.unit_attribute.is_some() && s.per_unit.is_none() {
            errs.push(k("unit_attribute"), "has no effect without per_unit");
        }
        for (tier, m) in &s.tier_multipliers {
            if !tier_ids.contains(tier) {
                errs.push(
                    k(&format!("tier_multipliers.{tier}")),
                    format!("unknown tier '{tier}'"),
                );
            } else if !m.is_finite() || *m <= 0.0 {
                errs.push(k(&format!("tier_multipliers.{tier}")), "must be above 0");
            }
        }
        rules.push(PointsRule {
            id: id.clone(),
            event_type: event_type_ref(k("event_type"), s.event_type.as_deref(), errs),
            point_type: point_type_ref(
                k("point_type"),
                s.point_type.as_deref(),
                known_points,
                errs,
            ),
            base,
            per_unit,
            unit: unit_source(s.unit_attribute.as_ref()),
            when: filters(&format!("points.{id}"), &s.when, errs),
            daily_cap: non_negative_cap(k("daily_cap"), s.daily_cap, errs),
            weekly_cap: non_negative_cap(k("weekly_cap"), s.weekly_cap, errs),
            apply_tier_multiplier: s.apply_tier_multiplier.unwrap_or(true),
            tier_multipliers: s.tier_multipliers.clone(),
        });
    }
    rules
}
