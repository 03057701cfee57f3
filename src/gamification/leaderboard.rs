//! The top N of one leaderboard period: the state of the leaderboard sub-topology.
//!
//! Customers' period totals only grow (points are never negative) and arrive as totals,
//! not deltas, so keeping just the top N is exact: a customer who drops out can only come
//! back with a larger total, which arrives as a new update. A repeated or stale update is
//! a no-op, which is what makes at-least-once delivery safe (DESIGN §4).
//!
//! Ranking: higher total first, then whoever reached it earlier (event time), then the
//! customer id — a total order, so every replica ranks alike.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::output::LeaderboardUpdate;
use super::time::rfc3339_ms;
use crate::domain::envelope::Envelope;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub customer_id: String,
    pub total: i64,
    /// Event time at which the total was reached.
    pub reached_at: i64,
}

/// Best first.
fn rank_order(a: &Entry, b: &Entry) -> Ordering {
    b.total
        .cmp(&a.total)
        .then(a.reached_at.cmp(&b.reached_at))
        .then_with(|| a.customer_id.cmp(&b.customer_id))
}

/// The best `capacity` entries, best first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopN {
    capacity: usize,
    entries: Vec<Entry>,
}

impl TopN {
    pub fn new(capacity: usize) -> TopN {
        TopN {
            capacity: capacity.max(1),
            entries: Vec::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// 1-based rank, if the customer is in the top N.
    pub fn rank_of(&self, customer_id: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.customer_id == customer_id)
            .map(|i| i + 1)
    }

    /// Records a customer's new total. Returns whether the visible top N changed. A total
    /// below the one held (a stale or replayed update) changes nothing. A larger total of a
    /// customer already listed counts as reached no earlier than the one it replaces
    /// (`reached_at` is the event that completed it, which may be out of order).
    pub fn upsert(&mut self, customer_id: &str, total: i64, reached_at: i64) -> bool {
        // Fast path, no allocation: a full ranking whose last entry ranks at or above the
        // candidate cannot change. (Were the customer in the list with a smaller total, the
        // candidate would outrank that entry, hence the last one too.)
        if self.entries.len() >= self.capacity {
            if let Some(last) = self.entries.last() {
                let candidate_first = last
                    .total
                    .cmp(&total)
                    .then(reached_at.cmp(&last.reached_at))
                    .then_with(|| customer_id.cmp(&last.customer_id));
                if candidate_first != Ordering::Less {
                    return false;
                }
            }
        }
        let mut entry = Entry {
            customer_id: customer_id.to_string(),
            total,
            reached_at,
        };
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.customer_id == customer_id)
        {
            // A larger total includes every event of the one held, so it was reached no
            // earlier than that one: an out-of-order event's own time would be too early.
            entry.reached_at = entry.reached_at.max(self.entries[i].reached_at);
            if rank_order(&entry, &self.entries[i]) != Ordering::Less {
                return false;
            }
            self.entries.remove(i);
        }
        let at = self
            .entries
            .partition_point(|e| rank_order(e, &entry) == Ordering::Less);
        if at >= self.capacity {
            return false;
        }
        self.entries.insert(at, entry);
        self.entries.truncate(self.capacity);
        true
    }

    /// Applies a [`LeaderboardUpdate`].
    pub fn apply(&mut self, update: &LeaderboardUpdate) -> bool {
        self.upsert(&update.customer_id, update.total, update.reached_at)
    }

