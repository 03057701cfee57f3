//! The value of the per-customer store, [`StoredGameState`], in every layout ever written.

use serde::{Deserialize, Serialize};

use crate::churn::ChurnState;
use crate::gamification::state_legacy::GameStateV1;
use crate::gamification::CustomerGameState;

/// The stored value, versioned: bincode writes the variant index first, so a future
/// layout is a new variant and old values still decode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoredGameState {
    V1(GameStateV1),
    /// With the churn branch's state.
    V2(GameStateV1, ChurnState),
    /// Leaderboard period totals with the time they were reached (churn off).
    V3(CustomerGameState),
    /// The same, with the churn branch's state.
    V4(CustomerGameState, ChurnState),
}

impl StoredGameState {
    /// The current layout: with the churn state if there is one.
    pub fn new(game: CustomerGameState, churn: Option<ChurnState>) -> Self {
        match churn {
            Some(churn) => StoredGameState::V4(game, churn),
            None => StoredGameState::V3(game),
        }
    }

    /// The game state and the churn state (empty for values written before churn).
    pub fn into_parts(self) -> (CustomerGameState, ChurnState) {
        match self {
            StoredGameState::V1(s) => (s.into(), ChurnState::default()),
            StoredGameState::V2(s, c) => (s.into(), c),
            StoredGameState::V3(s) => (s, ChurnState::default()),
            StoredGameState::V4(s, c) => (s, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_written_before_reached_times_still_decode() {
        use crate::gamification::state_legacy::BoardTotalV1;
        let mut old = GameStateV1::default();
        old.profile.last_event_at = Some(5_000);
        old.points.insert("xp".into(), 12);
        old.board_totals.push(BoardTotalV1 {
            board: "xp".into(),
            period_key: "daily:2024-01-15".into(),
            end_ms: 4_000,
            total: 12,
        });
        let cfg = bincode::config::standard();
        let bytes =
            bincode::serde::encode_to_vec(StoredGameState::V2(old, ChurnState::default()), cfg)
                .unwrap();
        let (back, _): (StoredGameState, _) =
            bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        let (game, _) = back.into_parts();
        assert_eq!(game.points_of("xp"), 12);
        let total = &game.board_totals[0];
        assert_eq!(
            (total.total, total.reached_at),
            (12, 4_000),
            "capped at the period end"
        );
    }
}
