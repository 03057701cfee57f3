//! State under real process crashes, against a Tansu broker:
//!
//! - crash: `scorestream run` is killed with SIGKILL at random moments (processing,
//!   committing, restoring) and restarted while a producer keeps sending; at the end every
//!   customer's totals equal the expected ones exactly.
//! - wipe: stop, delete the state directory, restart: the restored state equals the state
//!   before, and processing goes on with exact totals.
//! - migration: a second instance joins, tasks move and are restored by the new owner; the
//!   first leaves; totals stay exact.
//!
//! Totals are read with `scorestream state dump`, which rebuilds state from the changelogs
//! with the restore rules — exactly what a new owner would hold.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::Rng;
use support::instance::Instance;

const PARTITIONS: i32 = 3;

/// Expected totals per customer: (events, value sum, xp). The rules below make a purchase
/// worth `1 + amount` xp, so xp is computed here independently of the rules engine.
type Totals = BTreeMap<String, (u64, f64, i64)>;

const RULES: &str = "[settings]\ntime_zone = \"UTC\"\n[point_types.xp]\n\
                     [points.buy]\nevent_type = \"purchase\"\npoint_type = \"xp\"\nbase = 1\nper_unit = 1\n\
                     [leaderboards.xp]\npoint_type = \"xp\"\nperiods = [\"daily\", \"all_time\"]\ntop_n = 25\n";
/// The boards' size in `RULES`.
const TOP_N: usize = 25;

/// A board period's ranking: (customer, total, reached at (epoch ms)), best first.
type Board = Vec<(String, i64, i64)>;

struct Setup {
    broker: support::tansu::Tansu,
    bootstrap: String,
    input: String,
    results: String,
    config: PathBuf,
    dir: tempfile::TempDir,
    expected: Totals,
    /// Per customer, the newest event time applied: when its total was reached.
    reached_at: BTreeMap<String, i64>,
    next_event: u64,
}

impl Setup {
    fn new(commit: &str) -> Setup {
        let broker = support::tansu::Tansu::start();
        let bootstrap = broker.bootstrap();
        let input = support::random_topic("customer-events");
        support::create_topics(&bootstrap, &[(input.clone(), PARTITIONS)]);
        let app_id = support::random_topic("app");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, RULES).unwrap();
        let results = support::random_topic("results");
        std::fs::write(
            &config,
            format!(
                "application_id = \"{app_id}\"\nbootstrap_servers = \"{bootstrap}\"\ninputs = [\"{input}\"]\n\
                 [runtime]\nreplication_factor = 1\nsession_timeout = \"6s\"\ncommit_interval = \"{commit}\"\n\
                 shutdown_timeout = \"20s\"\n[state]\ncleanup_delay = \"1h\"\n\
                 [gamification]\nrules_file = \"{}\"\nresults_topic = \"{results}\"\n",
                rules.display()
            ),
        )
        .unwrap();
        Setup {
            broker,
            bootstrap,
            input,
            results,
            config,
            dir,
            expected: Totals::new(),
            reached_at: BTreeMap::new(),
            next_event: 0,
        }
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Produces `n` events over 1,000 customers with known ids and amounts.
    fn produce(&mut self, n: u64) {
        let records = self.events(n);
        support::produce_many(&self.bootstrap, &records);
    }

