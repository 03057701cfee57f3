//! The bundled ScoreStream topology, assembled from configuration.

pub mod churn;
pub mod game;
pub mod leaderboards;
pub mod query;

use std::sync::Arc;

use crate::config::Config;
use crate::engine::{
    Partitioning, SinkTarget, StoreDecl, TopicRef, Topology, TopologyBuilder, TopologyError,
};
use crate::gamification::{RuleErrors, Rules};
use crate::ingest::normalize::Normalizer;
use crate::ingest::processor::{IngestProcessor, DEAD_LETTER_CHILD, VALID_CHILD};
use crate::metrics::Metrics;

/// Suffix of the internal repartition topic holding events keyed by customer id.
pub const EVENTS_BY_CUSTOMER: &str = "events-by-customer";
/// Suffix of the internal repartition topic holding leaderboard totals keyed by board.
pub const LEADERBOARD_POINTS: &str = "leaderboard-points";
/// Suffix of every dead-letter topic: `<input-topic>-dlq`.
pub const DLQ_SUFFIX: &str = "-dlq";

/// What the topology is built from besides configuration: the source mapping and the
/// gamification rules, both validated.
#[derive(Clone)]
pub struct Components {
    pub normalizer: Arc<Normalizer>,
    pub rules: Arc<Rules>,
    /// The churn rules and model; `None` when `churn.enabled` is off.
    pub churn: Option<Arc<churn::ChurnParts>>,
}

impl Components {
    /// Loads the mapping, the gamification rules and (when enabled) the churn rules and
    /// model named by `config` (or the bundled ones), reporting every problem in every file
    /// at once.
    pub fn load(config: &Config) -> Result<Components, LoadError> {
        let normalizer = normalizer(config);
        let rules = rules(config);
        let churn = if config.churn.enabled {
            match churn_parts(config) {
                Ok(p) => Ok(Some(Arc::new(p))),
                Err(e) => Err(e),
            }
        } else {
            Ok(None)
        };
        match (normalizer, rules, churn) {
            (Ok(n), Ok(r), Ok(c)) => Ok(Components {
                normalizer: Arc::new(n),
                rules: Arc::new(r),
                churn: c,
            }),
            (n, r, c) => Err(LoadError {
                problems: n
                    .err()
                    .into_iter()
                    .chain(r.err())
                    .chain(c.err().into_iter().flatten())
                    .collect(),
            }),
        }
    }
}

/// Loads the churn rules and model (`churn.rules_file`, `churn.model_file`, or the bundled
/// ones); every problem of both.
pub fn churn_parts(config: &Config) -> Result<churn::ChurnParts, Vec<FileLoadError>> {
    use crate::churn::{ChurnRules, Model};
    let as_error = |what, path: String, errs: RuleErrors| FileLoadError {
        what,
        path,
        errors: errs.0.iter().map(|e| format!("  - {e}")).collect(),
    };
    let rules = match &config.churn.rules_file {
        None => ChurnRules::bundled()
            .map_err(|e| as_error("churn rules", "topology/churn.toml (bundled)".into(), e)),
        Some(p) => {
            ChurnRules::load(p).map_err(|e| as_error("churn rules", p.display().to_string(), e))
        }
    };
    let model = match &config.churn.model_file {
        None => Model::bundled().map_err(|e| {
            as_error(
                "churn model",
                "topology/churn-model.toml (bundled)".into(),
                e,
            )
        }),
        Some(p) => Model::load(p).map_err(|e| as_error("churn model", p.display().to_string(), e)),
    };
    match (rules, model) {
        (Ok(rules), Ok(model)) => Ok(churn::ChurnParts { rules, model }),
        (r, m) => Err(r.err().into_iter().chain(m.err()).collect()),
    }
}

/// Everything wrong with the mapping and rules files.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct LoadError {
    pub problems: Vec<FileLoadError>,
}

