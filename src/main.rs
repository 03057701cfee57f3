//! `scorestream`: parse the command line, load configuration, run until shutdown.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scorestream::config::Config;
use scorestream::{app, demo, metrics::Metrics, runtime};
use tracing::{error, info};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "scorestream",
    version,
    about = "A Kafka Streams-style stream processor that turns customer events into gamification results and churn predictions."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the topology against Kafka as one member of the application's consumer group.
    ///
    /// With no --config, runs the bundled topology with defaults; KAFKA_BOOTSTRAP_SERVERS,
    /// SCORESTREAM_APPLICATION_ID, SCORESTREAM_STATE_DIR, SCORESTREAM_HTTP_ADDR and
    /// SCORESTREAM_PROCESSING_GUARANTEE override the file. Stops cleanly on SIGINT/SIGTERM.
    Run {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the whole pipeline on an in-process mock Kafka cluster, fed by the built-in
    /// generator, printing a live summary; ends by itself.
    Demo {
        /// Events to send.
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        /// Events per second.
        #[arg(long, default_value_t = 5_000)]
        rate: u64,
        /// Distinct customers.
        #[arg(long, default_value_t = 500)]
        customers: u32,
        /// Share of deliberately bad records (0.0 to 1.0).
        #[arg(long, default_value_t = 0.02)]
        bad_ratio: f64,
        /// Partitions of each input topic.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
    /// Check the configuration, the source mapping and the gamification rules without
    /// starting anything: every problem is listed, with its key path; exits 2 if any.
    Validate {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Rules file to check instead of the configured `gamification.rules_file`.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Print the topology (sub-topologies, sources, processors, sinks, stores), as text in
    /// the style of Kafka Streams' TopologyDescription or as a Mermaid flowchart.
    Describe {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// `text`, or `mermaid` (a flowchart to paste into Markdown).
        #[arg(long, default_value = "text", value_parser = ["text", "mermaid"])]
        format: String,
    },
    /// Send seed-shaped events (the demo's generator) to any broker: a load producer.
    ///
    /// Events go unkeyed to the input topics the seeds name, as their producers send them,
    /// with a share of deliberately bad records. Waits for every delivery report and exits
    /// non-zero if any event was not acknowledged.
    Generate {
        /// Configuration file for the broker address and librdkafka settings (SASL/TLS).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Overrides the configured bootstrap servers.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Events per second; 0 sends as fast as the broker takes them.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// How many events (default 10,000 unless --duration is given).
        #[arg(long, conflicts_with = "duration")]
        count: Option<u64>,
        /// Send for this long instead of a count (e.g. 30s, 10m).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// Distinct customers.
        #[arg(long, default_value_t = 1000)]
        customers: u32,
        /// Share of deliberately bad records (0.0 to 1.0).
        #[arg(long, default_value_t = 0.02)]
        bad_ratio: f64,
        /// Input topics to send to (comma separated): customer-events, cdr-events,
        /// billing-events, crm-events, app-events.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "customer-events,cdr-events,billing-events,crm-events,app-events"
        )]
        topics: Vec<String>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Create missing topics first, with --partitions partitions.
        #[arg(long)]
        create_topics: bool,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
    /// Read a customer's state or a leaderboard through a running instance's HTTP API. Any
    /// instance answers for any key (it forwards to the owner).
    Query {
        /// The instance's HTTP address.
        #[arg(
            long,
            env = "SCORESTREAM_URL",
            default_value = "http://localhost:8080",
            global = true
        )]
        url: String,
        #[command(subcommand)]
        target: QueryTarget,
    },
    /// Start an application from scratch: delete its internal topics (repartition topics,
    /// changelogs, the instance registry), its consumer group with its committed offsets,
    /// and its local state directory. Stop every instance first: it refuses while the group
    /// has members. Without --yes it only prints what it would do.
    Reset {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Really do it.
        #[arg(long)]
        yes: bool,
        /// Print the plan and exit 0.
        #[arg(long)]
        dry_run: bool,
    },
    /// Churn model: export labelled training data from the built-in simulator, train a
    /// model file from a labelled CSV.
    Churn {
        #[command(subcommand)]
        command: ChurnCommand,
    },
    /// Inspect state.
    State {
        #[command(subcommand)]
        command: StateCommand,
    },
}

