//! Parse, normalize and validate one input record into a [`CanonicalEvent`] (DESIGN §2).
//!
//! Built for the hot path: the top-level object is read with borrowed keys and raw values
//! (no `serde_json::Value` tree), duplicate keys are detected there, and nested objects are
//! flattened straight into attributes.
//!
//! A missing `event_id` is derived from a hash (xxh3-128) of the *normalized* source,
//! customer id, event type, event time and value — never the Kafka record time unless it
//! was the event time — so a producer's retry of the same event, with keys reordered or
//! different whitespace, gets the same id and is recognised as a duplicate downstream.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, IgnoredAny};

use super::event::{CanonicalEvent, Origin};
use super::fields;
use super::mapping::NormalizerConfig;
use super::plain_json::plain_object_members;
use super::raw_json::{flatten, InvalidAt, Members};
use super::scan::{scan, ScanError};
use crate::domain::inline_bytes::write_hex;

/// One input record as the normalizer sees it.
#[derive(Debug, Clone, Copy)]
pub struct RawInput<'a> {
    pub topic: &'a str,
    pub value: Option<&'a [u8]>,
    pub kafka_timestamp_ms: Option<i64>,
    pub now_ms: i64,
}

/// The stable dead-letter reason codes of DESIGN §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    InvalidUtf8,
    InvalidJson,
    NotAnObject,
    EmptyValue,
    DuplicateKey,
    MissingField,
    EmptyField,
    WrongType,
    InvalidTimestamp,
    TooLarge,
    TooDeep,
    UnknownEventType,
    LateEvent,
}

impl RejectReason {
    pub const ALL: [RejectReason; 13] = [
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::EmptyValue,
        RejectReason::DuplicateKey,
        RejectReason::MissingField,
        RejectReason::EmptyField,
        RejectReason::WrongType,
        RejectReason::InvalidTimestamp,
        RejectReason::TooLarge,
        RejectReason::TooDeep,
        RejectReason::UnknownEventType,
        RejectReason::LateEvent,
    ];

    /// The code carried in `scorestream.error.reason`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::EmptyValue => "empty_value",
            RejectReason::DuplicateKey => "duplicate_key",
            RejectReason::MissingField => "missing_field",
            RejectReason::EmptyField => "empty_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TooLarge => "too_large",
            RejectReason::TooDeep => "too_deep",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::LateEvent => "late_event",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was rejected: a stable reason and a message naming the field.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub message: String,
}

pub(super) fn reject<T>(reason: RejectReason, message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        reason,
        message: message.into(),
    })
}

/// The normalizer: configuration compiled once, `normalize` called per record.
#[derive(Debug, Clone)]
pub struct Normalizer {
    config: NormalizerConfig,
}

/// Up to this many top-level members, duplicate keys are found by comparing each with those
/// before it (no allocation); above it, with a hash set (linear however wide the object).
const DUPLICATE_SCAN_MAX: usize = 16;

