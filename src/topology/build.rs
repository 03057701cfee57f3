//! Assembling the bundled topology: a list of [`Part`]s, each a processor that describes
//! itself (its name, outputs and stores, how it is built and what of the configuration it
//! checks), as Vector's `TransformConfig` and Arroyo's operator constructors do. Parent
//! names, store connections and every declared output and store are checked by
//! [`TopologyBuilder::build`], so a wrong name fails here rather than at task start.

use super::{game, ingest, leaderboards, Components, DLQ_SUFFIX};
use crate::config::{Config, ConfigError};
use crate::engine::{BadRecords, DeadLetter, TopicRef, Topology, TopologyBuilder, TopologyError};
use crate::metrics::Metrics;

/// What every part of the topology is built from.
pub struct BuildCtx<'a> {
    pub config: &'a Config,
    pub parts: &'a Components,
    pub metrics: Option<Metrics>,
    /// The input topics, as the sources and the late dead letters name them.
    pub inputs: Vec<TopicRef>,
    /// Every dead-letter sink: `<input-topic>-dlq`, sized and bounded by `[errors]`.
    pub dead_letter: DeadLetter,
}

impl BuildCtx<'_> {
    /// Where processors send their bad records (counted in the metrics, when given).
    pub fn bad_records(&self) -> BadRecords {
        BadRecords::new(self.metrics.as_ref().map(Metrics::bad_record_counters))
    }
}

/// A processor of the bundled topology, describing itself.
pub trait Part: Sync {
    /// Its node name in the topology.
    fn name(&self) -> &'static str;
    /// The children it forwards to (by name, resolved in `init`).
    fn outputs(&self, ctx: &BuildCtx<'_>) -> Vec<&'static str>;
    /// The stores it reads and writes.
    fn stores(&self, ctx: &BuildCtx<'_>) -> Vec<&'static str>;
    /// Adds its source, its processor, the stores of [`Self::stores`] and a sink for each
    /// of [`Self::outputs`] to `b`.
    fn build(&self, b: &mut TopologyBuilder, ctx: &BuildCtx<'_>);
    /// Checks the configuration keys only this part reads; empty when they are fine.
    fn validate(&self, config: &Config) -> Vec<ConfigError>;
}

/// The parts in order: sub-topology 0 (ingest) reads every input topic, dead-letters bad
/// records and re-keys good ones onto `<app-id>-events-by-customer`; sub-topology 1 keeps
/// one game state per customer from there and sends results, late dead letters and
/// leaderboard totals; sub-topology 2 ranks those totals per board and period.
pub const PARTS: [&dyn Part; 3] = [
    &ingest::IngestPart,
    &game::GamePart,
    &leaderboards::LeaderboardsPart,
];

/// Builds the topology from [`PARTS`].
pub fn build_topology(
    config: &Config,
    parts: &Components,
    metrics: Option<Metrics>,
) -> Result<Topology, TopologyError> {
    build_from(&PARTS, config, parts, metrics)
}

/// Builds a topology from `list`: each part adds its nodes, then declares its outputs and
/// stores for the builder to check.
fn build_from(
    list: &[&dyn Part],
    config: &Config,
    parts: &Components,
    metrics: Option<Metrics>,
) -> Result<Topology, TopologyError> {
    let ctx = BuildCtx {
        config,
        parts,
        metrics,
        inputs: config.inputs.iter().map(TopicRef::external).collect(),
        dead_letter: DeadLetter {
            suffix: DLQ_SUFFIX.into(),
            max_bytes: config.dead_letter_max_bytes(),
            on_too_large: config.errors.dead_letter_too_large,
        },
    };
    let mut b = TopologyBuilder::new();
    b.on_oversize_output(config.errors.oversize_output);
    for part in list {
        part.build(&mut b, &ctx);
        b.declare_outputs(part.name(), &part.outputs(&ctx));
        b.declare_stores(part.name(), &part.stores(&ctx));
    }
    b.build(&config.application_id)
}

/// Every part's own configuration checks, in the order of [`PARTS`]; a key two parts read
/// (the results topic) is reported once.
pub(crate) fn validate_parts(config: &Config, errors: &mut Vec<ConfigError>) {
    for part in PARTS {
        for e in part.validate(config) {
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundled part whose description names one child and one store wrong.
    struct Misdescribed(&'static dyn Part);

    impl Part for Misdescribed {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn outputs(&self, ctx: &BuildCtx<'_>) -> Vec<&'static str> {
            let mut o = self.0.outputs(ctx);
            o[0] = "gamification-result";
            o
        }
        fn stores(&self, ctx: &BuildCtx<'_>) -> Vec<&'static str> {
            let mut s = self.0.stores(ctx);
            s.push(leaderboards::BOARDS_STORE);
            s
        }
        fn build(&self, b: &mut TopologyBuilder, ctx: &BuildCtx<'_>) {
            self.0.build(b, ctx)
        }
        fn validate(&self, config: &Config) -> Vec<ConfigError> {
            self.0.validate(config)
        }
    }

    #[test]
    fn the_bundled_parts_build_with_churn_on_and_off() {
        for churn in [false, true] {
            let mut config = Config::default();
            config.churn.enabled = churn;
            let parts = Components::load(&config).unwrap();
            let t = build_topology(&config, &parts, None).unwrap();
            assert_eq!(t.subtopologies().len(), 3, "churn {churn}");
        }
    }

    #[test]
    fn a_wrong_child_or_store_name_fails_when_the_topology_is_built() {
        let config = Config::default();
        let parts = Components::load(&config).unwrap();
        let list: [&dyn Part; 3] = [
            &ingest::IngestPart,
            &Misdescribed(&game::GamePart),
            &leaderboards::LeaderboardsPart,
        ];
        let errors = match build_from(&list, &config, &parts, None) {
            Err(TopologyError::Many(e)) => e.0,
            other => panic!("expected two errors, got {:?}", other.map(|_| ())),
        };
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text,
            [
                "processor 'gamify' forwards to 'gamification-result', which is not a node it feeds",
                "processor 'gamify' uses store 'leaderboards', which is not connected to it",
            ]
        );
    }
}
