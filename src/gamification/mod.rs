//! The pure gamification core: rules, per-customer game state, and the evaluation that
//! turns one event into points, missions, badges, streaks, tiers, scores and leaderboard
//! updates (DESIGN §1, sub-topologies 2 and 3).
//!
//! Nothing here touches Kafka or a store: the topology's processors load a customer's
//! [`state::CustomerGameState`], call [`eval::apply`], store the state and send the
//! outputs. Everything about particular event types comes from [`rules::Rules`], loaded
//! from `topology/gamification.toml`.
//!
//! - [`rules`]: the validated rules ([`spec`] is the file's shape, [`compile`] checks it).
//! - [`state`]: [`CustomerGameState`], bounded, one store value per customer.
//! - [`eval`]: [`apply`] one event to one customer's state (points, streaks, missions,
//!   tier, scores, badges, in that order); the steps live in private modules.
//! - [`output`]: the JSON records of `gamification-results` and [`LeaderboardUpdate`].
//! - [`leaderboard`]: [`TopN`], the pure top-N of the leaderboard sub-topology.
//! - [`time`]: local days, ISO weeks and leaderboard period keys in a time zone.

mod compile;
mod compile_check;
mod compile_game;
mod compile_missions;
mod ctx;
pub mod eval;
pub mod leaderboard;
mod missions;
pub mod output;
mod output_json;
mod points;
pub mod rounds;
pub mod rules;
pub mod spec;
mod standing;
pub mod state;
pub mod state_legacy;
pub mod streak;
pub mod time;

#[cfg(test)]
mod eval_props;
#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod rules_tests;

pub use eval::{apply, Applied, Effects};
pub use leaderboard::TopN;
pub use output::{GameOutput, LeaderboardUpdate};
pub use rules::{RuleErrors, Rules};
pub use state::CustomerGameState;
