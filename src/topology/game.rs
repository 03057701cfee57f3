//! The per-customer gamification processor (DESIGN §1, sub-topology 2): one store value per
//! customer holds everything the game remembers about them, the dedupe window included, so
//! an event costs one read and one write of local state and one changelog record.
//!
//! For each event on `<app-id>-events-by-customer` it loads the customer's
//! [`CustomerGameState`], calls [`apply`], stores the state, sends the results to
//! `gamification-results` (keyed by the customer) and the customer's new leaderboard
//! totals to `<app-id>-leaderboard-points` (keyed by board and period). Late events are
//! dead-lettered to their original input topic's `-dlq` as canonical JSON with the original
//! record's headers (which the internal record carries), or dropped, as the rules say.
//!
//! Leaderboards must not funnel every event into one partition per board, so each task
//! keeps an in-memory partial top-N per board and period of its own customers and forwards
//! a total only when it changes that partial ranking. That is exact: a customer in the
//! global top N is in their partition's top N at the moment they reach their total (totals
//! only grow), so every total that can matter crosses. The partial is a filter, not state:
//! after a restart it starts empty and lets more through, never less. Once a period has
//! closed in this task's stream time, the partial forgets it and sends its leaderboard task
//! a value-less tick carrying that stream time, so that the period's final snapshot does not
//! wait for unrelated records to reach that partition.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::ScheduleId;
use crate::engine::{
    BadRecords, Child, ErrorPolicy, Headers, Processor, ProcessorContext, ProcessorError,
    Punctuation, PunctuationType, Record, SourcePosition,
};
use crate::gamification::rules::LatePolicy;
use crate::gamification::{apply, Applied, Effects, Rules};
use crate::ingest::event::CanonicalEvent;
use crate::ingest::normalize::RejectReason;
use crate::metrics::Metrics;
use crate::state::StoreHandle;

use super::build::{BuildCtx, Part};
use super::churn::{self, ChurnBranch};
use super::leaderboard_points::{encode_update, PartialBoards};
pub use super::stored_game::StoredGameState;
use super::LEADERBOARD_POINTS;
use crate::config::{topic_error, Config, ConfigError};
use crate::engine::{Partitioning, SinkTarget, StoreDecl, TopicRef, TopologyBuilder};

/// The per-customer store: customer id → [`StoredGameState`].
pub const STATE_STORE: &str = "customer-state";
/// Children of the processor.
pub const RESULTS_CHILD: &str = "gamification-results";
pub const LEADERBOARD_CHILD: &str = "leaderboard-points";
pub const LATE_CHILD: &str = "late-dead-letter";
/// The processor's name in the topology.
pub const NAME: &str = "gamify";
/// Every child it forwards to besides the churn branch's ([`super::churn::OUTPUTS`]).
pub const OUTPUTS: [&str; 3] = [RESULTS_CHILD, LEADERBOARD_CHILD, LATE_CHILD];

/// Sub-topology 1: the per-customer game (and churn branch) state and its outputs.
pub struct GamePart;

