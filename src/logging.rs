//! Log output of the binary: human-readable text (the default) or one JSON object per line
//! for log collectors (`--log-format json`, `SCORESTREAM_LOG_FORMAT=json`). Both keep every
//! field of an event: `warn!(%topic, partition, "...")` becomes
//! `{"timestamp":…,"level":"WARN","message":"...","topic":…,"partition":…,"target":…}`.

use std::io::IsTerminal;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Installs the global subscriber writing to stderr. `RUST_LOG` sets the filter; `default`
/// applies without it (e.g. `info`, or `warn,rdkafka=off` for one-shot commands).
pub fn init(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
