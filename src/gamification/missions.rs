//! Mission progress: single, count, sum and sequence missions, active windows, tier
//! requirements, repeats with cooldowns, and rewards on completion.
//!
//! Sequences follow arrival order, except that a step never counts if it happened before
//! the sequence's first step (event time: an out-of-order event cannot complete a sequence
//! the customer did not do in that order; only the first step's time is kept, so in
//! sequences of three or more steps the middle steps are not checked against each other).
//! Repeatable count and sum missions are replayed in event-time order (see
//! [`super::rounds`]): their completions, cooldowns and progress depend only on which
//! events arrived, not on their order. One-off count and sum missions complete once the
//! total reaches the target, whatever the order.

use super::ctx::Ctx;
use super::output::{OutputBody, PointsSource};
use super::points::credit;
use super::rounds::{Round, Stepped, Unit};
use super::rules::{all_match, Mission, MissionKind};
use super::state::{CustomerGameState, MissionProgress, SeenEvents};
use crate::domain::event::CanonicalEvent;

/// What one event did to one mission's progress.
enum Step {
    Ignored,
    Progressed { progress: f64, target: f64 },
    Completed,
}

pub(super) fn advance_missions(ctx: &mut Ctx<'_>, state: &mut CustomerGameState) {
    let rules = ctx.rules;
    for mission in &rules.missions {
        if !eligible(ctx, state, mission) {
            continue;
        }
        let at = ctx.event.occurred_at;
        let mut progress = state.missions.get(&mission.id).cloned().unwrap_or_default();
        if let Some(unit) = round_unit(ctx, mission) {
            advance_rounds(ctx, state, mission, progress, unit);
            continue;
        }
        let cooling = mission.repeatable
            && progress
                .last_completed_at
                .is_some_and(|t| at >= t && at < t.saturating_add(mission.cooldown_ms));
        if cooling {
            continue;
        }
        match step(ctx, mission, &mut progress) {
            Step::Ignored => {}
            Step::Progressed {
                progress: p,
                target,
            } => {
                state.missions.insert(mission.id.clone(), progress);
                ctx.emit(OutputBody::MissionProgress {
                    mission: mission.id.clone(),
                    kind: mission.kind.name(),
                    progress: p,
                    target,
                });
            }
            Step::Completed => complete(ctx, state, mission, progress),
        }
    }
}

/// What an event adds towards a single, count or sum mission, and the mission's target, in
/// the mission's unit (events, or thousandths of a value); `None` when it does not match. A
/// single mission is a count mission with a target of 1.
fn contribution(mission: &Mission, event: &CanonicalEvent) -> Option<(i64, i64)> {
    let matches = |types: &[String]| types.contains(&event.event_type);
    match &mission.kind {
        MissionKind::Single { event_types } if matches(event_types) => Some((1, 1)),
        MissionKind::Count {
            event_types,
            target,
        } if matches(event_types) => Some((i64::try_from(*target).unwrap_or(i64::MAX), 1)),
        MissionKind::Sum {
            event_types,
            target_milli,
            unit,
        } if matches(event_types) => Some((*target_milli, unit.units_milli(event))),
        _ => None,
    }
}

/// Progress in the mission's unit, kept in the field of its kind.
fn set_progress(mission: &Mission, p: &mut MissionProgress, progress: i64) {
    match mission.kind {
        MissionKind::Sum { .. } => p.sum_milli = progress,
        _ => p.count = progress.max(0) as u64,
    }
}

/// Progress and target as published: sums in the value's unit, counts in events.
fn published(mission: &Mission, progress: i64, target: i64) -> (f64, f64) {
    let scale = match mission.kind {
        MissionKind::Sum { .. } => 1000.0,
        _ => 1.0,
    };
    (progress as f64 / scale, target as f64 / scale)
}

/// For a repeatable single, count or sum mission the event matches: what it adds to a round.
fn round_unit(ctx: &Ctx<'_>, mission: &Mission) -> Option<(Round, Unit)> {
    if !mission.repeatable {
        return None;
    }
    let event = ctx.event;
    let (target, units) = contribution(mission, event)?;
    Some((
        Round {
            target,
            cooldown_ms: mission.cooldown_ms,
        },
        Unit {
            at: event.occurred_at,
            tie: SeenEvents::hash(&event.event_id),
            units,
        },
    ))
}

/// A repeatable count or sum mission, in event-time order (see [`super::rounds`]).
fn advance_rounds(
    ctx: &mut Ctx<'_>,
    state: &mut CustomerGameState,
    mission: &Mission,
    mut progress: MissionProgress,
    (round, unit): (Round, Unit),
) {
    if unit.units == 0 {
        return;
    }
    let before = progress.completions;
    let (now, stepped) = progress.rounds.add(round, unit, ctx.settle_before);
    set_progress(mission, &mut progress, now.progress);
    progress.completions = now.completions;
    progress.last_completed_at = now.last_completed_at;
    state.missions.insert(mission.id.clone(), progress);
    if now.completions > before {
        for completions in before + 1..=now.completions {
            completed(ctx, state, mission, completions);
        }
    } else if stepped != Stepped::Cooling {
        let (progress, target) = published(mission, now.progress, round.target);
        ctx.emit(OutputBody::MissionProgress {
            mission: mission.id.clone(),
            kind: mission.kind.name(),
            progress,
            target,
        });
    }
}

