//! `scorestream describe`: the topology as text or as a Mermaid flowchart.

use std::path::Path;
use std::process::ExitCode;

use crate::logging::LogFormat;
use crate::topology;

/// Prints the topology the configuration builds; `format` is `text` or `mermaid`.
pub fn command(config: Option<&Path>, format: &str, log_format: LogFormat) -> ExitCode {
    let config = match super::load_config(config, log_format) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = topology::Components::load(&config)
        .map_err(anyhow::Error::from)
        .and_then(|p| Ok(topology::build_topology(&config, &p, None)?));
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
            eprintln!("error: {}", crate::error_chain::display(e.chain()));
            ExitCode::FAILURE
        }
    }
}
