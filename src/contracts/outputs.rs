//! The published shape of every output record, one type per record `type`, as JSON Schema
//! (`schemars`). These types describe the records; the processors write them
//! (`gamification::output`, `gamification::leaderboard`, `app::churn`). `tests/schemas.rs`
//! proves the two agree: real records of every type validate against these schemas, which
//! allow no field they do not name.

use schemars::JsonSchema;

/// A `result_id`: 16 lower-case hex digits, the same for the same input and result.
#[derive(JsonSchema)]
#[schemars(extend("pattern" = "^[0-9a-f]{16}$"))]
pub struct ResultId(pub String);

/// An instant, RFC 3339 in UTC with milliseconds: `2024-06-10T08:15:00.000Z`.
#[derive(JsonSchema)]
#[schemars(extend("pattern" = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"))]
pub struct Instant(pub String);

/// A local calendar day, `YYYY-MM-DD`.
#[derive(JsonSchema)]
#[schemars(extend("pattern" = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
pub struct Day(pub String);

/// A record on `gamification-results`, keyed by the customer id (`leaderboard_updated`:
/// by the board id). Which one it is, is its `type`.
#[derive(JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(title = "gamification-results record")]
pub enum GamificationResult {
    /// A behaviour score changed (by at least the score's `min_change`).
    ScoreUpdated {
        #[serde(flatten)]
        common: Common,
        score: String,
        /// 0 to 100, two decimals.
        #[schemars(range(min = 0.0, max = 100.0))]
        value: f64,
        /// The value before; null for the first.
        previous: Option<f64>,
    },
    /// Points were credited to one point type.
    PointsAwarded {
        #[serde(flatten)]
        common: Common,
        point_type: String,
        /// Points credited, after multipliers and caps.
        points: i64,
        /// Points before caps (after the tier multiplier).
        uncapped: i64,
        capped: bool,
        source: PointsSource,
        /// The customer's all-time total of this point type, this award included.
        total: i64,
    },
    /// A multi-event mission advanced.
    MissionProgress {
        #[serde(flatten)]
        common: Common,
        mission: String,
        kind: MissionKind,
        /// Events counted (count), amount summed (sum) or steps done (sequence).
        progress: f64,
        target: f64,
    },
    /// A mission was completed (its reward follows as `points_awarded` / `badge_awarded`).
    MissionCompleted {
        #[serde(flatten)]
        common: Common,
        mission: String,
        name: String,
        /// How many times this customer has completed it, this time included.
        #[schemars(range(min = 1))]
        completions: u32,
        reward_point_type: Option<String>,
        reward_points: Option<i64>,
        reward_badge: Option<String>,
    },
    /// A badge (or a higher level of it) was earned.
    BadgeAwarded {
        #[serde(flatten)]
        common: Common,
        badge: String,
        name: String,
        #[schemars(range(min = 1))]
        level: u32,
        level_name: String,
        /// 0 when the badge is new.
        previous_level: u32,
    },
    /// A streak's day counted (extended, frozen or restarted).
    StreakUpdated {
        #[serde(flatten)]
        common: Common,
        streak: String,
        current: u32,
        longest: u32,
        /// The customer's local day of the activity.
        day: Day,
        freezes_used: u32,
    },
    /// The customer moved to another tier.
    TierChanged {
        #[serde(flatten)]
        common: Common,
        /// null: no tier before.
        from: Option<String>,
        /// null: below every tier now.
        to: Option<String>,
        direction: Direction,
        rolling_points: i64,
    },
    /// A leaderboard's visible top N changed.
    LeaderboardUpdated {
        /// The customer whose new total changed the ranking, and that total's event.
        #[serde(flatten)]
        common: Common,
        board: String,
        /// The period key: `all_time`, `daily:2024-06-10`, `weekly:2024-W24`, `monthly:2024-06`.
        period: String,
        /// true: the period has closed (its end plus the grace period passed); the ranking is
        /// final.
        #[serde(rename = "final")]
        final_snapshot: bool,
        /// The visible top N, best first.
        entries: Vec<LeaderboardEntry>,
    },
}

/// The fields every `gamification-results` record starts with.
#[derive(JsonSchema)]
pub struct Common {
    /// Bumped on a breaking change of this type's shape; new fields do not bump it.
    #[schemars(range(min = 1))]
    pub schema_version: u32,
    /// Deterministic id of this result: drop repeats by it.
    pub result_id: ResultId,
    pub customer_id: String,
    /// The event the result was computed from.
    pub event_id: String,
    /// That event's time.
    pub occurred_at: Instant,
    /// `rules_version` of the rules file plus a hash of its text.
    pub rules_version: String,
}

/// Where points came from.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum PointsSource {
    /// A `[points.<id>]` rule.
    Rule(String),
    /// A completed mission's reward.
    Mission(String),
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissionKind {
    Single,
    Count,
    Sum,
    Sequence,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Promoted,
    Demoted,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardEntry {
    #[schemars(range(min = 1))]
    pub rank: u32,
    pub customer_id: String,
    pub total: i64,
}

/// A feature's part in a churn score.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    pub feature: String,
    pub value: f64,
    /// Its term in the model's log-odds; the main factors come first.
    pub contribution: f64,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskBand {
    Low,
    Medium,
    High,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// A trigger event type (`churn.toml`'s `trigger_events`).
    Event,
    /// Usage dropped below its threshold.
    UsageDrop,
    /// No event for the inactivity period.
    Inactivity,
}

/// What made the customer be scored.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// `event` and `usage_drop`: the event type.
    pub event_type: Option<String>,
    /// `inactivity`: the last event's time.
    pub silent_since: Option<Instant>,
}

/// A record on `churn-predictions`, keyed by the customer id.
#[derive(JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(title = "churn-predictions record")]
pub enum ChurnPredictionRecord {
    ChurnPrediction {
        #[serde(flatten)]
        common: Common,
        model_version: String,
        /// Probability of churn, four decimals.
        #[schemars(range(min = 0.0, max = 1.0))]
        probability: f64,
        risk_band: RiskBand,
        factors: Vec<Factor>,
        trigger: Trigger,
    },
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A critical event type (e.g. `payment_failed`).
    CriticalEvent,
    /// The customer entered the high risk band.
    HighRisk,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
}

/// A record on `customer-alerts`, keyed by the customer id.
#[derive(JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[schemars(title = "customer-alerts record")]
pub enum CustomerAlertRecord {
    CustomerAlert {
        #[schemars(range(min = 1))]
        schema_version: u32,
        result_id: ResultId,
        customer_id: String,
        event_id: String,
        occurred_at: Instant,
        alert: AlertKind,
        severity: Severity,
        /// `critical_event`: the event type.
        event_type: Option<String>,
        #[schemars(range(min = 0.0, max = 1.0))]
        probability: f64,
        risk_band: RiskBand,
        model_version: String,
        factors: Vec<Factor>,
    },
}
