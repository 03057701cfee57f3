//! ScoreStream: a Kafka Streams-style stateful stream processor.
//!
//! # Layout
//! (filled in as modules land)

pub mod config;
pub mod engine;
pub mod generator;
pub mod ingest;
pub mod metrics;
pub mod runtime;
