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
//! - [`time`]: local days, ISO weeks and leaderboard period keys in a time zone.

mod compile;
mod compile_game;
pub mod rules;
pub mod spec;
pub mod time;
