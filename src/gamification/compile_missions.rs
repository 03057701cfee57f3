//! Compiling badges and missions, which refer to each other (a mission's reward badge, a
//! badge counting a mission's completions) and to streaks, tiers and point types.

use super::compile_check::{
    event_type_ref, event_types, filters, point_type_ref, positive_duration, unit_source, unused,
    Errs, Refs,
};
use super::rules::{Badge, BadgeLevel, BadgeMetric, Mission, MissionKind, Reward};
use super::spec::{BadgeSpec, MissionSpec, RewardSpec};

pub(super) fn badge(id: &str, s: &BadgeSpec, refs: &Refs<'_>, errs: &mut Errs) -> Badge {
    let metric = badge_metric(id, s, refs, errs);
    let levels = badge_levels(id, s, metric == BadgeMetric::Granted, errs);
    Badge {
        id: id.to_string(),
        name: s.name.clone().unwrap_or_else(|| id.to_string()),
        metric,
        levels,
    }
}

/// What a badge counts, with the fields its metric uses checked and the others refused.
fn badge_metric(id: &str, s: &BadgeSpec, refs: &Refs<'_>, errs: &mut Errs) -> BadgeMetric {
    let k = |f: &str| format!("badges.{id}.{f}");
    let metric_name = s.metric.as_deref().unwrap_or("");
    let uses = |f: &str| -> bool {
        matches!(
            (metric_name, f),
            ("event_count", "event_type")
                | ("points_total", "point_type")
                | ("longest_streak" | "current_streak", "streak")
                | ("missions_completed", "mission")
        )
    };
    for (f, set) in [
        ("event_type", s.event_type.is_some()),
        ("point_type", s.point_type.is_some()),
        ("streak", s.streak.is_some()),
        ("mission", s.mission.is_some()),
    ] {
        if !metric_name.is_empty() && !uses(f) {
            unused(k(f), set, &format!("metric {metric_name}"), errs);
        }
    }
    let streak_ref = |errs: &mut Errs| match s.streak.as_deref() {
        None => {
            errs.push(k("streak"), "required");
            String::new()
        }
        Some(n) => {
            if !refs.streaks.contains(n) {
                errs.push(k("streak"), format!("unknown streak '{n}'"));
            }
            n.to_string()
        }
    };
    match metric_name {
        "event_count" => BadgeMetric::EventCount(event_type_ref(
            k("event_type"),
            s.event_type.as_deref(),
            errs,
        )),
        "points_total" => BadgeMetric::PointsTotal(point_type_ref(
            k("point_type"),
            s.point_type.as_deref(),
            refs.points,
            errs,
        )),
        "longest_streak" => BadgeMetric::LongestStreak(streak_ref(errs)),
        "current_streak" => BadgeMetric::CurrentStreak(streak_ref(errs)),
        "missions_completed" => {
            if let Some(m) = &s.mission {
                if !refs.missions.contains(m) {
                    errs.push(k("mission"), format!("unknown mission '{m}'"));
                }
            }
            BadgeMetric::MissionsCompleted(s.mission.clone())
        }
        "granted" => BadgeMetric::Granted,
        other => {
            errs.push(
                k("metric"),
                format!(
                    "'{other}' is not one of event_count, points_total, longest_streak, \
                     current_streak, missions_completed, granted"
                ),
            );
            BadgeMetric::Granted
        }
    }
}

/// A badge's levels, with thresholds that increase (none for a granted badge).
fn badge_levels(id: &str, s: &BadgeSpec, granted: bool, errs: &mut Errs) -> Vec<BadgeLevel> {
    let k = |f: &str| format!("badges.{id}.{f}");
    if s.levels.is_empty() {
        errs.push(k("levels"), "must list at least one level");
    }
    let mut levels: Vec<BadgeLevel> = Vec::new();
    for (i, l) in s.levels.iter().enumerate() {
        let lk = format!("badges.{id}.levels[{i}].threshold");
        let threshold = match (granted, l.threshold) {
            (true, Some(_)) => {
                unused(lk, true, "metric granted", errs);
                0
            }
            (true, None) => 0,
            (false, None) => {
                errs.push(lk, "required");
                0
            }
            (false, Some(t)) if t <= 0 => {
                errs.push(lk, format!("{t} must be above 0"));
                0
            }
            (false, Some(t)) => {
                if let Some(prev) = levels.last().map(|p| p.threshold) {
                    if t as u64 <= prev {
                        errs.push(
                            lk,
                            format!("{t} is not above the previous level's {prev}: thresholds must increase"),
                        );
                    }
                }
                t as u64
            }
        };
        levels.push(BadgeLevel {
            name: l.name.clone().unwrap_or_else(|| format!("level {}", i + 1)),
            threshold,
        });
    }
    levels
}

/// An RFC 3339 instant given as a string or a TOML offset date-time.
fn instant(key: String, v: &toml::Value, errs: &mut Errs) -> Option<i64> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => {
            errs.push(
                key,
                format!("must be an RFC 3339 date-time, found {}", other.type_str()),
            );
            return None;
        }
    };
    match chrono::DateTime::parse_from_rfc3339(&text) {
        Ok(t) => Some(t.timestamp_millis()),
        Err(e) => {
            errs.push(
                key,
                format!("'{text}' is not an RFC 3339 date-time with an offset ({e})"),
            );
            None
        }
    }
}

