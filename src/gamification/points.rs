//! Points: what the points rules award for an event (tier multiplier, then caps), and
//! crediting points to the totals, day buckets and leaderboard periods.

use super::ctx::Ctx;
use super::output::{OutputBody, PointsSource};
use super::rules::{all_match, PointsRule};
use super::state::{points_key, rule_key, BucketKey, CustomerGameState};
use super::time::{period_span, week_start, Period};

/// Bucket key for points of a type earned from rules (what point-type caps limit;
/// mission rewards are not capped).
fn earned_key(point_type: &str) -> BucketKey {
    BucketKey::new("e:", point_type)
}

/// Applies every points rule matching the event, in rule id order.
pub(super) fn award_rules(ctx: &mut Ctx<'_>, state: &mut CustomerGameState) {
    let rules = ctx.rules;
    for rule in &rules.points {
        if rule.event_type != ctx.event.event_type || !all_match(&rule.when, ctx.event) {
            continue;
        }
        let uncapped = uncapped_points(ctx, state, rule);
        if uncapped <= 0 {
            continue;
        }
        let points = uncapped.min(cap_room(ctx, state, rule)).max(0);
        if points == 0 {
            continue;
        }
        ctx.buckets_add(state, &rule_key(&rule.id), points);
        ctx.buckets_add(state, &earned_key(&rule.point_type), points);
        let total = credit(ctx, state, &rule.point_type, points);
        ctx.emit(OutputBody::PointsAwarded {
            point_type: rule.point_type.clone(),
            points,
            uncapped,
            capped: points < uncapped,
            source: PointsSource::Rule(rule.id.clone()),
            total,
        });
    }
}

/// `floor((base + per_unit × units) × tier multiplier)`. The customer's tier *before*
/// this event applies.
fn uncapped_points(ctx: &Ctx<'_>, state: &CustomerGameState, rule: &PointsRule) -> i64 {
    let raw = rule.base + rule.per_unit * rule.unit.units(ctx.event);
    let multiplier = match (&state.tier, &ctx.rules.tiers, rule.apply_tier_multiplier) {
        (Some(tier), Some(tiers), true) => {
            rule.tier_multipliers.get(tier).copied().unwrap_or_else(|| {
                tiers
                    .levels
                    .iter()
                    .find(|l| &l.id == tier)
                    .map_or(1.0, |l| l.multiplier)
            })
        }
        _ => 1.0,
    };
    let points = (raw * multiplier).floor();
    if !points.is_finite() || points <= 0.0 {
        0
    } else if points >= i64::MAX as f64 {
        i64::MAX
    } else {
        points as i64
    }
}

/// How many more points the rule's and the point type's caps allow on the event's local
/// day and ISO week (event time, customer's zone).
fn cap_room(ctx: &Ctx<'_>, state: &CustomerGameState, rule: &PointsRule) -> i64 {
    let day = ctx.day;
    let week = (week_start(day), week_start(day) + 6);
    let mut room = i64::MAX;
    let mut limit = |cap: Option<i64>, key: &str, from: i32, to: i32| {
        if let Some(cap) = cap {
            room = room.min(cap - state.days.sum(key, from, to));
        }
    };
    let rk = rule_key(&rule.id);
    limit(rule.daily_cap, &rk, day, day);
    limit(rule.weekly_cap, &rk, week.0, week.1);
    if let Some(pt) = ctx.rules.point_type(&rule.point_type) {
        let ek = earned_key(&pt.id);
        limit(pt.daily_cap, &ek, day, day);
        limit(pt.weekly_cap, &ek, week.0, week.1);
    }
    room
}

/// Credits points of a type at the event's time: the all-time total, the day bucket the
/// tiers read, and every leaderboard period of that type. Returns the new total.
pub(super) fn credit(
    ctx: &mut Ctx<'_>,
    state: &mut CustomerGameState,
    point_type: &str,
    points: i64,
) -> i64 {
    let total = state.points.entry(point_type.to_string()).or_insert(0);
    *total = total.saturating_add(points);
    let total = *total;
    ctx.buckets_add(state, &points_key(point_type), points);
    let rules = ctx.rules;
    for board in rules
        .leaderboards
        .iter()
        .filter(|b| b.point_type == point_type)
    {
        for &period in &board.periods {
            let span = period_span(period, ctx.event.occurred_at, board.time_zone);
            let at = ctx.event.occurred_at;
            let (board_total, reached_at) = if period == Period::AllTime {
                // The points total (it may predate the board), and when it was reached.
                state.set_board_total(&board.id, &span.key, span.end_ms, total, at)
            } else {
                state.add_board_total(&board.id, &span.key, span.end_ms, points, at)
            };
            ctx.touch_board(&board.id, span.key, span.end_ms, board_total, reached_at);
        }
    }
    total
}
