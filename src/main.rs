//! `scorestream`: parse the command line, load configuration, run until shutdown.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scorestream::config::Config;
use scorestream::logging::LogFormat;
use scorestream::{app, demo, metrics::Metrics, runtime};
use tracing::{error, info};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "scorestream",
    version = scorestream::build_info::LONG_VERSION,
    about = "A Kafka Streams-style stream processor that turns customer events into gamification results and churn predictions."
)]
struct Cli {
    /// Log lines on stderr: `text`, or `json` (one object per line, fields kept) for log
    /// collectors.
    #[arg(
        long,
        global = true,
        env = "SCORESTREAM_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the topology against Kafka as one member of the application's consumer group.
    ///
    /// With no --config, runs the bundled topology with defaults. Stops cleanly on
    /// SIGINT/SIGTERM (finishes in-flight work, commits, leaves the group).
    #[command(after_long_help = RUN_ENVIRONMENT)]
    Run {
        #[arg(long, short, help = CONFIG_HELP)]
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
        /// Share of deliberately bad records, 0.0 to 1.0.
        #[arg(long, default_value_t = 0.02, value_parser = parse_ratio)]
        bad_ratio: f64,
        /// Partitions of each input topic (at least 1).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
    },
    /// Check the configuration, the source mapping and the gamification rules without
    /// starting anything: every problem is listed, with its key path; exits 2 if any.
    Validate {
        #[arg(long, short, help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Rules file to check instead of the configured `gamification.rules_file`.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Print the topology (sub-topologies, sources, processors, sinks, stores), as text in
    /// the style of Kafka Streams' TopologyDescription or as a Mermaid flowchart.
    Describe {
        #[arg(long, short, help = CONFIG_HELP)]
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
        /// Share of deliberately bad records, 0.0 to 1.0.
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
        /// Seed of the random generator: the same seed sends the same events.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Create missing topics first, with --partitions partitions.
        #[arg(long)]
        create_topics: bool,
        /// Partitions of the topics --create-topics creates (at least 1).
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
    /// Read a customer's state or a leaderboard through a running instance's HTTP API. Any
    /// instance answers for any key (it forwards to the owner).
    Query {
        /// The instance's HTTP address, with its scheme (http://host:port).
        #[arg(
            long,
            env = "SCORESTREAM_URL",
            default_value = "http://localhost:8080",
            global = true,
            value_parser = parse_base_url
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
        #[arg(long, short, help = CONFIG_HELP)]
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
    /// Run case files (readable `events → expected results` tests, the format of the
    /// project's tests/cases/) against a rules file, as a rule author would before
    /// deploying it. Prints `ok` or a readable difference per case; exits 1 if any case
    /// fails, 2 if a case or rules file is invalid.
    Test {
        /// Case files (TOML), or directories of them.
        #[arg(required = true)]
        cases: Vec<PathBuf>,
        /// Rules file to test; default: the bundled topology/gamification.toml. A case
        /// that embeds its own `rules` uses those.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Print a shell completion script, e.g. `scorestream completions bash >
    /// /etc/bash_completion.d/scorestream`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

const CONFIG_HELP: &str = "TOML configuration file (see docs/configuration.md); without it, the defaults plus the environment overrides";

const RUN_ENVIRONMENT: &str = "\
Environment (overrides the configuration file):
  KAFKA_BOOTSTRAP_SERVERS           broker list (bootstrap_servers)
  SCORESTREAM_APPLICATION_ID        consumer group id and internal topic prefix (application_id)
  SCORESTREAM_STATE_DIR             local state directory (state_dir)
  SCORESTREAM_HTTP_ADDR             HTTP listen address, host:port (http_addr)
  SCORESTREAM_ADVERTISED_HTTP_ADDR  address other instances reach this one at (http.advertised_addr)
  SCORESTREAM_PROCESSING_GUARANTEE  at_least_once or exactly_once (processing_guarantee)
  SCORESTREAM_WEBHOOK_TOKEN         bearer token of POST /events (http.webhook_token)
  RUST_LOG                          log filter, e.g. info, debug, scorestream=debug,librdkafka=warn
                                    (default: info)";

/// A share from 0.0 to 1.0.
fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("'{text}' is not a number from 0.0 to 1.0")),
    }
}

/// `--url`: a base URL with its scheme; `host:port` alone is a common slip worth naming.
fn parse_base_url(text: &str) -> Result<String, String> {
    scorestream::cli::query::check_base_url(text)
}

#[derive(Subcommand)]
enum QueryTarget {
    /// A customer: profile, points, scores, tier, badges, missions, streaks, churn risk.
    Customer {
        /// The customer id, as in the events (`customer_id`).
        id: String,
    },
    /// A leaderboard's ranking.
    Leaderboard {
        /// The board id, as in the rules file's `[leaderboards.<id>]`.
        board: String,
        /// daily, weekly, monthly, all_time (the current one), or a key such as
        /// daily:2024-01-15. Default: all_time if the board keeps it, else its first period.
        #[arg(long)]
        period: Option<String>,
        /// How many entries, from the top: 1 to 1000 (default 100).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
}

#[derive(Subcommand)]
enum ChurnCommand {
    /// Simulate customers whose churn follows documented behaviour (declining activity,
    /// complaints, failed payments; see docs/churn.md) and write their features at the
    /// snapshot and their label as CSV (one column per feature, then `churned`).
    Export {
        /// Simulated customers (rows of the CSV).
        #[arg(long, default_value_t = 20_000)]
        customers: usize,
        /// Seed of the simulation: the same seed writes the same file.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// CSV file to write.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Fit the logistic-regression model on a labelled CSV (as `export` writes it, or your
    /// own export with the same columns), print the held-out AUC and calibration, and write
    /// the model file `churn.model_file` points at.
    Train {
        /// Labelled CSV: one column per feature, then `churned` (0 or 1).
        #[arg(long, short)]
        input: PathBuf,
        /// Model file to write (TOML, what `churn.model_file` points at).
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
        #[arg(long, short, help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// Only this store.
        #[arg(long)]
        store: Option<String>,
        /// Give up after this long.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

fn load_config(path: Option<&std::path::Path>, log_format: LogFormat) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        // With JSON logs, a log collector reads stderr: each problem is an ERROR event.
        if log_format == LogFormat::Json && tracing::dispatcher::has_been_set() {
            for problem in &e.0 {
                tracing::error!(key = %problem.key, "Invalid configuration: {}: {}", problem.key, problem.message);
            }
        } else {
            eprintln!("{e}");
        }
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
    let processed = metrics.record_process_seconds.clone();
    if runtime::hooks::stall_from_env(move || processed.get_sample_count() > 0)
        .map_err(anyhow::Error::msg)?
    {
        tracing::warn!(
            "Test hook set: the processing thread stalls at a named point ({}).",
            runtime::hooks::STALL_ENV
        );
    }
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
    info!(addr = %bound, advertised = %advertised, webhook = http.webhook.is_some(), "HTTP listening (/metrics, /health, /ready, /instances, /customers, /leaderboards, /events).");
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

/// `scorestream validate`: every problem of every file on stderr (exit 2), or what was
/// checked on stdout.
fn validate(config: Option<&std::path::Path>, rules: Option<PathBuf>) -> ExitCode {
    let report = scorestream::cli::validate::validate(config, rules);
    if report.ok() {
        print!("{}", report.summary);
        ExitCode::SUCCESS
    } else {
        for p in &report.problems {
            eprintln!("{p}");
        }
        ExitCode::from(2)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    let init_tracing = move |default: &str| scorestream::logging::init(default, log_format);
    match cli.command {
        Command::Describe { config, format } => {
            let config = match load_config(config.as_deref(), log_format) {
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
        Command::Test { cases, rules } => {
            use scorestream::cli::case_file;
            let mut out = std::io::stdout().lock();
            match case_file::run_files(&cases, rules.as_deref(), &mut out) {
                Ok(s) if s.invalid > 0 => ExitCode::from(2),
                Ok(s) if s.failed > 0 => ExitCode::FAILURE,
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "scorestream",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
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
            let mut config = match load_config(config.as_deref(), log_format) {
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
            let config = match load_config(config.as_deref(), log_format) {
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
            let config = match load_config(config.as_deref(), log_format) {
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
            let config = match load_config(config.as_deref(), log_format) {
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// `--help` describes every flag and argument of every command.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && !matches!(id, "help" | "version") {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "scorestream", &mut missing);
        assert!(missing.is_empty(), "no help for: {missing:?}");
        super::Cli::command().debug_assert();
    }

    /// `run --help` names every environment variable the configuration reads.
    #[test]
    fn run_help_lists_every_environment_override() {
        let read = std::cell::RefCell::new(Vec::new());
        let _ = scorestream::config::Config::from_toml_with_env(None, &|k| {
            read.borrow_mut().push(k.to_string());
            None
        });
        let read = read.into_inner();
        assert!(read.len() >= 7, "{read:?}");
        for var in read {
            assert!(
                super::RUN_ENVIRONMENT.contains(&var),
                "{var} missing from run --help"
            );
        }
    }
}
