//! Behaviour tests of [`super::eval::apply`]: scenarios per feature, then properties over
//! random streams (duplicates, shuffles within grace, interleavings of customers).

use chrono::DateTime;

use super::eval::{apply, Applied, Effects};
use super::output::GameOutput;
use super::rules::Rules;
use super::state::CustomerGameState;
use crate::domain::event::{AttrValue, CanonicalEvent};

pub(super) fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

pub(super) fn event(
    id: &str,
    customer: &str,
    event_type: &str,
    at: i64,
    value: Option<f64>,
) -> CanonicalEvent {
    CanonicalEvent {
        event_id: id.into(),
        customer_id: customer.into(),
        event_type: event_type.into(),
        source: "test".into(),
        occurred_at: at,
        value,
        attributes: Vec::new(),
        origin: Default::default(),
    }
}

fn effects(a: Applied) -> Effects {
    match a {
        Applied::Applied(e) => e,
        other => panic!("expected Applied, got {other:?}"),
    }
}

fn of_type<'a>(e: &'a Effects, t: &str) -> Vec<&'a GameOutput> {
    e.outputs.iter().filter(|o| o.output_type == t).collect()
}

fn json(o: &GameOutput) -> serde_json::Value {
    serde_json::from_slice(&o.to_json_bytes()).unwrap()
}

const RULES: &str = r#"
rules_version = "test"
[settings]
time_zone = "Africa/Nairobi"
customer_time_zone_attribute = "tz"
lateness_grace = "24h"
[point_types.xp]
[point_types.reward]
daily_cap = 30
[points.login]
event_type = "login"
point_type = "xp"
base = 5
daily_cap = 5
[points.data]
event_type = "data_usage"
point_type = "xp"
per_unit = 0.1
[points.recharge]
event_type = "recharge"
point_type = "reward"
per_unit = 1
[points.five_g]
event_type = "data_usage"
point_type = "xp"
base = 2
when = { network = "5G" }
[missions.three_logins]
kind = "count"
event_types = ["login"]
target = 3
reward = { point_type = "reward", points = 7, badge = "welcome" }
[missions.recharge_then_bundle]
kind = "sequence"
steps = ["recharge", "bundle_purchase"]
within = "2d"
repeatable = true
cooldown = "1d"
reward = { point_type = "xp", points = 50 }
[missions.summer]
kind = "single"
event_types = ["login"]
window = { from = "2024-06-01T00:00:00Z", to = "2024-09-01T00:00:00Z" }
[badges.welcome]
metric = "granted"
levels = [{ name = "Welcome" }]
[badges.logins]
metric = "event_count"
event_type = "login"
levels = [{ threshold = 2 }, { threshold = 4 }]
[streaks.daily]
event_types = ["login"]
freezes = 1
[tiers]
point_type = "xp"
window = "30d"
hysteresis = 10
levels = [{ id = "silver", threshold = 100, multiplier = 2.0 }]
[scores.recency]
kind = "recency"
event_types = ["login"]
full_days = 1
zero_days = 11
[scores.usage]
kind = "sum"
event_types = ["data_usage"]
window = "7d"
saturation = 1000
[leaderboards.xp]
point_type = "xp"
periods = ["daily", "all_time"]
"#;

fn rules() -> Rules {
    Rules::from_toml_str(RULES).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn points_duplicates_and_late_events() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let t = ms("2024-01-15T10:00:00Z");
    let e = effects(apply(
        &r,
        &mut s,
        &event("e1", "c", "data_usage", t, Some(123.0)),
        t,
    ));
    let awarded = of_type(&e, "points_awarded");
    assert_eq!(awarded.len(), 1);
    let v = json(awarded[0]);
    assert_eq!(
        (v["points"].as_i64(), v["total"].as_i64()),
        (Some(12), Some(12))
    );
    assert_eq!(
        v["rules_version"].as_str().unwrap().split('+').next(),
        Some("test")
    );
    assert_eq!(
        apply(
            &r,
            &mut s,
            &event("e1", "c", "data_usage", t, Some(123.0)),
            t
        ),
        Applied::Duplicate
    );
    let late = apply(
        &r,
        &mut s,
        &event("e2", "c", "login", t - 25 * 3_600_000, None),
        t,
    );
    assert_eq!(
        late,
        Applied::Late {
            behind_ms: 25 * 3_600_000
        }
    );
    assert_eq!(
        s.points_of("xp"),
        12,
        "neither a duplicate nor a late event counts"
    );
    assert_eq!(s.profile.events, 1);
    assert_eq!(
        apply(
            &r,
            &mut s,
            &event("e1", "c", "data_usage", t, Some(123.0)),
            t + 25 * 3_600_000
        ),
        Applied::Duplicate,
        "a replay beyond the grace period but within the dedupe horizon is a duplicate, not late"
    );
}

