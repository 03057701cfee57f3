//! CPU per event (process CPU time) of the topology itself, in process: seed-shaped generator events (100,000
//! customers, 2 % bad) through the real topology in the `TopologyTestDriver` with RocksDB
//! stores behind the read cache (as `scorestream run` keeps them), no broker and no
//! runtime. Each task commits every `SCORESTREAM_BENCH_COMMIT_EVERY` records (default
//! 2,000, about what a 1 s commit interval gives a task at the target rates), so store
//! writes are batched as in the runtime.
//!
//! Two workloads, alternating rounds in one run:
//! - minimal: one points rule per event type the generator sends (points = value ×
//!   weight; types without a value get the weight once), nothing else, churn off;
//! - full: the bundled topology with the default configuration (bundled rules, churn on).
//!
//! ```sh
//! cargo bench --bench topology_cost
//! ```
//!
//! Environment: `SCORESTREAM_BENCH_EVENTS` (measured events, default 200,000, after as
//! many not counted), `SCORESTREAM_BENCH_ROUNDS` (3), `SCORESTREAM_BENCH_WORKLOAD`
//! (`minimal` or `full`: only that one), `SCORESTREAM_BENCH_COMMIT_EVERY` (2,000).
//!
//! `SCORESTREAM_BENCH_THREADS=1,2` instead compares thread counts (issue 15's
//! `stream_threads` scaling where a broker on the same two cores would be the limit): with
//! k threads, each runs its own driver over the events of 1/k of the customers (as k stream
//! threads own disjoint tasks), with 1/k of the memory budget each (the runtime's threads
//! share one), all started together; the number is events per **wall-clock** second of the
//! measured part, beside the process CPU per event. Bad records are spread round-robin.

/// CPU time of the whole process (every thread, RocksDB's background jobs included), in
/// seconds, from `/proc/self/stat` (user + system, in clock ticks of 1/100 s): the box is
/// shared, so wall time would measure the neighbours too.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a tick count");
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};
use scorestream::generator::{Generator, GeneratorConfig};
use scorestream::topology;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: i32 = 4;
const CUSTOMERS: u32 = 100_000;
/// 2030-01-01: the driver's wall clock; events are generated just before it.
const WALL_CLOCK: i64 = 1_893_456_000_000;

/// One points rule per event type of the generator: (event type, weight, has a value).
const MINIMAL_RULES: &[(&str, f64, bool)] = &[
    ("data_usage", 0.1, true),
    ("voice_call", 0.05, true),
    ("recharge", 1.0, true),
    ("order_placed", 0.5, true),
    ("kyc_update", 50.0, false),
    ("plan_downgrade", 1.0, false),
    ("complaint", 1.0, false),
    ("login", 5.0, false),
    ("product_viewed", 1.0, false),
    ("payment_failed", 1.0, false),
    ("cart_abandoned", 1.0, false),
    ("email_opened", 2.0, false),
    ("post_liked", 1.0, false),
    ("post_created", 10.0, false),
    ("user_login", 5.0, false),
    ("video_uploaded", 20.0, false),
];

fn minimal_rules() -> String {
    let mut text = String::from("rules_version = \"bench-minimal\"\n\n[point_types.xp]\n");
    for (event_type, weight, valued) in MINIMAL_RULES {
        let amount = if *valued { "per_unit" } else { "base" };
        text.push_str(&format!(
            "\n[points.{event_type}_xp]\nevent_type = \"{event_type}\"\npoint_type = \"xp\"\n{amount} = {weight}\n"
        ));
    }
    text
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Minimal,
    Full,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Minimal => "minimal",
            Workload::Full => "full",
        }
    }
}

struct Setup {
    config: Config,
    parts: topology::Components,
    _rules_dir: tempfile::TempDir,
}

fn setup(workload: Workload) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        inputs: scorestream::generator::DEMO_TOPICS
            .iter()
            .map(|t| t.to_string())
            .collect(),
        ..Config::default()
    };
    if workload == Workload::Minimal {
        let path = dir.path().join("minimal.toml");
        std::fs::write(&path, minimal_rules()).unwrap();
        config.gamification.rules_file = Some(path);
        config.churn.enabled = false;
    }
    let parts = topology::Components::load(&config).unwrap();
    Setup {
        config,
        parts,
        _rules_dir: dir,
    }
}

