//! Everything the game remembers about one customer, stored as one value per customer.
//!
//! The state must stay bounded however long a customer lives: day buckets are pruned past
//! the largest rolling window ([`super::rules::Rules::retention_days`]), remembered event
//! ids past the dedupe horizon, finished one-off missions shrink to their completion time,
//! leaderboard period totals are dropped once their period can no longer change, and event
//! counts are kept only for event types some rule knows.
//!
//! Amounts that are summed are integers (points, or thousandths of a value), so that sums
//! are exact and do not depend on the order events arrived in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rounds::Rounds;
use super::streak::StreakState;
use super::time::LocalDay;
use crate::domain::inline_bytes::InlineBytes;

/// What the game knows about a customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerGameState {
    pub profile: Profile,
    /// Recently applied event ids, to drop repeats (replaces a separate per-event store).
    pub seen: SeenEvents,
    /// All-time points per point type.
    pub points: BTreeMap<String, i64>,
    /// Per local day amounts: points per type and rule (caps, tiers), score inputs.
    pub days: DayBuckets,
    /// Missions in progress, and repeatable ones between completions.
    pub missions: BTreeMap<String, MissionProgress>,
    /// One-off missions completed: id → event time of completion.
    pub missions_done: BTreeMap<String, i64>,
    /// Completions of every mission, ever.
    pub missions_completed: u64,
    /// Badge id → level reached (1-based).
    pub badges: BTreeMap<String, u32>,
    pub streaks: BTreeMap<String, StreakState>,
    /// Tier id, if the customer has reached the first tier.
    pub tier: Option<String>,
    /// Score id → last published value (0..100).
    pub scores: BTreeMap<String, f64>,
    /// Recency score id → event time of the last matching event.
    pub last_activity: BTreeMap<String, i64>,
    /// Points per leaderboard period still open (within grace), sorted by board and key.
    pub board_totals: Vec<BoardTotal>,
}

/// Profile counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Event time of the earliest and the newest event applied.
    pub first_event_at: Option<i64>,
    pub last_event_at: Option<i64>,
    pub events: u64,
    /// Sum of the events' `value` (amount, MB, minutes...), in thousandths, exact.
    pub value_milli: i64,
    /// Events per event type, for types some rule knows.
    pub by_type: BTreeMap<String, u64>,
    /// Events of types no rule knows (kept as one number so the state stays bounded).
    pub unknown_type_events: u64,
}

/// Remembered event ids as 64-bit hashes, sorted by hash for binary search, with the event
/// time that lets them be forgotten.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeenEvents {
    entries: Vec<(u64, i64)>,
    /// Smallest event time held, so pruning costs nothing until something is due.
    oldest_at: i64,
}

impl SeenEvents {
    /// The key an event id is remembered by. A collision (1 in 2^64 per pair) would drop
    /// one event, an accepted risk for a hundredfold smaller state.
    pub fn hash(event_id: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.entries.binary_search_by_key(&hash, |e| e.0).is_ok()
    }

    /// Remembers a hash; returns false if it was already there.
    pub fn insert(&mut self, hash: u64, event_time: i64) -> bool {
        match self.entries.binary_search_by_key(&hash, |e| e.0) {
            Ok(_) => false,
            Err(i) => {
                if self.entries.is_empty() || event_time < self.oldest_at {
                    self.oldest_at = event_time;
                }
                self.entries.insert(i, (hash, event_time));
                true
            }
        }
    }

