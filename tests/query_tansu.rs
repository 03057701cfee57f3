//! Two `scorestream run` processes of one application on a Tansu broker (DESIGN §5):
//! events arrive through the `POST /events` webhook of one of them, and then every customer
//! and the leaderboard can be queried through either instance — the non-owner forwards to the
//! owner, so both answer the same. When one instance stops, the other takes its partitions,
//! restores their state from the changelogs and answers for everyone.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::http_request;
use support::instance::Instance;

const TOKEN: &str = "t0ken-for-tests";
const CUSTOMERS: usize = 20;

/// Two events per customer, as a producer would send them (no event ids).
fn events() -> String {
    let now = chrono::Utc::now();
    let mut items = Vec::new();
    for c in 0..CUSTOMERS {
        for (i, amount) in [(0, 10 + c), (1, 5)] {
            let at = now - chrono::Duration::minutes(10 - i);
            items.push(json!({
                "customer_id": format!("Q-{c}"),
                "event_type": "recharge",
                "timestamp": at.to_rfc3339(),
                "amount": amount,
            }));
        }
    }
    Value::Array(items).to_string()
}

#[test]
fn any_instance_answers_for_any_customer_and_the_webhook_feeds_the_topology() {
    // The patched build: B's stream threads (one per core by default) leave the group
    // together when it stops, which stock Tansu 0.6.0 can wedge (docs/operations.md).
    let broker = support::tansu::Tansu::start_patched();
    let bootstrap = broker.bootstrap();
    let input = support::random_topic("customer-events");
    let results = support::random_topic("gamification-results");
    support::create_topics(&bootstrap, &[(input.clone(), 4), (results.clone(), 2)]);
    let app_id = support::random_topic("query");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "application_id = \"{app_id}\"\nbootstrap_servers = \"{bootstrap}\"\n\
             inputs = [\"{input}\"]\n\
             [runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\n\
             commit_interval = \"200ms\"\nshutdown_timeout = \"20s\"\n\
             [state]\ncleanup_delay = \"1h\"\n\
             [gamification]\nresults_topic = \"{results}\"\n\
             [http]\nwebhook_topic = \"{input}\"\nwebhook_token = \"{TOKEN}\"\n"
        ),
    )
    .unwrap();
    let (pa, pb) = (support::free_port(), support::free_port());
    let a = Instance::start_on_port(&config, &dir.path().join("a"), pa);
    let b = Instance::start_on_port(&config, &dir.path().join("b"), pb);
    for port in [pa, pb] {
        support::eventually(Duration::from_secs(90), "both instances ready", || {
            support::http_get_reply(port, "/ready").filter(|r| r.status == 200)
        });
    }

    // The webhook: a bad request writes nothing, a good one is acknowledged by Kafka.
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let bad = http_request(
        pa,
        "POST",
        "/events",
        &headers,
        r#"[{"event_type":"recharge"}]"#,
    )
    .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    let posted = http_request(pa, "POST", "/events", &headers, &events()).unwrap();
    assert_eq!(posted.status, 202, "{}", posted.body);
    let accepted: Value = serde_json::from_str(&posted.body).unwrap();
    assert_eq!(accepted["accepted"], 2 * CUSTOMERS);

    // Every customer through A, until both of their events are in.
    let by_a: BTreeMap<String, Value> = support::eventually(
        Duration::from_secs(90),
        "every customer's two events processed",
        || {
            let mut all = BTreeMap::new();
            for c in 0..CUSTOMERS {
                let r = support::http_get_reply(pa, &format!("/customers/Q-{c}"))?;
                if r.status != 200 {
                    return None;
                }
                let v: Value = serde_json::from_str(&r.body).unwrap();
                if v["profile"]["events"] != 2 {
                    return None;
                }
                all.insert(format!("Q-{c}"), v);
            }
            Some(all)
        },
    );

    // The webhook's events reached the outputs too: points for every customer.
    let awarded: std::collections::BTreeSet<String> =
        support::consume_all(&bootstrap, &results, Duration::from_secs(30))
            .iter()
            .filter_map(|m| serde_json::from_slice::<Value>(rdkafka::Message::payload(m)?).ok())
            .filter(|v| v["type"] == "points_awarded")
            .map(|v| v["customer_id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(awarded.len(), CUSTOMERS, "{awarded:?}");

    // Both instances answer the same for everyone; for each customer exactly one of the two
    // queries was read locally and the other forwarded to that owner.
    let (adv_a, adv_b) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let mut served = BTreeMap::<String, usize>::new();
    for c in 0..CUSTOMERS {
        let path = format!("/customers/Q-{c}");
        let (ra, rb) = (
            support::http_get_reply(pa, &path).unwrap(),
            support::http_get_reply(pb, &path).unwrap(),
        );
        assert_eq!(
            (ra.status, rb.status),
            (200, 200),
            "{}\n{}",
            ra.body,
            rb.body
        );
        let (va, vb): (Value, Value) = (
            serde_json::from_str(&ra.body).unwrap(),
            serde_json::from_str(&rb.body).unwrap(),
        );
        assert_eq!(va, vb, "Q-{c}");
        assert_eq!(va, by_a[&format!("Q-{c}")]);
        assert!(va["points"]["xp"].as_i64().unwrap() > 0, "{va}");
        let owner = ra.header("x-scorestream-served-by").unwrap().to_string();
        assert_eq!(Some(owner.as_str()), rb.header("x-scorestream-served-by"));
        assert!(owner == adv_a || owner == adv_b, "{owner}");
        *served.entry(owner).or_default() += 1;
    }
    // With 4 partitions per sub-topology over 2 members, each usually owns some customers;
    // the assignment is the broker's choice, so only the total is certain.
    assert_eq!(served.values().sum::<usize>(), CUSTOMERS, "{served:?}");
    eprintln!("customers by owner: {served:?}");

    // The all-time leaderboard, through either instance, once all 20 are ranked.
    let board = |port: u16| {
        support::http_get_reply(port, "/leaderboards/xp?period=all_time&limit=50")
            .filter(|r| r.status == 200)
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .filter(|v| v["entries"].as_array().unwrap().len() == CUSTOMERS)
    };
    let on_a = support::eventually(Duration::from_secs(60), "leaderboard via A", || board(pa));
    let on_b = support::eventually(Duration::from_secs(30), "leaderboard via B", || board(pb));
    assert_eq!(on_a["entries"], on_b["entries"]);
    for e in on_a["entries"].as_array().unwrap() {
        let id = e["customer_id"].as_str().unwrap();
        assert_eq!(e["total"], by_a[id]["points"]["xp"], "{id}");
    }

    // Scale in: B leaves; A takes every partition, restores B's state, answers alone.
    let log_b = b.stop();
    assert!(log_b.contains("Stopped."), "{log_b}");
    support::eventually(
        Duration::from_secs(120),
        "A answers for everyone after B left",
        || {
            for c in 0..CUSTOMERS {
                let r = support::http_get_reply(pa, &format!("/customers/Q-{c}"))?;
                if r.status != 200 || r.header("x-scorestream-served-by") != Some(adv_a.as_str()) {
                    return None;
                }
                let v: Value = serde_json::from_str(&r.body).unwrap();
                assert_eq!(v, by_a[&format!("Q-{c}")], "state moved intact");
            }
            Some(())
        },
    );
    a.stop();
    drop(broker);
}
