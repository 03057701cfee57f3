//! The operator commands: [`args`] declares the command line, [`main`] runs the chosen
//! subcommand. `run` (the processor itself), `describe`, `validate`, `test` (case files),
//! `generate` (a load producer), `query` (state through a running instance), `reset` (start
//! an application from scratch), `churn` (training data and model), `state dump`, `demo`
//! and `completions`, each in its own file, with progress shown on a terminal.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;
use crate::logging::LogFormat;

pub mod args;
pub mod case_diff;
pub mod case_file;
pub mod churn;
pub mod describe;
pub mod generate;
pub mod progress;
pub mod query;
pub mod reset;
pub mod run;
pub mod state;
pub mod validate;

use args::{Cli, Command, StateCommand};

/// Runs the subcommand `cli` names; what it returns is the process's exit code.
pub async fn main(cli: Cli) -> ExitCode {
    let log_format = cli.log_format;
    let init_tracing = move |default: &str| crate::logging::init(default, log_format);
    match cli.command {
        Command::Describe { config, format } => {
            describe::command(config.as_deref(), &format, log_format)
        }
        Command::Validate { config, rules } => validate::command(config.as_deref(), rules),
        Command::Test { cases, rules } => case_file::command(&cases, rules.as_deref()),
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
        Command::Generate(args) => {
            // librdkafka repeats connection errors per attempt; the command reports its own.
            init_tracing("warn,rdkafka=off,librdkafka=off");
            match load_config(args.config.as_deref(), log_format) {
                Ok(config) => generate::command_from_args(config, args).await,
                Err(code) => code,
            }
        }
        Command::Query { url, target } => query::command(&url, target).await,
        Command::Reset {
            config,
            yes,
            dry_run,
        } => {
            init_tracing("warn,rdkafka=off,librdkafka=off");
            match load_config(config.as_deref(), log_format) {
                Ok(config) => reset::command(config, yes, dry_run).await,
                Err(code) => code,
            }
        }
        Command::Churn { command } => churn::command(command),
        Command::State {
            command:
                StateCommand::Dump {
                    config,
                    store,
                    timeout,
                },
        } => {
            init_tracing("warn");
            match load_config(config.as_deref(), log_format) {
                Ok(config) => state::dump_command(&config, store.as_deref(), timeout),
                Err(code) => code,
            }
        }
        Command::Run { config } => {
            init_tracing("info");
            match load_config(config.as_deref(), log_format) {
                Ok(config) => run::command(config).await,
                Err(code) => code,
            }
        }
        Command::Demo(args) => {
            init_tracing("warn");
            crate::demo::command(args).await
        }
    }
}

/// Loads the configuration; on failure prints every problem (as ERROR events with JSON
/// logs, else on stderr) and returns exit code 2.
pub fn load_config(path: Option<&Path>, log_format: LogFormat) -> Result<Config, ExitCode> {
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
