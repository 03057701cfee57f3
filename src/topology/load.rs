//! Loading what the topology is built from besides configuration: the source mapping, the
//! gamification rules and the churn rules and model, every problem of every file at once.

use std::path::Path;
use std::sync::Arc;

use super::churn;
use crate::config::Config;
use crate::gamification::Rules;
use crate::ingest::normalize::Normalizer;

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
    let rules = load_toml(
        "churn rules",
        config.churn.rules_file.as_deref(),
        "topology/churn.toml",
        || ChurnRules::bundled().map_err(|e| e.0),
        |text| ChurnRules::from_toml_str(text).map_err(|e| e.0),
    );
    let model = load_toml(
        "churn model",
        config.churn.model_file.as_deref(),
        "topology/churn-model.toml",
        || Model::bundled().map_err(|e| e.0),
        |text| Model::from_toml_str(text).map_err(|e| e.0),
    );
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

/// Loads the gamification rules named by `gamification.rules_file` (or the bundled ones).
pub fn rules(config: &Config) -> Result<Rules, FileLoadError> {
    load_toml(
        "gamification rules",
        config.gamification.rules_file.as_deref(),
        "topology/gamification.toml",
        || Rules::bundled().map_err(|e| e.0),
        |text| Rules::from_toml_str(text).map_err(|e| e.0),
    )
}

/// The one loader of every topology TOML file (source mapping, gamification rules, churn
/// rules, churn model): the configured file, else the bundled copy named `bundled_name`;
/// every problem of the file listed under its path.
fn load_toml<T, E: std::fmt::Display>(
    what: &'static str,
    configured: Option<&Path>,
    bundled_name: &str,
    bundled: impl FnOnce() -> Result<T, Vec<E>>,
    parse: impl FnOnce(&str) -> Result<T, Vec<E>>,
) -> Result<T, FileLoadError> {
    let listed =
        |errs: Vec<E>| -> Vec<String> { errs.iter().map(|e| format!("  - {e}")).collect() };
    let (path, loaded) = match configured {
        None => (
            format!("{bundled_name} (bundled)"),
            bundled().map_err(listed),
        ),
        Some(p) => {
            let path = p.display().to_string();
            let loaded = match std::fs::read_to_string(p) {
                Ok(text) => parse(&text).map_err(listed),
                Err(e) => Err(vec![format!("  - {path}: cannot read: {e}")]),
            };
            (path, loaded)
        }
    };
    loaded.map_err(|errors| FileLoadError { what, path, errors })
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
    let mapping = load_toml(
        "source mapping",
        config.ingest.mapping_file.as_deref(),
        "topology/sources.toml",
        || Ok::<_, Vec<crate::ingest::mapping::MappingError>>(SourceMappings::bundled()),
        SourceMappings::from_toml_str,
    )?;
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