#[test]
fn attribute_filters_select_rules() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let t = ms("2024-01-15T10:00:00Z");
    let mut e = event("e1", "c", "data_usage", t, Some(10.0));
    e.attributes
        .push(("network".into(), AttrValue::Str("5G".into())));
    apply(&r, &mut s, &e, t);
    assert_eq!(s.points_of("xp"), 1 + 2);
}

#[test]
fn caps_apply_per_local_day_in_event_time() {
    let r = rules();
    let mut s = CustomerGameState::default();
    // 20:30 and 21:30 UTC are 23:30 on the 15th and 00:30 on the 16th in Nairobi.
    let day1 = ms("2024-01-15T20:30:00Z");
    let day2 = ms("2024-01-15T21:30:00Z");
    let r1 = effects(apply(
        &r,
        &mut s,
        &event("r1", "c", "recharge", day1, Some(25.0)),
        day1,
    ));
    let r2 = effects(apply(
        &r,
        &mut s,
        &event("r2", "c", "recharge", day1, Some(25.0)),
        day1,
    ));
    let r3 = effects(apply(
        &r,
        &mut s,
        &event("r3", "c", "recharge", day2, Some(25.0)),
        day2,
    ));
    // A late event inside grace goes to its own (full) day, not today's.
    let r4 = effects(apply(
        &r,
        &mut s,
        &event("r4", "c", "recharge", day1, Some(25.0)),
        day2,
    ));
    let pts = |e: &Effects| {
        of_type(e, "points_awarded")
            .iter()
            .map(|o| json(o)["points"].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!((pts(&r1), pts(&r2), pts(&r3), pts(&r4)), (25, 5, 25, 0));
    assert_eq!(json(of_type(&r2, "points_awarded")[0])["capped"], true);
    assert_eq!(s.points_of("reward"), 55);
}

#[test]
fn customer_zone_comes_from_the_event_when_given() {
    let r = rules();
    let t = ms("2024-01-15T21:30:00Z");
    let mut utc = event("e", "c", "login", t, None);
    utc.attributes
        .push(("tz".into(), AttrValue::Str("UTC".into())));
    assert_eq!(r.customer_time_zone(&utc), chrono_tz::Tz::UTC);
    let mut bad = utc.clone();
    bad.attributes[0].1 = AttrValue::Str("Not/AZone".into());
    assert_eq!(r.customer_time_zone(&bad), chrono_tz::Africa::Nairobi);
    let mut s = CustomerGameState::default();
    let e = effects(apply(&r, &mut s, &utc, t));
    let streak = json(of_type(&e, "streak_updated")[0]);
    assert_eq!(streak["day"], "2024-01-15", "Nairobi would say the 16th");
}

#[test]
fn count_mission_rewards_points_and_badge_once() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let mut all = Vec::new();
    for d in 0..4 {
        let t = ms("2024-01-15T10:00:00Z") + d * 86_400_000;
        all.push(effects(apply(
            &r,
            &mut s,
            &event(&format!("l{d}"), "c", "login", t, None),
            t,
        )));
    }
    let progress: Vec<f64> = all
        .iter()
        .flat_map(|e| of_type(e, "mission_progress"))
        .map(|o| json(o)["progress"].as_f64().unwrap())
        .collect();
    assert_eq!(progress, [1.0, 2.0]);
    let done = of_type(&all[2], "mission_completed");
    assert_eq!(done.len(), 1);
    assert_eq!(json(done[0])["reward_points"], 7);
    let badges: Vec<String> = all[2]
        .outputs
        .iter()
        .filter(|o| o.output_type == "badge_awarded")
        .map(|o| json(o)["badge"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(badges, ["welcome"]);
    assert!(of_type(&all[3], "mission_completed").is_empty(), "one-off");
    assert!(s.missions_done.contains_key("three_logins"));
    assert!(
        !s.missions.contains_key("three_logins"),
        "finished one-off compacts"
    );
    assert_eq!(s.points_of("reward"), 7);
    assert_eq!(s.badges.get("logins"), Some(&2));
}

#[test]
fn sequence_mission_with_time_limit_and_cooldown() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let h = 3_600_000;
    let t0 = ms("2024-01-15T10:00:00Z");
    let mut at = |id: &str, ty: &str, t: i64| {
        effects(apply(&r, &mut s, &event(id, "c", ty, t, Some(1.0)), t))
    };
    at("a", "recharge", t0);
    let late_step = at("b", "bundle_purchase", t0 + 49 * h);
    assert!(
        of_type(&late_step, "mission_completed").is_empty(),
        "past `within`"
    );
    at("c", "recharge", t0 + 50 * h);
    let done = at("d", "bundle_purchase", t0 + 51 * h);
    assert_eq!(of_type(&done, "mission_completed").len(), 1);
    at("e", "recharge", t0 + 52 * h);
    let cooling = at("f", "bundle_purchase", t0 + 53 * h);
    assert!(
        of_type(&cooling, "mission_completed").is_empty(),
        "within the cooldown"
    );
    assert_eq!(s.missions["recharge_then_bundle"].completions, 1);
}

#[test]
fn mission_windows_use_event_time() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let before = ms("2024-05-31T23:59:59Z");
    let e = effects(apply(
        &r,
        &mut s,
        &event("a", "c", "login", before, None),
        before,
    ));
    assert!(!e.outputs.iter().any(|o| json(o)["mission"] == "summer"));
    let inside = ms("2024-06-01T00:00:00Z");
    let e = effects(apply(
        &r,
        &mut s,
        &event("b", "c", "login", inside, None),
        inside,
    ));
    assert!(e.outputs.iter().any(|o| json(o)["mission"] == "summer"));
}

#[test]
fn streaks_bridge_a_missed_day_and_accept_late_days() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let d = |n: i64| ms("2024-01-15T09:00:00Z") + n * 86_400_000;
    for (id, day) in [("a", 0), ("b", 1), ("c", 3)] {
        apply(&r, &mut s, &event(id, "c", "login", d(day), None), d(day));
    }
    assert_eq!(s.streaks["daily"].now.current, 3, "day 2 frozen");
    assert_eq!(s.streaks["daily"].freezes_used(), 1);
    // Day 2 arrives late (within grace): it was active after all, the freeze is returned.
    let e = effects(apply(
        &r,
        &mut s,
        &event("late", "c", "login", d(2) + 3_600_000 * 3, None),
        d(3),
    ));
    let v = json(of_type(&e, "streak_updated")[0]);
    assert_eq!(
        (v["current"].as_u64(), v["freezes_used"].as_u64()),
        (Some(4), Some(0))
    );
}