#[derive(Subcommand)]
enum QueryTarget {
    /// A customer: profile, points, scores, tier, badges, missions, streaks, churn risk.
    Customer { id: String },
    /// A leaderboard's ranking.
    Leaderboard {
        board: String,
        /// daily, weekly, monthly, all_time (the current one), or a key such as
        /// daily:2024-01-15.
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
}

#[derive(Subcommand)]
enum ChurnCommand {
    /// Simulate customers whose churn follows documented behaviour (declining activity,
    /// complaints, failed payments; see docs/churn.md) and write their features at the
    /// snapshot and their label as CSV (one column per feature, then `churned`).
    Export {
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Fit the logistic-regression model on a labelled CSV (as `export` writes it, or your
    /// own export with the same columns), print the held-out AUC and calibration, and write
    /// the model file `churn.model_file` points at.
    Train {
        #[arg(long, short)]
        input: PathBuf,
        #[arg(long, short)]
        output: PathBuf,
        /// Shuffles the rows before the 80/20 train/held-out split.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The model's `version` (carried by every prediction).
        #[arg(long, default_value = "churn-model-1")]
        version: String,
    },
}

#[derive(Subcommand)]
enum StateCommand {
    /// Print every committed entry of the stores as JSON lines, read from the changelog
    /// topics with the rules restore uses (what a new instance would rebuild). Needs the
    /// broker, not a running instance.
    Dump {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Only this store.
        #[arg(long)]
        store: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let parts = app::Components::load(&config)?;
    let topology = app::build_topology(&config, &parts, Some(metrics.clone()))?;
    let listener = scorestream::http::bind(&config.http_addr).await?;
    let bound = listener.local_addr()?;
    let advertised = scorestream::http::advertised_addr(&config, bound);
    let http = scorestream::http::HttpContext::for_config(
        &config,
        metrics.clone(),
        parts.normalizer.clone(),
    )?;
    info!(addr = %bound, advertised = %advertised, webhook = http.webhook.is_some(), "HTTP listening (/metrics, /health, /ready, /customers, /leaderboards, /events).");
    scorestream::http::spawn(listener, scorestream::http::router(http.clone()));
    info!(application_id = %config.application_id, bootstrap = %config.bootstrap_servers, "Starting.");
    let handle = tokio::select! {
        h = runtime::start_with(&config, topology, metrics, Some(advertised)) => h?,
        _ = shutdown_signal() => { info!("Interrupted during start-up."); return Ok(()); }
    };
    http.serve_queries(
        std::sync::Arc::new(handle.query()),
        std::sync::Arc::new(app::query::QuerySpec::new(
            &config.application_id,
            parts.rules.clone(),
        )),
    );
    http.started
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let flag = handle.shutdown_flag();
    let mut waiter = tokio::task::spawn_blocking(move || handle.join());
    tokio::select! {
        _ = shutdown_signal() => {
            info!("Shutdown requested; finishing in-flight work, committing and leaving the group.");
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        r = &mut waiter => {
            r??;
            return Ok(());
        }
    }
    waiter.await??;
    info!("Stopped.");
    Ok(())
}

fn dump_state(
    config: &Config,
    only: Option<&str>,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let parts = app::Components::load(config)?;
    let topology = app::build_topology(config, &parts, None)?;
    if let Some(s) = only {
        anyhow::ensure!(
            topology.stores().iter().any(|d| d.name == s),
            "no store named '{s}'"
        );
    }
    let dump = runtime::dump::dump_changelogs(config, &topology, timeout)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (store, entries) in &dump {
        if only.is_some_and(|s| s != store) {
            continue;
        }
        for (k, v) in entries {
            writeln!(out, "{}", app::store_entry_json(store, k, v))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `scorestream validate`: everything that would stop `run` before it starts, at once.
fn validate(config: Option<&std::path::Path>, rules: Option<PathBuf>) -> ExitCode {
    let mut failed = false;
    let mut config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            failed = true;
            // Go on with defaults so the mapping and rules are still checked.
            Config::default()
        }
    };
    if rules.is_some() {
        config.gamification.rules_file = rules;
    }
    match app::Components::load(&config) {
        Ok(parts) => match app::build_topology(&config, &parts, None) {
            Ok(t) => {
                let r = &parts.rules;
                println!(
                    "rules {}: {} point types, {} points rules, {} missions, {} badges, {} streaks, {} tiers, {} scores, {} leaderboards",
                    r.version,
                    r.point_types.len(),
                    r.points.len(),
                    r.missions.len(),
                    r.badges.len(),
                    r.streaks.len(),
                    r.tiers.as_ref().map_or(0, |t| t.levels.len()),
                    r.scores.len(),
                    r.leaderboards.len(),
                );
                if let Some(c) = &parts.churn {
                    println!(
                        "churn rules {}: {} trigger event types, usage drop {}, inactivity {}; model {} ({} features{})",
                        c.rules.version,
                        c.rules.trigger_events.len(),
                        if c.rules.usage_drop.is_some() { "on" } else { "off" },
                        c.rules.inactivity.as_ref().map_or("off".to_string(), |i| {
                            humantime::format_duration(std::time::Duration::from_millis(i.after_ms as u64)).to_string()
                        }),
                        c.model.version,
                        c.model.features.len(),
                        c.model
                            .trained
                            .as_ref()
                            .map_or(String::new(), |t| format!(", held-out AUC {}", t.holdout_auc)),
                    );
                }
                println!(
                    "topology: {} sub-topologies, stores: {}",
                    t.subtopologies().len(),
                    t.stores()
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        },
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        println!("OK");
        ExitCode::SUCCESS
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Describe { config, format } => {
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let result = app::Components::load(&config)
                .map_err(anyhow::Error::from)
                .and_then(|p| Ok(app::build_topology(&config, &p, None)?));
            match result {
                Ok(t) if format == "mermaid" => {
                    print!("{}", t.describe_mermaid());
                    ExitCode::SUCCESS
                }
                Ok(t) => {
                    print!("{}", t.describe());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {}", scorestream::error_chain::display(e.chain()));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { config, rules } => validate(config.as_deref(), rules),
        Command::Generate {
            config,
            bootstrap_servers,
            rate,
            count,
            duration,
            customers,
            bad_ratio,
            topics,
            seed,
            create_topics,
            partitions,
        } => {
            // librdkafka repeats connection errors per attempt; the command reports its own.
            init_tracing("warn,rdkafka=off,librdkafka=off");
            let mut config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(b) = bootstrap_servers {
                config.bootstrap_servers = b;
            }
            use scorestream::cli::generate::{self, Amount, GenerateOptions};
            let opts = GenerateOptions {
                amount: match duration {
                    Some(d) => Amount::Duration(d),
                    None => Amount::Count(count.unwrap_or(10_000)),
                },
                rate,
                customers,
                bad_ratio,
                topics,
                seed,
                create_topics: create_topics.then_some(partitions),
            };
            let result = tokio::task::spawn_blocking(move || generate::run(&config, &opts)).await;
            match result {
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
        Command::Query { url, target } => {
            use scorestream::cli::query::{self, Target};
            let target = match target {
                QueryTarget::Customer { id } => Target::Customer(id),
                QueryTarget::Leaderboard {
                    board,
                    period,
                    limit,
                } => Target::Leaderboard {
                    board,
                    period,
                    limit,
                },
            };
            match query::run(&url, &target, std::time::Duration::from_secs(15)).await {
                Ok(body) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reset {
            config,
            yes,
            dry_run,
        } => {
            init_tracing("warn,rdkafka=off,librdkafka=off");
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            use scorestream::cli::reset;
            let outcome = tokio::task::spawn_blocking(move || {
                let plan = reset::plan(&config)?;
                print!("{plan}");
                if dry_run {
                    return Ok(ExitCode::SUCCESS);
                }
                if !yes {
                    eprintln!("nothing changed: add --yes to do it");
                    return Ok(ExitCode::from(2));
                }
                match reset::execute(&config, &plan) {
                    Ok(()) => {
                        println!("reset done");
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(failed) => Err(format!("these steps failed:\n  {}", failed.join("\n  "))),
                }
            })
            .await;
            match outcome {
                Ok(Ok(code)) => code,
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Churn { command } => {
            let result = match command {
                ChurnCommand::Export {
                    customers,
                    seed,
                    output,
                } => scorestream::churn::train::run_export(customers, seed, &output).map(|n| {
                    println!("wrote {n} labelled customers to {}", output.display());
                }),
                ChurnCommand::Train {
                    input,
                    output,
                    seed,
                    version,
                } => scorestream::churn::train::run_train(&input, &output, seed, &version).map(
                    |report| {
                        print!("{report}");
                        println!("wrote {}", output.display());
                    },
                ),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::State {
            command:
                StateCommand::Dump {
                    config,
                    store,
                    timeout,
                },
        } => {
            init_tracing("warn");
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match dump_state(&config, store.as_deref(), timeout) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {}", scorestream::error_chain::display(e.chain()));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => {
            init_tracing("info");
            let config = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match run(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{}", scorestream::error_chain::display(e.chain()));
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            events,
            rate,
            customers,
            bad_ratio,
            partitions,
        } => {
            init_tracing("warn");
            let opts = demo::DemoOptions {
                events,
                rate,
                customers,
                bad_ratio,
                partitions,
                ..demo::DemoOptions::default()
            };
            match demo::run(opts).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "demo failed: {}",
                        scorestream::error_chain::display(e.chain())
                    );
                    ExitCode::FAILURE
                }
            }
        }
    }
}
