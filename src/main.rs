//! `scorestream`: parse the command line and run the chosen subcommand ([`scorestream::cli`]).

use std::process::ExitCode;

use clap::Parser;
use scorestream::cli::{self, args::Cli};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    cli::main(Cli::parse()).await
}