#[test]
fn tiers_promote_multiply_and_demote_with_hysteresis() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let t0 = ms("2024-01-01T10:00:00Z");
    let e = effects(apply(
        &r,
        &mut s,
        &event("a", "c", "data_usage", t0, Some(1000.0)),
        t0,
    ));
    let tier = json(of_type(&e, "tier_changed")[0]);
    assert_eq!(
        (tier["to"].as_str(), tier["direction"].as_str()),
        (Some("silver"), Some("promoted"))
    );
    apply(
        &r,
        &mut s,
        &event("b", "c", "data_usage", t0, Some(100.0)),
        t0,
    );
    assert_eq!(s.points_of("xp"), 100 + 20, "silver doubles points");
    // 31 days later the window holds only the new event: 2 × 9 = 18 < 100 - 10.
    let t1 = t0 + 31 * 86_400_000;
    let e = effects(apply(
        &r,
        &mut s,
        &event("c", "c", "data_usage", t1, Some(90.0)),
        t1,
    ));
    let tier = json(of_type(&e, "tier_changed")[0]);
    assert_eq!(
        (tier["to"].clone(), tier["direction"].as_str()),
        (serde_json::Value::Null, Some("demoted"))
    );
}

#[test]
fn scores_follow_windows_and_recency() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let t0 = ms("2024-01-01T10:00:00Z");
    apply(&r, &mut s, &event("a", "c", "login", t0, None), t0);
    apply(
        &r,
        &mut s,
        &event("b", "c", "data_usage", t0, Some(500.0)),
        t0,
    );
    assert_eq!((s.scores["recency"], s.scores["usage"]), (100.0, 50.0));
    let t1 = t0 + 6 * 86_400_000;
    let e = effects(apply(
        &r,
        &mut s,
        &event("c", "c", "data_usage", t1, Some(100.0)),
        t1,
    ));
    assert_eq!((s.scores["recency"], s.scores["usage"]), (50.0, 60.0));
    assert_eq!(of_type(&e, "score_updated").len(), 2);
    let t2 = t0 + 8 * 86_400_000;
    apply(
        &r,
        &mut s,
        &event("d", "c", "data_usage", t2, Some(0.0)),
        t2,
    );
    assert_eq!(s.scores["usage"], 10.0, "day 0 left the 7-day window");
}

