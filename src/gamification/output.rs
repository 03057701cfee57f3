//! Records published on `gamification-results` (DESIGN §3), and the leaderboard update
//! requests that cross into the leaderboard sub-topology.
//!
//! Every record carries `type`, `schema_version`, a deterministic `result_id`, the
//! customer, the event it was computed from (`event_id`, `occurred_at`) and the
//! `rules_version`. `result_id` hashes the customer, the event id, the type and what the
//! result is about (a mission id, a badge level...), so re-processing the same event under
//! at-least-once yields the same ids and consumers can drop repeats.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::time::rfc3339_ms;

pub use crate::domain::envelope::{result_id, ResultId, SCHEMA_VERSION};
use crate::domain::envelope::{result_id_hasher, Envelope, ResultIdInput};

/// One result for `gamification-results`, keyed by the customer id. Serialized as its
/// [`Envelope`], `rules_version`, then the body's fields.
#[derive(Clone, Debug, PartialEq)]
pub struct GameOutput {
    pub output_type: &'static str,
    pub schema_version: u32,
    pub result_id: ResultId,
    pub customer_id: SharedStr,
    pub event_id: SharedStr,
    /// Event time of the triggering event, RFC 3339 UTC with milliseconds.
    pub occurred_at: SharedStr,
    pub rules_version: SharedStr,
    pub body: OutputBody,
}

/// A string shared by every result of one event (customer, event id, time, rules
/// version): one allocation per event instead of one per result. Serializes as a string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedStr(Arc<str>);

impl SharedStr {
    pub fn new(s: &str) -> Self {
        SharedStr(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Serialize for GameOutput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(flatten)]
            head: Envelope<'a>,
            rules_version: &'a str,
            #[serde(flatten)]
            body: &'a OutputBody,
        }
        Wire {
            head: Envelope {
                output_type: self.output_type,
                schema_version: self.schema_version,
                result_id: Cow::Borrowed(self.result_id.as_str()),
                customer_id: self.customer_id.as_str(),
                event_id: self.event_id.as_str(),
                occurred_at: Cow::Borrowed(self.occurred_at.as_str()),
            },
            rules_version: self.rules_version.as_str(),
            body: &self.body,
        }
        .serialize(serializer)
    }
}

/// Where points came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum PointsSource {
    Rule(String),
    Mission(String),
}

/// The type-specific fields. Serialized inline after the common ones.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OutputBody {
    ScoreUpdated {
        score: String,
        /// 0..100, two decimals.
        value: f64,
        previous: Option<f64>,
    },
    PointsAwarded {
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
    MissionProgress {
        mission: String,
        kind: &'static str,
        /// Events counted (count), amount summed (sum) or steps done (sequence).
        progress: f64,
        target: f64,
    },
    MissionCompleted {
        mission: String,
        name: String,
        /// How many times this customer has completed it, this time included.
        completions: u32,
        reward_point_type: Option<String>,
        reward_points: Option<i64>,
        reward_badge: Option<String>,
    },
    BadgeAwarded {
        badge: String,
        name: String,
        level: u32,
        level_name: String,
        previous_level: u32,
    },
    StreakUpdated {
        streak: String,
        current: u32,
        longest: u32,
        /// The customer's local day of the activity, `YYYY-MM-DD`.
        day: String,
        freezes_used: u32,
    },
    TierChanged {
        from: Option<String>,
        to: Option<String>,
        /// `promoted` or `demoted`.
        direction: &'static str,
        rolling_points: i64,
    },
}

impl OutputBody {
    /// The `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            OutputBody::ScoreUpdated { .. } => "score_updated",
            OutputBody::PointsAwarded { .. } => "points_awarded",
            OutputBody::MissionProgress { .. } => "mission_progress",
            OutputBody::MissionCompleted { .. } => "mission_completed",
            OutputBody::BadgeAwarded { .. } => "badge_awarded",
            OutputBody::StreakUpdated { .. } => "streak_updated",
            OutputBody::TierChanged { .. } => "tier_changed",
        }
    }

    /// Feeds what distinguishes this result from others of its type for the same event to
    /// `h`, in pieces whose concatenation is the discriminator text (`rule:<id>`,
    /// `<mission>#<completions>`, ...): the same hash, without building the string.
    fn hash_discriminator(&self, h: &mut ResultIdInput) {
        let mut numbered = |text: &str, n: u32| {
            h.update(text.as_bytes());
            h.update(b"#");
            h.update(itoa::Buffer::new().format(n).as_bytes());
        };
        match self {
            OutputBody::ScoreUpdated { score, .. } => h.update(score.as_bytes()),
            OutputBody::PointsAwarded { source, .. } => {
                let (prefix, id) = match source {
                    PointsSource::Rule(r) => ("rule:", r),
                    PointsSource::Mission(m) => ("mission:", m),
                };
                h.update(prefix.as_bytes());
                h.update(id.as_bytes());
            }
            OutputBody::MissionProgress { mission, .. } => h.update(mission.as_bytes()),
            OutputBody::MissionCompleted {
                mission,
                completions,
                ..
            } => numbered(mission, *completions),
            OutputBody::BadgeAwarded { badge, level, .. } => numbered(badge, *level),
            OutputBody::StreakUpdated { streak, .. } => h.update(streak.as_bytes()),
            OutputBody::TierChanged { .. } => {}
        }
    }
}

