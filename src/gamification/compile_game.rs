//! Compiling the game sections — tiers, streaks, badges, missions, scores, leaderboards —
//! with their cross-references checked (a mission's badge must exist, a badge's streak
//! must exist, thresholds must increase...).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::compile_check::{
    entries, event_types, point_type_ref, positive_duration, section, time_zone, unit_source,
    unused, Errs, Refs,
};
use super::compile_missions;
use super::rules::{
    Badge, BadgeMetric, Curve, Leaderboard, Mission, MissionKind, Score, ScoreKind, Settings,
    Streak, TierLevel, Tiers,
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
        .map(|(id, s)| compile_missions::badge(id, s, &refs, errs))
        .collect::<Vec<_>>();
    let missions = mission_specs
        .iter()
        .map(|(id, s)| compile_missions::mission(id, s, &refs, errs))
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

fn score(id: &str, s: &ScoreSpec, errs: &mut Errs) -> Score {
    let k = |f: &str| format!("scores.{id}.{f}");
    let kind_name = s.kind.as_deref().unwrap_or("");
    let event_types = event_types(k("event_types"), &s.event_types, errs);
    let kind = match kind_name {
        "count" => {
            unused(
                k("value_attribute"),
                s.value_attribute.is_some(),
                "kind count",
                errs,
            );
            let (window_days, saturation, curve) = windowed(id, s, errs);
            ScoreKind::Count {
                window_days,
                saturation,
                curve,
            }
        }
        "sum" => {
            let (window_days, saturation, curve) = windowed(id, s, errs);
            ScoreKind::Sum {
                window_days,
                saturation,
                curve,
                unit: unit_source(s.value_attribute.as_ref()),
            }
        }
        "recency" => recency(id, s, errs),
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
    let min_change = match s.min_change {
        None => 0.0,
        Some(v) if v.is_finite() && (0.0..=100.0).contains(&v) => v,
        Some(v) => {
            errs.push(k("min_change"), format!("{v} must be within 0..100"));
            0.0
        }
    };
    Score {
        id: id.to_string(),
        event_types,
        kind,
        min_change,
    }
}

/// The window (whole days), saturation and curve of a `count` or `sum` score.
fn windowed(id: &str, s: &ScoreSpec, errs: &mut Errs) -> (i32, f64, Curve) {
    let k = |f: &str| format!("scores.{id}.{f}");
    let kind_name = s.kind.as_deref().unwrap_or("");
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
}

/// A `recency` score: full marks up to `full_days` since the last event, none from
/// `zero_days`.
fn recency(id: &str, s: &ScoreSpec, errs: &mut Errs) -> ScoreKind {
    let k = |f: &str| format!("scores.{id}.{f}");
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
