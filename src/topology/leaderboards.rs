//! The leaderboard processor (DESIGN §1, sub-topology 3): the top N per board and period,
//! fed by customers' totals on `<app-id>-leaderboard-points` (keyed `board|period`).
//!
//! - A total is an upsert ([`TopN::apply`]): repeats and stale totals change nothing, so
//!   at-least-once replays are harmless.
//! - Suppression: a change marks the board's period pending; `leaderboard_updated` goes
//!   out when the wall-clock punctuation runs (every commit interval), once per pending
//!   period however many totals changed it in between. The pending mark is stored, so a
//!   crash between a change and its emission emits it after restore.
//! - Rollover: when stream time passes a period's end plus the grace period, its final
//!   ranking is emitted once with `"final": true` and kept (queryable) for
//!   [`CLOSED_RETENTION_MS`], then deleted. A record with no value is a tick from a game
//!   task (see `game`): it only moves this task's stream time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::build::{BuildCtx, Part};
use super::leaderboard_points::decode_update;
use super::LEADERBOARD_POINTS;
use crate::config::{topic_error, Config, ConfigError};
use crate::engine::{
    BadRecords, Child, ErrorPolicy, Partitioning, Processor, ProcessorContext, ProcessorError,
    Punctuation, PunctuationType, Record, ScheduleId, SinkTarget, StoreDecl, TopicRef,
    TopologyBuilder,
};
use crate::gamification::{LeaderboardUpdate, Rules, TopN};
use crate::metrics::Metrics;
use crate::state::StoreHandle;

/// `board|period` → [`StoredBoard`].
pub const BOARDS_STORE: &str = "leaderboards";
pub const RESULTS_CHILD: &str = "leaderboard-results";
/// The processor's name in the topology.
pub const NAME: &str = "leaderboards";
/// Every child it forwards to.
pub const OUTPUTS: [&str; 1] = [RESULTS_CHILD];
/// Closed periods' final rankings are kept this long after they close.
pub const CLOSED_RETENTION_MS: i64 = 400 * 24 * 3_600_000;

/// Sub-topology 2: the rankings per board and period.
pub struct LeaderboardsPart;

impl Part for LeaderboardsPart {
    fn name(&self) -> &'static str {
        NAME
    }

    fn outputs(&self, _: &BuildCtx<'_>) -> Vec<&'static str> {
        OUTPUTS.to_vec()
    }

    fn stores(&self, _: &BuildCtx<'_>) -> Vec<&'static str> {
        vec![BOARDS_STORE]
    }

    fn build(&self, b: &mut TopologyBuilder, ctx: &BuildCtx<'_>) {
        b.add_source(
            "leaderboard-source",
            &[TopicRef::internal(LEADERBOARD_POINTS)],
        );
        let boards = b.add_state_store(
            StoreDecl {
                name: BOARDS_STORE.into(),
                logged: true,
            },
            &[NAME],
        );
        let (rules, m) = (ctx.parts.rules.clone(), ctx.metrics.clone());
        let emit_every = ctx.config.runtime.commit_interval;
        let undecodable = ctx.config.errors.undecodable_internal;
        b.add_processor(
            NAME,
            move || {
                Box::new(LeaderboardProcessor::new(
                    rules.clone(),
                    boards.clone(),
                    emit_every,
                    m.clone(),
                    undecodable,
                ))
            },
            &["leaderboard-source"],
        );
        b.add_sink(
            RESULTS_CHILD,
            SinkTarget::Topic(TopicRef::external(&ctx.config.gamification.results_topic)),
            Partitioning::ByKey,
            &[NAME],
        );
    }

    /// The results topic (shared with the game part: reported once).
    fn validate(&self, config: &Config) -> Vec<ConfigError> {
        let topic = &config.gamification.results_topic;
        topic_error("gamification.results_topic", topic)
            .into_iter()
            .collect()
    }
}

/// One board period's ranking and what is still to be published about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoardPeriod {
    pub top: TopN,
    pub period_end_ms: i64,
    /// The latest total that changed the ranking (the trigger of the next record).
    pub last: LeaderboardUpdate,
    /// Changed since the last `leaderboard_updated`.
    pub pending: bool,
    /// The final snapshot was published.
    pub closed: bool,
}

/// Versioned store value (see `game::StoredGameState`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoredBoard {
    V1(BoardPeriod),
}

pub struct LeaderboardProcessor {
    rules: Arc<Rules>,
    store: StoreHandle<String, StoredBoard>,
    metrics: Option<Metrics>,
    /// `errors.undecodable_internal`.
    undecodable: ErrorPolicy,
    bad_records: BadRecords,
    emit_every: Duration,
    results: Option<Child>,
    /// Keys with `pending` set; `None` until read back from the store after a (re)start.
    pending: Option<BTreeSet<String>>,
    /// Decoded boards as this task's store holds them (uncommitted writes included), for
    /// `process` only: decoding a whole stored top N for every total was a fifth of the full
    /// topology's instructions (issue 15), and most totals change nothing. This processor is
    /// the only writer of its task's store and is dropped with the task's uncommitted
    /// writes (rewind, revocation), so the copy cannot go stale; punctuations, which
    /// write through the store directly, clear it.
    decoded: HashMap<String, BoardPeriod>,
    emit_schedule: Option<ScheduleId>,
}

