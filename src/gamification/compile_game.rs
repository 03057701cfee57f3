//! Compiling the game sections — tiers, streaks, badges, missions, scores, leaderboards —
//! with their cross-references checked (a mission's badge must exist, a badge's streak
//! must exist, thresholds must increase...).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::compile::{
    entries, event_type_ref, filters, point_type_ref, section, time_zone, unit_source, Errs,
};
use super::rules::{
    Badge, BadgeLevel, BadgeMetric, Curve, Leaderboard, Mission, MissionKind, Reward, Score,
    ScoreKind, Settings, Streak, TierLevel, Tiers,
};
use super::spec::{BadgeSpec, LeaderboardSpec, MissionSpec, ScoreSpec, StreakSpec, TiersSpec};
use super::time::{whole_days, Period, DAY_MS};

/// The game sections, compiled.
pub(super) struct GameParts {
    pub missions: Vec<Mission>,
    pub badges: Vec<Badge>,
    pub streaks: Vec<Streak>,
    pub tiers: Option<Tiers>,
    pub scores: Vec<Score>,
    pub leaderboards: Vec<Leaderboard>,
    /// Event types these sections mention.
    pub event_types: BTreeSet<String>,
    /// The longest rolling window, in local days.
    pub largest_window_days: i32,
}

pub(super) fn compile_game(
    table: &toml::Table,
    settings: &Settings,
    points: &BTreeSet<String>,
    errs: &mut Errs,
) -> GameParts {
    let tiers = section::<TiersSpec>(table, "tiers", errs).map(|t| tiers(&t, points, errs));
    let streaks = streaks(&entries(table, "streaks", errs), errs);
    let mission_specs: BTreeMap<String, MissionSpec> = entries(table, "missions", errs);
    let badge_specs: BTreeMap<String, BadgeSpec> = entries(table, "badges", errs);
    let refs = Refs {
        points,
        streaks: streaks.iter().map(|s| s.id.clone()).collect(),
        missions: mission_specs.keys().cloned().collect(),
        badge_levels: badge_specs
            .iter()
            .map(|(id, b)| (id.clone(), b.levels.len()))
            .collect(),
        tiers: tiers.as_ref(),
    };
    let badges = badge_specs
        .iter()
        .map(|(id, s)| badge(id, s, &refs, errs))
        .collect::<Vec<_>>();
    let missions = mission_specs
        .iter()
        .map(|(id, s)| mission(id, s, &refs, errs))
        .collect::<Vec<_>>();
    let scores = entries::<ScoreSpec>(table, "scores", errs)
        .iter()
        .map(|(id, s)| score(id, s, errs))
        .collect::<Vec<_>>();
    let leaderboards = entries::<LeaderboardSpec>(table, "leaderboards", errs)
        .iter()
        .map(|(id, s)| leaderboard(id, s, settings, points, errs))
        .collect();

    let mut event_types = BTreeSet::new();
    for m in &missions {
        match &m.kind {
            MissionKind::Single { event_types: t }
            | MissionKind::Count { event_types: t, .. }
            | MissionKind::Sum { event_types: t, .. } => event_types.extend(t.iter().cloned()),
            MissionKind::Sequence { steps, .. } => event_types.extend(steps.iter().cloned()),
        }
    }
    for s in &streaks {
        event_types.extend(s.event_types.iter().cloned());
    }
    for s in &scores {
        event_types.extend(s.event_types.iter().cloned());
    }
    for b in &badges {
        if let BadgeMetric::EventCount(t) = &b.metric {
            event_types.insert(t.clone());
        }
    }
    let largest_window_days = scores
        .iter()
        .map(|s| match s.kind {
            ScoreKind::Count { window_days, .. } | ScoreKind::Sum { window_days, .. } => {
                window_days
            }
            ScoreKind::Recency { .. } => 0,
        })
        .chain(tiers.iter().map(|t| t.window_days))
        .max()
        .unwrap_or(0);
    GameParts {
        missions,
        badges,
        streaks,
        tiers,
        scores,
        leaderboards,
        event_types,
        largest_window_days,
    }
}

/// Ids that sections may refer to.
struct Refs<'a> {
    points: &'a BTreeSet<String>,
    streaks: BTreeSet<String>,
    missions: BTreeSet<String>,
    badge_levels: BTreeMap<String, usize>,
    tiers: Option<&'a Tiers>,
}

fn positive_duration(key: String, d: Option<Duration>, errs: &mut Errs) -> Option<Duration> {
    match d {
        Some(d) if d.is_zero() => {
            errs.push(key, "must be above zero");
            None
        }
        other => other,
    }
}

