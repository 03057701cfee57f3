//! What operators and downstream teams see of a running application, on a Tansu broker:
//! - `GET /instances` on either of two instances lists both, with the input partitions
//!   split between them;
//! - the compose file's healthcheck command for the replicas passes against a ready
//!   instance and fails against no listener;
//! - examples/downstream_consumer.py (confluent-kafka) reads the results, drops the repeats
//!   an at-least-once crash would publish (injected here by re-producing records), and its
//!   per-customer view agrees with the instances' own `GET /customers/{id}`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use rdkafka::Message;
use serde_json::{json, Value};
use support::http_request;
use support::instance::Instance;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN: &str = "t0ken-for-ops";
const CUSTOMERS: usize = 12;
const PARTITIONS: i32 = 4;

/// The replicas' healthcheck command of docker-compose.yml, for a listener on `port`.
fn compose_healthcheck(port: u16) -> Vec<String> {
    let compose = std::fs::read_to_string(format!("{ROOT}/docker-compose.yml")).unwrap();
    let replica = &compose[compose.find("\n  scorestream-1:").expect("scorestream-1")..];
    let line = replica
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("test: "))
        .expect("a healthcheck for the replicas");
    let command: Vec<String> = serde_json::from_str(line).expect("a YAML flow list that is JSON");
    assert_eq!(command[..2], ["CMD", "bash"], "{command:?}");
    command[1..]
        .iter()
        .map(|a| a.replace("/8080", &format!("/{port}")))
        .collect()
}

fn healthcheck_passes(port: u16) -> bool {
    let command = compose_healthcheck(port);
    Command::new(&command[0])
        .args(&command[1..])
        .status()
        .unwrap()
        .success()
}

/// Three recharges per customer over the last half hour.
fn events() -> String {
    let now = chrono::Utc::now();
    let mut items = Vec::new();
    for c in 0..CUSTOMERS {
        for i in 0..3 {
            items.push(json!({
                "customer_id": format!("D-{c}"),
                "event_type": "recharge",
                "timestamp": (now - chrono::Duration::minutes(30 - i * 10)).to_rfc3339(),
                "amount": 10 + c as i64 + i,
            }));
        }
    }
    Value::Array(items).to_string()
}

