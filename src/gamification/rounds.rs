//! Rounds of repeatable count and sum missions in event-time order, whatever order the
//! events arrived in.
//!
//! A repeatable mission completes each time its progress reaches the target, starts over
//! from zero, and then ignores events during its cooldown. Applied in arrival order, that
//! depends on the order: an event from before a completion that arrives after it would
//! count towards the next round, and where a round ends decides what the cooldown blocks.
//! Two customers with the same events would end with different completions when their
//! events were interleaved differently across input partitions (or a producer's retry of
//! one overtook the original). So the rounds are computed on the events sorted by time:
//! the matching events still inside the grace period are kept (`recent`) with the
//! progress before the oldest of them (`base`), and every new event replays them. Events
//! older than the grace period can no longer be joined by an earlier one, so they are
//! folded into `base`. The completions and the progress are then a function of which
//! events were applied, not of their order.
//!
//! Completions never move later when an event is added (an earlier completion starts an
//! earlier cooldown, which ends earlier), so the number of completions only grows and
//! each new one is published once, by the event whose arrival made it.

use serde::{Deserialize, Serialize};

/// At most this many events are kept per mission; beyond it the oldest are folded early
/// (order then matters again only for events more than this many matching events late).
pub const MAX_RECENT: usize = 4096;

/// One matching event: when it happened, a tie-break for equal times (a hash of its id)
/// and what it adds (1 for count missions, thousandths for sum missions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub at: i64,
    pub tie: u64,
    pub units: i64,
}

/// Progress of the round in course, and the rounds completed before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundState {
    pub progress: i64,
    pub completions: u32,
    pub last_completed_at: Option<i64>,
}

/// What one unit did in the replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stepped {
    Cooling,
    Counted,
    Completed,
}

/// The rules of one mission's rounds.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub target: i64,
    pub cooldown_ms: i64,
}

impl Round {
    /// Applies one unit, in event-time order.
    pub fn step(&self, s: &mut RoundState, u: &Unit) -> Stepped {
        if let Some(t) = s.last_completed_at {
            if u.at >= t && u.at < t.saturating_add(self.cooldown_ms) {
                return Stepped::Cooling;
            }
        }
        s.progress = s.progress.saturating_add(u.units);
        if s.progress >= self.target {
            s.completions += 1;
            s.last_completed_at = Some(u.at);
            s.progress = 0;
            Stepped::Completed
        } else {
            Stepped::Counted
        }
    }
}

/// The events of one mission still inside the grace period, and the state before them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rounds {
    pub base: RoundState,
    /// Sorted by (time, tie).
    pub recent: Vec<Unit>,
}

impl Rounds {
    /// Adds `unit`, folds what is older than `settle_before`, and returns the state after
    /// every event in time order and what `unit` itself did there.
    pub fn add(&mut self, round: Round, unit: Unit, settle_before: i64) -> (RoundState, Stepped) {
        let at = self
            .recent
            .partition_point(|u| (u.at, u.tie) < (unit.at, unit.tie));
        self.recent.insert(at, unit);
        let mut state = self.base;
        let mut own = Stepped::Counted;
        for u in &self.recent {
            let stepped = round.step(&mut state, u);
            if u == &unit {
                own = stepped;
            }
        }
        let keep_from = self
            .recent
            .partition_point(|u| u.at < settle_before)
            .max(self.recent.len().saturating_sub(MAX_RECENT));
        for u in self.recent.drain(..keep_from) {
            round.step(&mut self.base, &u);
        }
        (state, own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUND: Round = Round {
        target: 2,
        cooldown_ms: 100,
    };

    fn unit(at: i64) -> Unit {
        Unit {
            at,
            tie: at as u64,
            units: 1,
        }
    }

    fn run(order: &[i64], settle_lag: i64) -> RoundState {
        let mut r = Rounds::default();
        let mut state = RoundState::default();
        let mut newest = i64::MIN;
        for &at in order {
            newest = newest.max(at);
            state = r.add(ROUND, unit(at), newest - settle_lag).0;
        }
        state
    }

    #[test]
    fn rounds_do_not_depend_on_arrival_order() {
        // In time order: 1, 3 complete at 3; 50 and 90 cool down; 120, 130 complete at 130.
        let in_order = run(&[1, 3, 50, 90, 120, 130], 1_000);
        assert_eq!(in_order.completions, 2);
        assert_eq!(in_order.last_completed_at, Some(130));
        // Arrival order would complete at 50 first (1, 50), count 3 towards the next
        // round and shift every cooldown.
        for order in [
            [1, 50, 3, 90, 130, 120],
            [130, 120, 90, 50, 3, 1],
            [3, 90, 1, 130, 50, 120],
        ] {
            assert_eq!(run(&order, 1_000), in_order, "{order:?}");
        }
    }

    #[test]
    fn events_older_than_the_grace_period_are_folded() {
        let mut r = Rounds::default();
        r.add(ROUND, unit(1), 0);
        r.add(ROUND, unit(3), 0);
        let (state, stepped) = r.add(ROUND, unit(500), 400);
        assert_eq!(stepped, Stepped::Counted);
        assert_eq!(r.recent, vec![unit(500)], "1 and 3 are settled");
        assert_eq!(r.base.completions, 1);
        assert_eq!(state.completions, 1);
        assert_eq!(state.progress, 1);
    }

    #[test]
    fn what_the_new_event_did_is_reported() {
        let mut r = Rounds::default();
        assert_eq!(r.add(ROUND, unit(10), 0).1, Stepped::Counted);
        assert_eq!(r.add(ROUND, unit(20), 0).1, Stepped::Completed);
        assert_eq!(r.add(ROUND, unit(50), 0).1, Stepped::Cooling);
        // An earlier event: in time order 5 and 10 now complete the round at 10, and 20
        // and 50 fall in its cooldown; still one completion.
        let (state, stepped) = r.add(ROUND, unit(5), 0);
        assert_eq!(stepped, Stepped::Counted);
        assert_eq!(state.completions, 1);
        assert_eq!(state.last_completed_at, Some(10));
        assert_eq!(state.progress, 0);
    }
}
