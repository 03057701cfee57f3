//! End-to-end load run (not criterion, issue 15): the same pre-produced events, on the same
//! broker, in one run, through
//!
//! - (a) `passthrough`: a raw rdkafka consume → parse JSON → produce loop (this binary again,
//!   in a child process),
//! - (b) `minimal`: the real `scorestream run` binary with `benches/minimal-rules.toml` (one
//!   points rule per event type, churn off: exactly one `points_awarded` per valid event),
//! - (c) `full`: the real `scorestream run` binary with the bundled topology and rules,
//!   churn on (the defaults),
//!
//! each in its own process, so that CPU (utime + stime from `/proc/<pid>/stat`) and peak RSS
//! (`VmHWM`) are that mode's own. Per mode: events/s from the first consumed record to the
//! last output acknowledged, app CPU-seconds per million events, events per app CPU-second,
//! peak RSS, the broker's CPU over the same window, and ratios to (a).
//!
//! Needs a broker and the binary: `scripts/load-ingest.sh` starts Tansu, builds
//! `scorestream` and runs this with `SCORESTREAM_BENCH_BOOTSTRAP` and `SCORESTREAM_BENCH_BIN`
//! set. Without a broker it prints how to run and exits 0 (so `cargo bench` without one is
//! not an error). Settings (environment):
//!
//! - `SCORESTREAM_BENCH_EVENTS`: events (default 1,000,000), over 100,000 customers, 4
//!   partitions, 2 % bad;
//! - `SCORESTREAM_BENCH_MODES`: comma-separated, in order (default
//!   `passthrough,minimal,full`; also `full-nochurn`; `<mode>@<n>` runs a mode with
//!   `runtime.stream_threads = n`, e.g. `minimal@1,minimal@2`; `<mode>#<name>` merges the TOML of
//!   `SCORESTREAM_BENCH_VARIANT_<name>` over it, e.g. `minimal,minimal#big`, and runs the binary
//!   `SCORESTREAM_BENCH_VARIANT_<name>_BIN` if that is set); `SCORESTREAM_BENCH_ROUNDS` repeats
//!   the sequence (default 1);
//! - `SCORESTREAM_BENCH_EXTRA_TOML`: TOML merged over every ScoreStream mode's generated
//!   configuration, winning over it (e.g. `runtime.commit_interval = "500ms"`);
//! - `SCORESTREAM_BENCH_RUST_LOG` (default `warn`): the ScoreStream modes' `RUST_LOG`;
//!   `SCORESTREAM_BENCH_KEEP_LOGS`: a directory to copy each ScoreStream mode's log into;
//! - `SCORESTREAM_BENCH_PERF_DIR`: record `perf record --call-graph dwarf` of the ScoreStream
//!   modes' processing windows into `<dir>/<mode>.data` (slows them: profile in a separate
//!   run from the one you quote rates from); `SCORESTREAM_BENCH_BROKER_PID`: the broker's pid,
//!   for its CPU.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use scorestream::generator::{Generator, GeneratorConfig};
use scorestream::runtime;

const PARTITIONS: i32 = 4;
const CUSTOMERS: u32 = 100_000;

/// The same allocator as the `scorestream` binary, for the raw passthrough too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer")
}

fn send_all(p: &BaseProducer, topic: &str, key: Option<&[u8]>, value: &[u8]) {
    let mut rec = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, back)) => {
                rec = back;
                p.poll(Duration::from_millis(1));
            }
        }
    }
}

fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn create(bootstrap: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    admin
        .create_topics(new.iter(), &AdminOptions::new())
        .await
        .expect("create topics");
}

// ---------------------------------------------------------------------------------------
// A process's own CPU and memory, from /proc.

/// Clock ticks per second of `/proc/<pid>/stat`'s times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of every thread of `pid`, in seconds (`self` for this process).
fn cpu_secs(pid: &str, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks
}

