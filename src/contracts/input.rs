//! The accepted input event as JSON Schema, made from the bundled source mapping
//! (`topology/sources.toml`): its field aliases become the schema's properties, so the two
//! cannot drift. The schema states the shape; what it cannot state (a customer id given
//! twice under two aliases, a timestamp too far ahead of the clock, the size and depth
//! limits) is in DESIGN §2 and docs/outputs.md, and is dead-lettered with a reason.

use serde_json::{json, Map, Value};

use crate::ingest::mapping::SourceMappings;

/// JSON Schema (2020-12) of one event on `customer-events` (and the other inputs that use
/// the default aliases), as the bundled mapping reads it.
pub fn input_event() -> Value {
    let mapping = SourceMappings::bundled();
    let aliases = mapping.for_topic("customer-events");
    let text = json!({"type": "string", "pattern": "\\S"});
    let id = json!({
        "description": "The customer: a non-blank string or an integer (exact digits kept); trimmed.",
        "oneOf": [text, {"type": "integer"}]
    });
    let event_type = json!({
        "description": "Normalized to lower snake case: OrderPlaced, order-placed and order.placed are all order_placed.",
        "type": "string",
        "pattern": "[A-Za-z0-9]"
    });
    let timestamp = json!({
        "description": "RFC 3339 (Z or an offset; t/z in lower case and a space for T allowed), naive ISO-8601 (UTC), or epoch seconds (below 10^11) or milliseconds, as a number or numeric string. Absent or null: the Kafka record timestamp.",
        "oneOf": [{"type": "string", "minLength": 1}, {"type": "number"}, {"type": "null"}]
    });
    let event_id = json!({
        "description": "Absent, null or blank: derived from the normalized source, customer id, event type, event time and value, so a retried event is recognised as a duplicate.",
        "oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]
    });
    let source = json!({
        "description": "The producing system (lower-cased); absent: the input topic's name.",
        "type": ["string", "null"]
    });
    let value = json!({
        "description": "The event's number: a number or a numeric string; null means absent. Per event type another field can be declared in topology/sources.toml (e.g. data.order_value for order_placed).",
        "oneOf": [{"type": "number"}, {"type": "string", "pattern": "^\\s*[-+]?[0-9]"}, {"type": "null"}]
    });
    let mut properties = Map::new();
    let mut put = |names: &[String], schema: &Value| {
        for n in names {
            properties.insert(n.clone(), schema.clone());
        }
    };
    put(&aliases.customer_id, &id);
    put(&aliases.event_type, &event_type);
    put(&aliases.timestamp, &timestamp);
    put(&aliases.event_id, &event_id);
    put(&aliases.source, &source);
    put(&aliases.value, &value);
    let one_of = |names: &[String]| -> Value {
        Value::Array(names.iter().map(|n| json!({"required": [n]})).collect())
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "ScoreStream input event",
        "description": "One JSON object per Kafka record (a JSON array only on POST /events). Field names are the bundled mapping's aliases; any other field is kept as an attribute (nested objects such as metadata and data too). UTF-8, at most ingest.max_record_bytes (1 MiB) and ingest.max_depth (64) levels deep; a duplicate top-level key is rejected.",
        "type": "object",
        "properties": properties,
        "allOf": [
            {"anyOf": one_of(&aliases.customer_id)},
            {"anyOf": one_of(&aliases.event_type)}
        ],
        "additionalProperties": true
    })
}
