//! The bundled ScoreStream topology: its processors (ingest, game with the churn branch,
//! leaderboards), what they are built from (the files under the top-level `topology/`
//! folder: source mapping, gamification rules, churn rules and model, see [`load`]) and the
//! list of parts [`build_topology`] assembles from configuration. The generic machinery they
//! run on is [`crate::engine`].

mod build;
pub mod churn;
pub mod game;
pub mod ingest;
mod leaderboard_points;
pub mod leaderboards;
pub mod load;
pub mod query;
mod store_json;
mod stored_game;

pub(crate) use build::validate_parts;
pub use build::{build_topology, BuildCtx, Part, PARTS};
pub use load::{churn_parts, normalizer, rules, Components, FileLoadError, LoadError};
pub use store_json::store_entry_json;

use crate::metrics::Metrics;

/// Suffix of the internal repartition topic holding events keyed by customer id.
pub const EVENTS_BY_CUSTOMER: &str = "events-by-customer";
/// Suffix of the internal repartition topic holding leaderboard totals keyed by board.
pub const LEADERBOARD_POINTS: &str = "leaderboard-points";
/// Suffix of every dead-letter topic: `<input-topic>-dlq`.
pub const DLQ_SUFFIX: &str = "-dlq";

/// A record on an internal topic that does not decode (written by another version, or
/// corrupted): given to `policy` as `undecodable_internal` (no dead-letter sink: the
/// configuration offers drop or fail), and counted in `corrupt_internal_records`.
pub(crate) fn undecodable(
    ctx: &mut crate::engine::ProcessorContext<'_>,
    metrics: Option<&Metrics>,
    bad_records: &crate::engine::BadRecords,
    policy: crate::engine::ErrorPolicy,
    record: crate::engine::Record,
    error: &dyn std::fmt::Display,
    what: &str,
) -> Result<(), crate::engine::ProcessorError> {
    if let Some(m) = metrics {
        m.corrupt_internal_records.inc();
    }
    let message = format!("undecodable {what}: {error}");
    bad_records.handle(ctx, None, record, policy, UNDECODABLE_INTERNAL, &message)
}

/// The reason of a record on an internal topic that does not decode.
pub const UNDECODABLE_INTERNAL: &str = "undecodable_internal";
