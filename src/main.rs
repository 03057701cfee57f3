//! `scorestream`: parse the command line and run the chosen subcommand ([`scorestream::cli`]).

use std::process::ExitCode;

use clap::Parser;
use scorestream::cli::{self, args::Cli};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before the runtime's threads start allocating.
    scorestream::os_memory::keep_transparent_huge_pages_off();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::main(Cli::parse()))
}