/// Not finished for good, inside its window, at the required tier, filters pass.
fn eligible(ctx: &Ctx<'_>, state: &CustomerGameState, mission: &Mission) -> bool {
    let at = ctx.event.occurred_at;
    if state.missions_done.contains_key(&mission.id)
        || mission.from_ms.is_some_and(|f| at < f)
        || mission.to_ms.is_some_and(|t| at >= t)
    {
        return false;
    }
    if let (Some(min), Some(tiers)) = (mission.min_tier, &ctx.rules.tiers) {
        let current = state
            .tier
            .as_ref()
            .and_then(|t| tiers.levels.iter().position(|l| &l.id == t));
        if current.is_none_or(|c| c < min) {
            return false;
        }
    }
    all_match(&mission.when, ctx.event)
}

fn step(ctx: &Ctx<'_>, mission: &Mission, p: &mut MissionProgress) -> Step {
    let event = ctx.event;
    if let MissionKind::Sequence { steps, within_ms } = &mission.kind {
        return sequence_step(event, steps, *within_ms, p);
    }
    let Some((target, units)) = contribution(mission, event) else {
        return Step::Ignored;
    };
    if units == 0 {
        return Step::Ignored;
    }
    let now = match mission.kind {
        MissionKind::Sum { .. } => p.sum_milli,
        _ => i64::try_from(p.count).unwrap_or(i64::MAX),
    }
    .saturating_add(units);
    set_progress(mission, p, now);
    if now >= target {
        return Step::Completed;
    }
    let (progress, target) = published(mission, now, target);
    Step::Progressed { progress, target }
}

/// The next expected step advances if it did not happen before the first step; the first
/// step (re)starts; anything else is ignored. A sequence that ran past `within` starts over.
fn sequence_step(
    event: &CanonicalEvent,
    steps: &[String],
    within_ms: Option<i64>,
    p: &mut MissionProgress,
) -> Step {
    let at = event.occurred_at;
    let expired = p.step > 0 && within_ms.is_some_and(|w| at - p.started_at > w);
    if expired {
        p.step = 0;
    }
    let next = steps.get(p.step as usize);
    // An earlier event of the first step's type may take the first step's place (the old
    // first then fills this step): exact for ["login", "login"].
    let in_order = at >= p.started_at || next == steps.first();
    if p.step > 0 && next == Some(&event.event_type) && in_order {
        p.step += 1;
    } else if steps.first() == Some(&event.event_type) {
        p.step = 1;
        p.started_at = at;
    } else if expired {
        return Step::Progressed {
            progress: 0.0,
            target: steps.len() as f64,
        };
    } else {
        return Step::Ignored;
    }
    if p.step as usize >= steps.len() {
        Step::Completed
    } else {
        Step::Progressed {
            progress: f64::from(p.step),
            target: steps.len() as f64,
        }
    }
}

fn complete(
    ctx: &mut Ctx<'_>,
    state: &mut CustomerGameState,
    mission: &Mission,
    mut p: MissionProgress,
) {
    let at = ctx.event.occurred_at;
    p.completions += 1;
    p.last_completed_at = Some(at);
    p.count = 0;
    p.sum_milli = 0;
    p.step = 0;
    let completions = p.completions;
    if mission.repeatable {
        state.missions.insert(mission.id.clone(), p);
    } else {
        state.missions.remove(&mission.id);
        state.missions_done.insert(mission.id.clone(), at);
    }
    completed(ctx, state, mission, completions);
}

/// Publishes a completion and pays its rewards.
fn completed(
    ctx: &mut Ctx<'_>,
    state: &mut CustomerGameState,
    mission: &Mission,
    completions: u32,
) {
    state.missions_completed += 1;
    let reward = &mission.reward;
    ctx.emit(OutputBody::MissionCompleted {
        mission: mission.id.clone(),
        name: mission.name.clone(),
        completions,
        reward_point_type: reward.points.as_ref().map(|(t, _)| t.clone()),
        reward_points: reward.points.as_ref().map(|(_, n)| *n),
        reward_badge: reward.badge.as_ref().map(|(b, _)| b.clone()),
    });
    if let Some((point_type, points)) = &reward.points {
        if *points > 0 {
            let total = credit(ctx, state, point_type, *points);
            ctx.emit(OutputBody::PointsAwarded {
                point_type: point_type.clone(),
                points: *points,
                uncapped: *points,
                capped: false,
                source: PointsSource::Mission(mission.id.clone()),
                total,
            });
        }
    }
    if let Some((badge, level)) = &reward.badge {
        super::standing::raise_badge(ctx, state, badge, *level);
    }
}
