//! `scorestream demo`: the whole pipeline on librdkafka's in-process mock cluster, fed by
//! the built-in generator, with a live one-line-per-second summary and, every few seconds,
//! the leaderboard and its customers' progress read back from `gamification-results`.

mod live;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers as _;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::config::Config;
use crate::generator::{Generator, GeneratorConfig, DEMO_TOPICS};
use crate::ingest::event::CanonicalEvent;
use crate::metrics::Metrics;
use crate::runtime;
use crate::topology::{self, DLQ_SUFFIX, EVENTS_BY_CUSTOMER};

/// Demo settings (the CLI's flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub events: u64,
    pub rate: u64,
    pub customers: u32,
    pub bad_ratio: f64,
    pub partitions: i32,
    pub timeout: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            events: 20_000,
            rate: 5_000,
            customers: 500,
            bad_ratio: 0.02,
            partitions: 3,
            timeout: Duration::from_secs(120),
        }
    }
}

/// What the demo saw, for the caller (and tests) to check.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    pub sent: u64,
    pub sent_bad: u64,
    pub consumed: u64,
    pub rekeyed: u64,
    pub dead_lettered: u64,
    /// Records read back from `gamification-results`.
    pub results: u64,
}

fn sum(v: &prometheus::IntCounterVec, label_ok: impl Fn(&str) -> bool) -> u64 {
    use prometheus::core::Collector;
    v.collect()
        .iter()
        .flat_map(|mf| mf.get_metric().iter())
        .filter(|m| m.get_label().iter().any(|l| label_ok(l.value())))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

fn per_label(v: &prometheus::IntCounterVec) -> BTreeMap<String, u64> {
    use prometheus::core::Collector;
    let mut out = BTreeMap::new();
    for mf in v.collect() {
        for m in mf.get_metric() {
            let labels: Vec<&str> = m.get_label().iter().map(|l| l.value()).collect();
            if !labels.is_empty() {
                *out.entry(labels.join("|")).or_default() += m.get_counter().get_value() as u64;
            }
        }
    }
    out
}

/// `scorestream demo` from its flags: runs it, fails if it did.
pub async fn command(args: crate::cli::args::DemoArgs) -> std::process::ExitCode {
    let opts = DemoOptions {
        events: args.events,
        rate: args.rate,
        customers: args.customers,
        bad_ratio: args.bad_ratio,
        partitions: args.partitions,
        ..DemoOptions::default()
    };
    match run(opts).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {}", crate::error_chain::display(e.chain()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the demo to completion and prints as it goes.
pub async fn run(opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let cluster = MockCluster::new(1).context("cannot start the in-process mock Kafka cluster")?;
    let bootstrap = cluster.bootstrap_servers();
    for t in DEMO_TOPICS {
        cluster
            .create_topic(t, opts.partitions, 1)
            .with_context(|| format!("cannot create topic {t}"))?;
    }
    let (config, _cleanup) = demo_config(&bootstrap);
    println!("ScoreStream demo: in-process mock Kafka at {bootstrap}");
    println!(
        "  sending {} seed-shaped events ({:.0}% bad) for {} customers to {} at ~{}/s",
        opts.events,
        opts.bad_ratio * 100.0,
        opts.customers,
        DEMO_TOPICS.join(", "),
        opts.rate
    );
    let metrics = Metrics::new();
    let parts = topology::Components::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let topology = topology::build_topology(&config, &parts, Some(metrics.clone()))?;
    println!("\n{}", topology.describe());
    // The mock cluster does not implement CreateTopics: create what the runtime plans.
    let existing = DEMO_TOPICS
        .iter()
        .map(|t| (t.to_string(), opts.partitions))
        .collect();
    for plan in runtime::admin::plan_topics(&config, &topology, &existing) {
        cluster
            .create_topic(&plan.name, plan.partitions, 1)
            .with_context(|| format!("cannot create topic {}", plan.name))?;
    }
    let handle = runtime::start(&config, topology, metrics.clone()).await?;
    let mut live = live::LiveView::start(
        &bootstrap,
        &config.gamification.results_topic,
        config.runtime.output_partitions,
    )?;
    let sent_counter = Arc::new(AtomicU64::new(0));
    let generator = spawn_generator(&opts, &bootstrap, sent_counter.clone());

    let out_topic = format!("{}-{EVENTS_BY_CUSTOMER}", config.application_id);
    let watched = Watched {
        config: &config,
        metrics: &metrics,
        out_topic: &out_topic,
        sent: &sent_counter,
    };
    let mut report = watched
        .until_settled(&opts, &live, &generator, &handle)
        .await;
    let (sent, bad) = generator
        .join()
        .map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
    report.sent = sent;
    report.sent_bad = bad;
    handle.shutdown();
    handle.join()?;
    print_samples(&bootstrap, &out_topic, opts.partitions)?;
    // Let the view catch up with the last records before the final picture.
    tokio::time::sleep(Duration::from_secs(1)).await;
    live.stop();
    print_final(&mut report, &live, &metrics);
    if report.rekeyed + report.dead_lettered < sent {
        bail!(
            "only {} of {sent} events accounted for",
            report.rekeyed + report.dead_lettered
        );
    }
    drop(cluster);
    Ok(report)
}

/// The demo's configuration against the mock cluster at `bootstrap`; its state lives in a
/// scratch directory removed when the guard drops.
fn demo_config(bootstrap: &str) -> (Config, RemoveOnDrop) {
    let mut config = Config {
        application_id: "scorestream-demo".into(),
        bootstrap_servers: bootstrap.to_string(),
        inputs: DEMO_TOPICS.iter().map(|s| s.to_string()).collect(),
        ..Config::default()
    };
    config.runtime.replication_factor = 1;
    let state_dir = std::env::temp_dir().join(format!("scorestream-demo-{}", std::process::id()));
    config.state_dir = state_dir.clone();
    config.runtime.commit_interval = Duration::from_millis(500);
    config.runtime.session_timeout = Duration::from_secs(6);
    // One stream thread: the embedded mock cluster's group coordinator rebalances for
    // seconds with several members and refuses offset commits meanwhile, so a demo with a
    // thread per core would start late and repeat records (tests/runtime_mock.rs).
    config.runtime.stream_threads = 1;
    (config, RemoveOnDrop(state_dir))
}

/// The generator on its own thread, paced to the requested rate; returns (sent, bad).
fn spawn_generator(
    opts: &DemoOptions,
    bootstrap: &str,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<anyhow::Result<(u64, u64)>> {
    let gen_opts = opts.clone();
    let gen_bootstrap = bootstrap.to_string();
    std::thread::spawn(move || -> anyhow::Result<(u64, u64)> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &gen_bootstrap)
            .set("linger.ms", "5")
            .create()?;
        let mut g = Generator::new(GeneratorConfig {
            customers: gen_opts.customers,
            bad_ratio: gen_opts.bad_ratio,
            ..GeneratorConfig::default()
        });
        let started = Instant::now();
        let mut bad = 0;
        for i in 0..gen_opts.events {
            let ev = g.next_event(runtime::now_ms());
            bad += u64::from(ev.expected_reason.is_some());
            let mut rec = BaseRecord::<(), [u8]>::to(ev.topic).payload(&ev.value);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            producer.poll(Duration::ZERO);
            sent.fetch_add(1, Ordering::Relaxed);
            let due = Duration::from_secs_f64((i + 1) as f64 / gen_opts.rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        producer.flush(Duration::from_secs(30))?;
        Ok((gen_opts.events, bad))
    })
}

/// What the once-a-second summary reads.
struct Watched<'a> {
    config: &'a Config,
    metrics: &'a Metrics,
    /// `<app-id>-events-by-customer`.
    out_topic: &'a str,
    sent: &'a AtomicU64,
}

impl Watched<'_> {
    /// Prints a summary line a second (and the live view every three) until every event
    /// is in and settled, the runtime stops, or the demo times out.
    async fn until_settled(
        &self,
        opts: &DemoOptions,
        live: &live::LiveView,
        generator: &std::thread::JoinHandle<anyhow::Result<(u64, u64)>>,
        handle: &runtime::RuntimeHandle,
    ) -> DemoReport {
        let (config, metrics, out_topic) = (self.config, self.metrics, self.out_topic);
        let started = Instant::now();
        let mut last = BTreeMap::new();
        let mut report = DemoReport::default();
        let mut settled = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let consumed = per_label(&metrics.records_consumed);
            let rekeyed = sum(&metrics.records_produced, |t| t == out_topic);
            let dlq = sum(&metrics.records_produced, |t| t.ends_with(DLQ_SUFFIX));
            let total: u64 = DEMO_TOPICS
                .iter()
                .map(|t| consumed.get(*t).copied().unwrap_or(0))
                .sum();
            let gamified = consumed.get(out_topic).copied().unwrap_or(0);
            let results = sum(&metrics.records_produced, |t| {
                t == config.gamification.results_topic
            });
            let predictions = sum(&metrics.records_produced, |t| {
                t == config.churn.predictions_topic
            });
            let alerts = sum(&metrics.records_produced, |t| {
                t == config.churn.alerts_topic
            });
            let rates: Vec<String> = DEMO_TOPICS
                .iter()
                .map(|t| {
                    let now = consumed.get(*t).copied().unwrap_or(0);
                    let before = last.get(*t).copied().unwrap_or(0);
                    format!("{}={}/s", t.trim_end_matches("-events"), now - before)
                })
                .collect();
            let secs = started.elapsed().as_secs();
            println!(
                "[{secs:>3}s] sent={} in={total} ({}) dlq={dlq} re-keyed={rekeyed} gamified={gamified} results={results} churn-predictions={predictions} alerts={alerts}",
                self.sent.load(Ordering::Relaxed),
                rates.join(" ")
            );
            if secs.is_multiple_of(3) {
                for line in live.view.lock().expect("view lock").render() {
                    println!("{line}");
                }
            }
            last = consumed;
            report.consumed = total;
            report.rekeyed = rekeyed;
            report.dead_lettered = dlq;
            let all_in = generator.is_finished()
                && total >= opts.events
                && rekeyed + dlq >= opts.events
                && gamified >= rekeyed;
            // Two more ticks so the last leaderboard suppression interval is published.
            settled = if all_in { settled + 1 } else { 0 };
            if settled > 2 {
                break;
            }
            if handle.is_finished() {
                break;
            }
            if started.elapsed() > opts.timeout {
                eprintln!("demo: timed out after {:?}", opts.timeout);
                break;
            }
        }
        report
    }
}

