//! Applying one event to one customer's game state: the heart of the gamification
//! sub-topology.
//!
//! [`apply`] is pure and deterministic: the same rules, state, event and stream time give
//! the same state and outputs, with no wall clock, randomness or hash-map order involved
//! (every collection it iterates is sorted). It works in event time: an out-of-order event
//! inside the grace period counts towards its own local day (caps, streak day, rolling
//! windows); an older one is [`Applied::Late`] and changes nothing.

use super::ctx::Ctx;
pub use super::ctx::Effects;
use super::missions::advance_missions;
use super::output::OutputBody;
use super::points::award_rules;
use super::rules::Rules;
use super::standing::{update_badges, update_scores, update_tier};
use super::state::{CustomerGameState, SeenEvents};
use super::streak::StreakChange;
use super::time::{day_string, local_day, whole_days};
use crate::domain::event::CanonicalEvent;

/// What applying an event did.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// Its `event_id` was applied before (within the dedupe horizon); nothing changed.
    /// Checked before lateness: a replay of an applied event is a duplicate however old.
    Duplicate,
    /// Older than stream time minus the grace period; nothing changed. What happens to it
    /// is `rules.settings.late_policy`.
    Late {
        behind_ms: i64,
    },
    /// `strict_event_types` is on and no rule knows its type; nothing changed. Dead-letter
    /// it as `unknown_event_type`.
    UnknownEventType,
    Applied(Effects),
}

/// Applies `event` to `state`.
///
/// `stream_time_ms` is the task's stream time: the largest event time it has seen (with
/// or without this event; the result is the same). It decides lateness and when
/// remembered event ids may be forgotten, so it must never run ahead of event time.
pub fn apply(
    rules: &Rules,
    state: &mut CustomerGameState,
    event: &CanonicalEvent,
    stream_time_ms: i64,
) -> Applied {
    let stream_time = stream_time_ms.max(event.occurred_at);
    // Repeats first: an id remembered within the dedupe horizon (which may be longer than
    // the grace period) was applied, so its replay is dropped even when it is now too old
    // to apply; calling it late would dead-letter an event that was counted.
    let id_hash = SeenEvents::hash(&event.event_id);
    if state.seen.contains(id_hash) {
        return Applied::Duplicate;
    }
    let behind_ms = stream_time - event.occurred_at;
    if behind_ms > rules.lateness_grace_ms() {
        return Applied::Late { behind_ms };
    }
    let known = rules.knows_event_type(&event.event_type);
    if !known && rules.settings.strict_event_types {
        return Applied::UnknownEventType;
    }
    state.seen.insert(id_hash, event.occurred_at);
    state
        .seen
        .prune(stream_time.saturating_sub(rules.dedupe_horizon_ms()));
    update_profile(state, event, known);

    let tz = rules.customer_time_zone(event);
    let newest_at = state.profile.last_event_at.unwrap_or(event.occurred_at);
    let mut ctx = Ctx::new(
        rules,
        event,
        local_day(event.occurred_at, tz),
        local_day(newest_at, tz),
        stream_time.saturating_sub(rules.lateness_grace_ms()),
    );
    state
        .days
        .prune_before(ctx.newest_day.saturating_sub(rules.retention_days));
    state.prune_board_totals(stream_time.saturating_sub(rules.lateness_grace_ms()));

    award_rules(&mut ctx, state);
    update_streaks(&mut ctx, state);
    advance_missions(&mut ctx, state);
    update_tier(&mut ctx, state);
    update_scores(&mut ctx, state);
    update_badges(&mut ctx, state);
    Applied::Applied(ctx.finish())
}

fn update_profile(state: &mut CustomerGameState, event: &CanonicalEvent, known: bool) {
    let p = &mut state.profile;
    let at = event.occurred_at;
    p.first_event_at = Some(p.first_event_at.map_or(at, |f| f.min(at)));
    p.last_event_at = Some(p.last_event_at.map_or(at, |l| l.max(at)));
    p.events += 1;
    p.value_milli = p
        .value_milli
        .saturating_add(super::rules::to_milli(event.value.unwrap_or(0.0)));
    if known {
        *p.by_type.entry(event.event_type.clone()).or_insert(0) += 1;
    } else {
        p.unknown_type_events += 1;
    }
}

fn update_streaks(ctx: &mut Ctx<'_>, state: &mut CustomerGameState) {
    let rules = ctx.rules;
    // Slack beyond the grace period for customers whose zone changes between events.
    let keep_days = whole_days(rules.settings.lateness_grace) + 2;
    for streak in &rules.streaks {
        if !streak.event_types.contains(&ctx.event.event_type) {
            continue;
        }
        let s = state.streaks.entry(streak.id.clone()).or_default();
        if s.record(ctx.day, streak, keep_days) == StreakChange::Unchanged {
            continue;
        }
        let body = OutputBody::StreakUpdated {
            streak: streak.id.clone(),
            current: s.now.current,
            longest: s.now.longest,
            day: day_string(ctx.day),
            freezes_used: s.freezes_used(),
        };
        ctx.emit(body);
    }
}