/// Peak resident set size (`VmHWM`) of `pid`, in bytes.
fn peak_rss(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

// ---------------------------------------------------------------------------------------
// (a) The raw passthrough, run as a child process of this binary.

/// What any rdkafka program must do at minimum: consume, parse the JSON, produce it keyed.
/// Prints `STARTED` at the first record and `MEASURED <secs> <cpu secs> <peak rss>` at the end.
fn passthrough_child() {
    let var = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("{n} not set"));
    let (bootstrap, input, output) = (
        var("SCORESTREAM_BENCH_BOOTSTRAP"),
        var("SCORESTREAM_BENCH_INPUT"),
        var("SCORESTREAM_BENCH_OUTPUT"),
    );
    let events: u64 = env_num("SCORESTREAM_BENCH_EVENTS").expect("events");
    let ticks = clock_ticks();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("passthrough-{output}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&input]).expect("subscribe");
    let p = producer(&bootstrap);
    let mut seen = 0u64;
    let mut started: Option<(Instant, f64)> = None;
    while seen < events {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if started.is_none() {
                    started = Some((Instant::now(), cpu_secs("self", ticks)));
                    println!("STARTED");
                    std::io::stdout().flush().ok();
                }
                seen += 1;
                let payload = m.payload().unwrap_or_default();
                let key = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| {
                        v.get("customer_id")
                            .or_else(|| v.get("userId"))
                            .map(|c| c.to_string())
                    });
                send_all(&p, &output, key.as_deref().map(str::as_bytes), payload);
                p.poll(Duration::ZERO);
            }
            Some(Err(e)) => eprintln!("passthrough consumer error: {e}"),
            None => {}
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    let (t0, cpu0) = started.expect("consumed something");
    println!(
        "MEASURED {} {} {}",
        t0.elapsed().as_secs_f64(),
        cpu_secs("self", ticks) - cpu0,
        peak_rss("self")
    );
}

// ---------------------------------------------------------------------------------------
// The measurements.

#[derive(Debug, Clone)]
struct Measured {
    mode: String,
    secs: f64,
    cpu: f64,
    rss: u64,
    broker_cpu: Option<f64>,
    note: String,
    check_failed: bool,
}

/// The broker's CPU seconds so far, when its pid was given.
fn broker_cpu(ticks: f64) -> Option<f64> {
    env_str("SCORESTREAM_BENCH_BROKER_PID").map(|pid| cpu_secs(&pid, ticks))
}

struct Run {
    bootstrap: String,
    input: String,
    run_id: String,
    events: u64,
    ticks: f64,
    bin: Option<PathBuf>,
    extra: Option<toml::Table>,
    perf_dir: Option<PathBuf>,
}

fn run_passthrough(run: &Run, round: usize) -> Measured {
    let output = format!("load-passthrough-{}-{round}", run.run_id);
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env("SCORESTREAM_BENCH_ROLE", "passthrough")
        .env("SCORESTREAM_BENCH_BOOTSTRAP", &run.bootstrap)
        .env("SCORESTREAM_BENCH_INPUT", &run.input)
        .env("SCORESTREAM_BENCH_OUTPUT", &output)
        .env("SCORESTREAM_BENCH_EVENTS", run.events.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the passthrough");
    let mut broker0 = None;
    let mut result = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("passthrough output");
        if line == "STARTED" {
            broker0 = broker_cpu(run.ticks);
        } else if let Some(m) = line.strip_prefix("MEASURED ") {
            let broker = broker_cpu(run.ticks);
            let v: Vec<f64> = m.split(' ').map(|x| x.parse().unwrap()).collect();
            result = Some(Measured {
                mode: "passthrough".into(),
                secs: v[0],
                cpu: v[1],
                rss: v[2] as u64,
                broker_cpu: broker.zip(broker0).map(|(b, b0)| b - b0),
                note: String::new(),
                check_failed: false,
            });
        }
    }
    assert!(
        child.wait().expect("passthrough").success(),
        "passthrough failed"
    );
    result.expect("the passthrough measured itself")
}