fn mission_kind(id: &str, s: &MissionSpec, errs: &mut Errs) -> MissionKind {
    let k = |f: &str| format!("missions.{id}.{f}");
    let kind = s.kind.as_deref().unwrap_or("");
    let set_target = |errs: &mut Errs| match s.target {
        Some(t) if t.is_finite() && t > 0.0 => t,
        Some(t) => {
            errs.push(k("target"), format!("{t} must be above 0"));
            1.0
        }
        None => {
            errs.push(k("target"), format!("required by kind {kind}"));
            1.0
        }
    };
    if kind != "sequence" {
        unused(
            k("steps"),
            !s.steps.is_empty(),
            &format!("kind {kind}"),
            errs,
        );
        unused(
            k("within"),
            s.within.is_some(),
            &format!("kind {kind}"),
            errs,
        );
    }
    if kind != "sum" {
        unused(
            k("sum_attribute"),
            s.sum_attribute.is_some(),
            &format!("kind {kind}"),
            errs,
        );
    }
    match kind {
        "single" => {
            unused(k("target"), s.target.is_some(), "kind single", errs);
            MissionKind::Single {
                event_types: event_types(k("event_types"), &s.event_types, errs),
            }
        }
        "count" => {
            let t = set_target(errs);
            if t.fract() != 0.0 {
                errs.push(
                    k("target"),
                    format!("{t} must be a whole number for kind count"),
                );
            }
            MissionKind::Count {
                event_types: event_types(k("event_types"), &s.event_types, errs),
                target: t as u64,
            }
        }
        "sum" => MissionKind::Sum {
            event_types: event_types(k("event_types"), &s.event_types, errs),
            target_milli: super::rules::to_milli(set_target(errs)),
            unit: unit_source(s.sum_attribute.as_ref()),
        },
        "sequence" => sequence(id, s, errs),
        other => {
            errs.push(
                k("kind"),
                format!("'{other}' is not one of single, count, sum, sequence"),
            );
            MissionKind::Single {
                event_types: Vec::new(),
            }
        }
    }
}

/// A `sequence` mission: its steps in order, optionally within a duration.
fn sequence(id: &str, s: &MissionSpec, errs: &mut Errs) -> MissionKind {
    let k = |f: &str| format!("missions.{id}.{f}");
    unused(
        k("event_types"),
        !s.event_types.is_empty(),
        "kind sequence (use steps)",
        errs,
    );
    unused(k("target"), s.target.is_some(), "kind sequence", errs);
    let steps = if s.steps.is_empty() {
        errs.push(
            k("steps"),
            "an empty sequence can never be completed; list the event types in order",
        );
        Vec::new()
    } else {
        event_types(k("steps"), &s.steps, errs)
    };
    let within = positive_duration(k("within"), s.within, errs);
    MissionKind::Sequence {
        steps,
        within_ms: within.map(super::rules::duration_ms),
    }
}

/// A mission's reward: points of a point type and/or a badge level, checked against them.
fn reward(id: &str, r: &RewardSpec, refs: &Refs<'_>, errs: &mut Errs) -> Reward {
    let k = |f: &str| format!("missions.{id}.{f}");
    let points = match (&r.point_type, r.points) {
        (None, None) => None,
        (pt, amount) => {
            let pt = point_type_ref(k("reward.point_type"), pt.as_deref(), refs.points, errs);
            let amount = match amount {
                Some(a) if a >= 0 => a,
                Some(a) => {
                    errs.push(k("reward.points"), format!("{a} must be 0 or more"));
                    0
                }
                None => {
                    errs.push(k("reward.points"), "required with reward.point_type");
                    0
                }
            };
            Some((pt, amount))
        }
    };
    let badge = r.badge.as_ref().map(|b| {
        let level = r.badge_level.unwrap_or(1);
        match refs.badge_levels.get(b) {
            None => errs.push(k("reward.badge"), format!("unknown badge '{b}'")),
            Some(&n) if level == 0 || level as usize > n => errs.push(
                k("reward.badge_level"),
                format!("badge '{b}' has levels 1..={n}, not {level}"),
            ),
            Some(_) => {}
        }
        (b.clone(), level)
    });
    if r.badge.is_none() && r.badge_level.is_some() {
        errs.push(
            k("reward.badge_level"),
            "has no effect without reward.badge",
        );
    }
    Reward { points, badge }
}

pub(super) fn mission(id: &str, s: &MissionSpec, refs: &Refs<'_>, errs: &mut Errs) -> Mission {
    let k = |f: &str| format!("missions.{id}.{f}");
    let kind = mission_kind(id, s, errs);
    let (from_ms, to_ms) = match &s.window {
        None => (None, None),
        Some(w) => {
            let from = w
                .from
                .as_ref()
                .and_then(|v| instant(k("window.from"), v, errs));
            let to = w.to.as_ref().and_then(|v| instant(k("window.to"), v, errs));
            if let (Some(f), Some(t)) = (from, to) {
                if t <= f {
                    errs.push(k("window.to"), "before window.from");
                }
            }
            (from, to)
        }
    };
    if !s.repeatable {
        unused(
            k("cooldown"),
            s.cooldown.is_some(),
            "a one-off mission (set repeatable = true)",
            errs,
        );
    }
    let min_tier = s.min_tier.as_ref().and_then(|t| {
        let idx = refs
            .tiers
            .and_then(|tiers| tiers.levels.iter().position(|l| &l.id == t));
        if idx.is_none() {
            errs.push(k("min_tier"), format!("unknown tier '{t}'"));
        }
        idx
    });
    let reward = s.reward.as_ref().map_or(
        Reward {
            points: None,
            badge: None,
        },
        |r| reward(id, r, refs, errs),
    );
    Mission {
        id: id.to_string(),
        name: s.name.clone().unwrap_or_else(|| id.to_string()),
        kind,
        when: filters(&format!("missions.{id}"), &s.when, errs),
        from_ms,
        to_ms,
        repeatable: s.repeatable,
        cooldown_ms: s.cooldown.map_or(0, super::rules::duration_ms),
        min_tier,
        reward,
    }
}
