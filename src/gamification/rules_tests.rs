//! Tests of loading and validating rules: the bundled file, defaults, versioning, and
//! every kind of error reported at once with its key path.

use std::time::Duration;

use chrono_tz::Tz;

use super::rules::*;
use crate::domain::event::{AttrValue, CanonicalEvent};

fn keys(text: &str) -> Vec<String> {
    let errs = Rules::from_toml_str(text)
        .expect_err("rules should be invalid")
        .0;
    errs.into_iter()
        .map(|e| format!("{}: {}", e.key, e.message))
        .collect()
}

const MINIMAL: &str = r#"
    [point_types.xp]
    [points.login]
    event_type = "login"
    point_type = "xp"
    base = 5
"#;

#[test]
fn bundled_rules_validate_and_cover_the_generator() {
    let rules = Rules::bundled().unwrap_or_else(|e| panic!("{e}"));
    assert!(rules.version.starts_with("2024.06-1+"), "{}", rules.version);
    assert_eq!(rules.settings.time_zone, chrono_tz::Africa::Nairobi);
    // Every event type src/generator.rs emits is known, so strict mode would accept it.
    for t in [
        "data_usage",
        "voice_call",
        "recharge",
        "kyc_update",
        "plan_downgrade",
        "complaint",
        "order_placed",
        "login",
        "product_viewed",
        "payment_failed",
        "cart_abandoned",
        "email_opened",
        "post_liked",
        "post_created",
        "user_login",
        "video_uploaded",
    ] {
        assert!(
            rules.knows_event_type(t),
            "{t} unknown to the bundled rules"
        );
    }
    assert!(rules.retention_days >= 90);
}

