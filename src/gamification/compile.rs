//! Turns a rules file into [`Rules`], collecting every problem with its key path.
//!
//! The file is first parsed as a plain TOML table (a syntax error stops here: nothing after
//! it can be trusted), then each section and each entry is deserialized on its own, so that
//! shape errors in `missions.a` and `badges.b` are reported together, followed by the
//! semantic checks (references, thresholds, windows) in [`super::compile_game`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono_tz::Tz;

use super::compile_check::{
    entries, event_type_ref, filters, non_negative_cap, point_type_ref, section, time_zone,
    unit_source, Errs,
};
use super::compile_game;
use super::rules::{LatePolicy, PointType, PointsRule, RuleError, RuleErrors, Rules, Settings};
use super::spec::{PointTypeSpec, PointsRuleSpec, SettingsSpec};
use super::time::whole_days;

const SECTIONS: [&str; 10] = [
    "rules_version",
    "settings",
    "point_types",
    "points",
    "missions",
    "badges",
    "streaks",
    "tiers",
    "scores",
    "leaderboards",
];

pub(super) fn compile(text: &str) -> Result<Rules, RuleErrors> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        RuleErrors(vec![RuleError {
            key: "<toml>".into(),
            message: e.to_string().trim().to_string(),
        }])
    })?;
    let mut errs = Errs::default();
    for key in table.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            errs.push(
                key.clone(),
                format!("unknown section (expected one of {})", SECTIONS.join(", ")),
            );
        }
    }
    let declared_version = match table.get("rules_version") {
        None => None,
        Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(_) => {
            errs.push("rules_version", "must be a non-empty string");
            None
        }
    };
    let settings_spec: SettingsSpec = section(&table, "settings", &mut errs).unwrap_or_default();
    let settings = settings(&settings_spec, &mut errs);
    let point_types = point_types(&entries(&table, "point_types", &mut errs), &mut errs);
    let known_points: BTreeSet<String> = point_types.iter().map(|p| p.id.clone()).collect();
    let game = compile_game::compile_game(&table, &settings, &known_points, &mut errs);
    let tier_ids: BTreeSet<String> = game
        .tiers
        .iter()
        .flat_map(|t| t.levels.iter().map(|l| l.id.clone()))
        .collect();
    let points = points_rules(
        &entries(&table, "points", &mut errs),
        &known_points,
        &tier_ids,
        &mut errs,
    );
    if !errs.0.is_empty() {
        // Sections are checked in dependency order; report them in the file's usual order.
        let rank = |e: &RuleError| {
            let section = e.key.split(['.', '[']).next().unwrap_or("");
            SECTIONS.iter().position(|s| *s == section).unwrap_or(0)
        };
        errs.0.sort_by_key(rank);
        return Err(RuleErrors(errs.0));
    }
    let mut known_event_types: BTreeSet<String> =
        points.iter().map(|r| r.event_type.clone()).collect();
    known_event_types.extend(game.event_types.iter().cloned());
    let grace_days = whole_days(settings.lateness_grace);
    let retention_days = game
        .largest_window_days
        .max(7)
        .saturating_add(grace_days + 2);
    Ok(Rules {
        version: version(declared_version.as_deref(), text),
        settings,
        point_types,
        points,
        missions: game.missions,
        badges: game.badges,
        streaks: game.streaks,
        tiers: game.tiers,
        scores: game.scores,
        leaderboards: game.leaderboards,
        known_event_types,
        retention_days,
    })
}

/// `<declared>+<hash>` or `<hash>`: the hash makes any edit visible in outputs even when
/// the operator forgot to bump `rules_version`.
fn version(declared: Option<&str>, text: &str) -> String {
    let hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes()) >> 32;
    match declared {
        Some(v) => format!("{v}+{hash:08x}"),
        None => format!("{hash:08x}"),
    }
}