/// The event an output was computed from.
#[derive(Clone, Copy, Debug)]
pub struct Trigger<'a> {
    pub customer_id: &'a str,
    pub event_id: &'a str,
    pub occurred_at: i64,
    pub rules_version: &'a str,
}

/// A [`Trigger`]'s fields as every result of the event carries them, made once per event.
#[derive(Clone, Debug)]
pub struct TriggerFields {
    customer_id: SharedStr,
    event_id: SharedStr,
    occurred_at: SharedStr,
    rules_version: SharedStr,
}

impl TriggerFields {
    pub fn new(t: Trigger<'_>) -> Self {
        TriggerFields {
            customer_id: SharedStr::new(t.customer_id),
            event_id: SharedStr::new(t.event_id),
            occurred_at: SharedStr::new(&rfc3339_ms(t.occurred_at)),
            rules_version: SharedStr::new(t.rules_version),
        }
    }
}

impl GameOutput {
    pub fn new(trigger: Trigger<'_>, body: OutputBody) -> GameOutput {
        Self::with_fields(&TriggerFields::new(trigger), body)
    }

    /// A result of the event whose fields are `fields` (shared by all its results).
    pub fn with_fields(fields: &TriggerFields, body: OutputBody) -> GameOutput {
        let output_type = body.type_name();
        let mut h = result_id_hasher(
            fields.customer_id.as_str(),
            fields.event_id.as_str(),
            output_type,
        );
        body.hash_discriminator(&mut h);
        GameOutput {
            output_type,
            schema_version: SCHEMA_VERSION,
            result_id: ResultId::finish(h),
            customer_id: fields.customer_id.clone(),
            event_id: fields.event_id.clone(),
            occurred_at: fields.occurred_at.clone(),
            rules_version: fields.rules_version.clone(),
            body,
        }
    }

    /// The record value: compact JSON, fields in a stable order (byte for byte what
    /// `serde_json` writes for the `Serialize` impl; written by hand, see `output_json`).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Sized for a typical record (250-400 bytes), so it is written without regrowing.
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        out
    }
}

/// A customer's new total on one board and period, sent to the leaderboard
/// sub-topology keyed by `board` + `period`. A total, not a delta: a repeat is an
/// idempotent upsert (DESIGN §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardUpdate {
    pub board: String,
    /// `daily:2024-01-15`, `weekly:2024-W03`, `monthly:2024-01` or `all_time`.
    pub period: String,
    /// First instant after the period (epoch ms); `i64::MAX` for `all_time`.
    pub period_end_ms: i64,
    pub customer_id: String,
    pub total: i64,
    /// Event time at which the customer reached `total` (earlier wins a tie): the newest
    /// of the events that earned points in it.
    pub reached_at: i64,
    /// The time of the event that sent this total (`reached_at` when absent: updates
    /// written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<i64>,
    pub event_id: String,
    pub rules_version: String,
}

impl LeaderboardUpdate {
    /// The repartition key: one leaderboard task owns a board's period.
    pub fn key(&self) -> String {
        board_period_key(&self.board, &self.period)
    }
}