/// `GET /metrics` of a running instance, summed by metric name and the given labels.
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn get(port: u16) -> Option<Scrape> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let body = text.split_once("\r\n\r\n")?.1;
        let mut map = BTreeMap::new();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            if let Some((series, value)) = line.rsplit_once(' ') {
                map.insert(series.to_string(), value.parse().unwrap_or(0.0));
            }
        }
        Some(Scrape(map))
    }

    /// Sum of every series of `name` whose labels contain all of `labels` (`k="v"`).
    fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, l) = series.split_once('{').unwrap_or((series.as_str(), ""));
                n == name && labels.iter().all(|want| l.contains(want))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    }

    /// Sum of every series of `name` without the label `skip`.
    fn sum_except(&self, name: &str, skip: &str) -> f64 {
        self.sum(name, &[]) - self.sum(name, &[skip])
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Merges `over` into `base`, tables recursively, `over` winning.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// What the broker holds on `topic`, read from the start to the end of every partition:
/// (records, `points_awarded` records, distinct event ids among those).
fn read_results(bootstrap: &str, topic: &str) -> (u64, u64, u64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-check-{topic}"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("checking consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts = md.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let (mut records, mut points) = (0u64, 0u64);
    let mut ids = HashSet::new();
    let mut at_end = HashSet::new();
    let until = Instant::now() + Duration::from_secs(300);
    while at_end.len() < parts && Instant::now() < until {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                records += 1;
                let v: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                if v["type"] == "points_awarded" {
                    points += 1;
                    ids.insert(v["event_id"].as_str().unwrap_or_default().to_string());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => eprintln!("checking consumer: {e}"),
            None => {}
        }
    }
    (records, points, ids.len() as u64)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
}

fn wait_bounded(child: &mut Child, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The TOML of `SCORESTREAM_BENCH_VARIANT_<name>`, for a mode `<mode>#<name>`.
fn variant_toml(name: &str) -> toml::Table {
    let var = format!("SCORESTREAM_BENCH_VARIANT_{name}");
    let text = env_str(&var)
        .or_else(|| env_str(&format!("{var}_BIN")).map(|_| String::new()))
        .unwrap_or_else(|| panic!("mode variant #{name}: set {var} or {var}_BIN"));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{var} is not TOML: {e}"))
}

/// (b), (c): the real binary with a generated configuration.
fn run_scorestream(run: &Run, mode: &str, round: usize) -> Measured {
    // `<mode>#<variant>` runs `SCORESTREAM_BENCH_VARIANT_<variant>_BIN` if set: another build,
    // for before/after in one run.
    let variant_bin = mode
        .split_once('#')
        .and_then(|(_, v)| env_str(&format!("SCORESTREAM_BENCH_VARIANT_{v}_BIN")))
        .map(PathBuf::from);
    let bin = variant_bin
        .as_ref()
        .or(run.bin.as_ref())
        .expect("SCORESTREAM_BENCH_BIN: the scorestream binary (scripts/load-ingest.sh sets it)");
    let dir = tempfile::tempdir().expect("a directory for the run");
    let app_id = format!(
        "bench-{}-{}-{round}",
        run.run_id,
        mode.replace('@', "-t").replace('#', "-v")
    );
    let port = free_port();
    let results = format!("{app_id}-results");
    let mut config: toml::Table = toml::from_str(&format!(
        r#"
        application_id = "{app_id}"
        bootstrap_servers = "{bootstrap}"
        inputs = ["{input}"]
        state_dir = "{state}"
        http_addr = "127.0.0.1:{port}"
        [runtime]
        replication_factor = 1
        session_timeout = "6s"
        [gamification]
        results_topic = "{results}"
        [churn]
        predictions_topic = "{app_id}-predictions"
        alerts_topic = "{app_id}-alerts"
        "#,
        bootstrap = run.bootstrap,
        input = run.input,
        state = dir.path().join("state").display(),
    ))
    .expect("generated configuration");
    // `<mode>#<variant>`: the mode with the TOML of `SCORESTREAM_BENCH_VARIANT_<variant>`
    // merged over it, to compare settings side by side in one run.
    let label = mode;
    let (mode, variant) = match mode.split_once('#') {
        Some((m, v)) => (m, Some(variant_toml(v))),
        None => (mode, None),
    };
    // `<mode>@<n>`: the mode with `runtime.stream_threads = n`, to compare thread counts
    // side by side in one run.
    let (mode, threads) = match mode.split_once('@') {
        Some((m, n)) => (m, Some(n.parse::<i64>().expect("threads after '@'"))),
        None => (mode, None),
    };
    if let Some(n) = threads {
        let t = config
            .entry("runtime")
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .expect("[runtime] is a table");
        t.insert("stream_threads".into(), n.into());
    }
    let minimal = mode == "minimal";
    if minimal {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/minimal-rules.toml");
        let t = config
            .get_mut("gamification")
            .and_then(|v| v.as_table_mut());
        t.unwrap()
            .insert("rules_file".into(), rules.display().to_string().into());
    }
    if minimal || mode == "full-nochurn" {
        let t = config.get_mut("churn").and_then(|v| v.as_table_mut());
        t.unwrap().insert("enabled".into(), false.into());
    }
    if let Some(extra) = &run.extra {
        merge(&mut config, extra);
    }
    if let Some(variant) = &variant {
        merge(&mut config, variant);
    }
    let config_path = dir.path().join("scorestream.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let log_path = dir.path().join("scorestream.log");
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&config_path)
        .env(
            "RUST_LOG",
            env_str("SCORESTREAM_BENCH_RUST_LOG").unwrap_or_else(|| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let pid = child.id().to_string();
    let keyed_topic = format!("topic=\"{app_id}-events-by-customer\"");
    let input_topic = format!("topic=\"{}\"", run.input);
    let dlq_topic = format!("topic=\"{}-dlq\"", run.input);
    let results_topic = format!("topic=\"{results}\"");
    let predictions_topic = format!("topic=\"{app_id}-predictions\"");
    let alerts_topic = format!("topic=\"{app_id}-alerts\"");
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut started: Option<(Instant, f64, Option<f64>)> = None;
    let mut perf: Option<Child> = None;
    let last = loop {
        assert!(Instant::now() < deadline, "{mode}: not done in 30 min");
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("{mode}: scorestream exited ({status}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(if started.is_some() {
            100
        } else {
            20
        }));
        let Some(m) = Scrape::get(port) else { continue };
        if started.is_none() && m.sum("scorestream_records_consumed_total", &[&input_topic]) > 0.0 {
            started = Some((
                Instant::now(),
                cpu_secs(&pid, run.ticks),
                broker_cpu(run.ticks),
            ));
            if let Some(d) = &run.perf_dir {
                perf = Some(start_perf(d, mode, &pid));
            }
        }
        // Done when every event was dead-lettered by ingest or consumed by the stateful
        // task, and every result, prediction, alert and dead letter sent is acknowledged.
        let keyed = m.sum("scorestream_records_consumed_total", &[&keyed_topic]);
        let bad = m.sum_except("scorestream_dead_letters_total", "reason=\"late_event\"");
        let sent = [
            (m.sum("scorestream_game_results_total", &[]), &results_topic),
            (
                m.sum("scorestream_churn_predictions_total", &[]),
                &predictions_topic,
            ),
            (m.sum("scorestream_churn_alerts_total", &[]), &alerts_topic),
            (m.sum("scorestream_dead_letters_total", &[]), &dlq_topic),
        ];
        let acked = sent
            .iter()
            .all(|(n, t)| m.sum("scorestream_records_produced_total", &[t.as_str()]) >= *n);
        if keyed + bad >= run.events as f64 && acked {
            break m;
        }
    };
    let (t0, cpu0, broker0) = started.expect("consumed something");
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(&pid, run.ticks) - cpu0;
    let rss = peak_rss(&pid);
    let broker = broker_cpu(run.ticks).zip(broker0).map(|(b, b0)| b - b0);
    if let Some(mut p) = perf {
        signal(p.id(), "-INT");
        let _ = p.wait();
    }

    let keyed = last.sum("scorestream_records_consumed_total", &[&keyed_topic]);
    let bad = last.sum_except("scorestream_dead_letters_total", "reason=\"late_event\"");
    let dup = last.sum("scorestream_duplicate_events_total", &[]);
    let late = last.sum("scorestream_late_events_total", &[]);
    let all = last.sum("scorestream_game_results_total", &[]);
    let points = last.sum(
        "scorestream_game_results_total",
        &["type=\"points_awarded\""],
    );
    let mut by_type: Vec<String> = last
        .0
        .iter()
        .filter(|(s, _)| s.starts_with("scorestream_game_results_total{"))
        .map(|(s, v)| {
            let t = s.split('"').nth(1).unwrap_or("?");
            format!("{t} {:.2}", v / run.events as f64)
        })
        .collect();
    by_type.sort();
    let hits = last.sum("scorestream_store_cache_hits_total", &[]);
    let misses = last.sum("scorestream_store_cache_misses_total", &[]);
    let mut note = format!(
        "results/event {:.2} ({}); commits {} ({:.1} s in them); backpressure pauses {}; rewinds {}; store reads {:.0} ({:.1} % from the read cache)",
        all / run.events as f64,
        by_type.join(", "),
        last.sum("scorestream_commits_total", &[]),
        last.sum("scorestream_commit_duration_seconds_sum", &[]),
        last.sum("scorestream_backpressure_waits_total", &[]),
        last.sum("scorestream_rewinds_total", &[]),
        hits + misses,
        100.0 * hits / (hits + misses).max(1.0),
    );
    let mut check_failed = false;
    if minimal {
        // Exactly one points_awarded per valid event (not dead-lettered, not a duplicate
        // or late), and nothing else — by the app's counters and on the broker.
        let expected = keyed - dup - late;
        let (on_topic, points_on_topic, distinct) = read_results(&run.bootstrap, &results);
        let ok = points == expected
            && all == points
            && on_topic as f64 == points
            && points_on_topic == on_topic
            && distinct == on_topic
            && keyed + bad == run.events as f64;
        check_failed = !ok;
        note.push_str(&format!(
            "\n    count check {}: {} valid events ({} consumed − {} bad), {} duplicates, {} late; {} points_awarded of {} results (counters); on {}: {} records, {} points_awarded, {} distinct event ids",
            if ok { "OK" } else { "FAILED" },
            keyed - dup - late,
            run.events,
            bad,
            dup,
            late,
            points,
            all,
            results,
            on_topic,
            points_on_topic,
            distinct
        ));
    }
    signal(child.id(), "-TERM");
    if !wait_bounded(&mut child, Duration::from_secs(60)) {
        eprintln!("{mode}: no clean stop within 60 s; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(keep) = env_str("SCORESTREAM_BENCH_KEEP_LOGS") {
        let to = Path::new(&keep).join(format!("{app_id}.log"));
        let _ = std::fs::create_dir_all(&keep);
        match std::fs::copy(&log_path, &to) {
            Ok(_) => println!("    log kept: {}", to.display()),
            Err(e) => eprintln!("    could not keep the log at {}: {e}", to.display()),
        }
    }
    Measured {
        mode: label.to_string(),
        secs,
        cpu,
        rss,
        broker_cpu: broker,
        note,
        check_failed,
    }
}

fn start_perf(dir: &Path, mode: &str, pid: &str) -> Child {
    std::fs::create_dir_all(dir).expect("perf directory");
    let out = dir.join(format!("{mode}.data"));
    Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "199",
            "--call-graph",
            "dwarf,8192",
            "-p",
            pid,
            "-o",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf record (package linux-perf)")
}

fn main() {
    if std::env::var("SCORESTREAM_BENCH_ROLE").as_deref() == Ok("passthrough") {
        passthrough_child();
        return;
    }
    let Some(bootstrap) = env_str("SCORESTREAM_BENCH_BOOTSTRAP") else {
        println!("e2e_ingest: set SCORESTREAM_BENCH_BOOTSTRAP (or run scripts/load-ingest.sh)");
        return;
    };
    let events: u64 = env_num("SCORESTREAM_BENCH_EVENTS").unwrap_or(1_000_000);
    let modes: Vec<String> = env_str("SCORESTREAM_BENCH_MODES")
        .unwrap_or_else(|| "passthrough,minimal,full".into())
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    for m in &modes {
        let m = m.split_once('#').map_or(m.as_str(), |(b, v)| {
            variant_toml(v);
            b
        });
        let base = m.split_once('@').map_or(m, |(b, _)| b);
        assert!(
            ["passthrough", "minimal", "full", "full-nochurn"].contains(&base),
            "unknown mode {m}"
        );
    }
    let rounds: usize = env_num("SCORESTREAM_BENCH_ROUNDS").unwrap_or(1);
    let extra = env_str("SCORESTREAM_BENCH_EXTRA_TOML").map(|t| {
        toml::from_str::<toml::Table>(&t).expect("SCORESTREAM_BENCH_EXTRA_TOML is not TOML")
    });
    let run_id = format!("{:08x}", rand::random::<u32>());
    let run = Run {
        input: format!("load-in-{run_id}"),
        bootstrap,
        run_id,
        events,
        ticks: clock_ticks(),
        bin: env_str("SCORESTREAM_BENCH_BIN").map(PathBuf::from),
        extra,
        perf_dir: env_str("SCORESTREAM_BENCH_PERF_DIR").map(PathBuf::from),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(create(
        &run.bootstrap,
        &[&run.input, &format!("{}-dlq", run.input)],
    ));

    println!(
        "Producing {events} seed-shaped events (2 % bad, {CUSTOMERS} customers, no key) to {} ({PARTITIONS} partitions)...",
        run.input
    );
    let p = producer(&run.bootstrap);
    let mut g = Generator::new(GeneratorConfig {
        customers: CUSTOMERS,
        ..GeneratorConfig::default()
    });
    let t = Instant::now();
    for _ in 0..events {
        let ev = g.next_event(runtime::now_ms());
        send_all(&p, &run.input, None, &ev.value);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    println!(
        "  broker ingest (produce only): {:.0} events/s",
        events as f64 / t.elapsed().as_secs_f64()
    );
    if let Some(extra) = &run.extra {
        println!(
            "  extra ScoreStream configuration: {}",
            toml::to_string(extra).unwrap().trim().replace('\n', "; ")
        );
    }

    let mut all = Vec::new();
    for round in 0..rounds {
        for mode in &modes {
            let m = if mode == "passthrough" {
                run_passthrough(&run, round)
            } else {
                run_scorestream(&run, mode, round)
            };
            print_one(&m, events);
            all.push(m);
        }
    }
    println!("\nSummary ({events} events; ratios to the passthrough of the same round):");
    println!("| mode | events/s | app CPU s per M events | events per app CPU-s | peak RSS | broker CPU s | events/s vs (a) | CPU per event vs (a) |");
    println!("|---|---|---|---|---|---|---|---|");
    let per_round = modes.len();
    for (i, m) in all.iter().enumerate() {
        let round = &all[i / per_round * per_round..(i / per_round + 1) * per_round];
        let base = round.iter().find(|r| r.mode == "passthrough");
        let rate = events as f64 / m.secs;
        let (r1, r2) = base.map_or(("–".into(), "–".into()), |b| {
            (
                format!("{:.2}", rate / (events as f64 / b.secs)),
                format!("{:.2}", m.cpu / b.cpu),
            )
        });
        println!(
            "| {} | {:.0} | {:.1} | {:.0} | {:.0} MB | {} | {} | {} |",
            m.mode,
            rate,
            m.cpu * 1e6 / events as f64,
            events as f64 / m.cpu,
            m.rss as f64 / 1e6,
            m.broker_cpu.map_or("–".into(), |b| format!("{b:.1}")),
            r1,
            r2
        );
    }
    if all.iter().any(|m| m.check_failed) {
        eprintln!("a count check FAILED (see above)");
        std::process::exit(1);
    }
}

fn print_one(m: &Measured, events: u64) {
    println!(
        "({}) {:.0} events/s ({:.2} s); app CPU {:.2} s = {:.1} s per M events = {:.0} events per CPU-s; peak RSS {:.0} MB{}",
        m.mode,
        events as f64 / m.secs,
        m.secs,
        m.cpu,
        m.cpu * 1e6 / events as f64,
        events as f64 / m.cpu,
        m.rss as f64 / 1e6,
        m.broker_cpu
            .map_or(String::new(), |b| format!("; broker CPU {b:.1} s"))
    );
    if !m.note.is_empty() {
        println!("    {}", m.note);
    }
}
