//! Per-task state: typed key-value stores, buffered per commit, persisted in RocksDB (or in
//! memory) and backed by compacted changelog topics.
//!
//! # How a commit works
//!
//! While a task processes records, store writes stay in a per-store write buffer. At commit
//! the runtime asks every task to [`TaskState::prepare_commit`]: the buffered writes become
//! changelog records (`<app-id>-<store>-changelog`, partition = task partition, a delete is
//! a tombstone), each carrying the input positions of the batch in a header. Once the
//! producer has acknowledged every output, [`TaskState::finish_commit`] writes ONE atomic
//! batch holding the data, the input positions (`applied/<topic>/<partition>`) and the
//! changelog end offsets; only then are consumer offsets committed.
//!
//! # Why nothing is counted twice
//!
//! - A crash after the local write but before the offset commit replays inputs the state
//!   already holds: the task skips every record below the stored `applied` position.
//! - A crash after producing changelog records but before the local write leaves records in
//!   the changelog whose inputs were never committed. Restore applies a changelog record only
//!   if its input positions are at or below the consumer group's committed offsets (the idea
//!   quix-streams uses), so those are skipped and the inputs are processed again.
//!
//! Both rules depend only on the consumer group's committed offsets, so they hold on any
//! broker, with or without transactions.

pub mod backend;
pub mod cache;
pub mod changelog;
pub mod codec;
pub mod directory;
pub mod rocks;
pub mod store;

pub use backend::{Backend, MemoryBackend, WriteSet};
pub use cache::CacheBudget;
pub use directory::StateDirectory;
pub use rocks::{RocksBackend, RocksResources};
pub use store::{KvStore, StoreHandle, TaskState};

use std::path::PathBuf;

/// Errors from a state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("store '{store}': cannot encode {what}: {message}")]
    Encode {
        store: String,
        what: &'static str,
        message: String,
    },
    #[error("store '{store}': cannot decode a stored {what} (written by an incompatible version?): {message}")]
    Decode {
        store: String,
        what: &'static str,
        message: String,
    },
    #[error("RocksDB at {path}: {message}")]
    Rocks { path: PathBuf, message: String },
    #[error("state directory {path} is locked by another ScoreStream process; give each instance its own state_dir")]
    Locked { path: PathBuf },
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store '{0}' is not part of this task")]
    UnknownStore(String),
}
