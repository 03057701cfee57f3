//! The bundled ScoreStream topology, assembled from configuration.

pub mod totals;

use std::sync::Arc;

use crate::config::Config;
use crate::engine::{
    Partitioning, SinkTarget, StoreDecl, TopicRef, Topology, TopologyBuilder, TopologyError,
};
use crate::ingest::normalize::Normalizer;
use crate::ingest::processor::{IngestProcessor, DEAD_LETTER_CHILD, VALID_CHILD};
use crate::metrics::Metrics;

/// Suffix of the internal repartition topic holding events keyed by customer id.
pub const EVENTS_BY_CUSTOMER: &str = "events-by-customer";
/// Suffix of every dead-letter topic: `<input-topic>-dlq`.
pub const DLQ_SUFFIX: &str = "-dlq";

/// Builds the topology: sub-topology 0 (ingest) reads every input topic, dead-letters bad
/// records and re-keys good ones onto `<app-id>-events-by-customer`; sub-topology 1 keeps
/// per-customer state from there.
pub fn build_topology(
    config: &Config,
    normalizer: Arc<Normalizer>,
    metrics: Option<Metrics>,
) -> Result<Topology, TopologyError> {
    let inputs: Vec<TopicRef> = config.inputs.iter().map(TopicRef::external).collect();
    let mut b = TopologyBuilder::new();
    let metrics2 = metrics.clone();
    b.add_source("ingest-source", &inputs);
    b.add_processor(
        "normalize",
        move || Box::new(IngestProcessor::new(normalizer.clone(), metrics.clone())),
        &["ingest-source"],
    );
    b.add_sink(
        DEAD_LETTER_CHILD,
        SinkTarget::SourceSuffix(DLQ_SUFFIX.into()),
        Partitioning::SameAsSource,
        &["normalize"],
    );
    b.add_sink(
        VALID_CHILD,
        SinkTarget::Topic(TopicRef::internal(EVENTS_BY_CUSTOMER)),
        Partitioning::ByKey,
        &["normalize"],
    );

    b.add_source("customer-source", &[TopicRef::internal(EVENTS_BY_CUSTOMER)]);
    let totals_store = b.add_state_store(
        StoreDecl {
            name: totals::TOTALS_STORE.into(),
            logged: true,
        },
        &["customer-totals"],
    );
    let seen_store = b.add_state_store(
        StoreDecl {
            name: totals::SEEN_STORE.into(),
            logged: true,
        },
        &["customer-totals"],
    );
    let horizon = config.state.dedupe_horizon;
    b.add_processor(
        "customer-totals",
        move || {
            Box::new(totals::TotalsProcessor::new(
                totals_store.clone(),
                seen_store.clone(),
                horizon,
                metrics2.clone(),
            ))
        },
        &["customer-source"],
    );
    b.build(&config.application_id)
}

/// Why the normalizer could not be built from configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid source mapping {path}:\n{}", .errors.join("\n"))]
pub struct MappingLoadError {
    pub path: String,
    pub errors: Vec<String>,
}

/// Builds the normalizer from the `[ingest]` settings and the source mapping file.
pub fn normalizer(config: &Config) -> Result<Normalizer, MappingLoadError> {
    use crate::ingest::mapping::{NormalizerConfig, SourceMappings};
    let mapping = match &config.ingest.mapping_file {
        None => SourceMappings::bundled(),
        Some(p) => {
            let path = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| MappingLoadError {
                path: path.clone(),
                errors: vec![format!("  - cannot read: {e}")],
            })?;
            SourceMappings::from_toml_str(&text).map_err(|errs| MappingLoadError {
                path,
                errors: errs.iter().map(|e| format!("  - {e}")).collect(),
            })?
        }
    };
    let strict = config
        .ingest
        .strict_event_types
        .then(|| mapping.known_event_types());
    Ok(Normalizer::new(NormalizerConfig {
        mapping,
        max_record_bytes: config.ingest.max_record_bytes,
        max_depth: config.ingest.max_depth,
        max_future_skew_ms: config.ingest.max_future_skew.as_millis() as i64,
        strict_event_types: strict,
    }))
}

/// A stored entry of the bundled topology's stores as JSON (for `scorestream state dump`).
pub fn store_entry_json(store: &str, key: &[u8], value: &[u8]) -> serde_json::Value {
    use crate::state::codec::{decode_key, decode_value};
    let decoded = match store {
        totals::TOTALS_STORE => decode_key::<String>(store, key).and_then(|k| {
            let v: totals::CustomerTotals = decode_value(store, value)?;
            Ok(serde_json::json!({ "key": k, "value": v }))
        }),
        totals::SEEN_STORE => decode_key::<totals::SeenKey>(store, key).and_then(|k| {
            let v: i64 = decode_value(store, value)?;
            Ok(serde_json::json!({ "key": { "hour": k.0, "event_id": k.1 }, "value": v }))
        }),
        _ => Err(crate::state::StateError::UnknownStore(store.to_string())),
    };
    match decoded {
        Ok(mut v) => {
            v["store"] = serde_json::Value::from(store);
            v
        }
        Err(e) => serde_json::json!({
            "store": store,
            "key_hex": hex(key),
            "value_hex": hex(value),
            "error": e.to_string(),
        }),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