    /// Produces `n` events from another thread, in small chunks over about a second.
    fn produce_in_background(&mut self, n: u64) -> std::thread::JoinHandle<()> {
        let records = self.events(n);
        let bootstrap = self.bootstrap.clone();
        std::thread::spawn(move || {
            for chunk in records.chunks(50) {
                support::produce_many(&bootstrap, chunk);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// The next `n` events, added to the expected totals.
    fn events(&mut self, n: u64) -> Vec<support::Outgoing> {
        let mut records = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let i = self.next_event;
            self.next_event += 1;
            let customer = format!("c{}", (i * 7919) % 1000);
            let amount = (i % 97) + 1;
            let e = self.expected.entry(customer.clone()).or_default();
            e.0 += 1;
            e.1 += amount as f64;
            e.2 += 1 + amount as i64;
            // Times repeat every hour of events, so customers tie on totals and on times.
            let (minute, second) = ((i / 60) % 60, i % 60);
            let at = 1_709_287_200_000 + (minute * 60 + second) as i64 * 1000;
            let r = self.reached_at.entry(customer.clone()).or_insert(at);
            *r = (*r).max(at);
            let v = format!(
                r#"{{"event_id":"ev-{i}","customer_id":"{customer}","event_type":"purchase","timestamp":"2024-03-01T10:{minute:02}:{second:02}Z","amount":{amount}}}"#
            );
            records.push((self.input.clone(), None, v.into_bytes(), None));
        }
        records
    }

    /// The committed totals, read from the changelogs.
    fn dump(&self) -> Totals {
        let mut totals = Totals::new();
        for v in support::instance::dump_store(&self.config, "customer-state", "60s") {
            let key = v["key"].as_str().unwrap().to_string();
            let profile = &v["value"]["profile"];
            let events = profile["events"].as_u64().unwrap();
            let sum = profile["value_milli"].as_i64().unwrap() as f64 / 1000.0;
            let xp = v["value"]["points"]["xp"].as_i64().unwrap_or(0);
            totals.insert(key, (events, sum, xp));
        }
        totals
    }

    /// What reached the results topic agrees with the expected totals: one distinct
    /// `points_awarded` (by `result_id`) per event — repeats after a kill carry the same
    /// id — and each customer's largest published xp total is exactly the expected one
    /// (a double-counted event would publish a larger total).
    fn check_results(&self) {
        let records = support::consume_all(&self.bootstrap, &self.results, Duration::from_secs(20));
        let mut ids = std::collections::BTreeSet::new();
        let mut best: BTreeMap<String, i64> = BTreeMap::new();
        for m in &records {
            use rdkafka::Message;
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            if v["type"] != "points_awarded" {
                continue;
            }
            ids.insert(v["result_id"].as_str().unwrap().to_string());
            let c = v["customer_id"].as_str().unwrap().to_string();
            let t = v["total"].as_i64().unwrap();
            let b = best.entry(c).or_insert(0);
            *b = (*b).max(t);
        }
        assert_eq!(
            ids.len() as u64,
            self.next_event,
            "one points_awarded per event"
        );
        let expected: BTreeMap<String, i64> = self
            .expected
            .iter()
            .map(|(k, v)| (k.clone(), v.2))
            .collect();
        assert_eq!(best, expected, "published xp totals");
    }

    /// The boards every period must end with, computed here from the events sent: the
    /// top N by total, then the earliest time the total was reached (the customer's
    /// newest event, as every event falls in the one day), then the customer id.
    fn expected_board(&self) -> Board {
        let mut board: Board = self
            .expected
            .iter()
            .map(|(c, t)| (c.clone(), t.2, self.reached_at[c]))
            .collect();
        board.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
        board.truncate(TOP_N);
        board
    }

    /// The committed boards (`board|period` → ranking), read from the changelog.
    fn dump_boards(&self) -> BTreeMap<String, Board> {
        let mut boards = BTreeMap::new();
        for v in support::instance::dump_store(&self.config, "leaderboards", "60s") {
            let key = v["key"].as_str().unwrap().to_string();
            let entries = v["value"]["top"]["entries"].as_array().unwrap();
            let board = entries
                .iter()
                .map(|e| {
                    (
                        e["customer_id"].as_str().unwrap().to_string(),
                        e["total"].as_i64().unwrap(),
                        e["reached_at"].as_i64().unwrap(),
                    )
                })
                .collect();
            boards.insert(key, board);
        }
        boards
    }

    /// Every period's board equals the one computed from the events, whatever crashed.
    fn check_boards(&self, timeout: Duration) {
        let expected = self.expected_board();
        let keys = ["xp|all_time", "xp|daily:2024-03-01"];
        let deadline = Instant::now() + timeout;
        loop {
            let boards = self.dump_boards();
            let matching = keys
                .iter()
                .filter(|k| boards.get(**k) == Some(&expected))
                .count();
            if matching == keys.len() && boards.len() == keys.len() {
                return;
            }
            if Instant::now() > deadline {
                panic!("boards differ from the events' ranking:\nexpected {expected:?}\ngot {boards:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the committed totals equal the expected ones; returns the last dump.
    fn wait_exact(&self, timeout: Duration, what: &str) -> Totals {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.dump();
            if got == self.expected {
                return got;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: totals not exact after {timeout:?}: {}",
                    diff(&self.expected, &got)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn diff(expected: &Totals, got: &Totals) -> String {
    let mut out = Vec::new();
    for (k, e) in expected {
        match got.get(k) {
            Some(g) if g == e => {}
            other => out.push(format!("{k}: expected {e:?}, got {other:?}")),
        }
    }
    for k in got.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(format!("{k}: unexpected"));
    }
    let more = out.len().saturating_sub(10);
    out.truncate(10);
    format!(
        "{} differ: {}{}",
        out.len() + more,
        out.join("; "),
        if more > 0 { " …" } else { "" }
    )
}

/// Where a kill landed, from the last lines the instance logged.
fn classify(log: &str) -> &'static str {
    let restoring = log.rfind("Restoring a store");
    let running = log.rfind("Task running");
    match (restoring, running) {
        (Some(r), Some(t)) if r > t => "restore",
        (Some(_), None) => "restore",
        (_, Some(_)) => "processing/commit",
        _ => "start-up",
    }
}

#[test]
fn kill_9_at_random_moments_never_loses_or_double_counts() {
    let mut s = Setup::new("50ms");
    let state = s.state_dir("crash");
    let mut rng = rand::rng();
    let mut landed: BTreeMap<&str, u32> = BTreeMap::new();
    let rounds = 20;
    s.produce(2000);
    for round in 0..rounds {
        // Every third round starts from an empty disk and is killed within 40 ms of its
        // restore starting, so the kill lands in a full restore; the others restore
        // incrementally and are killed while processing.
        let early = round % 3 == 0;
        if early {
            let _ = std::fs::remove_dir_all(&state);
        }
        let mut inst = Instance::start(&s.config, &state);
        if !early {
            assert!(
                inst.wait_for_log("Task running", Duration::from_secs(60)),
                "round {round}: never started:\n{}",
                inst.log()
            );
        } else {
            inst.wait_for_log("Restoring a store", Duration::from_secs(60));
        }
        // Keep events flowing while it runs.
        s.produce(500);
        // Early kills land inside the restore that just started; the others while
        // processing, mostly inside one of the commits that run every 50 ms.
        let producer = s.produce_in_background(500);
        let delay = if early {
            rng.random_range(0..40)
        } else {
            rng.random_range(100..1500)
        };
        std::thread::sleep(Duration::from_millis(delay));
        let log = inst.kill9();
        producer.join().unwrap();
        *landed.entry(classify(&log)).or_default() += 1;
        assert!(!log.contains("panicked"), "round {round}:\n{log}");
    }
    eprintln!("kill points: {landed:?}");
    // A final clean run processes everything left.
    let inst = Instance::start(&s.config, &state);
    let got = s.wait_exact(Duration::from_secs(120), "after 20 kills");
    s.check_boards(Duration::from_secs(60));
    let log = inst.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(got.len(), 1000);
    assert_eq!(got.values().map(|t| t.0).sum::<u64>(), s.next_event);
    assert!(landed.values().sum::<u32>() >= 20);
    s.check_results();
    drop(s.broker);
}

#[test]
fn wiped_state_is_restored_from_the_changelog_exactly() {
    let mut s = Setup::new("200ms");
    let state = s.state_dir("wipe");
    s.produce(3000);
    let mut inst = Instance::start(&s.config, &state);
    assert!(inst.wait_for_log("Task running", Duration::from_secs(60)));
    let before = s.wait_exact(Duration::from_secs(60), "first run");
    inst.stop();

    std::fs::remove_dir_all(&state).unwrap();
    s.produce(1000);
    let mut inst = Instance::start(&s.config, &state);
    assert!(
        inst.wait_for_log("Restored.", Duration::from_secs(60)),
        "{}",
        inst.log()
    );
    let after = s.wait_exact(Duration::from_secs(60), "after the wipe");
    let log = inst.stop();
    assert!(
        log.contains("from=None"),
        "restored from the beginning:\n{log}"
    );
    assert_ne!(before, after, "new events were applied on top");
    drop(s.broker);
}

#[test]
fn tasks_migrate_between_instances_with_exact_totals() {
    let mut s = Setup::new("200ms");
    s.produce(2000);
    let mut a = Instance::start(&s.config, &s.state_dir("a"));
    assert!(a.wait_for_log("Task running", Duration::from_secs(60)));
    s.wait_exact(Duration::from_secs(60), "one instance");

    // B joins: some tasks move to it and are restored there from the changelog.
    let mut b = Instance::start(&s.config, &s.state_dir("b"));
    s.produce(1000);
    assert!(
        b.wait_for_log("Restored.", Duration::from_secs(90)),
        "b never restored a task:\n{}",
        b.log()
    );
    s.wait_exact(Duration::from_secs(60), "two instances");
    assert!(a.log().contains("Partitions revoked"), "a gave tasks away");

    // A leaves: B takes everything.
    a.stop();
    s.produce(1000);
    s.wait_exact(Duration::from_secs(90), "after the first instance left");
    s.check_boards(Duration::from_secs(60));
    let log = b.stop();
    assert!(!log.contains("panicked"), "{log}");
    drop(s.broker);
}