    /// Forgets ids of events older than `cutoff` (event time).
    pub fn prune(&mut self, cutoff: i64) {
        if self.entries.is_empty() || self.oldest_at >= cutoff {
            return;
        }
        self.entries.retain(|e| e.1 >= cutoff);
        self.oldest_at = self.entries.iter().map(|e| e.1).min().unwrap_or(0);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Integer amounts per local day and key, sorted by day then key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DayBuckets {
    days: Vec<DayBucket>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct DayBucket {
    day: LocalDay,
    values: Vec<(String, i64)>,
}

/// Bucket key for points of a type.
pub fn points_key(point_type: &str) -> BucketKey {
    BucketKey::new("p:", point_type)
}

/// Bucket key for points of a rule (rule caps).
pub fn rule_key(rule: &str) -> BucketKey {
    BucketKey::new("r:", rule)
}

/// Bucket key for a score's input (thousandths).
pub fn score_key(score: &str) -> BucketKey {
    BucketKey::new("s:", score)
}

/// A day-bucket key, `prefix` then an id (`p:<point type>`, `r:<rule>`...), held on the
/// stack when it fits: several are looked up per event, and `format!` allocated each
/// (issue 15 item 5). Dereferences to the key text.
pub struct BucketKey(InlineBytes<64>);

impl BucketKey {
    pub fn new(prefix: &str, id: &str) -> BucketKey {
        let mut key = InlineBytes::new();
        key.push(prefix.as_bytes());
        key.push(id.as_bytes());
        BucketKey(key)
    }
}

impl std::ops::Deref for BucketKey {
    type Target = str;

    fn deref(&self) -> &str {
        // Two whole `str`s copied end to end: valid UTF-8.
        std::str::from_utf8(self.0.as_bytes()).expect("two str")
    }
}

impl DayBuckets {
    pub fn add(&mut self, day: LocalDay, key: &str, amount: i64) {
        let i = match self.days.binary_search_by_key(&day, |b| b.day) {
            Ok(i) => i,
            Err(i) => {
                self.days.insert(
                    i,
                    DayBucket {
                        day,
                        values: Vec::new(),
                    },
                );
                i
            }
        };
        let values = &mut self.days[i].values;
        match values.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(j) => values[j].1 = values[j].1.saturating_add(amount),
            Err(j) => values.insert(j, (key.to_string(), amount)),
        }
    }

    /// Sum of `key` over the days `from..=to`.
    pub fn sum(&self, key: &str, from: LocalDay, to: LocalDay) -> i64 {
        let start = self.days.partition_point(|b| b.day < from);
        self.days[start..]
            .iter()
            .take_while(|b| b.day <= to)
            .filter_map(|b| {
                b.values
                    .binary_search_by(|(k, _)| k.as_str().cmp(key))
                    .ok()
                    .map(|j| b.values[j].1)
            })
            .fold(0i64, i64::saturating_add)
    }

    /// Drops days before `first_kept`.
    pub fn prune_before(&mut self, first_kept: LocalDay) {
        let n = self.days.partition_point(|b| b.day < first_kept);
        self.days.drain(..n);
    }

    pub fn day_count(&self) -> usize {
        self.days.len()
    }
}

/// Progress of one mission for one customer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MissionProgress {
    /// count: matching events so far.
    pub count: u64,
    /// sum: thousandths added so far.
    pub sum_milli: i64,
    /// sequence: steps done, and the event time of the first.
    pub step: u32,
    pub started_at: i64,
    /// Times completed (repeatable missions).
    pub completions: u32,
    pub last_completed_at: Option<i64>,
    /// Repeatable count and sum missions: the events the rounds are replayed from (see
    /// [`super::rounds`]); `count`/`sum_milli`, `completions` and `last_completed_at` are
    /// the result of that replay.
    pub rounds: Rounds,
}

/// A customer's points in one leaderboard period that can still change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardTotal {
    pub board: String,
    pub period_key: String,
    /// When the period ends (epoch ms); dropped once older than the grace period.
    pub end_ms: i64,
    pub total: i64,
    /// The latest event time among the events that earned points in `total`: when the
    /// customer reached it, the leaderboards' tie-break. A function of which events were
    /// applied, not of when a restart or a replay happened (only where a cap cut an award
    /// can the arrival order decide which events earned).
    pub reached_at: i64,
}

impl CustomerGameState {
    /// Adds `amount`, earned by an event at `at`, to a board period's total; returns the
    /// new total and when it was reached (see [`BoardTotal::reached_at`]).
    pub fn add_board_total(
        &mut self,
        board: &str,
        period_key: &str,
        end_ms: i64,
        amount: i64,
        at: i64,
    ) -> (i64, i64) {
        let entry = self.board_total_mut(board, period_key, end_ms, at);
        entry.total = entry.total.saturating_add(amount);
        entry.reached_at = entry.reached_at.max(at);
        (entry.total, entry.reached_at)
    }

    /// Sets a board period's total (all time: the points total), reached by an event at
    /// `at`; returns it and when it was reached.
    pub fn set_board_total(
        &mut self,
        board: &str,
        period_key: &str,
        end_ms: i64,
        total: i64,
        at: i64,
    ) -> (i64, i64) {
        let entry = self.board_total_mut(board, period_key, end_ms, at);
        entry.total = total;
        entry.reached_at = entry.reached_at.max(at);
        (entry.total, entry.reached_at)
    }