/// The first key that appears twice among `members`.
fn first_duplicate<'m>(members: &'m [(Cow<'_, str>, &str)]) -> Option<&'m str> {
    if members.len() <= DUPLICATE_SCAN_MAX {
        return (1..members.len())
            .find(|&i| members[..i].iter().any(|(p, _)| *p == members[i].0))
            .map(|i| &*members[i].0);
    }
    let mut seen = HashSet::with_capacity(members.len());
    members.iter().map(|(k, _)| &**k).find(|k| !seen.insert(*k))
}

/// The deterministic id of an event without one.
pub fn derived_event_id(
    source: &str,
    customer_id: &str,
    event_type: &str,
    occurred_at: i64,
    value: Option<f64>,
) -> String {
    // The hashed bytes: on the stack when they fit (they do for any realistic ids).
    let len = source.len() + customer_id.len() + event_type.len() + 3 * 4 + 8 + 9;
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    for part in [source, customer_id, event_type] {
        put(&(part.len() as u32).to_le_bytes());
        put(part.as_bytes());
    }
    put(&occurred_at.to_le_bytes());
    match value {
        None => put(&[0]),
        Some(v) => {
            put(&[1]);
            let v = if v == 0.0 { 0.0 } else { v };
            put(&v.to_bits().to_le_bytes());
        }
    }
    let h = xxhash_rust::xxh3::xxh3_128(&buf[..at]);
    let mut id = *b"ev-00000000000000000000000000000000";
    write_hex(h, &mut id[3..]);
    String::from_utf8(id.to_vec()).expect("ASCII")
}

impl Normalizer {
    pub fn new(config: NormalizerConfig) -> Normalizer {
        Normalizer { config }
    }

    pub fn config(&self) -> &NormalizerConfig {
        &self.config
    }

    /// Normalizes one record, or says precisely why not.
    pub fn normalize(&self, input: &RawInput<'_>) -> Result<CanonicalEvent, Rejection> {
        let bytes = match input.value {
            None => return reject(RejectReason::EmptyValue, "the record has no value (null)"),
            Some([]) => return reject(RejectReason::EmptyValue, "the record value is empty"),
            Some(b) => b,
        };
        if bytes.len() > self.config.max_record_bytes {
            return reject(
                RejectReason::TooLarge,
                format!(
                    "the record is {} bytes; the limit is {}",
                    bytes.len(),
                    self.config.max_record_bytes
                ),
            );
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                return reject(
                    RejectReason::InvalidUtf8,
                    format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                )
            }
        };
        // A plain object (the usual record) is split in one pass that also checks what the
        // scan would; anything else is scanned, then parsed by serde_json.
        let members = match plain_object_members(text, self.config.max_depth) {
            Some(members) => members,
            None => {
                self.scan(bytes)?;
                self.parse_object(text)?
            }
        };
        // Duplicate top-level keys: two different customer ids must never be guessed between.
        if let Some(k) = first_duplicate(&members) {
            return reject(
                RejectReason::DuplicateKey,
                format!("the key '{k}' appears more than once"),
            );
        }
        self.build(input, &members)
    }

    /// The checks serde_json's raw values let through: depth, out-of-range numbers, lone
    /// surrogates ([`scan`]).
    fn scan(&self, bytes: &[u8]) -> Result<(), Rejection> {
        match scan(bytes, self.config.max_depth) {
            Ok(()) => Ok(()),
            Err(ScanError::TooDeep) => reject(
                RejectReason::TooDeep,
                format!(
                    "JSON nesting is deeper than {} levels",
                    self.config.max_depth
                ),
            ),
            Err(ScanError::NumberOutOfRange(literal)) => reject(
                RejectReason::InvalidJson,
                format!("invalid JSON: the number {literal} is beyond the range of a double"),
            ),
            Err(ScanError::LoneSurrogate(escape)) => reject(
                RejectReason::InvalidJson,
                format!("invalid JSON: {escape} is half of a surrogate pair, not a character"),
            ),
        }
    }

    fn parse_object<'t>(&self, text: &'t str) -> Result<Vec<(Cow<'t, str>, &'t str)>, Rejection> {
        let first = text.trim_start().as_bytes().first().copied();
        if first != Some(b'{') {
            return match serde_json::from_str::<IgnoredAny>(text) {
                Err(e) => reject(RejectReason::InvalidJson, format!("invalid JSON: {e}")),
                Ok(_) => {
                    let what = match first {
                        Some(b'[') => "an array",
                        Some(b'"') => "a string",
                        Some(b'n') => "null",
                        Some(b't' | b'f') => "a boolean",
                        _ => "a number",
                    };
                    reject(
                        RejectReason::NotAnObject,
                        format!("the value is {what}; expected a JSON object"),
                    )
                }
            };
        }
        Self::parse_members(text)
    }

    /// The members by serde_json: any object the plain reader leaves (escapes, deep
    /// nesting), and the wording of every invalid-JSON rejection.
    fn parse_members(text: &str) -> Result<Vec<(Cow<'_, str>, &str)>, Rejection> {
        let mut de = serde_json::Deserializer::from_str(text);
        let members = match <Members<'_> as de::Deserialize>::deserialize(&mut de) {
            Ok(Members(m)) => m,
            Err(e) => return reject(RejectReason::InvalidJson, format!("invalid JSON: {e}")),
        };
        if let Err(e) = de.end() {
            return reject(RejectReason::InvalidJson, format!("invalid JSON: {e}"));
        }
        Ok(members.into_iter().map(|(k, v)| (k, v.get())).collect())
    }

    fn build(
        &self,
        input: &RawInput<'_>,
        members: &[(Cow<'_, str>, &str)],
    ) -> Result<CanonicalEvent, Rejection> {
        let aliases = self.config.mapping.for_topic(input.topic);
        // Indices of the members read as fields; the others become attributes.
        let mut used = Vec::with_capacity(8);
        let customer_id = fields::customer_id(members, &aliases.customer_id, &mut used)?;
        let event_type = fields::event_type(members, &aliases.event_type, &mut used)?;
        if let Some(known) = &self.config.strict_event_types {
            if !known.contains(&event_type) {
                return reject(
                    RejectReason::UnknownEventType,
                    format!("event type '{event_type}' is not declared in the rules"),
                );
            }
        }
        let occurred_at = fields::event_time(members, &aliases.timestamp, &mut used)?;
        let occurred_at = self.event_time_or_kafka(input, occurred_at)?;
        let event_id = fields::event_id(members, &aliases.event_id, &mut used)?;
        let source = fields::source(members, &aliases.source, &mut used)?
            .unwrap_or_else(|| fields::lower(input.topic));

        // attributes: everything else, flattened
        let mut attributes = Vec::with_capacity(members.len());
        for (i, (k, v)) in members.iter().enumerate() {
            if !used.contains(&i) {
                flatten(k, v, &mut attributes)
                    .map_err(|InvalidAt(path)| fields::invalid_value(&path))?;
            }
        }
        // value: per-event-type field first, then the source's aliases
        let candidates = self
            .config
            .mapping
            .value_field(&event_type)
            .into_iter()
            .chain(aliases.value.iter().map(String::as_str));
        let value = fields::take_value(&mut attributes, candidates)?;

        let event_id = event_id.unwrap_or_else(|| {
            derived_event_id(&source, &customer_id, &event_type, occurred_at, value)
        });
        Ok(CanonicalEvent {
            event_id,
            customer_id,
            event_type,
            source,
            occurred_at,
            value,
            attributes,
            origin: Origin::default(),
        })
    }

    /// The record's own event time, else its Kafka timestamp; not too far ahead of the clock.
    fn event_time_or_kafka(
        &self,
        input: &RawInput<'_>,
        own: Option<i64>,
    ) -> Result<i64, Rejection> {
        let occurred_at = match own.or(input.kafka_timestamp_ms) {
            Some(t) => t,
            None => {
                return reject(
                    RejectReason::InvalidTimestamp,
                    "no event time in the record and no Kafka record timestamp",
                )
            }
        };
        if occurred_at > input.now_ms + self.config.max_future_skew_ms {
            return reject(
                RejectReason::InvalidTimestamp,
                format!(
                    "event time is {} s ahead of the clock (allowed skew {} s)",
                    (occurred_at - input.now_ms) / 1000,
                    self.config.max_future_skew_ms / 1000
                ),
            );
        }
        Ok(occurred_at)
    }
}

#[cfg(test)]
mod tests {
    use super::derived_event_id;

    /// The id hashes the length-prefixed parts, the time and the value, laid out as below
    /// (what it always hashed: ids of stored events must not change), whether the bytes fit
    /// the stack buffer or not.
    #[test]
    fn derived_ids_hash_the_documented_layout() {
        let long = "x".repeat(300);
        for (source, customer, kind, at, value) in [
            (
                "in",
                "254700000001",
                "data_usage",
                1_717_200_000_000,
                Some(12.5),
            ),
            ("crm", "c-1", "kyc_update", -5, None),
            ("app", "u-1", "login", 0, Some(-0.0)),
            ("billing", long.as_str(), "recharge", 1, Some(1e300)),
        ] {
            let mut bytes = Vec::new();
            for part in [source, customer, kind] {
                bytes.extend_from_slice(&(part.len() as u32).to_le_bytes());
                bytes.extend_from_slice(part.as_bytes());
            }
            bytes.extend_from_slice(&i64::to_le_bytes(at));
            match value {
                None => bytes.push(0),
                Some(v) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&(v + 0.0f64).to_bits().to_le_bytes());
                }
            }
            let expected = format!("ev-{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
            assert_eq!(
                derived_event_id(source, customer, kind, at, value),
                expected
            );
        }
    }
}
