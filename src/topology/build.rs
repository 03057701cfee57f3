//! Assembling the bundled topology: a list of parts, each adding its sources, processor,
//! stores and sinks to the builder, with the names and outputs each processor module
//! declares (`NAME`, `OUTPUTS`); parent names, store connections and every declared output
//! are checked by [`TopologyBuilder::build`].

use super::ingest::{self, IngestProcessor, DEAD_LETTER_CHILD, VALID_CHILD};
use super::{
    churn, game, leaderboards, Components, DLQ_SUFFIX, EVENTS_BY_CUSTOMER, LEADERBOARD_POINTS,
};
use crate::config::Config;
use crate::engine::{
    BadRecords, DeadLetter, Partitioning, SinkTarget, StoreDecl, TopicRef, Topology,
    TopologyBuilder, TopologyError,
};
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
    fn bad_records(&self) -> BadRecords {
        BadRecords::new(self.metrics.as_ref().map(Metrics::bad_record_counters))
    }
}

/// A part of the topology: adds its nodes and stores to the builder.
type Part = fn(&mut TopologyBuilder, &BuildCtx<'_>);

/// The parts in order: sub-topology 0 (ingest) reads every input topic, dead-letters bad
/// records and re-keys good ones onto `<app-id>-events-by-customer`; sub-topology 1 keeps
/// one game state per customer from there and sends results, late dead letters and
/// leaderboard totals; sub-topology 2 ranks those totals per board and period.
const PARTS: [Part; 3] = [add_ingest, add_game, add_leaderboards];

/// Builds the topology from [`PARTS`].
pub fn build_topology(
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
    for part in PARTS {
        part(&mut b, &ctx);
    }
    b.build(&config.application_id)
}

/// Sub-topology 0: parse, normalize, dead-letter or re-key by customer.
fn add_ingest(b: &mut TopologyBuilder, ctx: &BuildCtx<'_>) {
    let (normalizer, bad) = (ctx.parts.normalizer.clone(), ctx.bad_records());
    b.add_source("ingest-source", &ctx.inputs);
    b.add_processor(
        ingest::NAME,
        move || Box::new(IngestProcessor::new(normalizer.clone(), bad.clone())),
        &["ingest-source"],
    );
    b.declare_outputs(ingest::NAME, &ingest::OUTPUTS);
    b.add_sink(
        DEAD_LETTER_CHILD,
        SinkTarget::dead_letter(ctx.dead_letter.clone()),
        Partitioning::SameAsSource,
        &[ingest::NAME],
    );
    b.add_sink(
        VALID_CHILD,
        SinkTarget::Topic(TopicRef::internal(EVENTS_BY_CUSTOMER)),
        Partitioning::ByKey,
        &[ingest::NAME],
    );
}

/// Sub-topology 1: the per-customer game (and churn branch) state and its outputs.
fn add_game(b: &mut TopologyBuilder, ctx: &BuildCtx<'_>) {
    let (config, parts) = (ctx.config, ctx.parts);
    b.add_source("customer-source", &[TopicRef::internal(EVENTS_BY_CUSTOMER)]);
    let state = b.add_state_store(
        StoreDecl {
            name: game::STATE_STORE.into(),
            logged: true,
        },
        &[game::NAME],
    );
    let inactivity = parts.churn.as_ref().map(|_| {
        b.add_state_store::<(u64, String), u8>(
            StoreDecl {
                name: churn::INACTIVITY_STORE.into(),
                logged: true,
            },
            &[game::NAME],
        )
    });
    let (rules, m) = (parts.rules.clone(), ctx.metrics.clone());
    let policies = game::GamePolicies::new(&config.errors, &rules);
    let churn_parts = parts.churn.clone();
    b.add_processor(
        game::NAME,
        move || {
            let churn = churn_parts
                .as_ref()
                .zip(inactivity.as_ref())
                .map(|(p, index)| churn::ChurnBranch::new(p.clone(), index.clone(), m.clone()));
            Box::new(game::GameProcessor::new(
                rules.clone(),
                state.clone(),
                m.clone(),
                policies,
                churn,
            ))
        },
        &["customer-source"],
    );
    b.declare_outputs(game::NAME, &game::OUTPUTS);
    if parts.churn.is_some() {
        b.declare_outputs(game::NAME, &churn::OUTPUTS);
        for (child, topic) in [
            (churn::PREDICTIONS_CHILD, &config.churn.predictions_topic),
            (churn::ALERTS_CHILD, &config.churn.alerts_topic),
        ] {
            b.add_sink(
                child,
                SinkTarget::Topic(TopicRef::external(topic)),
                Partitioning::ByKey,
                &[game::NAME],
            );
        }
    }
    b.add_sink(
        game::RESULTS_CHILD,
        SinkTarget::Topic(TopicRef::external(&config.gamification.results_topic)),
        Partitioning::ByKey,
        &[game::NAME],
    );
    b.add_sink(
        game::LEADERBOARD_CHILD,
        SinkTarget::Topic(TopicRef::internal(LEADERBOARD_POINTS)),
        Partitioning::ByKey,
        &[game::NAME],
    );
    b.add_sink(
        game::LATE_CHILD,
        SinkTarget::DeadLetter {
            sink: ctx.dead_letter.clone(),
            origins: ctx.inputs.clone(),
        },
        Partitioning::SameAsSource,
        &[game::NAME],
    );
}

/// Sub-topology 2: the rankings per board and period.
fn add_leaderboards(b: &mut TopologyBuilder, ctx: &BuildCtx<'_>) {
    b.add_source(
        "leaderboard-source",
        &[TopicRef::internal(LEADERBOARD_POINTS)],
    );
    let boards = b.add_state_store(
        StoreDecl {
            name: leaderboards::BOARDS_STORE.into(),
            logged: true,
        },
        &[leaderboards::NAME],
    );
    let (rules, m) = (ctx.parts.rules.clone(), ctx.metrics.clone());
    let emit_every = ctx.config.runtime.commit_interval;
    let undecodable = ctx.config.errors.undecodable_internal;
    b.add_processor(
        leaderboards::NAME,
        move || {
            Box::new(leaderboards::LeaderboardProcessor::new(
                rules.clone(),
                boards.clone(),
                emit_every,
                m.clone(),
                undecodable,
            ))
        },
        &["leaderboard-source"],
    );
    b.declare_outputs(leaderboards::NAME, &leaderboards::OUTPUTS);
    b.add_sink(
        leaderboards::RESULTS_CHILD,
        SinkTarget::Topic(TopicRef::external(&ctx.config.gamification.results_topic)),
        Partitioning::ByKey,
        &[leaderboards::NAME],
    );
}
