//! Churn prediction (DESIGN §1): per-customer features kept incrementally in the
//! per-customer store ([`features`]), a logistic-regression [`model`] read from a model file,
//! the [`rules`] saying which events are which and when to re-score, the triggers and alerts
//! ([`decide`]), and the labelled-data generator ([`simulate`]) and training ([`train`])
//! behind `scorestream churn export` / `scorestream churn train`. Pure code: the topology
//! wiring is in `app::game`. See docs/churn.md.

pub mod decide;
pub mod features;
pub mod model;
pub mod rules;
pub mod simulate;
pub mod train;

pub use decide::{alerts_for, inactivity_due, trigger_for, Alert, Trigger};
pub use features::{ChurnEvent, ChurnState, FeatureVector, FEATURES};
pub use model::{Model, Prediction};
pub use rules::ChurnRules;
