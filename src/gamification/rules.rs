//! The validated gamification rules: what earns points, missions, badges, streaks, tiers,
//! behaviour scores and leaderboards. Loaded from TOML that operators edit
//! (`topology/gamification.toml`); nothing about particular event types lives in Rust.
//!
//! [`Rules::from_toml_str`] reports every problem at once, each with its key path, like
//! [`crate::config::Config`] does. The compiled form resolves names to types (time zones,
//! epoch milliseconds, day counts) so that evaluation never parses or fails.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono_tz::Tz;

use super::time::Period;
use crate::domain::event::{AttrValue, CanonicalEvent};

/// A rules problem, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RuleError {
    pub key: String,
    pub message: String,
}

/// Every rules problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid gamification rules:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
pub struct RuleErrors(pub Vec<RuleError>);

/// What happens to an event older than stream time minus the grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatePolicy {
    /// Dead-lettered as `late_event` (DESIGN §2).
    DeadLetter,
    /// Counted and dropped.
    Drop,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub time_zone: Tz,
    pub customer_time_zone_attribute: Option<String>,
    pub lateness_grace: Duration,
    pub late_policy: LatePolicy,
    pub dedupe_horizon: Duration,
    pub strict_event_types: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PointType {
    pub id: String,
    pub description: String,
    pub daily_cap: Option<i64>,
    pub weekly_cap: Option<i64>,
}

/// Where a rule's units come from.
#[derive(Clone, Debug, PartialEq)]
pub enum UnitSource {
    Value,
    Attribute(String),
}

