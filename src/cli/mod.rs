//! The operator commands beyond `run`: `generate` (a load producer), `query` (state through
//! a running instance), `reset` (start an application from scratch), with progress shown
//! on a terminal.

pub mod case_diff;
pub mod case_file;
pub mod generate;
pub mod progress;
pub mod query;
pub mod reset;
pub mod validate;