#[test]
fn leaderboard_updates_carry_new_totals() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let t = ms("2024-01-15T10:00:00Z");
    apply(&r, &mut s, &event("a", "c", "data_usage", t, Some(50.0)), t);
    let e = effects(apply(
        &r,
        &mut s,
        &event("b", "c", "data_usage", t, Some(50.0)),
        t,
    ));
    let got: Vec<(String, i64)> = e
        .leaderboard
        .iter()
        .map(|u| (u.period.clone(), u.total))
        .collect();
    assert_eq!(
        got,
        [
            ("all_time".to_string(), 10),
            ("daily:2024-01-15".to_string(), 10)
        ]
    );
    assert_eq!(e.leaderboard[0].key(), "xp|all_time");
}

#[test]
fn strict_mode_rejects_unknown_types_without_touching_state() {
    let strict = Rules::from_toml_str(&RULES.replace(
        "lateness_grace",
        "strict_event_types = true\nlateness_grace",
    ))
    .unwrap();
    let mut s = CustomerGameState::default();
    let t = ms("2024-01-15T10:00:00Z");
    assert_eq!(
        apply(&strict, &mut s, &event("a", "c", "teleport", t, None), t),
        Applied::UnknownEventType
    );
    assert_eq!(s, CustomerGameState::default());
    let e = effects(apply(
        &rules(),
        &mut s,
        &event("a", "c", "teleport", t, None),
        t,
    ));
    assert!(of_type(&e, "points_awarded").is_empty());
    assert_eq!(s.profile.unknown_type_events, 1);
}

#[test]
fn state_stays_bounded_over_a_year() {
    let r = rules();
    let mut s = CustomerGameState::default();
    let t0 = ms("2024-01-01T10:00:00Z");
    for i in 0..365 * 4 {
        let t = t0 + i * 6 * 3_600_000;
        let ty = ["login", "data_usage", "recharge", "bundle_purchase"][i as usize % 4];
        apply(
            &r,
            &mut s,
            &event(&format!("e{i}"), "c", ty, t, Some(10.0)),
            t,
        );
    }
    assert!(
        s.days.day_count() <= r.retention_days as usize + 1,
        "{}",
        s.days.day_count()
    );
    assert!(s.seen.len() <= 4 * 8, "{}", s.seen.len());
    assert!(s.board_totals.len() <= 3, "{:?}", s.board_totals);
    let bytes = bincode::serde::encode_to_vec(&s, bincode::config::standard()).unwrap();
    assert!(bytes.len() < 8_000, "{} bytes", bytes.len());
}

#[test]
fn bundled_rules_reward_every_generator_shape() {
    let r = Rules::bundled().unwrap();
    let t = ms("2024-01-15T10:00:00Z");
    for (ty, value) in [
        ("data_usage", 500.0),
        ("voice_call", 300.0),
        ("recharge", 20.0),
        ("kyc_update", 0.0),
        ("order_placed", 99.99),
        ("login", 0.0),
        ("product_viewed", 0.0),
        ("email_opened", 0.0),
        ("post_liked", 0.0),
        ("post_created", 0.0),
        ("user_login", 0.0),
        ("video_uploaded", 0.0),
    ] {
        let mut s = CustomerGameState::default();
        let e = effects(apply(&r, &mut s, &event("e", "c", ty, t, Some(value)), t));
        assert!(
            !of_type(&e, "points_awarded").is_empty(),
            "{ty} earns nothing"
        );
    }
}
