//! Streaks: runs of consecutive active local days, with freezes that bridge missed days.
//!
//! Out-of-order events inside the grace period must land on their own day, so a streak
//! is not a counter bumped per event: the recent active days are kept as a small sorted
//! list and the run is recomputed by folding them onto a cursor that summarises all older
//! days. Days older than the grace period can no longer change, so they are folded into
//! the cursor and forgotten; the state stays a few days long. The result depends only on
//! the set of active days, never on the order events arrived in.

use serde::{Deserialize, Serialize};

use super::rules::Streak;
use super::time::LocalDay;

/// The run as of some day, summarising every active day up to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreakCursor {
    pub last_day: Option<LocalDay>,
    /// Active days in the current run (bridged days do not count).
    pub current: u32,
    pub longest: u32,
    /// Missed days bridged by a freeze, pruned past the freeze period.
    pub frozen_days: Vec<LocalDay>,
}

/// One streak's state for one customer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreakState {
    /// Every active day before `recent`, folded.
    base: StreakCursor,
    /// Active days that a late event could still precede, ascending.
    recent: Vec<LocalDay>,
    /// `base` with `recent` folded in: what is published.
    pub now: StreakCursor,
}

impl StreakCursor {
    /// The cursor after one more active day, later than `last_day`.
    fn advance(mut self, day: LocalDay, rule: &Streak) -> StreakCursor {
        match self.last_day {
            Some(last) if day <= last => return self,
            None => self.current = 1,
            Some(last) => {
                let missed = day - last - 1;
                self.frozen_days
                    .retain(|d| *d > day - rule.freeze_period_days);
                let available =
                    rule.freezes as usize - self.frozen_days.len().min(rule.freezes as usize);
                if missed == 0 {
                    self.current += 1;
                } else if missed as usize <= available {
                    self.frozen_days.extend(last + 1..day);
                    self.current += 1;
                } else {
                    self.current = 1;
                }
            }
        }
        self.last_day = Some(day);
        self.longest = self.longest.max(self.current);
        self
    }
}

/// What an active day did to a streak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreakChange {
    /// The day was already active, or too old to matter.
    Unchanged,
    Updated,
}

impl StreakState {
    /// Records activity on `day`. `keep_days` is how far behind the newest active day an
    /// event may still arrive (the grace period in days, plus slack for zone changes).
    pub fn record(&mut self, day: LocalDay, rule: &Streak, keep_days: i32) -> StreakChange {
        if self.base.last_day.is_some_and(|l| day <= l) {
            return StreakChange::Unchanged;
        }
        match self.recent.binary_search(&day) {
            Ok(_) => return StreakChange::Unchanged,
            Err(i) => self.recent.insert(i, day),
        }
        let newest = self.recent.last().copied().unwrap_or(day);
        let settled = self.recent.partition_point(|d| *d < newest - keep_days);
        for d in self.recent.drain(..settled) {
            self.base = std::mem::take(&mut self.base).advance(d, rule);
        }
        let before = std::mem::take(&mut self.now);
        self.now = self
            .recent
            .iter()
            .fold(self.base.clone(), |c, d| c.advance(*d, rule));
        if self.now == before {
            StreakChange::Unchanged
        } else {
            StreakChange::Updated
        }
    }

    /// Freezes used within the period ending at the newest active day.
    pub fn freezes_used(&self) -> u32 {
        self.now.frozen_days.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(freezes: u32) -> Streak {
        Streak {
            id: "s".into(),
            event_types: vec!["login".into()],
            freezes,
            freeze_period_days: 30,
        }
    }

    fn run(days: &[LocalDay], freezes: u32) -> StreakCursor {
        let mut s = StreakState::default();
        for d in days {
            s.record(*d, &rule(freezes), 3);
        }
        s.now
    }

    #[test]
    fn consecutive_days_extend_and_gaps_reset() {
        let c = run(&[1, 2, 3, 3, 5, 6], 0);
        assert_eq!((c.current, c.longest), (2, 3));
    }

    #[test]
    fn freezes_bridge_missed_days_within_the_allowance() {
        let c = run(&[1, 2, 4, 5], 1);
        assert_eq!((c.current, c.longest), (4, 4), "day 3 bridged");
        assert_eq!(c.frozen_days, vec![3]);
        let c = run(&[1, 2, 4, 6], 1);
        assert_eq!(
            (c.current, c.longest),
            (1, 3),
            "second miss within 30 days breaks it"
        );
        let c = run(&[1, 4], 2);
        assert_eq!(c.current, 2, "two freezes bridge two missed days");
        let c = run(&[1, 2, 4, 20, 22], 1);
        assert_eq!(c.current, 1, "day 3's freeze is still counted on day 22");
        let c = run(&[1, 2, 4, 40, 42], 1);
        assert_eq!(
            c.current, 2,
            "by day 42 it has expired: freezes renew each period"
        );
    }

    #[test]
    fn late_days_inside_the_window_are_placed_in_order() {
        let in_order = run(&[1, 2, 3, 4, 5], 0);
        let shuffled = run(&[1, 2, 5, 4, 3], 0);
        assert_eq!(in_order, shuffled);
        assert_eq!(in_order.current, 5);
    }

    #[test]
    fn settled_days_are_forgotten_and_too_old_days_ignored() {
        let mut s = StreakState::default();
        for d in 1..=20 {
            s.record(d, &rule(0), 3);
        }
        assert!(s.recent.len() <= 4, "{:?}", s.recent);
        assert_eq!(s.now.current, 20);
        assert_eq!(s.record(2, &rule(0), 3), StreakChange::Unchanged);
        assert_eq!(s.record(20, &rule(0), 3), StreakChange::Unchanged);
        assert_eq!(s.record(21, &rule(0), 3), StreakChange::Updated);
    }
}