#[test]
fn instances_healthcheck_and_the_downstream_example_on_tansu() {
    let broker = support::tansu::Tansu::start();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    let results = support::random_topic("gamification-results");
    support::create_topics(
        &bootstrap,
        &[(input.clone(), PARTITIONS), (results.clone(), 2)],
    );
    let app_id = support::random_topic("ops");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "application_id = \"{app_id}\"\nbootstrap_servers = \"{bootstrap}\"\n\
             inputs = [\"{input}\"]\n\
             [runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\n\
             commit_interval = \"200ms\"\nshutdown_timeout = \"20s\"\n\
             [gamification]\nresults_topic = \"{results}\"\n\
             [churn]\nenabled = false\n\
             [http]\nwebhook_token = \"{TOKEN}\"\n"
        ),
    )
    .unwrap();
    let (pa, pb) = (support::free_port(), support::free_port());
    let a = Instance::start_on_port(&config, &dir.path().join("a"), pa);
    let b = Instance::start_on_port(&config, &dir.path().join("b"), pb);

    // Not listening yet or not ready: the healthcheck fails.
    assert!(!healthcheck_passes(support::free_port()));
    for port in [pa, pb] {
        support::eventually(Duration::from_secs(90), "both instances ready", || {
            support::http_get_reply(port, "/ready").filter(|r| r.status == 200)
        });
    }
    assert!(healthcheck_passes(pa), "{}", a.log());

    // Both instances, the input's partitions split between them, seen from either.
    let (me_a, me_b) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    for (port, me) in [(pa, &me_a), (pb, &me_b)] {
        let listed: Value =
            support::eventually(Duration::from_secs(60), "both instances listed", || {
                let r = support::http_get_reply(port, "/instances")?;
                let v: Value = serde_json::from_str(&r.body).ok()?;
                let owned: Vec<i64> = v["instances"]
                    .as_array()?
                    .iter()
                    .flat_map(|i| {
                        i["partitions"][&input]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .filter_map(|p| p.as_i64())
                    .collect();
                let n = v["instances"].as_array()?.len();
                (r.status == 200 && n == 2 && owned.len() == PARTITIONS as usize).then_some(v)
            });
        assert_eq!(listed["this_instance"], json!(me), "{listed}");
        let instances = listed["instances"].as_array().unwrap();
        let addresses: BTreeSet<&str> = instances
            .iter()
            .map(|i| i["http"].as_str().unwrap())
            .collect();
        assert_eq!(addresses, BTreeSet::from([me_a.as_str(), me_b.as_str()]));
        let mut owned: Vec<i64> = Vec::new();
        for i in instances {
            assert_eq!(
                i["this_instance"],
                json!(i["http"] == json!(me)),
                "{listed}"
            );
            let mine: Vec<i64> = i["partitions"][&input]
                .as_array()
                .unwrap_or_else(|| panic!("{} owns no input partition: {listed}", i["http"]))
                .iter()
                .map(|p| p.as_i64().unwrap())
                .collect();
            owned.extend(mine);
        }
        owned.sort();
        assert_eq!(
            owned,
            (0..PARTITIONS as i64).collect::<Vec<_>>(),
            "{listed}"
        );
    }

    // Results to read downstream.
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let posted = http_request(pa, "POST", "/events", &headers, &events()).unwrap();
    assert_eq!(posted.status, 202, "{}", posted.body);
    let points: BTreeMap<String, Value> = support::eventually(
        Duration::from_secs(90),
        "every customer's three events processed",
        || {
            let mut all = BTreeMap::new();
            for c in 0..CUSTOMERS {
                let r = support::http_get_reply(pb, &format!("/customers/D-{c}"))?;
                let v: Value = serde_json::from_str(&r.body).ok()?;
                if r.status != 200 || v["profile"]["events"] != 3 {
                    return None;
                }
                all.insert(format!("D-{c}"), v["points"].clone());
            }
            Some(all)
        },
    );
    // Everything the three events caused is on the topic once the offsets are committed.
    std::thread::sleep(Duration::from_secs(2));
    let published = support::consume_all(&bootstrap, &results, Duration::from_secs(30));
    let awards = published
        .iter()
        .filter(|m| {
            serde_json::from_slice::<Value>(m.payload().unwrap()).unwrap()["type"]
                == "points_awarded"
        })
        .count();
    assert!(awards >= CUSTOMERS, "{awards} points_awarded records");

    // What a crash under at-least-once looks like downstream: some results again.
    let repeats: Vec<support::Outgoing> = published
        .iter()
        .step_by(3)
        .map(|m| {
            (
                results.clone(),
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap().to_vec(),
                Some(m.partition()),
            )
        })
        .collect();
    let repeated_awards = repeats
        .iter()
        .filter(|r| serde_json::from_slice::<Value>(&r.2).unwrap()["type"] == "points_awarded")
        .count();
    assert!(
        repeated_awards > 0,
        "the repeats must include points to double count"
    );
    support::produce_many(&bootstrap, &repeats);

    let out = Command::new("python3")
        .arg(format!("{ROOT}/examples/downstream_consumer.py"))
        .args([
            "--bootstrap",
            &bootstrap,
            "--topic",
            &results,
            "--idle-exit",
            "5",
        ])
        .args(["--property", "session.timeout.ms=6000"])
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "run scripts/install-deps.sh (pip install confluent-kafka): {stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    let view: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(view["records"], published.len() + repeats.len(), "{view}");
    assert_eq!(view["duplicates_dropped"], repeats.len(), "{view}");
    assert_eq!(view["malformed"], 0);
    for (customer, expected) in &points {
        let c = &view["customers"][customer];
        // The deduplicated sum of awards is the published running total and what the
        // instances answer (a repeat counted twice would exceed both).
        assert_eq!(&c["points_earned"], expected, "{customer}: {c}");
        assert_eq!(&c["points_total"], expected, "{customer}: {c}");
        assert!(c["last_event_at"].is_string(), "{c}");
    }
    drop((a, b));
}
