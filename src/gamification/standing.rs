//! Where a customer stands after an event: tier, behaviour scores, badges.
//!
//! Rolling windows end at the customer's newest local day (not the event's), so a late
//! event inside grace adds to its own day without pulling the window back in time.

use super::ctx::Ctx;
use super::output::OutputBody;
use super::rules::{BadgeMetric, Curve, ScoreKind, Tiers};
use super::state::{points_key, score_key, CustomerGameState};
use super::time::DAY_MS;

/// Promotes to the highest tier the rolling points reach; demotes only when they fall
/// below the current tier's threshold minus the hysteresis.
pub(super) fn update_tier(ctx: &mut Ctx<'_>, state: &mut CustomerGameState) {
    let Some(tiers) = &ctx.rules.tiers else {
        return;
    };
    let newest = ctx.newest_day;
    let rolling = state.days.sum(
        &points_key(&tiers.point_type),
        newest - tiers.window_days + 1,
        newest,
    );
    let current = state
        .tier
        .as_ref()
        .and_then(|t| tiers.levels.iter().position(|l| &l.id == t));
    let target = next_tier(tiers, current, rolling);
    let known_current = state.tier.is_none() || current.is_some();
    if target == current && known_current {
        return;
    }
    let to = target.map(|i| tiers.levels[i].id.clone());
    let promoted = match (target, current) {
        (Some(t), Some(c)) => t > c,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let from = std::mem::replace(&mut state.tier, to.clone());
    ctx.emit(OutputBody::TierChanged {
        from,
        to,
        direction: if promoted { "promoted" } else { "demoted" },
        rolling_points: rolling,
    });
}

fn next_tier(tiers: &Tiers, current: Option<usize>, rolling: i64) -> Option<usize> {
    let qualified = tiers.levels.iter().rposition(|l| rolling >= l.threshold);
    match (current, qualified) {
        (Some(c), q) if q.is_none_or(|q| q < c) => {
            let keep = rolling >= tiers.levels[c].threshold.saturating_sub(tiers.hysteresis);
            if keep {
                Some(c)
            } else {
                q
            }
        }
        (_, q) => q,
    }
}

/// Feeds the event to the scores it matches, then recomputes every score (windows move
/// with the customer's newest day) and publishes those whose value changed.
pub(super) fn update_scores(ctx: &mut Ctx<'_>, state: &mut CustomerGameState) {
    let rules = ctx.rules;
    let newest_at = state.profile.last_event_at.unwrap_or(ctx.event.occurred_at);
    for score in &rules.scores {
        let matches = score.event_types.contains(&ctx.event.event_type);
        let value = match &score.kind {
            ScoreKind::Count {
                window_days,
                saturation,
                curve,
            } => {
                if matches {
                    ctx.buckets_add(state, &score_key(&score.id), 1000);
                }
                let n = windowed(ctx, state, &score.id, *window_days);
                normalize(n, *saturation, *curve)
            }
            ScoreKind::Sum {
                window_days,
                saturation,
                curve,
                unit,
            } => {
                if matches {
                    let milli = unit.units_milli(ctx.event);
                    ctx.buckets_add(state, &score_key(&score.id), milli);
                }
                let sum = windowed(ctx, state, &score.id, *window_days);
                normalize(sum, *saturation, *curve)
            }
            ScoreKind::Recency {
                full_days,
                zero_days,
            } => {
                if matches {
                    let last = state
                        .last_activity
                        .entry(score.id.clone())
                        .or_insert(i64::MIN);
                    *last = (*last).max(ctx.event.occurred_at);
                }
                state.last_activity.get(&score.id).map_or(0.0, |last| {
                    recency((newest_at - last) / DAY_MS, *full_days, *zero_days)
                })
            }
        };
        let value = (value * 100.0).round() / 100.0;
        let previous = state.scores.get(&score.id).copied();
        let due = match previous {
            // Every score starts at 0; it is first published when it leaves 0.
            None => value != 0.0,
            Some(p) => {
                p != value
                    && ((value - p).abs() + 1e-9 >= score.min_change
                        || value == 0.0
                        || value == 100.0)
            }
        };
        if due {
            state.scores.insert(score.id.clone(), value);
            ctx.emit(OutputBody::ScoreUpdated {
                score: score.id.clone(),
                value,
                previous,
            });
        }
    }
}

/// The score input summed over the window ending at the newest day, in units.
fn windowed(ctx: &Ctx<'_>, state: &CustomerGameState, score: &str, window_days: i32) -> f64 {
    let newest = ctx.newest_day;
    state
        .days
        .sum(&score_key(score), newest - window_days + 1, newest) as f64
        / 1000.0
}

/// 0..100, reaching 100 at `saturation`.
pub fn normalize(amount: f64, saturation: f64, curve: Curve) -> f64 {
    let x = amount.max(0.0);
    let ratio = match curve {
        Curve::Linear => x / saturation,
        Curve::Sqrt => (x / saturation).sqrt(),
        Curve::Log => (1.0 + x).ln() / (1.0 + saturation).ln(),
    };
    (100.0 * ratio).clamp(0.0, 100.0)
}

/// 100 up to `full_days` since the last activity, 0 from `zero_days`, linear between.
pub fn recency(days_since: i64, full_days: i64, zero_days: i64) -> f64 {
    if days_since <= full_days {
        100.0
    } else if days_since >= zero_days {
        0.0
    } else {
        100.0 * (zero_days - days_since) as f64 / (zero_days - full_days) as f64
    }
}

/// Raises badges whose metric passed a new level's threshold.
pub(super) fn update_badges(ctx: &mut Ctx<'_>, state: &mut CustomerGameState) {
    let rules = ctx.rules;
    for badge in &rules.badges {
        let Some(value) = metric(state, &badge.metric) else {
            continue;
        };
        let level = badge.levels.iter().filter(|l| value >= l.threshold).count() as u32;
        raise_badge(ctx, state, &badge.id, level);
    }
}

fn metric(state: &CustomerGameState, metric: &BadgeMetric) -> Option<u64> {
    let streak = |id: &str| state.streaks.get(id).map(|s| &s.now);
    Some(match metric {
        BadgeMetric::EventCount(t) => state.profile.by_type.get(t).copied().unwrap_or(0),
        BadgeMetric::PointsTotal(t) => state.points_of(t).max(0) as u64,
        BadgeMetric::LongestStreak(s) => streak(s).map_or(0, |c| u64::from(c.longest)),
        BadgeMetric::CurrentStreak(s) => streak(s).map_or(0, |c| u64::from(c.current)),
        BadgeMetric::MissionsCompleted(None) => state.missions_completed,
        BadgeMetric::MissionsCompleted(Some(m)) => state.completions_of(m),
        BadgeMetric::Granted => return None,
    })
}

/// Sets a badge to `level` if that is higher than the customer's; badges never go down.
pub(super) fn raise_badge(
    ctx: &mut Ctx<'_>,
    state: &mut CustomerGameState,
    badge_id: &str,
    level: u32,
) {
    let Some(badge) = ctx.rules.badge(badge_id) else {
        return;
    };
    let previous = state.badges.get(badge_id).copied().unwrap_or(0);
    let level = level.min(badge.levels.len() as u32);
    if level <= previous {
        return;
    }
    state.badges.insert(badge_id.to_string(), level);
    ctx.emit(OutputBody::BadgeAwarded {
        badge: badge.id.clone(),
        name: badge.name.clone(),
        level,
        level_name: badge.levels[level as usize - 1].name.clone(),
        previous_level: previous,
    });
}
