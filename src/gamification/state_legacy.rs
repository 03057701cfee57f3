//! Layouts of [`CustomerGameState`] that stored values may still have. bincode is
//! positional, so a field added to the state is a new layout: the old one stays here,
//! frozen, to decode values written before, and converts into the current one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rounds::{RoundState, Rounds};
use super::state::{
    BoardTotal, CustomerGameState, DayBuckets, MissionProgress, Profile, SeenEvents,
};
use super::streak::StreakState;

/// The state before leaderboard period totals kept the time they were reached.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GameStateV1 {
    pub profile: Profile,
    pub seen: SeenEvents,
    pub points: BTreeMap<String, i64>,
    pub days: DayBuckets,
    pub missions: BTreeMap<String, MissionProgressV1>,
    pub missions_done: BTreeMap<String, i64>,
    pub missions_completed: u64,
    pub badges: BTreeMap<String, u32>,
    pub streaks: BTreeMap<String, StreakState>,
    pub tier: Option<String>,
    pub scores: BTreeMap<String, f64>,
    pub last_activity: BTreeMap<String, i64>,
    pub board_totals: Vec<BoardTotalV1>,
}

/// Mission progress before repeatable missions kept their recent events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MissionProgressV1 {
    pub count: u64,
    pub sum_milli: i64,
    pub step: u32,
    pub started_at: i64,
    pub completions: u32,
    pub last_completed_at: Option<i64>,
}

impl From<MissionProgressV1> for MissionProgress {
    /// The progress so far becomes the settled start of the replay.
    fn from(p: MissionProgressV1) -> Self {
        let base = RoundState {
            progress: p.sum_milli.max(p.count.min(i64::MAX as u64) as i64),
            completions: p.completions,
            last_completed_at: p.last_completed_at,
        };
        MissionProgress {
            count: p.count,
            sum_milli: p.sum_milli,
            step: p.step,
            started_at: p.started_at,
            completions: p.completions,
            last_completed_at: p.last_completed_at,
            rounds: Rounds {
                base,
                recent: Vec::new(),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardTotalV1 {
    pub board: String,
    pub period_key: String,
    pub end_ms: i64,
    pub total: i64,
}

impl From<GameStateV1> for CustomerGameState {
    /// A period total written before had no time: it counts as reached at the customer's
    /// newest event, capped at the period's end (an estimate for periods open across the
    /// upgrade only); the next event in the period moves it on.
    fn from(s: GameStateV1) -> Self {
        let newest = s.profile.last_event_at.unwrap_or(0);
        CustomerGameState {
            board_totals: s
                .board_totals
                .into_iter()
                .map(|b| BoardTotal {
                    board: b.board,
                    period_key: b.period_key,
                    end_ms: b.end_ms,
                    total: b.total,
                    reached_at: newest.min(b.end_ms),
                })
                .collect(),
            profile: s.profile,
            seen: s.seen,
            points: s.points,
            days: s.days,
            missions: s.missions.into_iter().map(|(k, v)| (k, v.into())).collect(),
            missions_done: s.missions_done,
            missions_completed: s.missions_completed,
            badges: s.badges,
            streaks: s.streaks,
            tier: s.tier,
            scores: s.scores,
            last_activity: s.last_activity,
        }
    }
}
