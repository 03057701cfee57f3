//! [`Ctx`], what the steps of applying one event share (the event, its local day, the
//! outputs so far), and [`Effects`], what they produced. The steps (`points`, `missions`,
//! `standing`, streaks in `eval`) take it; `eval` creates and finishes it: a tree, no cycle.

use std::collections::BTreeMap;

use super::output::{GameOutput, LeaderboardUpdate, OutputBody, Trigger, TriggerFields};
use super::rules::Rules;
use super::state::CustomerGameState;
use super::time::LocalDay;
use crate::domain::event::CanonicalEvent;

/// The results of an applied event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effects {
    /// For `gamification-results`, keyed by the customer id, in a deterministic order.
    pub outputs: Vec<GameOutput>,
    /// For the leaderboard repartition topic, keyed by [`LeaderboardUpdate::key`]: one
    /// per board and period whose total this event changed, sorted by board and period.
    pub leaderboard: Vec<LeaderboardUpdate>,
}

/// What the steps of [`super::apply`] share: the event, its local day, and what it produced.
pub(super) struct Ctx<'a> {
    pub rules: &'a Rules,
    pub event: &'a CanonicalEvent,
    /// The event's local day in the customer's zone.
    pub day: LocalDay,
    /// The customer's newest local day: where rolling windows end.
    pub newest_day: LocalDay,
    /// Stream time minus the grace period: no event older than this can still arrive.
    pub settle_before: i64,
    trigger: Trigger<'a>,
    /// The trigger's fields as results carry them, made at the first result: one
    /// allocation each per event, shared by all its results.
    fields: Option<TriggerFields>,
    outputs: Vec<GameOutput>,
    /// (board, period key) → (period end, the customer's new total, when it was reached).
    boards: BTreeMap<(String, String), (i64, i64, i64)>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        rules: &'a Rules,
        event: &'a CanonicalEvent,
        day: LocalDay,
        newest_day: LocalDay,
        settle_before: i64,
    ) -> Ctx<'a> {
        Ctx {
            rules,
            event,
            day,
            newest_day,
            settle_before,
            trigger: Trigger {
                customer_id: &event.customer_id,
                event_id: &event.event_id,
                occurred_at: event.occurred_at,
                rules_version: &rules.version,
            },
            fields: None,
            outputs: Vec::new(),
            boards: BTreeMap::new(),
        }
    }

    pub fn emit(&mut self, body: OutputBody) {
        let trigger = self.trigger;
        let fields = self
            .fields
            .get_or_insert_with(|| TriggerFields::new(trigger));
        self.outputs.push(GameOutput::with_fields(fields, body));
    }

    /// Adds to the event's day bucket.
    pub fn buckets_add(&self, state: &mut CustomerGameState, key: &str, amount: i64) {
        state.days.add(self.day, key, amount);
    }

    /// Records a board period's new total; the last one per period is sent.
    pub fn touch_board(
        &mut self,
        board: &str,
        period_key: String,
        end_ms: i64,
        total: i64,
        reached_at: i64,
    ) {
        self.boards
            .insert((board.to_string(), period_key), (end_ms, total, reached_at));
    }

    pub fn finish(self) -> Effects {
        let t = self.trigger;
        let leaderboard = self
            .boards
            .into_iter()
            .map(
                |((board, period), (period_end_ms, total, reached_at))| LeaderboardUpdate {
                    board,
                    period,
                    period_end_ms,
                    customer_id: t.customer_id.to_string(),
                    total,
                    reached_at,
                    occurred_at: Some(t.occurred_at),
                    event_id: t.event_id.to_string(),
                    rules_version: t.rules_version.to_string(),
                },
            )
            .collect();
        Effects {
            outputs: self.outputs,
            leaderboard,
        }
    }
}
