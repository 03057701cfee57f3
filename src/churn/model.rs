//! The churn model: logistic regression over standard-scaled features, read from a model
//! file (`topology/churn-model.toml`, written by `scorestream churn train`).

use serde::{Deserialize, Serialize};

use super::features::{FeatureVector, FEATURES};
use super::rules::{RuleError, RuleErrors};

/// One feature's scaling and weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFeature {
    pub name: String,
    pub mean: f64,
    pub std: f64,
    pub weight: f64,
}

/// How the model was made (informational; printed by `validate`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trained {
    pub rows: u64,
    pub holdout_rows: u64,
    pub holdout_auc: f64,
    pub seed: u64,
    pub source: String,
}

/// The model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub version: String,
    pub intercept: f64,
    #[serde(default)]
    pub trained: Option<Trained>,
    pub features: Vec<ModelFeature>,
    /// Index into [`FEATURES`] per model feature (filled on load).
    #[serde(skip)]
    index: Vec<usize>,
}

/// One feature's share of a prediction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Factor {
    pub feature: String,
    pub value: f64,
    /// Weight × scaled value, in log-odds: positive raises the risk.
    pub contribution: f64,
}

/// A scored customer.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub probability: f64,
    /// The (up to) three features raising the risk most, largest first.
    pub factors: Vec<Factor>,
}

impl Model {
    /// The bundled `topology/churn-model.toml`.
    pub fn bundled() -> Result<Model, RuleErrors> {
        Model::from_toml_str(include_str!("../../topology/churn-model.toml"))
    }

    /// Parses and validates a model file; every problem at once.
    pub fn from_toml_str(text: &str) -> Result<Model, RuleErrors> {
        let model: Model = toml::from_str(text).map_err(|e| {
            RuleErrors(vec![RuleError {
                key: "<file>".into(),
                message: e.to_string().trim().to_string(),
            }])
        })?;
        model.validated()
    }

    /// Builds a model from parts (training), validated.
    pub fn new(
        version: String,
        intercept: f64,
        features: Vec<ModelFeature>,
        trained: Option<Trained>,
    ) -> Result<Model, RuleErrors> {
        Model {
            version,
            intercept,
            trained,
            features,
            index: Vec::new(),
        }
        .validated()
    }

    fn validated(mut self) -> Result<Model, RuleErrors> {
        let mut errors = Vec::new();
        let mut err = |key: String, message: String| errors.push(RuleError { key, message });
        if self.version.is_empty() {
            err("version".into(), "must not be empty".into());
        }
        if !self.intercept.is_finite() {
            err("intercept".into(), "must be a finite number".into());
        }
        if self.features.is_empty() {
            err("features".into(), "at least one feature is needed".into());
        }
        self.index.clear();
        for (i, f) in self.features.iter().enumerate() {
            let key = |field: &str| format!("features[{i}].{field}");
            match FEATURES.iter().position(|n| *n == f.name) {
                Some(p) if self.index.contains(&p) => {
                    err(key("name"), format!("'{}' appears twice", f.name))
                }
                Some(p) => self.index.push(p),
                None => err(
                    key("name"),
                    format!(
                        "'{}' is not a feature; expected one of {}",
                        f.name,
                        FEATURES.join(", ")
                    ),
                ),
            }
            if !(f.std.is_finite() && f.std > 0.0) {
                err(key("std"), "must be above zero".into());
            }
            if !f.mean.is_finite() {
                err(key("mean"), "must be a finite number".into());
            }
            if !f.weight.is_finite() {
                err(key("weight"), "must be a finite number".into());
            }
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(RuleErrors(errors))
        }
    }

    /// The probability of churn and the main factors.
    pub fn predict(&self, x: &FeatureVector) -> Prediction {
        let mut z = self.intercept;
        let mut factors: Vec<Factor> = Vec::with_capacity(self.features.len());
        for (f, &i) in self.features.iter().zip(&self.index) {
            let value = x.values[i];
            let contribution = f.weight * (value - f.mean) / f.std;
            z += contribution;
            factors.push(Factor {
                feature: f.name.clone(),
                value,
                contribution,
            });
        }
        factors.retain(|f| f.contribution > 0.0);
        factors.sort_by(|a, b| {
            b.contribution
                .total_cmp(&a.contribution)
                .then_with(|| a.feature.cmp(&b.feature))
        });
        factors.truncate(3);
        Prediction {
            probability: 1.0 / (1.0 + (-z).exp()),
            factors,
        }
    }

    /// The model file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a model serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(features: &str) -> Result<Model, RuleErrors> {
        Model::from_toml_str(&format!("version = \"t\"\nintercept = -1.0\n{features}"))
    }

    #[test]
    fn predicts_the_logistic_of_the_scaled_sum_with_the_main_factors() {
        let m = model(
            r#"
            [[features]]
            name = "complaints_90d"
            mean = 1.0
            std = 2.0
            weight = 2.0
            [[features]]
            name = "events_30d"
            mean = 10.0
            std = 5.0
            weight = -1.0
            [[features]]
            name = "tenure_days"
            mean = 0.0
            std = 100.0
            weight = 0.5
            "#,
        )
        .unwrap();
        let mut x = FeatureVector {
            values: [0.0; FEATURES.len()],
        };
        let set = |x: &mut FeatureVector, n: &str, v: f64| {
            x.values[FEATURES.iter().position(|f| *f == n).unwrap()] = v
        };
        set(&mut x, "complaints_90d", 3.0); // 2 × (3-1)/2 = 2
        set(&mut x, "events_30d", 5.0); // -1 × (5-10)/5 = 1
        set(&mut x, "tenure_days", 100.0); // 0.5 × 1 = 0.5
        let p = m.predict(&x);
        // z = -1 + 2 + 1 + 0.5 = 2.5
        assert!((p.probability - 1.0 / (1.0 + (-2.5f64).exp())).abs() < 1e-12);
        let names: Vec<&str> = p.factors.iter().map(|f| f.feature.as_str()).collect();
        assert_eq!(names, ["complaints_90d", "events_30d", "tenure_days"]);
        assert_eq!(p.factors[1].value, 5.0);
        assert!((p.factors[1].contribution - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_model_files_name_every_problem() {
        let errs = model(
            r#"
            [[features]]
            name = "shoe_size"
            mean = 1.0
            std = 0.0
            weight = 1.0
            [[features]]
            name = "events_7d"
            mean = 1.0
            std = 1.0
            weight = 1.0
            [[features]]
            name = "events_7d"
            mean = 1.0
            std = -1.0
            weight = 1.0
            "#,
        )
        .unwrap_err()
        .0;
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "features[0].name",
                "features[0].std",
                "features[2].name",
                "features[2].std"
            ]
        );
    }

    #[test]
    fn the_bundled_model_loads() {
        let m = Model::bundled().unwrap();
        assert!(!m.version.is_empty());
        assert!(
            m.trained.is_some(),
            "the shipped model records how it was trained"
        );
    }
}
