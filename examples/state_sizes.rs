//! How many bytes each store holds per key with the bundled rules: the numbers behind
//! "Sizing state" in docs/operations.md.
//!
//!     cargo run --release --example state_sizes [CUSTOMERS EVENTS_PER_CUSTOMER DAYS]
//!
//! Generator events (the five seed shapes, no bad records) spread evenly over DAYS of event
//! time go through the real topology in the synchronous test driver (4 partitions, the
//! bundled gamification and churn rules, default settings); then every key and value of
//! every store is measured as stored (bincode, before RocksDB's LZ4 compression). The
//! generator writes one customer under several id shapes (an MSISDN for telecom feeds, a
//! `CUST-` id for orders, a user id for app events), so there are more keys than
//! CUSTOMERS. Without arguments, three runs: light, medium and heavy activity.

use scorestream::config::Config;
use scorestream::engine::{Record, TaskId, TopologyTestDriver};
use scorestream::generator::{Generator, GeneratorConfig, DEMO_TOPICS};
use scorestream::topology;

const PARTITIONS: i32 = 4;
/// 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;
const DAY_MS: i64 = 86_400_000;

fn measure(customers: u32, per_customer: u64, days: i64) {
    let config = Config {
        application_id: "state-sizes".into(),
        inputs: DEMO_TOPICS.iter().map(|s| s.to_string()).collect(),
        ..Config::default()
    };
    let parts = topology::Components::load(&config).expect("bundled rules load");
    let topology =
        topology::build_topology(&config, &parts, None).expect("bundled topology builds");
    let end = START_MS + days * DAY_MS;
    let mut driver = TopologyTestDriver::with_partitions(topology, PARTITIONS, end);
    let mut generator = Generator::new(GeneratorConfig {
        customers,
        bad_ratio: 0.0,
        seed: 7,
        ..GeneratorConfig::default()
    });
    let events = u64::from(customers) * per_customer;
    for i in 0..events {
        let now = START_MS + ((end - START_MS) as i128 * i as i128 / events as i128) as i64;
        let e = generator.next_event(now);
        let partition = (i % PARTITIONS as u64) as i32;
        driver
            .pipe_to_partition(e.topic, partition, Record::new(e.value, now))
            .expect("the topology processes generator events");
        if i % 10_000 == 0 {
            // Keep the driver's output buffers small; only state is measured.
            for topic in driver.output_topics() {
                driver.read_output(&topic);
            }
        }
    }
    println!("{customers} customers x {per_customer} events over {days} days ({events} events):");
    println!("| store | keys | events per key | mean bytes | p50 | p90 | p99 | max | total |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut stores: Vec<String> = Vec::new();
    for subtopology in 0..3 {
        for partition in 0..PARTITIONS {
            if let Some(state) = driver.task_state(TaskId {
                subtopology,
                partition,
            }) {
                for name in state.store_names() {
                    if !stores.iter().any(|s| s == name) {
                        stores.push(name.to_string());
                    }
                }
            }
        }
    }
    for store in &stores {
        let mut sizes = Vec::new();
        for subtopology in 0..3 {
            for partition in 0..PARTITIONS {
                let Some(state) = driver.task_state(TaskId {
                    subtopology,
                    partition,
                }) else {
                    continue;
                };
                let Some(index) = state.store_names().iter().position(|s| s == store) else {
                    continue;
                };
                for (k, v) in state.raw_entries(index).expect("readable store") {
                    sizes.push(k.len() + v.len());
                }
            }
        }
        sizes.sort_unstable();
        if sizes.is_empty() {
            continue;
        }
        let q = |f: f64| sizes[((sizes.len() - 1) as f64 * f) as usize];
        let total: usize = sizes.iter().sum();
        println!(
            "| {store} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {total} |",
            sizes.len(),
            events as f64 / sizes.len() as f64,
            total as f64 / sizes.len() as f64,
            q(0.5),
            q(0.9),
            q(0.99),
            q(1.0),
        );
    }
    println!();
}

fn main() {
    let args: Vec<i64> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("CUSTOMERS EVENTS_PER_CUSTOMER DAYS are integers")
        })
        .collect();
    match args[..] {
        [customers, per_customer, days] => measure(customers as u32, per_customer as u64, days),
        [] => {
            measure(1000, 10, 30);
            measure(1000, 100, 30);
            measure(200, 1000, 30);
        }
        _ => panic!("usage: state_sizes [CUSTOMERS EVENTS_PER_CUSTOMER DAYS]"),
    }
}