impl Part for GamePart {
    fn name(&self) -> &'static str {
        NAME
    }

    fn outputs(&self, ctx: &BuildCtx<'_>) -> Vec<&'static str> {
        let mut outputs = OUTPUTS.to_vec();
        if ctx.parts.churn.is_some() {
            outputs.extend(churn::OUTPUTS);
        }
        outputs
    }

    fn stores(&self, ctx: &BuildCtx<'_>) -> Vec<&'static str> {
        let mut stores = vec![STATE_STORE];
        if ctx.parts.churn.is_some() {
            stores.push(churn::INACTIVITY_STORE);
        }
        stores
    }

    fn build(&self, b: &mut TopologyBuilder, ctx: &BuildCtx<'_>) {
        let (config, parts) = (ctx.config, ctx.parts);
        b.add_source(
            "customer-source",
            &[TopicRef::internal(super::EVENTS_BY_CUSTOMER)],
        );
        let state = b.add_state_store(
            StoreDecl {
                name: STATE_STORE.into(),
                logged: true,
            },
            &[NAME],
        );
        let inactivity = parts.churn.as_ref().map(|_| {
            b.add_state_store::<(u64, String), u8>(
                StoreDecl {
                    name: churn::INACTIVITY_STORE.into(),
                    logged: true,
                },
                &[NAME],
            )
        });
        let (rules, m) = (parts.rules.clone(), ctx.metrics.clone());
        let policies = GamePolicies::new(&config.errors, &rules);
        let churn_parts = parts.churn.clone();
        b.add_processor(
            NAME,
            move || {
                let churn = churn_parts
                    .as_ref()
                    .zip(inactivity.as_ref())
                    .map(|(p, index)| ChurnBranch::new(p.clone(), index.clone(), m.clone()));
                Box::new(GameProcessor::new(
                    rules.clone(),
                    state.clone(),
                    m.clone(),
                    policies,
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
                    &[NAME],
                );
            }
        }
        b.add_sink(
            RESULTS_CHILD,
            SinkTarget::Topic(TopicRef::external(&config.gamification.results_topic)),
            Partitioning::ByKey,
            &[NAME],
        );
        b.add_sink(
            LEADERBOARD_CHILD,
            SinkTarget::Topic(TopicRef::internal(LEADERBOARD_POINTS)),
            Partitioning::ByKey,
            &[NAME],
        );
        b.add_sink(
            LATE_CHILD,
            SinkTarget::DeadLetter {
                sink: ctx.dead_letter.clone(),
                origins: ctx.inputs.clone(),
            },
            Partitioning::SameAsSource,
            &[NAME],
        );
    }

    /// The topics the results, predictions and alerts go to (the churn ones checked even
    /// with churn off, so turning it on cannot surprise).
    fn validate(&self, config: &Config) -> Vec<ConfigError> {
        [
            (
                "gamification.results_topic",
                &config.gamification.results_topic,
            ),
            ("churn.predictions_topic", &config.churn.predictions_topic),
            ("churn.alerts_topic", &config.churn.alerts_topic),
        ]
        .into_iter()
        .filter_map(|(key, topic)| topic_error(key, topic))
        .collect()
    }
}

/// What the game does with its bad records (`[errors]`, resolved against the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GamePolicies {
    pub late_event: ErrorPolicy,
    pub unknown_event_type: ErrorPolicy,
    pub undecodable_internal: ErrorPolicy,
}

impl GamePolicies {
    /// The configured policies; a late event's is the rules' `late_policy` unless
    /// `errors.late_event` is set.
    pub fn new(errors: &crate::config::ErrorSettings, rules: &Rules) -> Self {
        let from_rules = match rules.settings.late_policy {
            LatePolicy::DeadLetter => ErrorPolicy::DeadLetter,
            LatePolicy::Drop => ErrorPolicy::Drop,
        };
        GamePolicies {
            late_event: errors.late_event.unwrap_or(from_rules),
            unknown_event_type: errors.unknown_event_type,
            undecodable_internal: errors.undecodable_internal,
        }
    }
}

pub struct GameProcessor {
    rules: Arc<Rules>,
    store: StoreHandle<String, StoredGameState>,
    metrics: Option<Metrics>,
    policies: GamePolicies,
    bad_records: BadRecords,
    children: Option<(Child, Child, Child)>,
    partials: PartialBoards,
    /// Counters resolved once: `with_label_values` hashes and locks on every call.
    counters: Counters,
    /// The churn branch, when `churn.enabled`.
    churn: Option<ChurnBranch>,
    leaderboard_schedule: Option<ScheduleId>,
    inactivity_schedule: Option<ScheduleId>,
}

#[derive(Default)]
struct Counters {
    results: Vec<(&'static str, prometheus::IntCounter)>,
    forwarded: Option<prometheus::IntCounter>,
    skipped: Option<prometheus::IntCounter>,
}

impl Counters {
    fn result(&mut self, metrics: &Metrics, output_type: &'static str) {
        match self.results.iter().find(|(t, _)| *t == output_type) {
            Some((_, c)) => c.inc(),
            None => {
                let c = metrics.game_results.with_label_values(&[output_type]);
                c.inc();
                self.results.push((output_type, c));
            }
        }
    }

    fn leaderboard(&mut self, metrics: &Metrics, forwarded: bool) {
        let (slot, stage) = if forwarded {
            (&mut self.forwarded, "forwarded")
        } else {
            (&mut self.skipped, "skipped")
        };
        slot.get_or_insert_with(|| metrics.leaderboard_updates.with_label_values(&[stage]))
            .inc();
    }
}

impl GameProcessor {
    pub fn new(
        rules: Arc<Rules>,
        store: StoreHandle<String, StoredGameState>,
        metrics: Option<Metrics>,
        policies: GamePolicies,
        churn: Option<ChurnBranch>,
    ) -> Self {
        GameProcessor {
            partials: PartialBoards::new(&rules),
            rules,
            store,
            bad_records: BadRecords::new(metrics.as_ref().map(Metrics::bad_record_counters)),
            metrics,
            policies,
            children: None,
            counters: Counters::default(),
            churn,
            leaderboard_schedule: None,
            inactivity_schedule: None,
        }
    }

    /// Inactivity re-scores due at `now`: each customer's state is loaded, scored and
    /// stored back.
    fn rescore_silent(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        now: i64,
    ) -> Result<(), ProcessorError> {
        let Some(churn) = &self.churn else {
            return Ok(());
        };
        for (due, customer) in churn.take_due(ctx, now)? {
            let Some(stored) = ctx.store(&self.store)?.get(&customer)? else {
                continue;
            };
            let (game, mut churn_state) = stored.into_parts();
            if churn.on_silence(ctx, &mut churn_state, &customer, due)? {
                ctx.store(&self.store)?
                    .put(&customer, &StoredGameState::new(game, Some(churn_state)))?;
            }
        }
        Ok(())
    }

    /// Sends an event's effects: its results to `gamification-results`, and the leaderboard
    /// totals that change this task's partial rankings to `<app-id>-leaderboard-points`.
    fn forward_effects(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        (results, boards): (Child, Child),
        event: &CanonicalEvent,
        effects: &Effects,
        source: Option<&SourcePosition>,
    ) {
        for out in &effects.outputs {
            if let Some(m) = &self.metrics {
                self.counters.result(m, out.output_type);
            }
            let rec = Record::new(out.to_json_bytes(), event.occurred_at)
                .with_key(event.customer_id.as_bytes())
                .with_source(source.cloned());
            ctx.forward_to(results, rec);
        }
        for update in &effects.leaderboard {
            let admitted = self.partials.admit(update);
            if let Some(m) = &self.metrics {
                self.counters.leaderboard(m, admitted);
            }
            if admitted {
                let rec = Record::new(encode_update(update), event.occurred_at)
                    .with_key(update.key())
                    .with_source(source.cloned());
                ctx.forward_to(boards, rec);
            }
        }
    }

    fn late(
        &self,
        ctx: &mut ProcessorContext<'_>,
        late: Child,
        event: &CanonicalEvent,
        headers: Headers,
        behind_ms: i64,
    ) -> Result<(), ProcessorError> {
        let policy = self.policies.late_event;
        if let Some(m) = &self.metrics {
            m.late_events.with_label_values(&[policy.action()]).inc();
        }
        let message = format!(
            "event time {} is {} behind stream time, beyond the grace period of {}",
            crate::gamification::time::rfc3339_ms(event.occurred_at),
            humantime::format_duration(Duration::from_millis(behind_ms as u64)),
            humantime::format_duration(self.rules.settings.lateness_grace),
        );
        let bad = (policy, RejectReason::LateEvent);
        self.bad_event(ctx, late, event, headers, bad, &message)
    }

    /// A bad event raised after re-keying, given to its policy. Its dead letter is the
    /// canonical event as JSON, placed on the original input's `-dlq` and partition, with
    /// the original record's headers (carried on the internal record) and the original
    /// position in the headers.
    fn bad_event(
        &self,
        ctx: &mut ProcessorContext<'_>,
        child: Child,
        event: &CanonicalEvent,
        headers: Headers,
        (policy, reason): (ErrorPolicy, RejectReason),
        message: &str,
    ) -> Result<(), ProcessorError> {
        let origin = &event.origin;
        let record = Record::new(event.to_json().to_string(), event.occurred_at)
            .with_key(event.customer_id.as_bytes())
            .with_headers(headers)
            .with_source(Some(SourcePosition {
                topic: Arc::from(origin.topic.as_str()),
                partition: origin.partition,
                offset: origin.offset,
            }));
        let bad = &self.bad_records;
        bad.handle(ctx, Some(child), record, policy, reason.as_str(), message)
    }
}

impl Processor for GameProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.children = Some((
            ctx.child(RESULTS_CHILD)?,
            ctx.child(LEADERBOARD_CHILD)?,
            ctx.child(LATE_CHILD)?,
        ));
        // Closed periods leave the partial rankings once they can no longer change.
        self.leaderboard_schedule =
            Some(ctx.schedule(Duration::from_secs(3600), PunctuationType::StreamTime));
        if let Some(churn) = self.churn.as_mut() {
            self.inactivity_schedule = churn.init(ctx)?;
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        let Some((results, boards, late)) = self.children else {
            return Err(ProcessorError::Failed("process called before init".into()));
        };
        let event = match r.value.as_deref().map(CanonicalEvent::decode) {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                let policy = self.policies.undecodable_internal;
                let what = "record on the per-customer topic";
                let (m, bad) = (self.metrics.as_ref(), &self.bad_records);
                return super::undecodable(ctx, m, bad, policy, r, &e, what);
            }
            None => return Ok(()),
        };
        let stream_time = ctx.stream_time().unwrap_or(event.occurred_at);
        let (mut state, mut churn_state) = ctx
            .store(&self.store)?
            .get(&event.customer_id)?
            .map(StoredGameState::into_parts)
            .unwrap_or_default();
        let effects = match apply(&self.rules, &mut state, &event, stream_time) {
            Applied::Applied(effects) => effects,
            Applied::Duplicate => {
                if let Some(m) = &self.metrics {
                    m.duplicate_events.inc();
                }
                return Ok(());
            }
            Applied::Late { behind_ms } => {
                return self.late(ctx, late, &event, r.headers, behind_ms);
            }
            Applied::UnknownEventType => {
                let message = format!(
                    "event type '{}' is not used by any gamification rule (settings.strict_event_types is on)",
                    event.event_type
                );
                let bad = (
                    self.policies.unknown_event_type,
                    RejectReason::UnknownEventType,
                );
                return self.bad_event(ctx, late, &event, r.headers, bad, &message);
            }
        };
        let stored = match &self.churn {
            Some(churn) => {
                churn.on_event(ctx, &mut churn_state, &event, r.source.as_ref())?;
                StoredGameState::new(state, Some(churn_state))
            }
            // Churn off: no churn state is stored.
            None => StoredGameState::new(state, None),
        };
        ctx.store(&self.store)?.put(&event.customer_id, &stored)?;
        self.forward_effects(ctx, (results, boards), &event, &effects, r.source.as_ref());
        Ok(())
    }

    /// Forgets closed periods, and sends each one's leaderboard task a tick: a record with
    /// the period's key, no value, and this task's stream time. Stream time is per task,
    /// and the next period's totals go to other partitions (the key holds the period), so
    /// without it the task owning a closed period might see no later record and never
    /// publish its final snapshot.
    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        p: Punctuation,
    ) -> Result<(), ProcessorError> {
        if Some(p.schedule) == self.inactivity_schedule {
            return self.rescore_silent(ctx, p.time);
        }
        if Some(p.schedule) != self.leaderboard_schedule {
            return Ok(());
        }
        let closed = self
            .partials
            .forget_closed(p.time.saturating_sub(self.rules.lateness_grace_ms()));
        if let Some((_, boards, _)) = self.children {
            for key in closed {
                let tick = Record::valueless(key, p.time);
                ctx.forward_to(boards, tick);
            }
        }
        Ok(())
    }
}