/// The final standings and the totals; fills in `report.results`.
fn print_final(report: &mut DemoReport, live: &live::LiveView, metrics: &Metrics) {
    let joined = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let view = live.view.lock().expect("view lock");
    println!("\nFinal standings:");
    for line in view.render() {
        println!("{line}");
    }
    report.results = view.results_by_type.values().sum();
    println!(
        "\nDone: sent {} ({} bad), consumed {}, re-keyed {}, dead-lettered {}; {} gamification results ({}).",
        report.sent,
        report.sent_bad,
        report.consumed,
        report.rekeyed,
        report.dead_lettered,
        report.results,
        joined(&view.results_by_type)
    );
    let by_band = per_label(&metrics.churn_predictions);
    let alerts = per_label(&metrics.churn_alerts);
    println!(
        "Churn: {} predictions by band|trigger ({}), {} alerts ({}).",
        by_band.values().sum::<u64>(),
        joined(&by_band),
        alerts.values().sum::<u64>(),
        joined(&alerts)
    );
}

fn read_some(
    bootstrap: &str,
    topics: &[String],
    partitions: i32,
    n: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "scorestream-demo-sampler")
        .set("enable.auto.commit", "false")
        .create::<BaseConsumer>()
    else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            let _ = tpl.add_partition_offset(t, p, Offset::Beginning);
        }
    }
    if consumer.assign(&tpl).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    out
}

