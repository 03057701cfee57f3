//! `scorestream churn export|train`: labelled training data from the simulator, and the
//! model file fitted on it.

use std::process::ExitCode;

use super::args::ChurnCommand;
use crate::churn::train;

/// Runs `churn export` or `churn train`.
pub fn command(command: ChurnCommand) -> ExitCode {
    let result = match command {
        ChurnCommand::Export {
            customers,
            seed,
            output,
        } => train::run_export(customers, seed, &output).map(|n| {
            println!("wrote {n} labelled customers to {}", output.display());
        }),
        ChurnCommand::Train {
            input,
            output,
            seed,
            version,
        } => train::run_train(&input, &output, seed, &version).map(|report| {
            print!("{report}");
            println!("wrote {}", output.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