/// The bundled topology over RocksDB in `dir`. Outputs are counted and dropped, as the
/// runtime's producer hands them on.
fn driver(
    setup: &Setup,
    config: &Config,
    dir: &std::path::Path,
    commit_every: usize,
) -> TopologyTestDriver {
    let topology = topology::build_topology(config, &setup.parts, None).unwrap();
    TopologyTestDriver::with_partitions(topology, PARTITIONS, WALL_CLOCK)
        .with_rocksdb(dir, config)
        .with_commit_every(commit_every)
        .discard_outputs()
}

/// Pipes `batch` round-robin over the partitions, then commits.
fn pipe(driver: &mut TopologyTestDriver, batch: &[(&'static str, Vec<u8>)]) {
    for (i, (topic, value)) in batch.iter().enumerate() {
        driver
            .pipe_to_partition(
                topic,
                i as i32 % PARTITIONS,
                Record::new(value.clone(), WALL_CLOCK),
            )
            .unwrap();
    }
    driver.commit().unwrap();
}

/// CPU seconds for `events`, piped after `warm_up` (not counted: the customers' state is
/// stored and the read cache filled, as in a running instance), and result records
/// written to the results topic by `events`.
fn run(
    setup: &Setup,
    warm_up: &[(&'static str, Vec<u8>)],
    events: &[(&'static str, Vec<u8>)],
    commit_every: usize,
) -> (f64, i64) {
    let state_dir = tempfile::tempdir().unwrap();
    let mut driver = driver(setup, &setup.config, state_dir.path(), commit_every);
    let results_topic = &setup.config.gamification.results_topic;
    pipe(&mut driver, warm_up);
    let results_before = driver.written(results_topic);
    let started = process_cpu_seconds();
    pipe(&mut driver, events);
    let secs = process_cpu_seconds() - started;
    (secs, driver.written(results_topic) - results_before)
}

/// Wall-clock seconds and process CPU seconds for `events` split over `groups.len()`
/// threads, each with its own driver, after each has piped its share of `warm_up`.
fn run_threads(
    setup: &Setup,
    warm_up: &[Vec<(&'static str, Vec<u8>)>],
    events: &[Vec<(&'static str, Vec<u8>)>],
    commit_every: usize,
) -> (f64, f64) {
    let k = events.len();
    let mut config = setup.config.clone();
    config.memory_budget_bytes /= k;
    let ready = std::sync::Barrier::new(k + 1);
    let done = std::sync::Barrier::new(k + 1);
    std::thread::scope(|scope| {
        for (warm, mine) in warm_up.iter().zip(events) {
            let (config, ready, done) = (&config, &ready, &done);
            scope.spawn(move || {
                let state_dir = tempfile::tempdir().unwrap();
                let mut driver = driver(setup, config, state_dir.path(), commit_every);
                pipe(&mut driver, warm);
                ready.wait();
                pipe(&mut driver, mine);
                done.wait();
            });
        }
        ready.wait();
        let (wall, cpu) = (std::time::Instant::now(), process_cpu_seconds());
        done.wait();
        (wall.elapsed().as_secs_f64(), process_cpu_seconds() - cpu)
    })
}

/// Splits `events` into `k` groups by customer (bad records round-robin).
fn by_customer(
    events: &[(&'static str, Vec<u8>, Option<String>)],
    k: usize,
) -> Vec<Vec<(&'static str, Vec<u8>)>> {
    let mut groups = vec![Vec::new(); k];
    for (i, (topic, value, customer)) in events.iter().enumerate() {
        let g = match customer {
            Some(c) => xxhash_rust::xxh3::xxh3_64(c.as_bytes()) as usize % k,
            None => i % k,
        };
        groups[g].push((*topic, value.clone()));
    }
    groups
}

fn thread_scaling(
    setups: &[(Workload, Setup)],
    generated: &[(&'static str, Vec<u8>, Option<String>)],
    n: usize,
    rounds: usize,
    commit_every: usize,
    threads: &[usize],
) {
    let (warm_up, events) = generated.split_at(n);
    for (w, s) in setups {
        let mut best: Vec<Vec<f64>> = vec![Vec::new(); threads.len()];
        for round in 0..rounds {
            for (t, &k) in threads.iter().enumerate() {
                let (wall, cpu) = run_threads(
                    s,
                    &by_customer(warm_up, k),
                    &by_customer(events, k),
                    commit_every,
                );
                println!(
                    "  round {round}: {:<7} threads {k}: {:.0} events per wall-second, {:.2} µs CPU/event",
                    w.name(),
                    n as f64 / wall,
                    1e6 * cpu / n as f64
                );
                best[t].push(n as f64 / wall);
            }
        }
        let medians: Vec<f64> = best.iter_mut().map(|r| median(r)).collect();
        for (k, m) in threads.iter().zip(&medians) {
            println!(
                "{} threads {k}: median {m:.0} events per wall-second ({:.2}x threads {})",
                w.name(),
                m / medians[0],
                threads[0]
            );
        }
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo test --all-targets` runs benches without `--bench` (debug build): a smoke run.
    let measuring = std::env::args().any(|a| a == "--bench");
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let n = env("SCORESTREAM_BENCH_EVENTS").unwrap_or(if measuring { 200_000 } else { 2_000 });
    let rounds = env("SCORESTREAM_BENCH_ROUNDS").unwrap_or(if measuring { 3 } else { 1 });
    let commit_every = env("SCORESTREAM_BENCH_COMMIT_EVERY").unwrap_or(2_000);
    let workloads: Vec<Workload> = match std::env::var("SCORESTREAM_BENCH_WORKLOAD").as_deref() {
        Ok("minimal") => vec![Workload::Minimal],
        Ok("full") => vec![Workload::Full],
        _ => vec![Workload::Minimal, Workload::Full],
    };
    let mut g = Generator::new(GeneratorConfig {
        customers: CUSTOMERS,
        ..GeneratorConfig::default()
    });
    // Spread over the 10 minutes before the wall clock: `n` to warm up, `n` measured.
    let generated: Vec<(&'static str, Vec<u8>, Option<String>)> = (0..2 * n)
        .map(|i| {
            let e = g.next_event(WALL_CLOCK - 600_000 + (i as i64 * 300_000 / n as i64));
            (e.topic, e.value, e.customer_id)
        })
        .collect();
    if let Ok(threads) = std::env::var("SCORESTREAM_BENCH_THREADS") {
        let threads: Vec<usize> = threads
            .split(',')
            .map(|t| t.trim().parse().expect("thread counts, e.g. 1,2"))
            .collect();
        println!(
            "{n} seed-shaped events after {n} not counted, {CUSTOMERS} customers split by customer over \
             {threads:?} threads, one driver each, RocksDB, commit every {commit_every} records per task:"
        );
        let setups: Vec<(Workload, Setup)> = workloads.iter().map(|&w| (w, setup(w))).collect();
        thread_scaling(&setups, &generated, n, rounds, commit_every, &threads);
        return;
    }
    let events: Vec<(&'static str, Vec<u8>)> = generated
        .into_iter()
        .map(|(topic, value, _)| (topic, value))
        .collect();
    let (warm_up, events) = events.split_at(n);
    println!(
        "{n} seed-shaped events after {n} not counted, {CUSTOMERS} customers, {PARTITIONS} partitions, RocksDB, \
         commit every {commit_every} records per task, in-process topology:"
    );
    let setups: Vec<(Workload, Setup)> = workloads.iter().map(|&w| (w, setup(w))).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for round in 0..rounds {
        for (i, (w, s)) in setups.iter().enumerate() {
            let (secs, results) = run(s, warm_up, events, commit_every);
            let us = 1e6 * secs / n as f64;
            println!(
                "  round {round}: {:<7} {us:6.2} µs/event ({:.0} events per CPU-second, {:.2} results/event)",
                w.name(),
                n as f64 / secs,
                results as f64 / n as f64
            );
            times[i].push(us);
        }
    }
    for ((w, _), t) in setups.iter().zip(&mut times) {
        let m = median(t);
        println!(
            "{}: median {m:.2} µs/event = {:.0} events per CPU-second",
            w.name(),
            1e6 / m
        );
    }
}
