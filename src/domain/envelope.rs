//! The envelope every output record starts with — game results, leaderboard snapshots,
//! churn predictions and customer alerts: `type`, `schema_version`, a deterministic
//! `result_id`, the customer, and the event it was computed from (`event_id`,
//! `occurred_at`). Each record flattens an [`Envelope`] in front of its own fields, so the
//! head is declared once and `SCHEMA_VERSION` lives here only.

use std::borrow::Cow;

use serde::Serialize;

/// The version of every output record's layout (the JSON Schemas under `schemas/`).
pub const SCHEMA_VERSION: u32 = 1;

/// The common head of an output record; serialize it with `#[serde(flatten)]` as the first
/// field of the record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    pub output_type: &'a str,
    pub schema_version: u32,
    pub result_id: Cow<'a, str>,
    pub customer_id: &'a str,
    pub event_id: &'a str,
    /// Event time of the triggering event, RFC 3339 UTC with milliseconds.
    pub occurred_at: Cow<'a, str>,
}

impl<'a> Envelope<'a> {
    /// The head of an `output_type` record about `customer_id` computed from `event_id`;
    /// `discriminator` tells apart the records of one type one event gives (a mission id, a
    /// badge level...), see [`result_id`].
    pub fn new(
        output_type: &'a str,
        customer_id: &'a str,
        event_id: &'a str,
        occurred_at: String,
        discriminator: &str,
    ) -> Envelope<'a> {
        Envelope {
            output_type,
            schema_version: SCHEMA_VERSION,
            result_id: Cow::Owned(result_id(customer_id, event_id, output_type, discriminator)),
            customer_id,
            event_id,
            occurred_at: Cow::Owned(occurred_at),
        }
    }
}

/// `xxh3(customer \0 event \0 type \0 discriminator)` as 16 hex digits.
pub fn result_id(
    customer_id: &str,
    event_id: &str,
    output_type: &str,
    discriminator: &str,
) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [customer_id, event_id, output_type, discriminator] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    let digest = h.digest();
    // As `format!("{:016x}")`, without the formatting machinery (one per result).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits: Vec<u8> = (0..16)
        .map(|i| HEX[((digest >> (60 - 4 * i)) & 0xf) as usize])
        .collect();
    String::from_utf8(digits).expect("hex digits")
}