/// A scalar an attribute must equal.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// `attribute == value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub path: String,
    pub equals: FilterValue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PointsRule {
    pub id: String,
    pub event_type: String,
    pub point_type: String,
    pub base: f64,
    pub per_unit: f64,
    pub unit: UnitSource,
    pub when: Vec<Filter>,
    pub daily_cap: Option<i64>,
    pub weekly_cap: Option<i64>,
    pub apply_tier_multiplier: bool,
    pub tier_multipliers: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MissionKind {
    Single {
        event_types: Vec<String>,
    },
    Count {
        event_types: Vec<String>,
        target: u64,
    },
    /// Sums are kept in thousandths so that they add up exactly in any order.
    Sum {
        event_types: Vec<String>,
        target_milli: i64,
        unit: UnitSource,
    },
    Sequence {
        steps: Vec<String>,
        within_ms: Option<i64>,
    },
}

impl MissionKind {
    pub fn name(&self) -> &'static str {
        match self {
            MissionKind::Single { .. } => "single",
            MissionKind::Count { .. } => "count",
            MissionKind::Sum { .. } => "sum",
            MissionKind::Sequence { .. } => "sequence",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reward {
    pub points: Option<(String, i64)>,
    /// Badge id and the level granted (at least).
    pub badge: Option<(String, u32)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mission {
    pub id: String,
    pub name: String,
    pub kind: MissionKind,
    pub when: Vec<Filter>,
    /// Active window on event time, `[from, to)`, epoch ms.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub repeatable: bool,
    pub cooldown_ms: i64,
    /// Index into [`Tiers::levels`].
    pub min_tier: Option<usize>,
    pub reward: Reward,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BadgeMetric {
    EventCount(String),
    PointsTotal(String),
    LongestStreak(String),
    CurrentStreak(String),
    /// All missions, or one.
    MissionsCompleted(Option<String>),
    /// Only mission rewards grant it.
    Granted,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BadgeLevel {
    pub name: String,
    pub threshold: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Badge {
    pub id: String,
    pub name: String,
    pub metric: BadgeMetric,
    /// Level `n` (1-based) is `levels[n - 1]`; thresholds strictly increase.
    pub levels: Vec<BadgeLevel>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Streak {
    pub id: String,
    pub event_types: Vec<String>,
    pub freezes: u32,
    pub freeze_period_days: i32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TierLevel {
    pub id: String,
    pub threshold: i64,
    pub multiplier: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tiers {
    pub point_type: String,
    pub window_days: i32,
    pub hysteresis: i64,
    /// Ascending thresholds; below the first, a customer has no tier.
    pub levels: Vec<TierLevel>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Curve {
    Linear,
    Sqrt,
    Log,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ScoreKind {
    /// Events in the rolling window (each counts 1000 milli-units).
    Count {
        window_days: i32,
        saturation: f64,
        curve: Curve,
    },
    Sum {
        window_days: i32,
        saturation: f64,
        curve: Curve,
        unit: UnitSource,
    },
    Recency {
        full_days: i64,
        zero_days: i64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub id: String,
    pub event_types: Vec<String>,
    pub kind: ScoreKind,
    /// Smallest move of the score that is published (see the spec's `min_change`).
    pub min_change: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Leaderboard {
    pub id: String,
    pub point_type: String,
    pub periods: Vec<Period>,
    pub top_n: usize,
    pub time_zone: Tz,
}

/// Validated rules. Every list is sorted by id, so evaluation order is deterministic.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// `rules_version` from the file (if any) plus a short hash of the file's content.
    pub version: String,
    pub settings: Settings,
    pub point_types: Vec<PointType>,
    pub points: Vec<PointsRule>,
    pub missions: Vec<Mission>,
    pub badges: Vec<Badge>,
    pub streaks: Vec<Streak>,
    pub tiers: Option<Tiers>,
    pub scores: Vec<Score>,
    pub leaderboards: Vec<Leaderboard>,
    /// Every event type some rule mentions.
    pub known_event_types: BTreeSet<String>,
    /// Local days of buckets a customer must keep: the largest window plus grace.
    pub retention_days: i32,
}

/// The bundled default rules file.
pub const BUNDLED_RULES: &str = include_str!("../../topology/gamification.toml");

impl Rules {
    /// Parses and validates rules; every problem is reported, each with its key path.
    pub fn from_toml_str(text: &str) -> Result<Rules, RuleErrors> {
        super::compile::compile(text)
    }

    /// The bundled `topology/gamification.toml`.
    pub fn bundled() -> Result<Rules, RuleErrors> {
        Rules::from_toml_str(BUNDLED_RULES)
    }

    /// Whether any rule mentions this event type (for `strict_event_types`).
    pub fn knows_event_type(&self, event_type: &str) -> bool {
        self.known_event_types.contains(event_type)
    }

    pub fn point_type(&self, id: &str) -> Option<&PointType> {
        self.point_types.iter().find(|p| p.id == id)
    }

    pub fn badge(&self, id: &str) -> Option<&Badge> {
        self.badges.iter().find(|b| b.id == id)
    }

    pub fn lateness_grace_ms(&self) -> i64 {
        duration_ms(self.settings.lateness_grace)
    }

    pub fn dedupe_horizon_ms(&self) -> i64 {
        duration_ms(self.settings.dedupe_horizon)
    }

    /// The customer's zone: the configured attribute when it names a valid zone, else the
    /// default. An unknown zone name in an event is not an error (producers make typos);
    /// the default keeps the customer's days stable.
    pub fn customer_time_zone(&self, event: &CanonicalEvent) -> Tz {
        self.settings
            .customer_time_zone_attribute
            .as_deref()
            .and_then(|path| match event.attribute(path) {
                Some(AttrValue::Str(name)) => name.parse::<Tz>().ok(),
                _ => None,
            })
            .unwrap_or(self.settings.time_zone)
    }
}

pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Filter {
    /// Numbers compare by value (`5` equals `5.0`); strings and booleans exactly.
    pub fn matches(&self, event: &CanonicalEvent) -> bool {
        let Some(v) = event.attribute(&self.path) else {
            return false;
        };
        match (&self.equals, v) {
            (FilterValue::Bool(a), AttrValue::Bool(b)) => a == b,
            (FilterValue::Str(a), AttrValue::Str(b)) => a == b,
            (FilterValue::Int(a), AttrValue::Int(b)) => a == b,
            (FilterValue::Int(a), AttrValue::Float(b)) => (*a as f64) == *b,
            (FilterValue::Float(a), AttrValue::Float(b)) => a == b,
            (FilterValue::Float(a), AttrValue::Int(b)) => *a == (*b as f64),
            _ => false,
        }
    }
}

/// True when every filter matches.
pub fn all_match(filters: &[Filter], event: &CanonicalEvent) -> bool {
    filters.iter().all(|f| f.matches(event))
}

impl UnitSource {
    /// The event's amount for this source: the value, or a numeric attribute (numeric
    /// strings included). Absent, non-numeric or negative amounts count as zero.
    pub fn units(&self, event: &CanonicalEvent) -> f64 {
        let raw = match self {
            UnitSource::Value => event.value,
            UnitSource::Attribute(path) => match event.attribute(path) {
                Some(AttrValue::Int(i)) => Some(*i as f64),
                Some(AttrValue::Float(f)) => Some(*f),
                Some(AttrValue::Str(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            },
        };
        raw.filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0)
    }

    /// [`Self::units`] in thousandths, rounded: exact and order-independent when summed.
    pub fn units_milli(&self, event: &CanonicalEvent) -> i64 {
        to_milli(self.units(event))
    }
}

/// Thousandths, rounded and saturating.
pub fn to_milli(v: f64) -> i64 {
    let m = (v * 1000.0).round();
    if m >= i64::MAX as f64 {
        i64::MAX
    } else {
        m as i64
    }
}
