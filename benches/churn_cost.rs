//! What the churn branch adds to the per-event cost of the full topology, in process: the
//! same seed-shaped events through the real topology in the `TopologyTestDriver` (ingest,
//! per-customer game state, leaderboards; in-memory stores, no broker), with churn on and
//! off, alternating rounds in one run. Measures the CPU work (features, triggers, scoring,
//! the larger stored value, prediction records); the broker's share of the extra records is
//! in the end-to-end run (`scripts/load-ingest.sh`, BENCHMARKS.md).
//!
//!   cargo bench --bench churn_cost          (SCORESTREAM_BENCH_EVENTS, default 200,000)

use std::time::Instant;

use scorestream::config::Config;
use scorestream::engine::{Record, TopologyTestDriver};
use scorestream::generator::{Generator, GeneratorConfig};
use scorestream::topology;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: i32 = 4;
/// 2030-01-01: the driver's wall clock; events are generated just before it.
const WALL_CLOCK: i64 = 1_893_456_000_000;

fn run(events: &[(&'static str, Vec<u8>)], churn: bool) -> (f64, usize) {
    let mut config = Config::default();
    config.churn.enabled = churn;
    config.inputs = scorestream::generator::DEMO_TOPICS
        .iter()
        .map(|t| t.to_string())
        .collect();
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, None).unwrap();
    let mut driver = TopologyTestDriver::with_partitions(topology, PARTITIONS, WALL_CLOCK);
    let started = Instant::now();
    for (i, (topic, value)) in events.iter().enumerate() {
        driver
            .pipe_to_partition(
                topic,
                i as i32 % PARTITIONS,
                Record::new(value.clone(), WALL_CLOCK),
            )
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let predictions = driver.read_output(&config.churn.predictions_topic).len();
    (secs, predictions)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo test --all-targets` runs benches without `--bench` (debug build): a smoke run.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SCORESTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 200_000 } else { 2_000 });
    let mut g = Generator::new(GeneratorConfig {
        customers: 20_000,
        ..GeneratorConfig::default()
    });
    // Spread over the 10 minutes before the wall clock.
    let events: Vec<(&'static str, Vec<u8>)> = (0..n)
        .map(|i| {
            let e = g.next_event(WALL_CLOCK - 600_000 + (i as i64 * 600_000 / n as i64));
            (e.topic, e.value)
        })
        .collect();
    println!(
        "{n} seed-shaped events, {PARTITIONS} partitions, in-process topology, alternating rounds:"
    );
    // Warm-up (allocator, caches, lazily built tables), not counted.
    run(&events, false);
    run(&events, true);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..if measuring { 4 } else { 1 } {
        let (t_off, _) = run(&events, false);
        let (t_on, predictions) = run(&events, true);
        println!(
            "  round {round}: without churn {:.2} µs/event, with churn {:.2} µs/event ({predictions} predictions): {:+.1} %",
            1e6 * t_off / n as f64,
            1e6 * t_on / n as f64,
            100.0 * (t_on / t_off - 1.0)
        );
        off.push(t_off);
        on.push(t_on);
    }
    let (s_on, s_off): (f64, f64) = (on.iter().sum(), off.iter().sum());
    println!(
        "churn adds {:.1} % per event (total of the rounds, after one warm-up round each)",
        100.0 * (s_on / s_off - 1.0)
    );
}
