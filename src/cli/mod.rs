//! The operator commands beyond `run`: `generate` (a load producer), `query` (state through
//! a running instance), `reset` (start an application from scratch), with progress shown
//! on a terminal.

pub mod generate;
pub mod progress;
pub mod query;
pub mod reset;