    fn board_total_mut(
        &mut self,
        board: &str,
        period_key: &str,
        end_ms: i64,
        at: i64,
    ) -> &mut BoardTotal {
        let found = self.board_totals.binary_search_by(|b| {
            (b.board.as_str(), b.period_key.as_str()).cmp(&(board, period_key))
        });
        let i = match found {
            Ok(i) => i,
            Err(i) => {
                self.board_totals.insert(
                    i,
                    BoardTotal {
                        board: board.to_string(),
                        period_key: period_key.to_string(),
                        end_ms,
                        total: 0,
                        reached_at: at,
                    },
                );
                i
            }
        };
        &mut self.board_totals[i]
    }

    /// Drops period totals whose period ended before `cutoff`: no event can reach them.
    pub fn prune_board_totals(&mut self, cutoff: i64) {
        self.board_totals.retain(|b| b.end_ms >= cutoff);
    }

    pub fn points_of(&self, point_type: &str) -> i64 {
        self.points.get(point_type).copied().unwrap_or(0)
    }

    /// Completions of a mission, whether one-off (compacted) or repeatable.
    pub fn completions_of(&self, mission: &str) -> u64 {
        if self.missions_done.contains_key(mission) {
            return 1;
        }
        self.missions
            .get(mission)
            .map_or(0, |p| u64::from(p.completions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bucket keys are stored in customer state: they must stay `prefix` + id, whether held
    /// inline or (over 64 bytes) on the heap, multi-byte characters included.
    #[test]
    fn bucket_keys_are_the_prefix_and_the_id() {
        let long = "é".repeat(40);
        for id in [
            "",
            "xp",
            "data_usage-ü",
            "x".repeat(62).as_str(),
            "y".repeat(63).as_str(),
            &long,
        ] {
            assert_eq!(&*points_key(id), format!("p:{id}"));
            assert_eq!(&*rule_key(id), format!("r:{id}"));
            assert_eq!(&*score_key(id), format!("s:{id}"));
        }
    }

    #[test]
    fn seen_events_find_insert_and_forget() {
        let mut seen = SeenEvents::default();
        let (a, b, c) = (
            SeenEvents::hash("a"),
            SeenEvents::hash("b"),
            SeenEvents::hash("c"),
        );
        assert!(seen.insert(a, 100));
        assert!(seen.insert(b, 50));
        assert!(!seen.insert(a, 100), "a repeat is not inserted twice");
        assert!(seen.insert(c, 300));
        assert!(seen.contains(a) && seen.contains(b) && seen.contains(c));
        seen.prune(100);
        assert!(!seen.contains(b), "older than the cutoff");
        assert!(seen.contains(a) && seen.contains(c));
        seen.prune(1_000);
        assert!(seen.is_empty());
    }

    #[test]
    fn day_buckets_sum_ranges_and_prune() {
        let mut d = DayBuckets::default();
        d.add(10, "p:xp", 5);
        d.add(12, "p:xp", 7);
        d.add(12, "p:xp", 1);
        d.add(12, "r:login", 3);
        d.add(15, "p:xp", 100);
        assert_eq!(d.sum("p:xp", 10, 12), 13);
        assert_eq!(d.sum("p:xp", 11, 20), 108);
        assert_eq!(d.sum("r:login", 0, 100), 3);
        assert_eq!(d.sum("p:reward", 0, 100), 0);
        d.prune_before(12);
        assert_eq!(d.sum("p:xp", 0, 100), 108);
        assert_eq!(d.day_count(), 2);
    }

    #[test]
    fn board_totals_accumulate_and_expire() {
        let mut s = CustomerGameState::default();
        assert_eq!(
            s.add_board_total("xp", "daily:2024-01-15", 1_000, 5, 70),
            (5, 70)
        );
        // An out-of-order event does not move the time the total was reached back.
        assert_eq!(
            s.add_board_total("xp", "daily:2024-01-15", 1_000, 7, 60),
            (12, 70)
        );
        assert_eq!(
            s.add_board_total("xp", "daily:2024-01-15", 1_000, 1, 90),
            (13, 90)
        );
        assert_eq!(
            s.add_board_total("xp", "daily:2024-01-16", 2_000, 1, 5),
            (1, 5)
        );
        s.prune_board_totals(1_500);
        assert_eq!(s.board_totals.len(), 1);
        assert_eq!(s.board_totals[0].period_key, "daily:2024-01-16");
    }

    #[test]
    fn round_trips_through_bincode() {
        let mut s = CustomerGameState::default();
        s.seen.insert(SeenEvents::hash("e1"), 42);
        s.days.add(3, "p:xp", 9);
        s.points.insert("xp".into(), 9);
        s.missions_done.insert("first".into(), 42);
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&s, cfg).unwrap();
        let (back, _): (CustomerGameState, _) =
            bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(back, s);
    }
}