fn event_types(key: String, types: &[String], errs: &mut Errs) -> Vec<String> {
    if types.is_empty() {
        errs.push(key.clone(), "must list at least one event type");
    }
    for (i, t) in types.iter().enumerate() {
        event_type_ref(format!("{key}[{i}]"), Some(t), errs);
    }
    types.to_vec()
}

fn unused(key: String, is_set: bool, kind: &str, errs: &mut Errs) {
    if is_set {
        errs.push(key, format!("is not used by {kind}; remove it"));
    }
}

fn tiers(s: &TiersSpec, points: &BTreeSet<String>, errs: &mut Errs) -> Tiers {
    let point_type = point_type_ref(
        "tiers.point_type".into(),
        s.point_type.as_deref(),
        points,
        errs,
    );
    let window = positive_duration("tiers.window".into(), s.window, errs)
        .unwrap_or(Duration::from_secs(90 * 24 * 3600));
    let hysteresis = s.hysteresis.unwrap_or(0);
    if hysteresis < 0 {
        errs.push("tiers.hysteresis", "must be 0 or more");
    }
    if s.levels.is_empty() {
        errs.push("tiers.levels", "must list at least one tier");
    }
    let mut seen = BTreeSet::new();
    let mut levels = Vec::new();
    for (i, l) in s.levels.iter().enumerate() {
        let k = |f: &str| format!("tiers.levels[{i}].{f}");
        let id = l.id.clone().unwrap_or_default();
        if id.is_empty() {
            errs.push(k("id"), "required");
        } else if !seen.insert(id.clone()) {
            errs.push(k("id"), format!("duplicate tier id '{id}'"));
        }
        let threshold = l.threshold.unwrap_or_else(|| {
            errs.push(k("threshold"), "required");
            0
        });
        if threshold < 0 {
            errs.push(k("threshold"), "must be 0 or more");
        }
        if let Some(prev) = levels.last().map(|p: &TierLevel| p.threshold) {
            if threshold <= prev {
                errs.push(
                    k("threshold"),
                    format!("{threshold} is not above the previous tier's {prev}: thresholds must increase"),
                );
            }
        }
        let multiplier = l.multiplier.unwrap_or(1.0);
        if !multiplier.is_finite() || multiplier <= 0.0 {
            errs.push(k("multiplier"), "must be above 0");
        }
        levels.push(TierLevel {
            id,
            threshold,
            multiplier,
        });
    }
    Tiers {
        point_type,
        window_days: whole_days(window),
        hysteresis: hysteresis.max(0),
        levels,
    }
}

fn streaks(specs: &BTreeMap<String, StreakSpec>, errs: &mut Errs) -> Vec<Streak> {
    specs
        .iter()
        .map(|(id, s)| {
            let k = |f: &str| format!("streaks.{id}.{f}");
            let freezes = s.freezes.unwrap_or(0);
            if freezes < 0 {
                errs.push(k("freezes"), "must be 0 or more");
            }
            let period = positive_duration(k("freeze_period"), s.freeze_period, errs)
                .unwrap_or(Duration::from_secs(30 * 24 * 3600));
            Streak {
                id: id.clone(),
                event_types: event_types(k("event_types"), &s.event_types, errs),
                freezes: u32::try_from(freezes).unwrap_or(0),
                freeze_period_days: whole_days(period),
            }
        })
        .collect()
}

