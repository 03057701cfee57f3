//! The input side of sub-topology 0: parse, normalize and validate every input shape of the
//! seeds into a [`CanonicalEvent`], or say why not ([`RejectReason`]). The processor that
//! dead-letters the bad records and re-keys the good ones by customer id is
//! [`crate::topology::ingest`].

pub mod event;
pub mod event_type;
mod fields;
pub mod mapping;
pub mod normalize;
mod plain_json;
mod raw_json;
mod scan;
pub mod timestamp;

pub use event::{AttrValue, CanonicalEvent, Origin};
pub use mapping::{NormalizerConfig, SourceMappings};
pub use normalize::{Normalizer, RawInput, RejectReason, Rejection};
