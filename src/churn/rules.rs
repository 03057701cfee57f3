//! The churn rules file (`topology/churn.toml`): kinds of events, triggers, inactivity,
//! bands and alerts, validated with every problem reported at once with its key path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use crate::gamification::rules::{RuleError, RuleErrors};

/// Kinds an event can count as (besides activity, which every event is).
pub const KINDS: [&str; 11] = [
    "order",
    "recharge",
    "login",
    "engagement",
    "usage",
    "support",
    "complaint",
    "payment_failure",
    "refund",
    "cancellation",
    "downgrade",
];

/// Index of a kind in [`KINDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Order = 0,
    Recharge,
    Login,
    Engagement,
    Usage,
    Support,
    Complaint,
    PaymentFailure,
    Refund,
    Cancellation,
    Downgrade,
}

impl Kind {
    pub fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Which clock inactivity is measured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    StreamTime,
    WallClock,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UsageDrop {
    pub ratio: f64,
    pub min_previous: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Inactivity {
    pub after_ms: i64,
    pub repeat_ms: i64,
    pub clock: Clock,
    pub check_every: Duration,
}

/// Validated churn rules.
#[derive(Clone, Debug, PartialEq)]
pub struct ChurnRules {
    pub version: String,
    pub exact_window_ms: i64,
    /// event type → kind bits.
    kinds: HashMap<String, u16>,
    pub trigger_events: HashSet<String>,
    pub usage_drop: Option<UsageDrop>,
    pub inactivity: Option<Inactivity>,
    pub band_medium: f64,
    pub band_high: f64,
    pub critical_events: HashSet<String>,
    pub high_risk_enter: f64,
    pub high_risk_exit: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(with = "humantime_serde")]
    exact_window: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Triggers {
    #[serde(default)]
    events: Vec<String>,
    usage_drop: Option<UsageDropSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageDropSpec {
    ratio: f64,
    min_previous: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InactivitySpec {
    #[serde(with = "humantime_serde")]
    after: Duration,
    #[serde(with = "humantime_serde")]
    repeat_every: Duration,
    clock: Clock,
    #[serde(with = "humantime_serde")]
    check_every: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bands {
    medium: f64,
    high: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Alerts {
    #[serde(default)]
    critical_events: Vec<String>,
    high_risk_enter: f64,
    high_risk_exit: f64,
}

const SECTIONS: [&str; 7] = [
    "version",
    "settings",
    "kinds",
    "triggers",
    "inactivity",
    "bands",
    "alerts",
];

/// Deserializes one section, recording its error under `key`.
fn section<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    errors: &mut Vec<RuleError>,
) -> Option<T> {
    let value = table.get(key)?.clone();
    match value.try_into::<T>() {
        Ok(v) => Some(v),
        Err(e) => {
            let message = e.to_string();
            let message = message.lines().next().unwrap_or("").trim().to_string();
            errors.push(RuleError {
                key: key.to_string(),
                message,
            });
            None
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

impl ChurnRules {
    /// The bundled `topology/churn.toml`.
    pub fn bundled() -> Result<ChurnRules, RuleErrors> {
        ChurnRules::from_toml_str(include_str!("../../topology/churn.toml"))
    }

    /// Parses and validates; every problem at once.
    pub fn from_toml_str(text: &str) -> Result<ChurnRules, RuleErrors> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            RuleErrors(vec![RuleError {
                key: "<file>".into(),
                message: e.to_string().trim().to_string(),
            }])
        })?;
        let mut errors = Vec::new();
        check_sections_present(&table, &mut errors);
        let sections = Sections::read(&table, &mut errors);
        let kind_bits = kind_bits(sections.kinds.as_ref(), &mut errors);
        sections.check_event_types(&mut errors);
        sections.check_values(&mut errors);
        if !errors.is_empty() {
            return Err(RuleErrors(errors));
        }
        Ok(sections.into_rules(kind_bits))
    }

    /// Kind bits of an event type (0: activity only).
    pub fn kind_bits(&self, event_type: &str) -> u16 {
        self.kinds.get(event_type).copied().unwrap_or(0)
    }

    /// `low`, `medium` or `high`.
    pub fn band(&self, probability: f64) -> &'static str {
        if probability >= self.band_high {
            "high"
        } else if probability >= self.band_medium {
            "medium"
        } else {
            "low"
        }
    }
}

fn is_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Pushes a problem of `key`.
fn push(errors: &mut Vec<RuleError>, key: &str, message: impl Into<String>) {
    errors.push(RuleError {
        key: key.to_string(),
        message: message.into(),
    })
}

/// Every top-level key is a known section, and the required ones are there.
fn check_sections_present(table: &toml::Table, errors: &mut Vec<RuleError>) {
    for k in table.keys() {
        if !SECTIONS.contains(&k.as_str()) {
            push(
                errors,
                k,
                format!("unknown key; expected one of {}", SECTIONS.join(", ")),
            );
        }
    }
    for required in ["settings", "bands", "alerts"] {
        if !table.contains_key(required) {
            push(errors, required, "missing section");
        }
    }
}

/// Each event type's kind bits from `[kinds]`; unknown kinds and malformed types are errors.
fn kind_bits(
    kinds: Option<&BTreeMap<String, Vec<String>>>,
    errors: &mut Vec<RuleError>,
) -> HashMap<String, u16> {
    let mut kind_bits: HashMap<String, u16> = HashMap::new();
    for (kind, types) in kinds.into_iter().flatten() {
        let Some(i) = KINDS.iter().position(|k| k == kind) else {
            push(
                errors,
                &format!("kinds.{kind}"),
                format!("unknown kind; expected one of {}", KINDS.join(", ")),
            );
            continue;
        };
        for (j, t) in types.iter().enumerate() {
            if !is_event_type(t) {
                push(
                    errors,
                    &format!("kinds.{kind}[{j}]"),
                    format!("'{t}' is not a lower snake case event type"),
                );
            }
            *kind_bits.entry(t.clone()).or_default() |= 1 << i;
        }
    }
    kind_bits
}

/// The sections of a churn rules file as written; `None` where absent or not readable.
struct Sections {
    version: String,
    settings: Option<Settings>,
    kinds: Option<BTreeMap<String, Vec<String>>>,
    triggers: Option<Triggers>,
    inactivity: Option<InactivitySpec>,
    bands: Option<Bands>,
    alerts: Option<Alerts>,
}

impl Sections {
    fn read(table: &toml::Table, errors: &mut Vec<RuleError>) -> Sections {
        let version = match table.get("version") {
            None => "unversioned".to_string(),
            Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => {
                push(errors, "version", "must be a non-empty string");
                String::new()
            }
        };
        Sections {
            version,
            settings: section(table, "settings", errors),
            kinds: section(table, "kinds", errors),
            triggers: section(table, "triggers", errors),
            inactivity: section(table, "inactivity", errors),
            bands: section(table, "bands", errors),
            alerts: section(table, "alerts", errors),
        }
    }

    /// The event types the triggers and alerts name are well formed.
    fn check_event_types(&self, errors: &mut Vec<RuleError>) {
        let mut check_types = |key: &str, types: &[String]| {
            for (j, t) in types.iter().enumerate() {
                if !is_event_type(t) {
                    push(
                        errors,
                        &format!("{key}[{j}]"),
                        format!("'{t}' is not a lower snake case event type"),
                    );
                }
            }
        };
        if let Some(t) = &self.triggers {
            check_types("triggers.events", &t.events);
        }
        if let Some(a) = &self.alerts {
            check_types("alerts.critical_events", &a.critical_events);
        }
    }

    /// Ratios, durations, bands and alert thresholds are in range.
    fn check_values(&self, errors: &mut Vec<RuleError>) {
        if let Some(u) = self.triggers.as_ref().and_then(|t| t.usage_drop.as_ref()) {
            if !(u.ratio > 0.0 && u.ratio < 1.0) {
                push(
                    errors,
                    "triggers.usage_drop.ratio",
                    "must be between 0 and 1 (exclusive)",
                );
            }
            if !(u.min_previous >= 0.0 && u.min_previous.is_finite()) {
                push(
                    errors,
                    "triggers.usage_drop.min_previous",
                    "must be zero or more",
                );
            }
        }
        if let Some(i) = &self.inactivity {
            for (key, d) in [
                ("inactivity.after", i.after),
                ("inactivity.repeat_every", i.repeat_every),
                ("inactivity.check_every", i.check_every),
            ] {
                if d.is_zero() {
                    push(errors, key, "must be above zero");
                }
            }
        }
        let prob = |p: f64| (0.0..=1.0).contains(&p);
        if let Some(b) = &self.bands {
            if !(prob(b.medium) && prob(b.high) && b.medium < b.high) {
                push(errors, "bands", "need 0 <= medium < high <= 1");
            }
        }
        if let Some(a) = &self.alerts {
            if !(prob(a.high_risk_enter) && prob(a.high_risk_exit)) {
                push(
                    errors,
                    "alerts",
                    "high_risk_enter and high_risk_exit are probabilities (0 to 1)",
                );
            } else if a.high_risk_exit > a.high_risk_enter {
                push(
                    errors,
                    "alerts.high_risk_exit",
                    "must not be above high_risk_enter (it is the lower edge of the hysteresis)",
                );
            }
        }
    }

    /// The compiled rules; only called once every check passed (the required sections are
    /// there).
    fn into_rules(self, kind_bits: HashMap<String, u16>) -> ChurnRules {
        let (settings, bands, alerts) = (
            self.settings.expect("checked"),
            self.bands.expect("checked"),
            self.alerts.expect("checked"),
        );
        let triggers = self.triggers.unwrap_or(Triggers {
            events: Vec::new(),
            usage_drop: None,
        });
        ChurnRules {
            version: self.version,
            exact_window_ms: ms(settings.exact_window),
            kinds: kind_bits,
            trigger_events: triggers.events.into_iter().collect(),
            usage_drop: triggers.usage_drop.map(|u| UsageDrop {
                ratio: u.ratio,
                min_previous: u.min_previous,
            }),
            inactivity: self.inactivity.map(|i| Inactivity {
                after_ms: ms(i.after),
                repeat_ms: ms(i.repeat_every),
                clock: i.clock,
                check_every: i.check_every,
            }),
            band_medium: bands.medium,
            band_high: bands.high,
            critical_events: alerts.critical_events.into_iter().collect(),
            high_risk_enter: alerts.high_risk_enter,
            high_risk_exit: alerts.high_risk_exit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_rules_load() {
        let r = ChurnRules::bundled().unwrap();
        assert_eq!(r.kind_bits("order_placed"), Kind::Order.bit());
        assert_eq!(
            r.kind_bits("complaint"),
            Kind::Support.bit() | Kind::Complaint.bit()
        );
        assert_eq!(r.kind_bits("anything_else"), 0);
        assert!(r.trigger_events.contains("payment_failed"));
        assert_eq!(r.band(0.1), "low");
        assert_eq!(r.band(0.4), "medium");
        assert_eq!(r.band(0.7), "high");
        assert_eq!(r.inactivity.as_ref().unwrap().after_ms, 14 * 86_400_000);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = r#"
            colour = "blue"
            [settings]
            exact_window = "soon"
            [kinds]
            order = ["OrderPlaced"]
            vibes = ["x"]
            [triggers]
            events = ["ok", "Not Ok"]
            usage_drop = { ratio = 1.5, min_previous = 10.0 }
            [inactivity]
            after = "0s"
            repeat_every = "1d"
            clock = "stream_time"
            check_every = "1h"
            [bands]
            medium = 0.8
            high = 0.5
            [alerts]
            high_risk_enter = 0.6
            high_risk_exit = 0.7
        "#;
        let errs = ChurnRules::from_toml_str(text).unwrap_err().0;
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "colour",
                "settings",
                "kinds.order[0]",
                "kinds.vibes",
                "triggers.events[1]",
                "triggers.usage_drop.ratio",
                "inactivity.after",
                "bands",
                "alerts.high_risk_exit",
            ],
            "{errs:?}"
        );
    }
}
