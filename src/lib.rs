//! ScoreStream: a Kafka Streams-style stateful stream processor that turns customer events
//! into gamification results and churn predictions.
//!
//! # Layout
//!
//! - [`engine`]: the generic, broker-free engine — [`engine::Record`], the synchronous
//!   [`engine::Processor`] trait with stream-time and wall-clock punctuation, the
//!   [`engine::TopologyBuilder`] that derives sub-topologies and describes itself like Kafka
//!   Streams' `TopologyDescription`, [`engine::StreamTask`] (one sub-topology for one partition)
//!   and the [`engine::TopologyTestDriver`], which sends outputs through the same partition
//!   and oversize rules as the runtime ([`engine::collector`]). Knows nothing of customers or
//!   rdkafka.
//! - [`runtime`]: the only code that talks to Kafka — start-up topic setup, the consumer group,
//!   stream threads along Kafka Streams' seams (a loop of named phases owning a task
//!   manager, a record collector and a checkpoint), commit-after-acknowledgement that does
//!   not stop processing, rebalances, backpressure, shutdown.
//! - [`ingest`]: sub-topology 0 — parse, normalize and validate every seed event shape,
//!   dead-letter bad records, re-key good ones by customer in a compact binary form.
//! - [`app`]: assembles the bundled topology from configuration.
//! - [`config`]: the TOML configuration with environment overrides, validated all at once.
//! - [`contracts`]: the JSON Schemas of every output record and the input event, and the
//!   HTTP API's OpenAPI document, shipped under `schemas/`.
//! - [`cli`]: the operator commands: `validate`, `test` (case files), `generate`, `query`,
//!   `reset`.
//! - [`metrics`]: Prometheus metrics (low-cardinality labels only).
//! - [`logging`]: text or JSON log lines; [`build_info`]: version and git commit.
//! - [`http`]: the HTTP listener — `/metrics`, `/health`, `/ready`.
//! - [`generator`]: seed-shaped events, good and bad, for the demo, tests and load runs.
//! - [`demo`]: `scorestream demo` on librdkafka's in-process mock cluster.
//!
//! `src/main.rs` is thin: parse the command line, load configuration, run until shutdown.

pub mod app;
pub mod build_info;
pub mod churn;
pub mod cli;
pub mod config;
pub mod contracts;
pub mod demo;
pub mod engine;
pub mod error_chain;
pub mod gamification;
pub mod generator;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod runtime;
pub mod state;
