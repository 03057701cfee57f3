//! What the game processor sends its leaderboard tasks: the wire form of a
//! [`LeaderboardUpdate`] on `<app-id>-leaderboard-points`, and this task's partial top-N per
//! board and period, which lets through only the totals that can matter (see the module doc
//! of [`super::game`]).

use std::collections::HashMap;

use crate::gamification::output::board_period_key;
use crate::gamification::{LeaderboardUpdate, Rules, TopN};

/// The wire form of a [`LeaderboardUpdate`] on `<app-id>-leaderboard-points`: a version
/// byte, then JSON (readable with any Kafka tool; these records are few, see the module
/// doc).
pub fn encode_update(update: &LeaderboardUpdate) -> Vec<u8> {
    let mut out = vec![UPDATE_FORMAT];
    serde_json::to_writer(&mut out, update).expect("strings and integers always serialize");
    out
}

pub fn decode_update(bytes: &[u8]) -> Result<LeaderboardUpdate, String> {
    match bytes.split_first() {
        Some((&UPDATE_FORMAT, rest)) => serde_json::from_slice(rest).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!(
            "unknown leaderboard update format {v} (this build reads {UPDATE_FORMAT})"
        )),
        None => Err("empty leaderboard update".into()),
    }
}

const UPDATE_FORMAT: u8 = 1;

/// period key → (period end, partial ranking).
type Periods = HashMap<String, (i64, TopN)>;

/// This task's partial top-N per board and period (see the module doc).
pub(super) struct PartialBoards {
    /// board → (top N, its periods); looked up by `&str`, no key built.
    boards: HashMap<String, (usize, Periods)>,
}

impl PartialBoards {
    pub(super) fn new(rules: &Rules) -> Self {
        PartialBoards {
            boards: rules
                .leaderboards
                .iter()
                .map(|b| (b.id.clone(), (b.top_n, HashMap::new())))
                .collect(),
        }
    }

    /// Whether the update changes this task's partial ranking (and so must be forwarded).
    /// A board the rules do not know is let through (the leaderboard task decides).
    pub(super) fn admit(&mut self, u: &LeaderboardUpdate) -> bool {
        let Some((capacity, periods)) = self.boards.get_mut(&u.board) else {
            return true;
        };
        match periods.get_mut(&u.period) {
            Some((_, top)) => top.apply(u),
            None => {
                let mut top = TopN::new(*capacity);
                top.apply(u);
                periods.insert(u.period.clone(), (u.period_end_ms, top));
                true
            }
        }
    }

    /// Drops periods that ended before `cutoff`; returns their `board|period` keys, sorted.
    pub(super) fn forget_closed(&mut self, cutoff: i64) -> Vec<String> {
        let mut closed = Vec::new();
        for (board, (_, periods)) in &mut self.boards {
            periods.retain(|period, (end, _)| {
                let keep = *end >= cutoff;
                if !keep {
                    closed.push(board_period_key(board, period));
                }
                keep
            });
        }
        closed.sort();
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(customer: &str, total: i64) -> LeaderboardUpdate {
        LeaderboardUpdate {
            board: "xp".into(),
            period: "daily:2024-01-15".into(),
            period_end_ms: 1_000,
            customer_id: customer.into(),
            total,
            reached_at: total,
            occurred_at: None,
            event_id: format!("e-{customer}-{total}"),
            rules_version: "v".into(),
        }
    }

    #[test]
    fn only_totals_that_change_the_partial_ranking_cross() {
        let rules = Rules::bundled().unwrap();
        let mut p = PartialBoards::new(&rules);
        p.boards.insert("xp".into(), (2, HashMap::new()));
        assert!(p.admit(&update("a", 10)));
        assert!(p.admit(&update("b", 20)));
        assert!(!p.admit(&update("c", 5)), "below a full top 2");
        assert!(!p.admit(&update("a", 10)), "a repeat");
        assert!(p.admit(&update("c", 30)));
        assert!(!p.admit(&update("a", 11)), "a was pushed out and 11 < 20");
        assert_eq!(
            p.forget_closed(1_000),
            Vec::<String>::new(),
            "ends at the cutoff"
        );
        assert_eq!(p.forget_closed(1_001), ["xp|daily:2024-01-15"]);
        assert!(p.admit(&update("a", 11)), "a forgotten period admits again");
    }

    #[test]
    fn updates_round_trip_and_bad_bytes_are_named() {
        let u = update("a", 3);
        assert_eq!(decode_update(&encode_update(&u)).unwrap(), u);
        assert!(decode_update(&[9, b'{']).unwrap_err().contains("format 9"));
        assert!(decode_update(&[]).is_err());
    }
}
