//! The shape of `gamification.toml` as operators write it: plain serde data, every field
//! optional where the file may leave it out. [`super::compile`] checks it and turns it into
//! [`super::rules::Rules`]; nothing here is used at event time.
//!
//! Kind-specific fields (a mission's `target`, a badge metric's `event_type`) are flat
//! optional fields rather than tagged enums, so that a wrong or missing one is reported
//! with its key path next to every other error instead of as one opaque serde message.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// `[settings]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsSpec {
    /// IANA zone for customers whose events carry none (`Africa/Nairobi`, `UTC`).
    pub time_zone: Option<String>,
    /// Dotted attribute path holding the customer's IANA zone, if producers send one.
    pub customer_time_zone_attribute: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub lateness_grace: Option<Duration>,
    /// `dead_letter` (default) or `drop`.
    pub late_policy: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub dedupe_horizon: Option<Duration>,
    pub strict_event_types: Option<bool>,
}

/// `[point_types.<id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointTypeSpec {
    pub description: Option<String>,
    pub daily_cap: Option<i64>,
    pub weekly_cap: Option<i64>,
}

/// `[points.<rule id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsRuleSpec {
    pub event_type: Option<String>,
    pub point_type: Option<String>,
    pub base: Option<f64>,
    /// Points per unit of the event's `value` (or of `unit_attribute`).
    pub per_unit: Option<f64>,
    pub unit_attribute: Option<String>,
    /// Attribute path → value the event must carry, all of them.
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
    pub daily_cap: Option<i64>,
    pub weekly_cap: Option<i64>,
    /// Whether the customer's tier multiplier applies (default true).
    pub apply_tier_multiplier: Option<bool>,
    /// Per-tier multipliers overriding the tiers' own for this rule.
    #[serde(default)]
    pub tier_multipliers: BTreeMap<String, f64>,
}

/// `[missions.<id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissionSpec {
    pub name: Option<String>,
    /// `single`, `count`, `sum` or `sequence`.
    pub kind: Option<String>,
    /// Matching event types (single, count, sum).
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
    /// count: number of events; sum: total of the value.
    pub target: Option<f64>,
    /// sum: add this attribute instead of the event's value.
    pub sum_attribute: Option<String>,
    /// sequence: event types in order.
    #[serde(default)]
    pub steps: Vec<String>,
    /// sequence: the whole sequence must fit in this long.
    #[serde(default, with = "humantime_serde")]
    pub within: Option<Duration>,
    pub window: Option<WindowSpec>,
    #[serde(default)]
    pub repeatable: bool,
    #[serde(default, with = "humantime_serde")]
    pub cooldown: Option<Duration>,
    /// Only customers at this tier or above make progress.
    pub min_tier: Option<String>,
    pub reward: Option<RewardSpec>,
}

/// `[missions.<id>.window]`: RFC 3339 instants, as strings or TOML date-times.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    pub from: Option<toml::Value>,
    pub to: Option<toml::Value>,
}

/// `[missions.<id>.reward]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    pub point_type: Option<String>,
    pub points: Option<i64>,
    pub badge: Option<String>,
    pub badge_level: Option<u32>,
}

/// `[badges.<id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadgeSpec {
    pub name: Option<String>,
    /// `event_count`, `points_total`, `longest_streak`, `current_streak`,
    /// `missions_completed` or `granted`.
    pub metric: Option<String>,
    pub event_type: Option<String>,
    pub point_type: Option<String>,
    pub streak: Option<String>,
    pub mission: Option<String>,
    #[serde(default)]
    pub levels: Vec<BadgeLevelSpec>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BadgeLevelSpec {
    pub name: Option<String>,
    pub threshold: Option<i64>,
}

/// `[streaks.<id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreakSpec {
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Missed days that may be bridged per `freeze_period`.
    pub freezes: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    pub freeze_period: Option<Duration>,
}

/// `[tiers]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersSpec {
    pub point_type: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// Points below a tier's threshold tolerated before demotion.
    pub hysteresis: Option<i64>,
    #[serde(default)]
    pub levels: Vec<TierLevelSpec>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLevelSpec {
    pub id: Option<String>,
    pub threshold: Option<i64>,
    pub multiplier: Option<f64>,
}

/// `[scores.<id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSpec {
    /// `count`, `sum` or `recency`.
    pub kind: Option<String>,
    #[serde(default)]
    pub event_types: Vec<String>,
    /// sum: add this attribute instead of the event's value.
    pub value_attribute: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// count/sum: the windowed amount that scores 100.
    pub saturation: Option<f64>,
    /// count/sum: `linear` (default), `sqrt` or `log`.
    pub curve: Option<String>,
    /// Publish `score_updated` only when the score moved at least this much (0..100 scale)
    /// since the last published value, or reached 0 or 100. Default 0: every change.
    pub min_change: Option<f64>,
    /// recency: days since the last activity still scoring 100.
    pub full_days: Option<i64>,
    /// recency: days since the last activity scoring 0.
    pub zero_days: Option<i64>,
}

/// `[leaderboards.<id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardSpec {
    pub point_type: Option<String>,
    #[serde(default)]
    pub periods: Vec<String>,
    pub top_n: Option<i64>,
    /// Zone whose calendar cuts the periods; `settings.time_zone` by default.
    pub time_zone: Option<String>,
}
