//! The types the branches of the topology share, and nothing else: the event every branch
//! reads ([`event`]) and the envelope every output record starts with ([`envelope`]), and
//! the stack-built byte strings their per-event keys and hash inputs use
//! ([`inline_bytes`]). A leaf: it depends on no other module of the crate.

pub mod envelope;
pub mod event;
pub mod inline_bytes;