impl LeaderboardProcessor {
    pub fn new(
        rules: Arc<Rules>,
        store: StoreHandle<String, StoredBoard>,
        emit_every: Duration,
        metrics: Option<Metrics>,
        undecodable: ErrorPolicy,
    ) -> Self {
        LeaderboardProcessor {
            rules,
            store,
            bad_records: BadRecords::new(metrics.as_ref().map(Metrics::bad_record_counters)),
            metrics,
            undecodable,
            emit_every,
            results: None,
            pending: None,
            decoded: HashMap::new(),
            emit_schedule: None,
        }
    }

    fn pending_keys(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
    ) -> Result<&mut BTreeSet<String>, ProcessorError> {
        if self.pending.is_none() {
            let keys = ctx
                .store(&self.store)?
                .all()?
                .into_iter()
                .filter(|(_, StoredBoard::V1(b))| b.pending)
                .map(|(k, _)| k)
                .collect();
            self.pending = Some(keys);
        }
        Ok(self.pending.get_or_insert_with(BTreeSet::new))
    }

    fn emit(&self, ctx: &mut ProcessorContext<'_>, b: &BoardPeriod, final_snapshot: bool) {
        let Some(results) = self.results else { return };
        if let Some(m) = &self.metrics {
            m.game_results
                .with_label_values(&["leaderboard_updated"])
                .inc();
        }
        let at = b.last.occurred_at.unwrap_or(b.last.reached_at);
        let rec = Record::new(b.top.updated_json(&b.last, final_snapshot), at)
            .with_key(b.last.board.as_bytes());
        ctx.forward_to(results, rec);
    }

    /// Publishes every pending period once.
    fn flush_pending(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        let keys = std::mem::take(self.pending_keys(ctx)?);
        for key in keys {
            let mut store = ctx.store(&self.store)?;
            let Some(StoredBoard::V1(mut b)) = store.get(&key)? else {
                continue;
            };
            if !b.pending {
                continue;
            }
            b.pending = false;
            store.put(&key, &StoredBoard::V1(b.clone()))?;
            self.emit(ctx, &b, b.closed);
        }
        Ok(())
    }

    /// Publishes final snapshots of periods closed by `stream_time`, forgets old ones.
    fn roll_over(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        stream_time: i64,
    ) -> Result<(), ProcessorError> {
        let grace = self.rules.lateness_grace_ms();
        let entries = ctx.store(&self.store)?.all()?;
        for (key, StoredBoard::V1(mut b)) in entries {
            let closes_at = b.period_end_ms.saturating_add(grace);
            if closes_at.saturating_add(CLOSED_RETENTION_MS) <= stream_time {
                ctx.store(&self.store)?.delete(&key)?;
                self.pending_keys(ctx)?.remove(&key);
            } else if !b.closed && closes_at <= stream_time {
                b.closed = true;
                b.pending = false;
                self.pending_keys(ctx)?.remove(&key);
                ctx.store(&self.store)?
                    .put(&key, &StoredBoard::V1(b.clone()))?;
                self.emit(ctx, &b, true);
            }
        }
        Ok(())
    }
}

impl Processor for LeaderboardProcessor {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.results = Some(ctx.child(RESULTS_CHILD)?);
        self.emit_schedule = Some(ctx.schedule(self.emit_every, PunctuationType::WallClock));
        ctx.schedule(Duration::from_secs(600), PunctuationType::StreamTime);
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        let update = match r.value.as_deref().map(decode_update) {
            Some(Ok(u)) => u,
            Some(Err(e)) => {
                let (m, bad) = (self.metrics.as_ref(), &self.bad_records);
                let (policy, what) = (self.undecodable, "leaderboard update");
                return super::undecodable(ctx, m, bad, policy, r, &e, what);
            }
            // A tick (see the module doc): stream time has already moved.
            None => return Ok(()),
        };
        let Some(board) = self
            .rules
            .leaderboards
            .iter()
            .find(|b| b.id == update.board)
        else {
            // Written before a rules change removed the board.
            return Ok(());
        };
        let key = update.key();
        let (mut b, stored) = match self.decoded.remove(&key) {
            Some(b) => (b, true),
            None => match ctx.store(&self.store)?.get(&key)? {
                Some(StoredBoard::V1(b)) => (b, true),
                None => (
                    BoardPeriod {
                        top: TopN::new(board.top_n),
                        period_end_ms: update.period_end_ms,
                        last: update.clone(),
                        pending: false,
                        closed: false,
                    },
                    false,
                ),
            },
        };
        let changed = b.top.apply(&update);
        if changed {
            if let Some(m) = &self.metrics {
                m.leaderboard_updates.with_label_values(&["changed"]).inc();
            }
            b.last = update;
            b.pending = true;
            let value = StoredBoard::V1(b);
            ctx.store(&self.store)?.put(&key, &value)?;
            StoredBoard::V1(b) = value;
            self.pending_keys(ctx)?.insert(key.clone());
        }
        // Remembered as stored; a new board that did not change was not stored.
        if changed || stored {
            self.decoded.insert(key, b);
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        p: Punctuation,
    ) -> Result<(), ProcessorError> {
        // Both write boards through the store: `process` decodes afresh afterwards.
        self.decoded.clear();
        if Some(p.schedule) == self.emit_schedule {
            self.flush_pending(ctx)
        } else {
            self.roll_over(ctx, p.time)
        }
    }

    fn close(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        // Whatever is pending goes out with the task's last commit rather than after the
        // next owner restores it.
        self.decoded.clear();
        self.flush_pending(ctx)
    }
}
