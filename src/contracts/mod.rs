//! Machine-readable contracts shipped under `schemas/`: JSON Schema of every output record
//! and of the accepted input event, and the OpenAPI document of the HTTP API. They are
//! generated from the code ([`generate`]); `tests/schemas.rs` checks that the files equal
//! what the code generates and that real records validate against them. Regenerate with
//! `SCORESTREAM_WRITE_SCHEMAS=1 cargo test --test schemas`.
//!
//! Compatibility (docs/outputs.md): new fields and new record types may appear at any
//! time, so consumers must ignore what they do not know; `schema_version` is bumped when a
//! field is removed, renamed or changes meaning or type.

pub mod input;
pub mod openapi;
pub mod outputs;

use serde_json::Value;

/// `(file name under schemas/, document)` for every contract, in a stable order.
pub fn generate() -> Vec<(&'static str, Value)> {
    vec![
        (
            "gamification-results.schema.json",
            schemars::schema_for!(outputs::GamificationResult).to_value(),
        ),
        (
            "churn-predictions.schema.json",
            schemars::schema_for!(outputs::ChurnPredictionRecord).to_value(),
        ),
        (
            "customer-alerts.schema.json",
            schemars::schema_for!(outputs::CustomerAlertRecord).to_value(),
        ),
        ("input-event.schema.json", input::input_event()),
        ("openapi.json", openapi::document()),
    ]
}

/// The text of a generated file: pretty JSON and a final newline.
pub fn render(document: &Value) -> String {
    let mut s = serde_json::to_string_pretty(document).expect("JSON values serialize");
    s.push('\n');
    s
}
