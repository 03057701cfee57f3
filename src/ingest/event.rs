//! The canonical event every input shape is normalized into, and its compact binary form
//! on the internal `events-by-customer` topic.

use serde::{Deserialize, Serialize};

/// Version byte in front of every encoded event; bump it when the layout changes.
pub const FORMAT_VERSION: u8 = 1;

/// One normalized customer event (DESIGN §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalEvent {
    /// Given by the producer, or derived deterministically (see [`super::normalize`]).
    pub event_id: String,
    /// Trimmed, never empty.
    pub customer_id: String,
    /// Lower snake case.
    pub event_type: String,
    /// Trimmed and lower-cased; the input topic when the record names none.
    pub source: String,
    /// Event time, epoch milliseconds UTC.
    pub occurred_at: i64,
    pub value: Option<f64>,
    /// The remaining fields, nested objects flattened to dotted paths, in input order.
    pub attributes: Vec<(String, AttrValue)>,
    /// Where the record was read; filled by the ingest processor.
    pub origin: Origin,
}

/// An attribute value. Arrays are kept as compact JSON text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttrValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Json(String),
}

/// The Kafka position the event was read from (for dead letters raised after re-keying).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why bytes did not decode as a [`CanonicalEvent`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty event record")]
    Empty,
    #[error("unknown event format version {0} (this build reads {FORMAT_VERSION})")]
    Version(u8),
    #[error("corrupt event record: {0}")]
    Bincode(#[from] bincode::error::DecodeError),
}

impl CanonicalEvent {
    /// The binary form: one version byte, then bincode (standard config).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(128);
        self.encode_into(&mut buf);
        buf
    }

    /// Appends the binary form to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        buf.push(FORMAT_VERSION);
        bincode::serde::encode_into_std_write(self, buf, bincode::config::standard())
            .expect("writing to a Vec cannot fail");
    }

    pub fn decode(bytes: &[u8]) -> Result<CanonicalEvent, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&FORMAT_VERSION, rest)) => {
                let (ev, _) = bincode::serde::decode_from_slice(rest, bincode::config::standard())?;
                Ok(ev)
            }
            Some((&v, _)) => Err(DecodeError::Version(v)),
        }
    }

    /// A readable JSON form (dead letters raised after re-keying, samples, docs).
    pub fn to_json(&self) -> serde_json::Value {
        let attributes: serde_json::Map<String, serde_json::Value> = self
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        serde_json::json!({
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "event_type": self.event_type,
            "source": self.source,
            "occurred_at": chrono::DateTime::from_timestamp_millis(self.occurred_at)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            "value": self.value,
            "attributes": attributes,
            "origin": {"topic": self.origin.topic, "partition": self.origin.partition, "offset": self.origin.offset},
        })
    }

    /// The attribute at a dotted path, if present.
    pub fn attribute(&self, path: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k == path)
            .map(|(_, v)| v)
    }
}

impl AttrValue {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            AttrValue::Null => serde_json::Value::Null,
            AttrValue::Bool(b) => (*b).into(),
            AttrValue::Int(i) => (*i).into(),
            AttrValue::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            AttrValue::Str(s) => s.clone().into(),
            AttrValue::Json(j) => serde_json::from_str(j).unwrap_or(serde_json::Value::Null),
        }
    }
}