fn badge(id: &str, s: &BadgeSpec, refs: &Refs<'_>, errs: &mut Errs) -> Badge {
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
    let metric = match metric_name {
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
    };
    if s.levels.is_empty() {
        errs.push(k("levels"), "must list at least one level");
    }
    let granted = metric == BadgeMetric::Granted;
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
    Badge {
        id: id.to_string(),
        name: s.name.clone().unwrap_or_else(|| id.to_string()),
        metric,
        levels,
    }
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
        "sequence" => {
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

fn mission(id: &str, s: &MissionSpec, refs: &Refs<'_>, errs: &mut Errs) -> Mission {
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
        |r| {
            let points = match (&r.point_type, r.points) {
                (None, None) => None,
                (pt, amount) => {
                    let pt =
                        point_type_ref(k("reward.point_type"), pt.as_deref(), refs.points, errs);
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
        },
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

fn score(id: &str, s: &ScoreSpec, errs: &mut Errs) -> Score {
    let k = |f: &str| format!("scores.{id}.{f}");
    let kind_name = s.kind.as_deref().unwrap_or("");
    let event_types = event_types(k("event_types"), &s.event_types, errs);
    let windowed = |errs: &mut Errs| {
        let window = positive_duration(k("window"), s.window, errs).unwrap_or_else(|| {
            if s.window.is_none() {
                errs.push(k("window"), format!("required by kind {kind_name}"));
            }
            Duration::from_millis(DAY_MS as u64)
        });
        let saturation = match s.saturation {
            Some(v) if v.is_finite() && v > 0.0 => v,
            Some(v) => {
                errs.push(k("saturation"), format!("{v} must be above 0"));
                1.0
            }
            None => {
                errs.push(
                    k("saturation"),
                    format!("required by kind {kind_name}: the amount that scores 100"),
                );
                1.0
            }
        };
        let curve = match s.curve.as_deref() {
            None | Some("linear") => Curve::Linear,
            Some("sqrt") => Curve::Sqrt,
            Some("log") => Curve::Log,
            Some(o) => {
                errs.push(k("curve"), format!("'{o}' is not one of linear, sqrt, log"));
                Curve::Linear
            }
        };
        unused(
            k("full_days"),
            s.full_days.is_some(),
            &format!("kind {kind_name}"),
            errs,
        );
        unused(
            k("zero_days"),
            s.zero_days.is_some(),
            &format!("kind {kind_name}"),
            errs,
        );
        (whole_days(window), saturation, curve)
    };
    let kind = match kind_name {
        "count" => {
            unused(
                k("value_attribute"),
                s.value_attribute.is_some(),
                "kind count",
                errs,
            );
            let (window_days, saturation, curve) = windowed(errs);
            ScoreKind::Count {
                window_days,
                saturation,
                curve,
            }
        }
        "sum" => {
            let (window_days, saturation, curve) = windowed(errs);
            ScoreKind::Sum {
                window_days,
                saturation,
                curve,
                unit: unit_source(s.value_attribute.as_ref()),
            }
        }
        "recency" => {
            for (f, set) in [
                ("window", s.window.is_some()),
                ("saturation", s.saturation.is_some()),
                ("curve", s.curve.is_some()),
                ("value_attribute", s.value_attribute.is_some()),
            ] {
                unused(k(f), set, "kind recency", errs);
            }
            let full_days = s.full_days.unwrap_or(0);
            let zero_days = s.zero_days.unwrap_or(30);
            if full_days < 0 {
                errs.push(k("full_days"), "must be 0 or more");
            }
            if zero_days <= full_days {
                errs.push(
                    k("zero_days"),
                    format!("{zero_days} must be above full_days ({full_days})"),
                );
            }
            ScoreKind::Recency {
                full_days,
                zero_days,
            }
        }
        other => {
            errs.push(
                k("kind"),
                format!("'{other}' is not one of count, sum, recency"),
            );
            ScoreKind::Recency {
                full_days: 0,
                zero_days: 1,
            }
        }
    };
    Score {
        id: id.to_string(),
        event_types,
        kind,
    }
}

fn leaderboard(
    id: &str,
    s: &LeaderboardSpec,
    settings: &Settings,
    points: &BTreeSet<String>,
    errs: &mut Errs,
) -> Leaderboard {
    let k = |f: &str| format!("leaderboards.{id}.{f}");
    let point_type = point_type_ref(k("point_type"), s.point_type.as_deref(), points, errs);
    if s.periods.is_empty() {
        errs.push(
            k("periods"),
            "must list at least one of daily, weekly, monthly, all_time",
        );
    }
    let mut periods = Vec::new();
    for (i, p) in s.periods.iter().enumerate() {
        match Period::parse(p) {
            None => errs.push(
                format!("leaderboards.{id}.periods[{i}]"),
                format!("'{p}' is not one of daily, weekly, monthly, all_time"),
            ),
            Some(p) if periods.contains(&p) => errs.push(
                format!("leaderboards.{id}.periods[{i}]"),
                format!("duplicate period '{}'", p.name()),
            ),
            Some(p) => periods.push(p),
        }
    }
    let top_n = s.top_n.unwrap_or(100);
    if !(1..=10_000).contains(&top_n) {
        errs.push(k("top_n"), format!("{top_n} must be between 1 and 10000"));
    }
    let tz = s
        .time_zone
        .as_deref()
        .and_then(|n| time_zone(&k("time_zone"), n, errs))
        .unwrap_or(settings.time_zone);
    Leaderboard {
        id: id.to_string(),
        point_type,
        periods,
        top_n: top_n.clamp(1, 10_000) as usize,
        time_zone: tz,
    }
}
