//! The gamification topology end to end on a Tansu broker, with `kill -9`.
//!
//! `scorestream run` (a child process, bundled rules and mapping) reads seed-shaped events
//! from two input topics — telecom (seeds 000/001: recharges, data usage, bundles) and
//! retail (seed 002: orders with `data.order_value`) — and writes to a results topic of
//! its own. Every expected number below is derived by hand from
//! `topology/gamification.toml`, never copied from program output:
//!
//! 1. A handful of events gives exact `points_awarded` records (rules, a cap, mission
//!    rewards), `mission_completed` and `badge_awarded`.
//! 2. More events are produced while the process is killed with SIGKILL twice and
//!    restarted; afterwards every customer's points in `customer-state` (read back from
//!    the changelog with `scorestream state dump`) equal the hand-computed totals exactly:
//!    nothing lost, nothing counted twice.
//! 3. The results topic, repeats dropped by `result_id`, agrees with that state: per
//!    customer and point type the awards add up to the stored total and the last
//!    `total` is it; a repeated `result_id` always carries the same bytes; and the latest
//!    all-time xp `leaderboard_updated` lists every customer with their stored xp.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::Message;
use serde_json::Value;
use support::instance::Instance;

const PARTITIONS: i32 = 2;

/// (customer, point type) → points.
type Points = BTreeMap<(String, String), i64>;

struct Setup {
    _broker: support::tansu::Tansu,
    bootstrap: String,
    telecom: String,
    retail: String,
    results: String,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let broker = support::tansu::Tansu::start();
        let bootstrap = broker.bootstrap();
        let telecom = support::random_topic("telecom-events");
        let retail = support::random_topic("shop-events");
        let results = support::random_topic("gamification-results");
        support::create_topics(
            &bootstrap,
            &[
                (telecom.clone(), PARTITIONS),
                (retail.clone(), PARTITIONS),
                (results.clone(), 3),
            ],
        );
        let app_id = support::random_topic("game");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "application_id = \"{app_id}\"\nbootstrap_servers = \"{bootstrap}\"\n\
                 inputs = [\"{telecom}\", \"{retail}\"]\n\
                 [runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\n\
                 commit_interval = \"100ms\"\nshutdown_timeout = \"20s\"\n\
                 [state]\ncleanup_delay = \"1h\"\n\
                 [gamification]\nresults_topic = \"{results}\"\n"
            ),
        )
        .unwrap();
        Setup {
            _broker: broker,
            bootstrap,
            telecom,
            retail,
            results,
            config,
            dir,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Every record on the results topic as (key, raw value, parsed value).
    fn results(&self) -> Vec<(String, String, Value)> {
        support::consume_all(&self.bootstrap, &self.results, Duration::from_secs(30))
            .into_iter()
            .map(|m| {
                let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
                let raw = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                let value = serde_json::from_str(&raw).unwrap();
                (key, raw, value)
            })
            .collect()
    }

    /// Polls the results topic until `done` accepts what is there.
    fn wait_results(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[(String, String, Value)]) -> bool,
    ) -> Vec<(String, String, Value)> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.results();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not there within {timeout:?}; {} results",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Points per customer and type in the committed `customer-state`, read from the
    /// changelog.
    fn dump_points(&self) -> Points {
        let mut points = Points::new();
        for v in support::instance::dump_store(&self.config, "customer-state", "30s") {
            let customer = v["key"].as_str().unwrap();
            for (point_type, n) in v["value"]["points"].as_object().unwrap() {
                points.insert(
                    (customer.to_string(), point_type.clone()),
                    n.as_i64().unwrap(),
                );
            }
        }
        points
    }
}

fn telecom_recharge(customer: &str, at: &str, amount: u32) -> Vec<u8> {
    // Seed 001: no event_id (derived from the normalized event), `amount`.
    format!(
        r#"{{"customer_id":"{customer}","event_type":"recharge","timestamp":"{at}","amount":{amount}}}"#
    )
    .into_bytes()
}

fn telecom_data(customer: &str, at: &str, mb: u32) -> Vec<u8> {
    // Seed 000: the IN system's usage record, MB in `value`.
    format!(
        r#"{{"source":"in","source_name":"IN System","customer_id":"{customer}","event_type":"data_usage","timestamp":"{at}","value":{mb}.0,"metadata":{{"network":"4G"}}}}"#
    )
    .into_bytes()
}

fn telecom_bundle(customer: &str, at: &str, amount: u32) -> Vec<u8> {
    format!(
        r#"{{"customer_id":"{customer}","event_type":"bundle_purchase","timestamp":"{at}","amount":{amount}}}"#
    )
    .into_bytes()
}

