//! A total for a board period that arrives after the period's final ranking was published
//! (sent by a game task whose stream time lags the leaderboard task's): the period stays
//! closed, so its next snapshot is final again. This guards the leaderboard processor's
//! copy of decoded boards (issue 15): a copy not refreshed after the close would publish
//! `"final": false` for a closed period.

use std::sync::Arc;

use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};
use scorestream::gamification::output::LeaderboardUpdate;
use scorestream::gamification::Rules;
use scorestream::topology;

const RULES: &str = r#"
[settings]
time_zone = "UTC"
lateness_grace = "1h"
[point_types.xp]
[points.buy]
event_type = "purchase"
point_type = "xp"
per_unit = 1
[leaderboards.xp]
point_type = "xp"
periods = ["daily"]
top_n = 2
"#;

const MAR_1: i64 = 1_709_251_200_000; // 2024-03-01T00:00:00Z
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn total(customer: &str, day: i64, total: i64, at: i64) -> Record {
    let day_name = ["2024-03-01", "2024-03-02"][((day - MAR_1) / DAY) as usize];
    let update = LeaderboardUpdate {
        board: "xp".into(),
        period: format!("daily:{day_name}"),
        period_end_ms: day + DAY,
        customer_id: customer.into(),
        total,
        reached_at: at,
        occurred_at: Some(at),
        event_id: format!("{customer}-{total}"),
        rules_version: "test".into(),
    };
    // The wire form on the internal topic: format byte 1, then JSON.
    let mut value = vec![1u8];
    value.extend(serde_json::to_vec(&update).unwrap());
    Record::new(value, at).with_key(update.key().into_bytes())
}

#[test]
fn a_total_after_the_close_keeps_the_period_final() {
    let config = Config::default();
    let parts = topology::Components {
        normalizer: Arc::new(topology::normalizer(&config).unwrap()),
        rules: Arc::new(Rules::from_toml_str(RULES).unwrap()),
        churn: None,
    };
    let topo = topology::build_topology(&config, &parts, None).unwrap();
    let mut driver = TopologyTestDriver::with_partitions(topo, 1, MAR_1 + 2 * DAY);
    let points = format!("{}-{}", config.application_id, topology::LEADERBOARD_POINTS);
    let second = std::time::Duration::from_secs(2);

    driver
        .pipe(&points, total("a", MAR_1, 10, MAR_1 + 10 * HOUR))
        .unwrap();
    driver.advance_wall_clock(second).unwrap();
    // 03-02 02:00 is past 03-01's end plus the 1 h grace: 03-01's final ranking goes out.
    driver
        .pipe(&points, total("b", MAR_1 + DAY, 1, MAR_1 + DAY + 2 * HOUR))
        .unwrap();
    driver.advance_wall_clock(second).unwrap();
    // A lagging game task's total for the closed day changes its ranking.
    driver
        .pipe(&points, total("c", MAR_1, 20, MAR_1 + 11 * HOUR))
        .unwrap();
    driver.advance_wall_clock(second).unwrap();

    let snapshots: Vec<serde_json::Value> = driver
        .read_output(&config.gamification.results_topic)
        .into_iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .filter(|v: &serde_json::Value| {
            v["type"] == "leaderboard_updated" && v["period"] == "daily:2024-03-01"
        })
        .map(|v| serde_json::json!([v["final"], v["entries"][0]["customer_id"]]))
        .collect();
    assert_eq!(
        snapshots,
        vec![
            serde_json::json!([false, "a"]),
            serde_json::json!([true, "a"]),
            serde_json::json!([true, "c"]),
        ]
    );
}
