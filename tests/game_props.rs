//! Property: for random event streams — duplicates, any interleaving across customers, out
//! of order within the grace period — every customer's points total equals the rules
//! applied to the deduplicated stream, whatever the partition count. The oracle below is
//! written from the rules text, independently of `gamification::apply`.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use scorestream::app;
use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};

const RULES: &str = r#"
[settings]
time_zone = "UTC"
lateness_grace = "24h"
[point_types.xp]
[points.visit]
event_type = "visit"
point_type = "xp"
base = 3
[points.buy]
event_type = "buy"
point_type = "xp"
base = 1
per_unit = 2
"#;

/// (customer, event number, is a buy, amount, minutes after 10:00).
type Event = (u8, u16, bool, u8, u8);

fn json(e: &Event) -> String {
    let (c, n, buy, amount, minute) = *e;
    let kind = if buy { "buy" } else { "visit" };
    format!(
        r#"{{"event_id":"c{c}-{n}","customer_id":"c{c}","event_type":"{kind}","timestamp":"2024-03-01T{:02}:{:02}:00Z","amount":{amount}}}"#,
        10 + minute / 60,
        minute % 60
    )
}

/// The rules by hand: visit = 3, buy = 1 + 2 × amount; each event id once.
fn oracle(events: &[Event]) -> BTreeMap<String, i64> {
    let mut seen = BTreeSet::new();
    let mut totals = BTreeMap::new();
    for e in events {
        let (c, n, buy, amount, _) = *e;
        if !seen.insert((c, n)) {
            continue;
        }
        let points = if buy { 1 + 2 * i64::from(amount) } else { 3 };
        *totals.entry(format!("c{c}")).or_insert(0) += points;
    }
    totals
}

fn run(events: &[Event], partitions: i32) -> BTreeMap<String, i64> {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).unwrap();
    let mut config = Config {
        application_id: "props".into(),
        ..Config::default()
    };
    config.gamification.rules_file = Some(rules);
    let parts = app::Components::load(&config).unwrap();
    let topology = app::build_topology(&config, &parts, None).unwrap();
    // 2030: no event is in the future.
    let mut driver = TopologyTestDriver::with_partitions(topology, partitions, 1_893_456_000_000);
    for (i, e) in events.iter().enumerate() {
        driver
            .pipe_to_partition(
                "customer-events",
                i as i32 % partitions,
                Record::new(json(e).into_bytes(), 0),
            )
            .unwrap();
    }
    // Totals only grow, so the largest published total per customer is the final one.
    let mut totals = BTreeMap::new();
    for r in driver.read_output("gamification-results") {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        if v["type"] == "points_awarded" {
            let t = totals
                .entry(v["customer_id"].as_str().unwrap().to_string())
                .or_insert(0);
            *t = v["total"].as_i64().unwrap().max(*t);
        }
    }
    totals
}

fn stream() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((0u8..6, 0u16..40, any::<bool>(), 0u8..50, 0u8..120), 1..80)
        .prop_flat_map(|events| {
            // Repeat some events (producer retries), then shuffle everything.
            let n = events.len();
            (Just(events), prop::collection::vec(0..n, 0..n.min(20)))
        })
        .prop_map(|(mut events, repeats)| {
            let extra: Vec<Event> = repeats.iter().map(|&i| events[i]).collect();
            events.extend(extra);
            events
        })
        .prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn points_equal_the_rules_on_the_deduplicated_stream(events in stream()) {
        // The same (customer, n) must mean the same event: keep the first version's content.
        let mut first: BTreeMap<(u8, u16), Event> = BTreeMap::new();
        let events: Vec<Event> = events
            .into_iter()
            .map(|e| *first.entry((e.0, e.1)).or_insert(e))
            .collect();
        let expected = oracle(&events);
        for partitions in [1, 2, 3, 7] {
            prop_assert_eq!(&run(&events, partitions), &expected, "partitions = {}", partitions);
        }
    }
}