fn retail_order(customer: &str, event_id: &str, at: &str, value: u32) -> Vec<u8> {
    // Seed 002: its own event_id, the amount in `data.order_value`.
    format!(
        r#"{{"event_id":"{event_id}","event_type":"order_placed","customer_id":"{customer}","timestamp":"{at}","data":{{"order_id":"ORD-{event_id}","order_value":{value}.0}}}}"#
    )
    .into_bytes()
}

/// `points_awarded` records of a customer: (source kind:id, point type, points, capped,
/// total), deduplicated by `result_id`, in topic order.
fn awards(
    results: &[(String, String, Value)],
    customer: &str,
) -> Vec<(String, String, i64, bool, i64)> {
    let mut seen = BTreeSet::new();
    results
        .iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["type"] == "points_awarded" && v["customer_id"] == customer)
        .filter(|v| seen.insert(v["result_id"].as_str().unwrap().to_string()))
        .map(|v| {
            (
                format!(
                    "{}:{}",
                    v["source"]["kind"].as_str().unwrap(),
                    v["source"]["id"].as_str().unwrap()
                ),
                v["point_type"].as_str().unwrap().to_string(),
                v["points"].as_i64().unwrap(),
                v["capped"].as_bool().unwrap(),
                v["total"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// (customer, id) of every record of `type` with the id in `field`.
fn named(
    results: &[(String, String, Value)],
    output_type: &str,
    field: &str,
) -> BTreeSet<(String, String)> {
    results
        .iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["type"] == output_type)
        .map(|v| {
            (
                v["customer_id"].as_str().unwrap().to_string(),
                v[field].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The bulk phase: telecom customers `t00`..`t29` and shoppers `r00`..`r19`, with points
/// computed by hand from the bundled rules (see [`Bulk::events`]).
#[derive(Default)]
struct Bulk {
    expected: Points,
    /// Events made so far: all, telecom, retail.
    next: u32,
    telecom: u32,
    retail: u32,
}

impl Bulk {
    const TELECOM_CUSTOMERS: u32 = 30;
    const SHOPPERS: u32 = 20;

    /// The next `n` events (3 of 4 telecom, 1 of 4 retail), their points added to
    /// `expected`. All fall within 15 minutes of 2024-03-04 11:00 Nairobi time (one local
    /// day, after the first phase's events, so none is late), and are chosen so that no
    /// cap binds, no customer reaches the silver tier (1000 xp; multipliers stay 1.0) and
    /// no mission other than `first_recharge` completes:
    ///
    /// - recharge of `amount` (even): `recharge_xp` 10 + 1 × amount xp, `recharge_reward`
    ///   0.5 × amount reward; the customer's first recharge also completes
    ///   `first_recharge`: +50 reward. 14 recharges of ≤ 14 per customer: ≤ 336 xp, ≤ 98
    ///   reward a day (cap 500).
    /// - data usage of 100 MB on 4G: `data_usage_xp` 0.1 × 100 = 10 xp (no 5G bonus). 6
    ///   per customer: 600 MB < the 1024 MB of `weekly_data_explorer`, 60 xp < the rule's
    ///   daily cap of 200. With the recharges, < 1000 xp: no tier above bronze (1.0).
    /// - order of `value` (even): `order_placed_xp` 10 + 0.5 × value xp,
    ///   `order_placed_reward` 1 × value reward. At most 10 orders of ≤ 26 per shopper:
    ///   ≤ 260 < the 500 of `big_spender` and of the daily reward cap.
    fn events(&mut self, s: &Setup, n: u32) -> Vec<support::Outgoing> {
        let mut out = Vec::new();
        for _ in 0..n {
            let i = self.next;
            self.next += 1;
            let at = format!("2024-03-04T08:{:02}:{:02}Z", (i / 60) % 60, i % 60);
            let mut add = |customer: &str, point_type: &str, points: i64| {
                *self
                    .expected
                    .entry((customer.to_string(), point_type.to_string()))
                    .or_insert(0) += points;
            };
            if i % 4 == 3 {
                let k = self.retail;
                self.retail += 1;
                let customer = format!("r{:02}", k % Self::SHOPPERS);
                let value = 10 + (k % 5) * 4;
                add(&customer, "xp", 10 + i64::from(value) / 2);
                add(&customer, "reward", i64::from(value));
                let id = format!("{customer}_{i}");
                out.push((
                    s.retail.clone(),
                    None,
                    retail_order(&customer, &id, &at, value),
                    None,
                ));
            } else {
                let k = self.telecom;
                self.telecom += 1;
                let customer = format!("t{:02}", k % Self::TELECOM_CUSTOMERS);
                let round = k / Self::TELECOM_CUSTOMERS;
                if round % 3 == 2 {
                    add(&customer, "xp", 10);
                    out.push((
                        s.telecom.clone(),
                        None,
                        telecom_data(&customer, &at, 100),
                        None,
                    ));
                } else {
                    let amount = 2 * ((k % 7) + 1);
                    add(&customer, "xp", 10 + i64::from(amount));
                    add(&customer, "reward", i64::from(amount) / 2);
                    if round == 0 {
                        add(&customer, "reward", 50);
                    }
                    out.push((
                        s.telecom.clone(),
                        None,
                        telecom_recharge(&customer, &at, amount),
                        None,
                    ));
                }
            }
        }
        out
    }
}

/// Customer → total in the last `leaderboard_updated` of a board's period.
fn latest_ranking(
    results: &[(String, String, Value)],
    board: &str,
    period: &str,
) -> Option<BTreeMap<String, i64>> {
    let (key, _, last) = results.iter().rfind(|(_, _, v)| {
        v["type"] == "leaderboard_updated" && v["board"] == board && v["period"] == period
    })?;
    assert_eq!(key, board, "leaderboards are keyed by board");
    Some(
        last["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["customer_id"].as_str().unwrap().to_string(),
                    e["total"].as_i64().unwrap(),
                )
            })
            .collect(),
    )
}

/// Produces `records` from another thread, in chunks, over about a second and a half.
fn produce_in_background(
    bootstrap: &str,
    records: Vec<support::Outgoing>,
) -> std::thread::JoinHandle<()> {
    let bootstrap = bootstrap.to_string();
    std::thread::spawn(move || {
        for chunk in records.chunks(25) {
            support::produce_many(&bootstrap, chunk);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn hand_computed_results_survive_kill_9_without_double_counting() {
    let started = Instant::now();
    let s = Setup::new();
    let state = s.state_dir();

    // --- 1. A handful of events, every result derived by hand. --------------------------
    let mut inst = Instance::start(&s.config, &state);
    assert!(
        inst.wait_for_log("Task running", Duration::from_secs(60)),
        "{}",
        inst.log()
    );
    let a = "254711000001";
    let b = "CUST-777";
    // Unkeyed, as the seeds send them, but each customer's events to one partition and
    // one at a time: results depend on their order (the cap, the sequence mission), and
    // order holds only within a partition.
    for (topic, value) in [
        (&s.telecom, telecom_recharge(a, "2024-03-03T08:00:00Z", 100)),
        (&s.telecom, telecom_data(a, "2024-03-03T09:00:00Z", 300)),
        (&s.telecom, telecom_bundle(a, "2024-03-03T10:00:00Z", 15)),
        (
            &s.retail,
            retail_order(b, "CUST-777_1", "2024-03-03T11:00:00Z", 300),
        ),
        (
            &s.retail,
            retail_order(b, "CUST-777_2", "2024-03-03T12:00:00Z", 250),
        ),
    ] {
        support::produce_many(&s.bootstrap, &[(topic.clone(), None, value, Some(0))]);
    }
    let results = s.wait_results(Duration::from_secs(60), "the first results", |r| {
        awards(r, a).len() >= 7 && awards(r, b).len() >= 5
    });
    let award = |source: &str, point_type: &str, points: i64, capped: bool, total: i64| {
        (
            source.to_string(),
            point_type.to_string(),
            points,
            capped,
            total,
        )
    };
    // A's recharge of 100 (no tier yet, multiplier 1): rules in id order, then missions.
    //   recharge_reward 0.5 × 100 = 50 reward; recharge_xp 10 + 100 = 110 xp;
    //   first_recharge completes: +50 reward (total 100) and the `welcome` badge.
    // 300 MB on 4G (tier bronze, multiplier 1.0): data_usage_xp 0.1 × 300 = 30 xp (140).
    // A bundle for 15: bundle_purchase_reward 20 reward (120); bundle_purchase_xp
    //   25 + 15 = 40 xp (180); recharge then bundle within 2 days completes
    //   recharge_then_bundle: +40 reward (160).
    assert_eq!(
        awards(&results, a),
        vec![
            award("rule:recharge_reward", "reward", 50, false, 50),
            award("rule:recharge_xp", "xp", 110, false, 110),
            award("mission:first_recharge", "reward", 50, false, 100),
            award("rule:data_usage_xp", "xp", 30, false, 140),
            award("rule:bundle_purchase_reward", "reward", 20, false, 120),
            award("rule:bundle_purchase_xp", "xp", 40, false, 180),
            award("mission:recharge_then_bundle", "reward", 40, false, 160),
        ]
    );
    // B's order of 300: order_placed_reward 300 reward; order_placed_xp 10 + 150 = 160 xp.
    // The order of 250, the same local day: 250 reward uncapped, but the reward type's
    //   daily cap of 500 leaves 200 (capped, total 500); 10 + 125 = 135 xp (295); the
    //   orders sum to 550 ≥ 500: big_spender completes, +250 reward (750, not capped).
    assert_eq!(
        awards(&results, b),
        vec![
            award("rule:order_placed_reward", "reward", 300, false, 300),
            award("rule:order_placed_xp", "xp", 160, false, 160),
            award("rule:order_placed_reward", "reward", 200, true, 500),
            award("rule:order_placed_xp", "xp", 135, false, 295),
            award("mission:big_spender", "reward", 250, false, 750),
        ]
    );
    assert_eq!(
        named(&results, "mission_completed", "mission"),
        owned(&[
            (a, "first_recharge"),
            (a, "recharge_then_bundle"),
            (b, "big_spender")
        ])
    );
    // welcome and big_spender are mission rewards; mission_hunter reaches Bronze at the
    // first completed mission; shopper reaches Bronze at the first order.
    assert_eq!(
        named(&results, "badge_awarded", "badge"),
        owned(&[
            (a, "welcome"),
            (a, "mission_hunter"),
            (b, "shopper"),
            (b, "big_spender"),
            (b, "mission_hunter"),
        ])
    );
    for (key, raw, v) in results
        .iter()
        .filter(|(_, _, v)| v["type"] != "leaderboard_updated")
    {
        assert_eq!(
            Some(key.as_str()),
            v["customer_id"].as_str(),
            "keyed by customer: {raw}"
        );
    }
    let mut expected = Points::new();
    for (customer, point_type, total) in [
        (a, "xp", 180),
        (a, "reward", 160),
        (b, "xp", 295),
        (b, "reward", 750),
    ] {
        expected.insert((customer.into(), point_type.into()), total);
    }

    // --- 2. More events while the process is killed twice. -------------------------------
    let mut bulk = Bulk::default();
    let mut rng = rand::rng();
    for round in 0..2 {
        let producer = produce_in_background(&s.bootstrap, bulk.events(&s, 400));
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        let log = inst.kill9();
        producer.join().unwrap();
        assert!(!log.contains("panicked"), "round {round}:\n{log}");
        inst = Instance::start(&s.config, &state);
        assert!(
            inst.wait_for_log("Task running", Duration::from_secs(60)),
            "{}",
            inst.log()
        );
    }
    expected.extend(bulk.expected.clone());
    assert_eq!(
        expected.len(),
        4 + 2 * (30 + 20),
        "every customer has xp and reward"
    );

    // --- 3. Exact totals in the store, and results consistent with them. --------------
    let deadline = Instant::now() + Duration::from_secs(45);
    let stored = loop {
        let got = s.dump_points();
        if got == expected || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let diffs: Vec<String> = expected
        .iter()
        .filter(|(k, v)| stored.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: expected {v}, stored {:?}", stored.get(k)))
        .chain(
            stored
                .keys()
                .filter(|k| !expected.contains_key(*k))
                .map(|k| format!("{k:?}: unexpected")),
        )
        .collect();
    assert!(diffs.is_empty(), "stored points differ: {diffs:?}");

    // The leaderboard sub-topology catches up: the latest all-time xp ranking (52
    // customers, top 100) lists every customer with their stored xp.
    let stored_xp: BTreeMap<String, i64> = stored
        .iter()
        .filter(|((_, t), _)| t == "xp")
        .map(|((c, _), n)| (c.clone(), *n))
        .collect();
    s.wait_results(Duration::from_secs(30), "the all-time xp ranking", |r| {
        latest_ranking(r, "xp", "all_time") == Some(stored_xp.clone())
    });

    // Outputs flush before offsets commit, so once the state is complete every customer
    // result is on the topic.
    let log = inst.stop();
    assert!(!log.contains("panicked"), "{log}");
    let results = s.results();
    let mut by_id: BTreeMap<&str, &str> = BTreeMap::new();
    let mut repeats = 0;
    for (_, raw, v) in &results {
        let id = v["result_id"]
            .as_str()
            .expect("every result has a result_id");
        if let Some(before) = by_id.insert(id, raw) {
            repeats += 1;
            assert_eq!(before, raw.as_str(), "one result_id, two different records");
        }
    }
    let mut summed = Points::new();
    let mut last_total = Points::new();
    for (customer, point_type) in expected.keys() {
        for (_, point_type_seen, points, _, total) in awards(&results, customer)
            .into_iter()
            .filter(|x| &x.1 == point_type)
        {
            let key = (customer.clone(), point_type_seen);
            *summed.entry(key.clone()).or_insert(0) += points;
            last_total.insert(key, total);
        }
    }
    assert_eq!(
        summed, stored,
        "awards on the topic, repeats dropped, add up to the state"
    );
    assert_eq!(
        last_total, stored,
        "the last total per customer and type is the stored one"
    );
    eprintln!(
        "{} results, {repeats} repeats dropped by result_id, {:.1} s",
        results.len(),
        started.elapsed().as_secs_f64()
    );
}
