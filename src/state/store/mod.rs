//! Typed store handles, the per-task state transaction and the typed view processors use.

mod handle;
mod transaction;
mod view;

pub use handle::StoreHandle;
pub use transaction::{StoreSpec, TaskState};
pub use view::KvStore;

/// Encoded `(key, value)` pairs.
pub type RawEntries = Vec<(Vec<u8>, Vec<u8>)>;
