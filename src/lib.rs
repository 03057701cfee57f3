//! ScoreStream: a Kafka Streams-style stateful stream processor that turns customer events
//! into gamification results and churn predictions.
//!
//! # Layout
//!
//! - [`engine`]: the generic, broker-free engine — [`engine::Record`], the synchronous
//!   [`engine::Processor`] trait with stream-time and wall-clock punctuation, the
//!   [`engine::TopologyBuilder`] that derives sub-topologies and describes itself like Kafka
//!   Streams' `TopologyDescription`, [`engine::StreamTask`] (one sub-topology for one partition)
//!   and the [`engine::TopologyTestDriver`]. Knows nothing of customers or rdkafka.
//! - [`runtime`]: the only code that talks to Kafka — start-up topic setup, the consumer group,
//!   the processing loop with commit-after-acknowledgement, rebalances, backpressure, shutdown.
//! - [`ingest`]: sub-topology 0 — parse, normalize and validate every seed event shape,
//!   dead-letter bad records, re-key good ones by customer in a compact binary form.
//! - [`app`]: assembles the bundled topology from configuration.
//! - [`config`]: the TOML configuration with environment overrides, validated all at once.
//! - [`metrics`]: Prometheus metrics (low-cardinality labels only).
//! - [`http`]: the HTTP listener — `/metrics`, `/health`, `/ready`.
//! - [`generator`]: seed-shaped events, good and bad, for the demo, tests and load runs.
//! - [`demo`]: `scorestream demo` on librdkafka's in-process mock cluster.
//!
//! `src/main.rs` is thin: parse the command line, load configuration, run until shutdown.

pub mod app;
pub mod churn;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error_chain;
pub mod gamification;
pub mod generator;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod runtime;
pub mod state;
