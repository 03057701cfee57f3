//! `scorestream state dump`: every committed store entry, read back from the changelogs.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::runtime;
use crate::topology;

/// Prints the entries of every store (or only `only`) as JSON lines.
pub fn dump_command(config: &Config, only: Option<&str>, timeout: Duration) -> ExitCode {
    match dump_state(config, only, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain::display(e.chain()));
            ExitCode::FAILURE
        }
    }
}

fn dump_state(config: &Config, only: Option<&str>, timeout: Duration) -> anyhow::Result<()> {
    use std::io::Write as _;
    let parts = topology::Components::load(config)?;
    let topology = topology::build_topology(config, &parts, None)?;
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
            writeln!(out, "{}", topology::store_entry_json(store, k, v))?;
        }
    }
    out.flush()?;
    Ok(())
}
