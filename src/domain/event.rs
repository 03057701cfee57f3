//! The domain event: what happened to which customer, and when. Every input shape is
//! normalized into it ([`crate::ingest`]); the gamification and churn branches read it. No
//! parsing and no wire format here ([`crate::ingest::event`] has the binary form).

use serde::{Deserialize, Serialize};

/// One normalized customer event (DESIGN §2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalEvent {
    /// Given by the producer, or derived deterministically (see [`crate::ingest::normalize`]).
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

impl CanonicalEvent {
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