#[test]
fn defaults_apply_when_settings_are_absent() {
    let rules = Rules::from_toml_str(MINIMAL).unwrap();
    assert_eq!(rules.settings.time_zone, Tz::UTC);
    assert_eq!(rules.settings.lateness_grace, Duration::from_secs(86_400));
    assert_eq!(
        rules.settings.dedupe_horizon,
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(rules.settings.late_policy, LatePolicy::DeadLetter);
    assert!(!rules.settings.strict_event_types);
    assert_eq!(rules.version.len(), 8, "hash only: {}", rules.version);
}

#[test]
fn any_edit_changes_the_version() {
    let a = Rules::from_toml_str(MINIMAL).unwrap().version;
    let b = Rules::from_toml_str(&MINIMAL.replace("base = 5", "base = 6"))
        .unwrap()
        .version;
    assert_ne!(a, b);
}

#[test]
fn syntax_errors_are_reported() {
    let k = keys("[points.x\nbase = ");
    assert_eq!(k.len(), 1);
    assert!(k[0].starts_with("<toml>"), "{k:?}");
}

#[test]
fn every_error_is_reported_at_once_with_its_key_path() {
    let text = r#"
        colour = "blue"
        [settings]
        time_zone = "Mars/Olympus"
        late_policy = "shred"
        lateness_grace = "8d"
        [point_types.xp]
        daily_cap = -1
        [points.a]
        event_type = "login"
        point_type = "gold_coins"
        base = 1
        tier_multipliers = { diamond = 2.0 }
        [points.b]
        event_type = "login"
        point_type = "xp"
        bonus = 3
        [missions.first_recharge]
        kind = "single"
        event_types = ["recharge"]
        window = { from = "2024-02-01T00:00:00Z", to = "2024-01-01T00:00:00Z" }
        reward = { point_type = "xp", points = 10, badge = "nope" }
        [missions.seq]
        kind = "sequence"
        steps = []
        min_tier = "gold"
        [badges.b1]
        metric = "event_count"
        event_type = "login"
        levels = [{ threshold = 10 }, { threshold = 10 }]
        [badges.b2]
        metric = "longest_streak"
        streak = "missing"
        levels = [{ threshold = 3 }]
        [tiers]
        point_type = "xp"
        levels = [{ id = "a", threshold = 100 }, { id = "a", threshold = 50 }]
        [leaderboards.top]
        point_type = "xp"
        periods = ["hourly"]
        time_zone = "Nowhere/City"
    "#;
    let k = keys(text);
    let expected = [
        "colour: unknown section",
        "settings.time_zone: 'Mars/Olympus' is not an IANA time zone name",
        "settings.late_policy: 'shred'",
        "settings.dedupe_horizon: must be at least settings.lateness_grace",
        "point_types.xp.daily_cap: -1 is negative",
        "points.a.tier_multipliers.diamond: unknown tier 'diamond'",
        "points.a.point_type: unknown point type 'gold_coins'",
        "points.b.bonus: unknown key `bonus`",
        // Found once the typo is set aside: a typo does not hide its neighbours' problems.
        "points.b: earns nothing",
        "missions.first_recharge.window.to: before window.from",
        "missions.first_recharge.reward.badge: unknown badge 'nope'",
        "missions.seq.steps: an empty sequence",
        "missions.seq.min_tier: unknown tier 'gold'",
        "badges.b1.levels[1].threshold: 10 is not above the previous level's 10",
        "badges.b2.streak: unknown streak 'missing'",
        "tiers.levels[1].id: duplicate tier id 'a'",
        "tiers.levels[1].threshold: 50 is not above",
        "leaderboards.top.periods[0]: 'hourly' is not one of",
        "leaderboards.top.time_zone: 'Nowhere/City'",
    ];
    for e in expected {
        assert!(
            k.iter().any(|m| m.starts_with(e)),
            "missing {e:?} in {k:#?}"
        );
    }
    assert_eq!(k.len(), expected.len(), "{k:#?}");
}

#[test]
fn kind_specific_fields_are_checked() {
    let text = r#"
        [point_types.xp]
        [missions.m1]
        kind = "count"
        event_types = ["login"]
        [missions.m2]
        kind = "single"
        event_types = ["login"]
        target = 3
        cooldown = "1d"
        [missions.m3]
        kind = "gamble"
        [scores.s1]
        kind = "recency"
        event_types = ["login"]
        full_days = 10
        zero_days = 5
        [scores.s2]
        kind = "sum"
        event_types = []
        window = "30d"
    "#;
    let k = keys(text);
    for e in [
        "missions.m1.target: required by kind count",
        "missions.m2.target: is not used by kind single",
        "missions.m2.cooldown: is not used by a one-off mission",
        "missions.m3.kind: 'gamble' is not one of",
        "scores.s1.zero_days: 5 must be above full_days (10)",
        "scores.s2.event_types: must list at least one event type",
        "scores.s2.saturation: required by kind sum",
    ] {
        assert!(
            k.iter().any(|m| m.starts_with(e)),
            "missing {e:?} in {k:#?}"
        );
    }
}

#[test]
fn filters_and_units_read_attributes() {
    let event = CanonicalEvent {
        event_id: "e".into(),
        customer_id: "c".into(),
        event_type: "data_usage".into(),
        source: "in".into(),
        occurred_at: 0,
        value: Some(12.5),
        attributes: vec![
            ("metadata.network".into(), AttrValue::Str("5G".into())),
            ("data.items".into(), AttrValue::Int(3)),
            ("data.price".into(), AttrValue::Str("4.25".into())),
        ],
        origin: Default::default(),
    };
    let f = |path: &str, equals| Filter {
        path: path.into(),
        equals,
    };
    assert!(f("metadata.network", FilterValue::Str("5G".into())).matches(&event));
    assert!(!f("metadata.network", FilterValue::Str("4G".into())).matches(&event));
    assert!(f("data.items", FilterValue::Float(3.0)).matches(&event));
    assert!(!f("missing", FilterValue::Bool(true)).matches(&event));
    assert_eq!(UnitSource::Value.units(&event), 12.5);
    assert_eq!(
        UnitSource::Attribute("data.items".into()).units(&event),
        3.0
    );
    assert_eq!(
        UnitSource::Attribute("data.price".into()).units_milli(&event),
        4250
    );
    assert_eq!(UnitSource::Attribute("missing".into()).units(&event), 0.0);
}