    /// Merges partial top-Ns (e.g. one per partition) into the global top `capacity`.
    /// A customer in several parts keeps its best entry.
    pub fn merge<'a>(parts: impl IntoIterator<Item = &'a TopN>, capacity: usize) -> TopN {
        let mut best: BTreeMap<&str, &Entry> = BTreeMap::new();
        for e in parts.into_iter().flat_map(|p| p.entries.iter()) {
            best.entry(&e.customer_id)
                .and_modify(|b| {
                    if rank_order(e, b) == Ordering::Less {
                        *b = e;
                    }
                })
                .or_insert(e);
        }
        let mut entries: Vec<Entry> = best.into_values().cloned().collect();
        entries.sort_by(rank_order);
        let mut top = TopN::new(capacity);
        entries.truncate(top.capacity);
        top.entries = entries;
        top
    }

    /// A `leaderboard_updated` record for `gamification-results`, keyed by the board id:
    /// the whole visible top N after `update` (the latest total that changed it).
    /// `final_snapshot` marks the ranking of a period that has closed (its end plus the
    /// grace period has passed in stream time).
    pub fn updated_json(&self, update: &LeaderboardUpdate, final_snapshot: bool) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| serde_json::json!({"rank": i + 1, "customer_id": e.customer_id, "total": e.total}))
            .collect();
        #[derive(Serialize)]
        struct Record<'a> {
            #[serde(flatten)]
            head: Envelope<'a>,
            rules_version: &'a str,
            board: &'a str,
            period: &'a str,
            #[serde(rename = "final")]
            final_snapshot: bool,
            entries: Vec<serde_json::Value>,
        }
        let discriminator = format!(
            "{}|{}|{}{}",
            update.board,
            update.period,
            update.total,
            if final_snapshot { "|final" } else { "" }
        );
        let record = Record {
            head: Envelope::new(
                "leaderboard_updated",
                &update.customer_id,
                &update.event_id,
                rfc3339_ms(update.occurred_at.unwrap_or(update.reached_at)),
                &discriminator,
            ),
            rules_version: &update.rules_version,
            board: &update.board,
            period: &update.period,
            final_snapshot,
            entries,
        };
        serde_json::to_vec(&record).expect("strings and integers always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(t: &TopN) -> Vec<&str> {
        t.entries().iter().map(|e| e.customer_id.as_str()).collect()
    }

    #[test]
    fn keeps_the_best_n_with_deterministic_ties() {
        let mut t = TopN::new(3);
        assert!(t.upsert("c", 10, 5));
        assert!(t.upsert("a", 10, 7));
        assert!(t.upsert("b", 10, 5));
        assert_eq!(
            ids(&t),
            ["b", "c", "a"],
            "same total: earlier first, then id"
        );
        assert!(!t.upsert("d", 9, 0), "below the visible top 3");
        assert!(t.upsert("d", 11, 9));
        assert_eq!(ids(&t), ["d", "b", "c"]);
        assert_eq!(t.rank_of("c"), Some(3));
        assert_eq!(t.rank_of("a"), None);
    }

    #[test]
    fn a_full_ranking_refuses_what_cannot_enter_and_takes_what_can() {
        let mut t = TopN::new(2);
        assert!(t.upsert("a", 10, 5));
        assert!(t.upsert("b", 8, 5));
        assert!(!t.upsert("c", 8, 6), "same total, reached later");
        assert!(!t.upsert("c", 8, 5), "same total and time, larger id");
        assert!(!t.upsert("b", 8, 5), "the last entry repeated");
        assert!(t.upsert("b", 9, 6), "the last entry growing");
        assert!(t.upsert("a0", 9, 6), "ties broken by id: a0 < b");
        assert_eq!(ids(&t), ["a", "a0"]);
    }

    #[test]
    fn a_larger_total_is_reached_no_earlier_than_the_one_it_replaces() {
        let mut t = TopN::new(2);
        assert!(t.upsert("a", 11, 40));
        assert!(t.upsert("b", 10, 50));
        assert!(
            t.upsert("b", 11, 0),
            "b's 11 includes its 10, reached at 50"
        );
        assert_eq!(ids(&t), ["a", "b"]);
        assert_eq!(t.entries()[1].reached_at, 50);
    }

    #[test]
    fn repeats_and_stale_totals_change_nothing() {
        let mut t = TopN::new(2);
        assert!(t.upsert("a", 10, 5));
        assert!(!t.upsert("a", 10, 5), "an idempotent repeat");
        assert!(!t.upsert("a", 8, 3), "a stale total");
        assert!(t.upsert("a", 12, 6));
        assert_eq!(t.entries()[0].total, 12);
    }

    #[test]
    fn merging_partials_equals_one_board_fed_everything() {
        let updates = [
            ("a", 5, 1),
            ("b", 9, 2),
            ("c", 7, 3),
            ("d", 9, 1),
            ("e", 1, 1),
        ];
        let mut whole = TopN::new(3);
        let mut parts = [TopN::new(3), TopN::new(3)];
        for (i, (c, total, at)) in updates.iter().enumerate() {
            whole.upsert(c, *total, *at);
            parts[i % 2].upsert(c, *total, *at);
        }
        let merged = TopN::merge(&parts, 3);
        assert_eq!(merged, whole);
        assert_eq!(ids(&merged), ["d", "b", "c"]);
    }

    #[test]
    fn updated_record_lists_the_ranking() {
        let mut t = TopN::new(2);
        let u = LeaderboardUpdate {
            board: "xp".into(),
            period: "daily:2024-01-15".into(),
            period_end_ms: 1_705_363_200_000,
            customer_id: "c1".into(),
            total: 40,
            reached_at: 1_705_312_800_000,
            occurred_at: None,
            event_id: "e1".into(),
            rules_version: "v".into(),
        };
        assert!(t.apply(&u));
        let v: serde_json::Value = serde_json::from_slice(&t.updated_json(&u, false)).unwrap();
        assert_eq!(v["type"], "leaderboard_updated");
        assert_eq!(v["period"], "daily:2024-01-15");
        assert_eq!(
            v["entries"][0],
            serde_json::json!({"rank": 1, "customer_id": "c1", "total": 40})
        );
        assert_eq!(u.key(), "xp|daily:2024-01-15");
    }
}