/// `board|period`: the key of a board period on the leaderboard repartition topic.
pub fn board_period_key(board: &str, period: &str) -> String {
    format!("{board}|{period}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> Trigger<'static> {
        Trigger {
            customer_id: "254700000001",
            event_id: "evt-1",
            occurred_at: 1_705_312_800_000,
            rules_version: "v1+abcd",
        }
    }

    #[test]
    fn json_has_the_common_fields_first_then_the_specific_ones() {
        let out = GameOutput::new(
            trigger(),
            OutputBody::BadgeAwarded {
                badge: "shopper".into(),
                name: "Shopper".into(),
                level: 2,
                level_name: "Silver".into(),
                previous_level: 1,
            },
        );
        let text = String::from_utf8(out.to_json_bytes()).unwrap();
        assert!(
            text.starts_with(r#"{"type":"badge_awarded","schema_version":1,"result_id":""#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["occurred_at"], "2024-01-15T10:00:00.000Z");
        assert_eq!(v["customer_id"], "254700000001");
        assert_eq!(v["rules_version"], "v1+abcd");
        assert_eq!(v["level"], 2);
        assert_eq!(v["level_name"], "Silver");
    }

    /// Every body variant, with strings that need escaping and floats serde_json writes in
    /// its own ways (exponents, NaN, negative zero).
    fn samples() -> Vec<GameOutput> {
        let odd = [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
            "Grüße, 日本語 😀",
        ];
        let floats = [
            0.0,
            -0.0,
            1.0,
            12.5,
            99.99,
            1e21,
            1.5e-7,
            f64::NAN,
            f64::INFINITY,
            -123456.789,
        ];
        let mut out = Vec::new();
        for (i, s) in odd.iter().enumerate() {
            let f = floats[i % floats.len()];
            let g = floats[(i + 5) % floats.len()];
            let text = s.to_string();
            let bodies = vec![
                OutputBody::ScoreUpdated {
                    score: text.clone(),
                    value: f,
                    previous: (i % 2 == 0).then_some(g),
                },
                OutputBody::PointsAwarded {
                    point_type: text.clone(),
                    points: i64::MAX - i as i64,
                    uncapped: -(i as i64),
                    capped: i % 2 == 1,
                    source: if i % 2 == 0 {
                        PointsSource::Rule(text.clone())
                    } else {
                        PointsSource::Mission(text.clone())
                    },
                    total: i64::MIN + i as i64,
                },
                OutputBody::MissionProgress {
                    mission: text.clone(),
                    kind: "count",
                    progress: g,
                    target: f,
                },
                OutputBody::MissionCompleted {
                    mission: text.clone(),
                    name: text.clone(),
                    completions: u32::MAX - i as u32,
                    reward_point_type: (i % 2 == 0).then(|| text.clone()),
                    reward_points: (i % 3 != 0).then_some(-7 * i as i64),
                    reward_badge: (i % 2 == 1).then(|| text.clone()),
                },
                OutputBody::BadgeAwarded {
                    badge: text.clone(),
                    name: text.clone(),
                    level: i as u32,
                    level_name: text.clone(),
                    previous_level: 0,
                },
                OutputBody::StreakUpdated {
                    streak: text.clone(),
                    current: 3,
                    longest: 40,
                    day: "2024-01-15".into(),
                    freezes_used: i as u32,
                },
                OutputBody::TierChanged {
                    from: (i % 2 == 0).then(|| text.clone()),
                    to: (i % 3 == 0).then(|| text.clone()),
                    direction: "promoted",
                    rolling_points: -(i as i64) * 1000,
                },
            ];
            for body in bodies {
                let trigger = Trigger {
                    customer_id: s,
                    event_id: odd[(i + 1) % odd.len()],
                    occurred_at: 1_705_312_800_000 + i as i64,
                    rules_version: odd[(i + 2) % odd.len()],
                };
                out.push(GameOutput::new(trigger, body));
            }
        }
        out
    }

    #[test]
    fn hand_written_json_is_byte_for_byte_what_serde_json_writes() {
        let samples = samples();
        assert_eq!(samples.len(), 35);
        for out in samples {
            let expected = serde_json::to_vec(&out).unwrap();
            assert_eq!(
                String::from_utf8(out.to_json_bytes()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    /// The discriminator text result ids were first defined with (DESIGN §3): the hash
    /// is fed in pieces now, and must stay the hash of this text.
    fn discriminator_text(body: &OutputBody) -> String {
        match body {
            OutputBody::ScoreUpdated { score, .. } => score.clone(),
            OutputBody::PointsAwarded { source, .. } => match source {
                PointsSource::Rule(r) => format!("rule:{r}"),
                PointsSource::Mission(m) => format!("mission:{m}"),
            },
            OutputBody::MissionProgress { mission, .. } => mission.clone(),
            OutputBody::MissionCompleted {
                mission,
                completions,
                ..
            } => format!("{mission}#{completions}"),
            OutputBody::BadgeAwarded { badge, level, .. } => format!("{badge}#{level}"),
            OutputBody::StreakUpdated { streak, .. } => streak.clone(),
            OutputBody::TierChanged { .. } => String::new(),
        }
    }

    #[test]
    fn result_ids_hash_the_discriminator_text_of_every_body() {
        for out in samples() {
            let expected = result_id(
                out.customer_id.as_str(),
                out.event_id.as_str(),
                out.output_type,
                &discriminator_text(&out.body),
            );
            assert_eq!(out.result_id.as_str(), expected, "{out:?}");
        }
    }

    #[test]
    fn result_ids_are_stable_and_tell_results_apart() {
        let points = |rule: &str| {
            GameOutput::new(
                trigger(),
                OutputBody::PointsAwarded {
                    point_type: "xp".into(),
                    points: 5,
                    uncapped: 5,
                    capped: false,
                    source: PointsSource::Rule(rule.into()),
                    total: 5,
                },
            )
        };
        assert_eq!(points("a").result_id, points("a").result_id);
        assert_ne!(points("a").result_id, points("b").result_id);
        assert_eq!(points("a").result_id.as_str().len(), 16);
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for part in ["254700000001", "evt-1", "points_awarded", "rule:a"] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
        assert_eq!(
            points("a").result_id.as_str(),
            format!("{:016x}", h.digest())
        );
        let v: serde_json::Value = serde_json::from_slice(&points("a").to_json_bytes()).unwrap();
        assert_eq!(v["source"], serde_json::json!({"kind": "rule", "id": "a"}));
        // The same event id for another customer is another result.
        assert_ne!(
            result_id("c1", "e", "points_awarded", "rule:a"),
            result_id("c2", "e", "points_awarded", "rule:a")
        );
    }
}
