//! End-to-end load run (not criterion): the same events through (a) a raw rdkafka
//! consume → parse → produce passthrough and (b) ScoreStream's whole topology (ingest,
//! gamification, leaderboards), against
//! the same broker in one run, printing both rates and their ratio.
//!
//! Needs a broker: `scripts/load-ingest.sh` starts Tansu and runs this with
//! `SCORESTREAM_BENCH_BOOTSTRAP` set. Without it, it prints how to run and exits 0 (so
//! `cargo bench` without a broker is not an error). `SCORESTREAM_BENCH_EVENTS` sets the
//! event count (default 1,000,000).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use scorestream::config::Config;
use scorestream::generator::{Generator, GeneratorConfig};
use scorestream::metrics::Metrics;
use scorestream::{app, runtime};

const PARTITIONS: i32 = 4;

/// The same allocator as the `scorestream` binary, so (b) measures what users run. The raw
/// passthrough (a) gets it too.
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

fn send_all(
    p: &BaseProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
    partition: Option<i32>,
) {
    let mut rec = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    if let Some(part) = partition {
        rec = rec.partition(part);
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

/// A numeric `SCORESTREAM_BENCH_*` setting, if set and valid.
fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
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

/// (a) The baseline: what any rdkafka program must do at minimum.
fn passthrough(bootstrap: &str, input: &str, output: &str, events: u64) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("passthrough-{input}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    let p = producer(bootstrap);
    let mut seen = 0u64;
    let mut started = None;
    while seen < events {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                started.get_or_insert_with(Instant::now);
                seen += 1;
                let payload = m.payload().unwrap_or_default();
                let key = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| {
                        v.get("customer_id")
                            .or_else(|| v.get("userId"))
                            .map(|c| c.to_string())
                    });
                send_all(&p, output, key.as_deref().map(str::as_bytes), payload, None);
                p.poll(Duration::ZERO);
            }
            Some(Err(e)) => eprintln!("passthrough consumer error: {e}"),
            None => {}
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    started.expect("consumed something").elapsed()
}

/// (b) ScoreStream's whole topology through the real runtime (its own application id, so
/// it reads the input from the start), with or without the churn branch.
async fn scorestream_ingest(bootstrap: &str, input: &str, events: u64, churn: bool) -> Duration {
    let mut config = Config {
        application_id: format!("bench-{input}-{}", rand::random::<u32>()),
        bootstrap_servers: bootstrap.to_string(),
        inputs: vec![input.to_string()],
        ..Config::default()
    };
    config.runtime.replication_factor = 1;
    config.runtime.session_timeout = Duration::from_secs(6);
    config.churn.enabled = churn;
    if let Some(b) = env_num("SCORESTREAM_BENCH_CACHE_BYTES") {
        config.state.cache_bytes = Some(b);
    }
    if let Some(n) = env_num("SCORESTREAM_BENCH_MAX_IN_FLIGHT") {
        config.runtime.max_in_flight_records = Some(n);
    }
    if let Some(n) = env_num("SCORESTREAM_BENCH_MAX_IN_FLIGHT_BYTES") {
        config.runtime.max_in_flight_bytes = Some(n);
    }
    if let Some(ms) = env_num("SCORESTREAM_BENCH_COMMIT_MS") {
        config.runtime.commit_interval = Duration::from_millis(ms);
    }
    let state = tempfile::tempdir().expect("state directory");
    config.state_dir = state.path().to_path_buf();
    let metrics = Metrics::new();
    let parts = app::Components::load(&config).expect("mapping and rules");
    let topology = app::build_topology(&config, &parts, Some(metrics.clone())).expect("topology");
    let handle = runtime::start(&config, topology, metrics.clone())
        .await
        .expect("start");
    let consumed = metrics.records_consumed.with_label_values(&[input]);
    let keyed = metrics.records_consumed.with_label_values(&[&format!(
        "{}-{}",
        config.application_id,
        app::EVENTS_BY_CUSTOMER
    )]);
    let mut started = None;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if consumed.get() > 0 {
            started.get_or_insert_with(Instant::now);
        }
        // Done when every event went through both sub-topologies: dead-lettered by
        // ingest, or re-keyed and then consumed by the stateful per-customer task.
        use prometheus::core::Collector;
        let dead: u64 = metrics
            .dead_letters
            .collect()
            .iter()
            .flat_map(|mf| mf.get_metric().iter())
            .map(|m| m.get_counter().get_value() as u64)
            .sum();
        // ...and every result, dead letter and changelog record is acknowledged.
        if keyed.get() + dead >= events && metrics.pending_outputs.get() == 0 {
            break;
        }
    }
    let elapsed = started.expect("consumed something").elapsed();
    {
        use prometheus::core::Collector;
        let by_type: Vec<(String, u64)> = metrics
            .game_results
            .collect()
            .iter()
            .flat_map(|mf| mf.get_metric().iter())
            .map(|m| {
                let t = m.get_label().first().map_or("", |l| l.value()).to_string();
                (t, m.get_counter().get_value() as u64)
            })
            .collect();
        let results: u64 = by_type.iter().map(|(_, n)| n).sum();
        println!("  results by type: {by_type:?}");
        let predictions: u64 = metrics
            .churn_predictions
            .collect()
            .iter()
            .flat_map(|mf| mf.get_metric().iter())
            .map(|m| m.get_counter().get_value() as u64)
            .sum();
        println!(
            "  ScoreStream sent {results} gamification results ({:.2} per event), {predictions} churn predictions; commits {} taking {:.2} s in all; backpressure pauses {}",
            results as f64 / events as f64,
            metrics.commits.get(),
            metrics.commit_duration.get_sample_sum(),
            metrics.backpressure_waits.get(),
        );
    }
    handle.shutdown();
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .expect("clean stop");
    elapsed
}