/// Builds the topology: sub-topology 0 (ingest) reads every input topic, dead-letters bad
/// records and re-keys good ones onto `<app-id>-events-by-customer`; sub-topology 1 keeps
/// one game state per customer from there and sends results, late dead letters and
/// leaderboard totals; sub-topology 2 ranks those totals per board and period.
pub fn build_topology(
    config: &Config,
    parts: &Components,
    metrics: Option<Metrics>,
) -> Result<Topology, TopologyError> {
    let inputs: Vec<TopicRef> = config.inputs.iter().map(TopicRef::external).collect();
    let results = TopicRef::external(&config.gamification.results_topic);
    let mut b = TopologyBuilder::new();

    let (normalizer, m) = (parts.normalizer.clone(), metrics.clone());
    b.add_source("ingest-source", &inputs);
    b.add_processor(
        "normalize",
        move || Box::new(IngestProcessor::new(normalizer.clone(), m.clone())),
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
    let state = b.add_state_store(
        StoreDecl {
            name: game::STATE_STORE.into(),
            logged: true,
        },
        &["gamify"],
    );
    let inactivity = parts.churn.as_ref().map(|_| {
        b.add_state_store::<(u64, String), u8>(
            StoreDecl {
                name: churn::INACTIVITY_STORE.into(),
                logged: true,
            },
            &["gamify"],
        )
    });
    let (rules, m) = (parts.rules.clone(), metrics.clone());
    let churn_parts = parts.churn.clone();
    b.add_processor(
        "gamify",
        move || {
            let churn = churn_parts
                .as_ref()
                .zip(inactivity.as_ref())
                .map(|(p, index)| churn::ChurnBranch::new(p.clone(), index.clone(), m.clone()));
            Box::new(game::GameProcessor::new(
                rules.clone(),
                state.clone(),
                m.clone(),
                churn,
            ))
        },
        &["customer-source"],
    );
    if parts.churn.is_some() {
        for (child, topic) in [
            (churn::PREDICTIONS_CHILD, &config.churn.predictions_topic),
            (churn::ALERTS_CHILD, &config.churn.alerts_topic),
        ] {
            b.add_sink(
                child,
                SinkTarget::Topic(TopicRef::external(topic)),
                Partitioning::ByKey,
                &["gamify"],
            );
        }
    }
    b.add_sink(
        game::RESULTS_CHILD,
        SinkTarget::Topic(results.clone()),
        Partitioning::ByKey,
        &["gamify"],
    );
    b.add_sink(
        game::LEADERBOARD_CHILD,
        SinkTarget::Topic(TopicRef::internal(LEADERBOARD_POINTS)),
        Partitioning::ByKey,
        &["gamify"],
    );
    b.add_sink(
        game::LATE_CHILD,
        SinkTarget::OriginSuffix {
            suffix: DLQ_SUFFIX.into(),
            origins: inputs.clone(),
        },
        Partitioning::SameAsSource,
        &["gamify"],
    );

    b.add_source(
        "leaderboard-source",
        &[TopicRef::internal(LEADERBOARD_POINTS)],
    );
    let boards = b.add_state_store(
        StoreDecl {
            name: leaderboards::BOARDS_STORE.into(),
            logged: true,
        },
        &["leaderboards"],
    );
    let (rules, m) = (parts.rules.clone(), metrics);
    let emit_every = config.runtime.commit_interval;
    b.add_processor(
        "leaderboards",
        move || {
            Box::new(leaderboards::LeaderboardProcessor::new(
                rules.clone(),
                boards.clone(),
                emit_every,
                m.clone(),
            ))
        },
        &["leaderboard-source"],
    );
    b.add_sink(
        leaderboards::RESULTS_CHILD,
        SinkTarget::Topic(results),
        Partitioning::ByKey,
        &["leaderboards"],
    );
    b.build(&config.application_id)
}

/// Skips a record on an internal topic that does not decode (written by another version,
/// or corrupted): logged with its position and counted, never fatal.
pub(crate) fn skip_undecodable(
    ctx: &crate::engine::ProcessorContext<'_>,
    metrics: Option<&Metrics>,
    error: &dyn std::fmt::Display,
    what: &str,
) {
    let p = ctx.position();
    tracing::warn!(
        topic = p.map_or("", |p| &*p.topic),
        partition = p.map_or(-1, |p| p.partition),
        offset = p.map_or(-1, |p| p.offset),
        error = %error,
        "Undecodable {what}; skipped."
    );
    if let Some(m) = metrics {
        m.corrupt_internal_records.inc();
    }
}

/// Loads the gamification rules named by `gamification.rules_file` (or the bundled ones).
pub fn rules(config: &Config) -> Result<Rules, FileLoadError> {
    let (path, loaded) = match &config.gamification.rules_file {
        None => (
            "topology/gamification.toml (bundled)".to_string(),
            Rules::bundled(),
        ),
        Some(p) => (p.display().to_string(), Rules::load(p)),
    };
    loaded.map_err(|RuleErrors(errs)| FileLoadError {
        what: "gamification rules",
        path,
        errors: errs.iter().map(|e| format!("  - {e}")).collect(),
    })
}

/// Why a mapping or rules file could not be loaded: every problem, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} {path}:\n{}", .errors.join("\n"))]
pub struct FileLoadError {
    pub what: &'static str,
    pub path: String,
    pub errors: Vec<String>,
}

/// Builds the normalizer from the `[ingest]` settings and the source mapping file.
pub fn normalizer(config: &Config) -> Result<Normalizer, FileLoadError> {
    use crate::ingest::mapping::{NormalizerConfig, SourceMappings};
    let mapping = match &config.ingest.mapping_file {
        None => SourceMappings::bundled(),
        Some(p) => {
            let path = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| FileLoadError {
                what: "source mapping",
                path: path.clone(),
                errors: vec![format!("  - cannot read: {e}")],
            })?;
            SourceMappings::from_toml_str(&text).map_err(|errs| FileLoadError {
                what: "source mapping",
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
        game::STATE_STORE => decode_key::<String>(store, key).and_then(|k| {
            let v: game::StoredGameState = decode_value(store, value)?;
            let (game, churn) = v.into_parts();
            Ok(serde_json::json!({ "key": k, "value": game, "churn": churn }))
        }),
        churn::INACTIVITY_STORE => decode_key::<(u64, String)>(store, key).map(|(due, c)| {
            serde_json::json!({ "key": { "due": crate::gamification::time::rfc3339_ms(due as i64), "customer_id": c }, "value": value.first() })
        }),
        leaderboards::BOARDS_STORE => decode_key::<String>(store, key).and_then(|k| {
            let leaderboards::StoredBoard::V1(v) = decode_value(store, value)?;
            Ok(serde_json::json!({ "key": k, "value": v }))
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
