//! `scorestream generate`: a load producer of seed-shaped events (the demo's generator) to
//! any broker, at a rate, for a count or a duration, with a share of bad records.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use super::progress::Progress;
use crate::config::Config;
use crate::generator::{Generator, GeneratorConfig, DEMO_TOPICS};
use crate::runtime::client::{producer_config, DeliveryContext};
use crate::runtime::now_ms;

/// How much to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Count(u64),
    Duration(Duration),
}

/// What `generate` does.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub amount: Amount,
    /// Events per second; 0 = as fast as the broker takes them.
    pub rate: u64,
    pub customers: u32,
    pub bad_ratio: f64,
    pub topics: Vec<String>,
    pub seed: u64,
    /// Create missing topics with this many partitions first.
    pub create_topics: Option<i32>,
}

/// What was sent.
#[derive(Debug, Default)]
pub struct GenerateReport {
    pub sent: u64,
    pub bad: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    pub by_topic: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

/// Checks options before anything is sent; every problem at once.
pub fn check(opts: &GenerateOptions) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for t in &opts.topics {
        if !DEMO_TOPICS.contains(&t.as_str()) {
            problems.push(format!(
                "--topics: '{t}' is not one the generator has shapes for ({})",
                DEMO_TOPICS.join(", ")
            ));
        }
    }
    if opts.topics.is_empty() {
        problems.push("--topics: at least one topic".into());
    }
    if !(0.0..=1.0).contains(&opts.bad_ratio) {
        problems.push("--bad-ratio: must be between 0 and 1".into());
    }
    if opts.customers == 0 {
        problems.push("--customers: must be above zero".into());
    }
    if opts.create_topics.is_some_and(|p| p < 1) {
        problems.push("--partitions: must be above zero".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn create_missing(config: &Config, topics: &[String], partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = crate::runtime::client::admin_config(config)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let results = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .map_err(|e| format!("create topics: {e}"))?;
    for r in results {
        match r {
            Ok(t) => eprintln!("created topic {t} ({partitions} partitions)"),
            Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("topic {t} exists")
            }
            Err((t, e)) => return Err(format!("cannot create topic {t}: {e}")),
        }
    }
    Ok(())
}

/// Sends events until the amount is reached, then waits for every delivery report.
pub fn run(config: &Config, opts: &GenerateOptions) -> Result<GenerateReport, String> {
    check(opts).map_err(|p| p.join("\n"))?;
    if let Some(partitions) = opts.create_topics {
        create_missing(config, &opts.topics, partitions)?;
    }
    let metrics = crate::metrics::Metrics::new();
    let mut pc: ClientConfig = producer_config(config);
    pc.set("message.timeout.ms", "60000");
    let producer: BaseProducer<DeliveryContext> = pc
        .create_with_context(DeliveryContext::new(metrics.clone(), Default::default()))
        .map_err(|e| format!("producer: {e}"))?;
    let mut generator = Generator::new(GeneratorConfig {
        customers: opts.customers,
        bad_ratio: opts.bad_ratio,
        seed: opts.seed,
        topics: opts.topics.clone(),
    });
    let total = match opts.amount {
        Amount::Count(n) => Some(n),
        Amount::Duration(_) => None,
    };
    let progress = Progress::new("generate", total);
    let started = Instant::now();
    let mut report = GenerateReport::default();
    loop {
        let done = match opts.amount {
            Amount::Count(n) => report.sent >= n,
            Amount::Duration(d) => started.elapsed() >= d,
        };
        if done {
            break;
        }
        if opts.rate > 0 {
            // Paced: the n-th event goes out at n / rate seconds.
            let due = Duration::from_secs_f64(report.sent as f64 / opts.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                producer.poll(wait.min(Duration::from_millis(50)));
                continue;
            }
        }
        let ev = generator.next_event(now_ms());
        let record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(ev.topic, 0).payload(&ev.value);
        send_until_queued(&producer, record, &mut report);
        report.sent += 1;
        report.bad += u64::from(ev.expected_reason.is_some());
        *report.by_topic.entry(ev.topic.to_string()).or_default() += 1;
        producer.poll(Duration::ZERO);
        progress.set(report.sent);
    }
    progress.message("waiting for the broker to acknowledge every event");
    if let Err(e) = producer.flush(Duration::from_secs(120)) {
        report.first_error.get_or_insert_with(|| e.to_string());
    }
    let undelivered = undelivered(&metrics);
    report.failed += undelivered + producer.in_flight_count().max(0) as u64;
    if undelivered > 0 {
        report.first_error.get_or_insert_with(|| {
            "the broker did not acknowledge some events (see the log)".into()
        });
    }
    report.elapsed = started.elapsed();
    progress.finish();
    Ok(report)
}

/// Queues `record` in the producer, waiting while its queue is full; any other refusal is
/// counted as failed in `report`.
fn send_until_queued(
    producer: &BaseProducer<DeliveryContext>,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
    report: &mut GenerateReport,
) {
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((e, back)) => {
                if !matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ) {
                    report.failed += 1;
                    report.first_error.get_or_insert_with(|| e.to_string());
                    break;
                }
                record = back;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Events the broker did not acknowledge, by the delivery reports.
fn undelivered(metrics: &crate::metrics::Metrics) -> u64 {
    use prometheus::core::Collector;
    metrics
        .delivery_failures
        .collect()
        .iter()
        .flat_map(|mf| mf.get_metric().iter())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

impl std::fmt::Display for GenerateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "sent {} events ({} deliberately bad) in {:.1} s: {:.0} events/s; {} failed",
            self.sent,
            self.bad,
            secs,
            self.sent as f64 / secs,
            self.failed
        )?;
        for (t, n) in &self.by_topic {
            writeln!(f, "  {t}: {n}")?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "first error: {e}")?;
        }
        Ok(())
    }
}

/// `scorestream generate` from its flags, over the loaded configuration.
pub async fn command_from_args(
    mut config: Config,
    args: super::args::GenerateArgs,
) -> std::process::ExitCode {
    if let Some(b) = args.bootstrap_servers {
        config.bootstrap_servers = b;
    }
    let opts = GenerateOptions {
        amount: match args.duration {
            Some(d) => Amount::Duration(d),
            None => Amount::Count(args.count.unwrap_or(10_000)),
        },
        rate: args.rate,
        customers: args.customers,
        bad_ratio: args.bad_ratio,
        topics: args.topics,
        seed: args.seed,
        create_topics: args.create_topics.then_some(args.partitions),
    };
    command(config, opts).await
}

/// `scorestream generate`: sends, prints the report; fails if any event was not
/// acknowledged, exit 2 if the options or the broker setup are wrong.
pub async fn command(config: Config, opts: GenerateOptions) -> std::process::ExitCode {
    use std::process::ExitCode;
    match tokio::task::spawn_blocking(move || run(&config, &opts)).await {
        Ok(Ok(report)) => {
            print!("{report}");
            if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