#[tokio::main]
async fn main() {
    let Ok(bootstrap) = std::env::var("SCORESTREAM_BENCH_BOOTSTRAP") else {
        println!("e2e_ingest: set SCORESTREAM_BENCH_BOOTSTRAP (or run scripts/load-ingest.sh)");
        return;
    };
    let events: u64 = env_num("SCORESTREAM_BENCH_EVENTS").unwrap_or(1_000_000);
    let run = format!("{:08x}", rand::random::<u32>());
    let input = format!("load-in-{run}");
    let out = format!("load-passthrough-{run}");
    create(&bootstrap, &[&input, &out, &format!("{input}-dlq")]).await;

    println!(
        "Producing {events} seed-shaped events (2% bad) to {input} ({PARTITIONS} partitions)..."
    );
    let p = producer(&bootstrap);
    let mut g = Generator::new(GeneratorConfig {
        customers: 100_000,
        ..GeneratorConfig::default()
    });
    let t = Instant::now();
    for _ in 0..events {
        let ev = g.next_event(runtime::now_ms());
        send_all(&p, &input, None, &ev.value, None);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    let produce = t.elapsed();
    println!(
        "  broker ingest (produce only): {:.0} events/s",
        events as f64 / produce.as_secs_f64()
    );

    let raw = tokio::task::spawn_blocking({
        let (b, i, o) = (bootstrap.clone(), input.clone(), out.clone());
        move || passthrough(&b, &i, &o, events)
    })
    .await
    .unwrap();
    let raw_rate = events as f64 / raw.as_secs_f64();
    println!(
        "(a) raw passthrough (consume → parse JSON → produce): {raw_rate:.0} events/s ({raw:.2?})"
    );

    let ours = scorestream_ingest(&bootstrap, &input, events, true).await;
    let our_rate = events as f64 / ours.as_secs_f64();
    println!("(b) ScoreStream, full topology (ingest, per-customer game + churn state in RocksDB + changelog, results, predictions, leaderboards; at-least-once, commits every 1 s): {our_rate:.0} events/s ({ours:.2?})");
    println!("ratio (b)/(a) = {:.2}", our_rate / raw_rate);

    // The churn branch's cost: the same topology without it, alternating runs (this machine
    // is shared and noisy; `SCORESTREAM_BENCH_CHURN_ROUNDS` pairs, default 1).
    let rounds = env_num("SCORESTREAM_BENCH_CHURN_ROUNDS").unwrap_or(1);
    let (mut on, mut off) = (vec![our_rate], Vec::new());
    for round in 0..rounds {
        let t = scorestream_ingest(&bootstrap, &input, events, false).await;
        off.push(events as f64 / t.as_secs_f64());
        println!(
            "(c) the same without churn: {:.0} events/s ({t:.2?})",
            off[off.len() - 1]
        );
        if round + 1 < rounds {
            let t = scorestream_ingest(&bootstrap, &input, events, true).await;
            on.push(events as f64 / t.as_secs_f64());
            println!(
                "(b) again, with churn: {:.0} events/s ({t:.2?})",
                on[on.len() - 1]
            );
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "churn adds {:.1} % per event (mean of {} with / {} without: {:.0} / {:.0} events/s)",
        100.0 * (mean(&off) / mean(&on) - 1.0),
        on.len(),
        off.len(),
        mean(&on),
        mean(&off)
    );
}