fn settings(s: &SettingsSpec, errs: &mut Errs) -> Settings {
    let time_zone = s
        .time_zone
        .as_deref()
        .and_then(|n| time_zone("settings.time_zone", n, errs))
        .unwrap_or(Tz::UTC);
    let late_policy = match s.late_policy.as_deref() {
        None | Some("dead_letter") => LatePolicy::DeadLetter,
        Some("drop") => LatePolicy::Drop,
        Some(other) => {
            errs.push(
                "settings.late_policy",
                format!("'{other}' is not one of dead_letter, drop"),
            );
            LatePolicy::DeadLetter
        }
    };
    let lateness_grace = s.lateness_grace.unwrap_or(Duration::from_secs(24 * 3600));
    let dedupe_horizon = s
        .dedupe_horizon
        .unwrap_or(Duration::from_secs(7 * 24 * 3600));
    if dedupe_horizon < lateness_grace {
        errs.push(
            "settings.dedupe_horizon",
            "must be at least settings.lateness_grace, or a repeat arriving within grace \
             would be counted twice",
        );
    }
    if let Some(attr) = &s.customer_time_zone_attribute {
        if attr.trim().is_empty() {
            errs.push("settings.customer_time_zone_attribute", "must not be empty");
        }
    }
    Settings {
        time_zone,
        customer_time_zone_attribute: s.customer_time_zone_attribute.clone(),
        lateness_grace,
        late_policy,
        dedupe_horizon,
        strict_event_types: s.strict_event_types.unwrap_or(false),
    }
}

fn point_types(specs: &BTreeMap<String, PointTypeSpec>, errs: &mut Errs) -> Vec<PointType> {
    specs
        .iter()
        .map(|(id, s)| PointType {
            id: id.clone(),
            description: s.description.clone().unwrap_or_default(),
            daily_cap: non_negative_cap(format!("point_types.{id}.daily_cap"), s.daily_cap, errs),
            weekly_cap: non_negative_cap(
                format!("point_types.{id}.weekly_cap"),
                s.weekly_cap,
                errs,
            ),
        })
        .collect()
}

fn finite_non_negative(key: String, v: Option<f64>, errs: &mut Errs) -> f64 {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => {
            errs.push(key, format!("{x} must be a finite number, 0 or more"));
            0.0
        }
        Some(x) => x,
        None => 0.0,
    }
}

fn points_rules(
    specs: &BTreeMap<String, PointsRuleSpec>,
    known_points: &BTreeSet<String>,
    tier_ids: &BTreeSet<String>,
    errs: &mut Errs,
) -> Vec<PointsRule> {
    let mut rules = Vec::new();
    for (id, s) in specs {
        let k = |f: &str| format!("points.{id}.{f}");
        let base = finite_non_negative(k("base"), s.base, errs);
        let per_unit = finite_non_negative(k("per_unit"), s.per_unit, errs);
        if s.base.unwrap_or(0.0) == 0.0 && s.per_unit.unwrap_or(0.0) == 0.0 {
            errs.push(
                format!("points.{id}"),
                "earns nothing: set base or per_unit above 0",
            );
        }
        if s.unit_attribute.is_some() && s.per_unit.is_none() {
            errs.push(k("unit_attribute"), "has no effect without per_unit");
        }
        for (tier, m) in &s.tier_multipliers {
            if !tier_ids.contains(tier) {
                errs.push(
                    k(&format!("tier_multipliers.{tier}")),
                    format!("unknown tier '{tier}'"),
                );
            } else if !m.is_finite() || *m <= 0.0 {
                errs.push(k(&format!("tier_multipliers.{tier}")), "must be above 0");
            }
        }
        rules.push(PointsRule {
            id: id.clone(),
            event_type: event_type_ref(k("event_type"), s.event_type.as_deref(), errs),
            point_type: point_type_ref(
                k("point_type"),
                s.point_type.as_deref(),
                known_points,
                errs,
            ),
            base,
            per_unit,
            unit: unit_source(s.unit_attribute.as_ref()),
            when: filters(&format!("points.{id}"), &s.when, errs),
            daily_cap: non_negative_cap(k("daily_cap"), s.daily_cap, errs),
            weekly_cap: non_negative_cap(k("weekly_cap"), s.weekly_cap, errs),
            apply_tier_multiplier: s.apply_tier_multiplier.unwrap_or(true),
            tier_multipliers: s.tier_multipliers.clone(),
        });
    }
    rules
}