fn print_samples(bootstrap: &str, out_topic: &str, partitions: i32) -> anyhow::Result<()> {
    println!("\nSample of {out_topic} (key = customer id, value = bincode, shown as JSON):");
    for m in read_some(bootstrap, &[out_topic.to_string()], partitions, 5) {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
        match m.payload().map(CanonicalEvent::decode) {
            Some(Ok(ev)) => println!("  p{} key={key} {}", m.partition(), ev.to_json()),
            _ => println!("  p{} key={key} <undecodable>", m.partition()),
        }
    }
    let dlqs: Vec<String> = DEMO_TOPICS
        .iter()
        .map(|t| format!("{t}{DLQ_SUFFIX}"))
        .collect();
    println!("\nSample of dead letters (original bytes kept; reason in headers):");
    for m in read_some(bootstrap, &dlqs, partitions, 4) {
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default()
        };
        println!(
            "  {} reason={} message=\"{}\" from={}-{}@{} value={:?}",
            m.topic(),
            header("scorestream.error.reason"),
            header("scorestream.error.message"),
            header("scorestream.source.topic"),
            header("scorestream.source.partition"),
            header("scorestream.source.offset"),
            String::from_utf8_lossy(m.payload().unwrap_or_default())
        );
    }
    Ok(())
}

/// Deletes a scratch directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
