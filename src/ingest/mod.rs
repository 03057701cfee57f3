//! Sub-topology 0, ingest: parse, normalize and validate every input shape of the seeds,
//! dead-letter bad records, re-key good ones by customer id.

pub mod event;
pub mod event_type;
mod fields;
pub mod mapping;
pub mod normalize;
pub mod processor;
mod raw_json;
mod scan;
pub mod timestamp;

pub use event::{AttrValue, CanonicalEvent, Origin};
pub use mapping::{NormalizerConfig, SourceMappings};
pub use normalize::{Normalizer, RawInput, RejectReason, Rejection};
