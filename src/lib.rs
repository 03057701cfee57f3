//! ScoreStream: a Kafka Streams-style stateful stream processor that turns customer events
//! into gamification results and churn predictions.
//!
//! # Layout
//!
//! - [`engine`]: the generic, broker-free engine — [`engine::Record`], the synchronous
//!   [`engine::Processor`] trait with stream-time and wall-clock punctuation, the
//!   [`engine::TopologyBuilder`] that derives sub-topologies and describes itself like Kafka
//!   Streams' `TopologyDescription` (`engine/describe.rs`), [`engine::StreamTask`] (one
//!   sub-topology for one partition) and the [`engine::TopologyTestDriver`], which sends
//!   outputs through the same partition and oversize rules as the runtime
//!   ([`engine::collector`]); bad records (dead-letter, drop or fail per reason, logged and
//!   counted in one place, KIP-1034 headers) are [`engine::dead_letter`]. Knows nothing of
//!   customers or rdkafka.
//! - [`state`]: the stores — RocksDB and in-memory backends, codecs, the read cache, the
//!   changelog format, and `state/store/` (typed handles, the per-task transaction, the
//!   typed view processors use).
//! - [`runtime`]: the only code that talks to Kafka — start-up topic setup, the consumer
//!   group, stream threads along Kafka Streams' seams (a loop of named phases owning a task
//!   manager, a record collector and a checkpoint), commit-after-acknowledgement that does
//!   not stop processing, rebalances, restoration, backpressure, shutdown, and the
//!   instance registry interactive queries are forwarded by (`runtime/registry/`).
//! - [`topology`]: the bundled topology's processors (ingest, game with its churn branch,
//!   leaderboards, interactive queries), each a [`topology::Part`] that names its outputs
//!   and stores, builds itself and checks its own configuration keys, and
//!   [`topology::build_topology`], the list of parts ([`topology::PARTS`]) assembled from
//!   configuration and the files under the top-level `topology/` folder (`load.rs`).
//! - [`ingest`]: parse, normalize and validate every seed event shape into a
//!   [`ingest::CanonicalEvent`], or the reason it is rejected.
//! - [`domain`]: the types the branches share — the event in ([`domain::event`]), the
//!   envelope every output record starts with ([`domain::envelope`]).
//! - [`gamification`]: the rules (compiled from TOML) and the pure scoring, missions,
//!   badges, streaks, tiers and leaderboards over one customer's state.
//! - [`churn`]: incremental churn features, the logistic model, triggers and alerts.
//! - [`config`]: the TOML configuration with environment overrides (`config/mod.rs`),
//!   validated all at once (`validate.rs`, `check.rs`, plus each topology part's own
//!   keys), every bad key of a rejected file named (`file_errors.rs`, with suggestions from
//!   `suggest.rs`), `[errors]` policies (`errors.rs`), `SCORESTREAM_KAFKA_*` variables
//!   (`kafka_env.rs`), byte sizes (`size.rs`), the memory plan (`memory.rs`).
//! - [`contracts`]: the JSON Schemas of every output record and the input event, and the
//!   HTTP API's OpenAPI document, shipped under `schemas/`.
//! - [`cli`]: the command line (`cli/args.rs`) and one file per command: `run`, `describe`,
//!   `validate`, `test` (case files), `generate`, `query`, `reset`, `churn`, `state dump`.
//! - [`metrics`]: Prometheus metrics (low-cardinality labels only), registered by idea
//!   (`groups.rs`), end-to-end and store latency (`latency.rs`), librdkafka's statistics
//!   (`kafka_stats.rs`).
//! - [`logging`]: text or JSON log lines; [`build_info`]: version and git commit;
//!   [`error_chain`]: an error and its causes on one line.
//! - [`http`]: the HTTP listener — `/metrics`, `/health`, `/ready`, queries, the webhook.
//! - [`generator`]: seed-shaped events, good and bad, for the demo, tests and load runs.
//! - [`demo`]: `scorestream demo` on librdkafka's in-process mock cluster.
//!
//! `src/main.rs` is thin: parse the command line and hand it to [`cli::main`].

pub mod build_info;
pub mod churn;
pub mod cli;
pub mod config;
pub mod contracts;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod error_chain;
pub mod gamification;
pub mod generator;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod os_memory;
pub mod runtime;
pub mod state;
pub mod topology;
