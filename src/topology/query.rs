//! What the interactive queries of DESIGN §5 read, in the bundled topology's terms: which
//! source topic's partition owns a customer or a leaderboard period, which store and key
//! hold it, and the JSON answered for it.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{game, leaderboards, EVENTS_BY_CUSTOMER, LEADERBOARD_POINTS};
use crate::gamification::output::board_period_key;
use crate::gamification::time::{day_string, period_span, rfc3339_ms, Period};
use crate::gamification::{CustomerGameState, Rules};
use crate::state::codec::{decode_value, encode_key};

/// Largest `limit` a leaderboard query may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Where one queried entity lives: the partition of `topic` its key maps to owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The source topic whose partition decides the owning task.
    pub topic: String,
    /// The record key on that topic (what the partitioner hashes).
    pub partition_key: Vec<u8>,
    pub store: &'static str,
    /// The key in the store, encoded.
    pub store_key: Vec<u8>,
}

/// A request that cannot be answered as asked (400/404 material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    BadRequest(String),
    NotFound(String),
}

/// The bundled topology's queryable state.
pub struct QuerySpec {
    customer_topic: String,
    board_topic: String,
    rules: Arc<Rules>,
}

impl QuerySpec {
    pub fn new(application_id: &str, rules: Arc<Rules>) -> QuerySpec {
        QuerySpec {
            customer_topic: format!("{application_id}-{EVENTS_BY_CUSTOMER}"),
            board_topic: format!("{application_id}-{LEADERBOARD_POINTS}"),
            rules,
        }
    }

    /// Where a customer's state lives.
    pub fn customer(&self, customer_id: &str) -> Result<Lookup, QueryError> {
        let id = customer_id.trim();
        if id.is_empty() {
            return Err(QueryError::BadRequest("the customer id is empty".into()));
        }
        Ok(Lookup {
            topic: self.customer_topic.clone(),
            partition_key: id.as_bytes().to_vec(),
            store: game::STATE_STORE,
            store_key: encode_key(game::STATE_STORE, &id.to_string())
                .map_err(|e| QueryError::BadRequest(e.to_string()))?,
        })
    }

    /// The JSON answer for a customer's stored state.
    pub fn customer_json(&self, customer_id: &str, raw: &[u8]) -> Result<Value, String> {
        let stored: game::StoredGameState =
            decode_value(game::STATE_STORE, raw).map_err(|e| e.to_string())?;
        let (game, churn) = stored.into_parts();
        let mut view = customer_view(customer_id.trim(), &game, &self.rules);
        view["churn"] = match &churn.last_prediction {
            None => Value::Null,
            Some((probability, band, at)) => json!({
                "probability": probability,
                "risk_band": band,
                "scored_at": rfc3339_ms(*at),
                "high_risk_alerted": churn.high_risk,
            }),
        };
        Ok(view)
    }

    /// Where a board's period lives. `period` is a period name (`daily`, `weekly`,
    /// `monthly`, `all_time`: the period containing `now_ms` in the board's time zone) or
    /// a period key (`daily:2024-01-15`); absent: `all_time` when the board keeps it, else
    /// its first period. Returns the lookup and the period key.
    pub fn board(
        &self,
        board: &str,
        period: Option<&str>,
        now_ms: i64,
    ) -> Result<(Lookup, String), QueryError> {
        let Some(spec) = self.rules.leaderboards.iter().find(|b| b.id == board) else {
            let known: Vec<&str> = self
                .rules
                .leaderboards
                .iter()
                .map(|b| b.id.as_str())
                .collect();
            return Err(QueryError::NotFound(format!(
                "no leaderboard '{board}' in the rules (known: {})",
                known.join(", ")
            )));
        };
        let key = match period {
            None => {
                let p = if spec.periods.contains(&Period::AllTime) {
                    Period::AllTime
                } else {
                    spec.periods[0]
                };
                period_span(p, now_ms, spec.time_zone).key
            }
            Some(text) => match Period::parse(text) {
                Some(p) if spec.periods.contains(&p) => period_span(p, now_ms, spec.time_zone).key,
                Some(_) | None => {
                    let name = text.split(':').next().unwrap_or(text);
                    match Period::parse(name) {
                        Some(p) if spec.periods.contains(&p) && text.contains(':') => {
                            text.to_string()
                        }
                        _ => {
                            let kept: Vec<&str> = spec.periods.iter().map(|p| p.name()).collect();
                            return Err(QueryError::BadRequest(format!(
                                "period '{text}' is not one of board '{board}''s periods ({}), nor a period key such as daily:2024-01-15",
                                kept.join(", ")
                            )));
                        }
                    }
                }
            },
        };
        let store_key = board_period_key(board, &key);
        Ok((
            Lookup {
                topic: self.board_topic.clone(),
                partition_key: store_key.as_bytes().to_vec(),
                store: leaderboards::BOARDS_STORE,
                store_key: encode_key(leaderboards::BOARDS_STORE, &store_key)
                    .map_err(|e| QueryError::BadRequest(e.to_string()))?,
            },
            key,
        ))
    }

    /// The JSON answer for a stored board period (`raw = None`: nobody scored yet).
    pub fn board_json(
        &self,
        board: &str,
        period_key: &str,
        raw: Option<&[u8]>,
        limit: usize,
    ) -> Result<Value, String> {
        let stored = raw
            .map(|r| decode_value::<leaderboards::StoredBoard>(leaderboards::BOARDS_STORE, r))
            .transpose()
            .map_err(|e| e.to_string())?;
        let (entries, closed, ends) = match &stored {
            None => (Vec::new(), false, None),
            Some(leaderboards::StoredBoard::V1(b)) => (
                b.top
                    .entries()
                    .iter()
                    .take(limit)
                    .enumerate()
                    .map(|(i, e)| {
                        json!({
                            "rank": i + 1,
                            "customer_id": e.customer_id,
                            "total": e.total,
                            "reached_at": rfc3339_ms(e.reached_at),
                        })
                    })
                    .collect(),
                b.closed,
                (b.period_end_ms != i64::MAX).then(|| rfc3339_ms(b.period_end_ms)),
            ),
        };
        Ok(json!({
            "board": board,
            "period": period_key,
            "period_ends_at": ends,
            "final": closed,
            "rules_version": self.rules.version,
            "entries": entries,
        }))
    }
}

/// A customer's state as the API shows it: profile, points, scores, tier, badges, missions,
/// streaks.
fn customer_view(customer_id: &str, s: &CustomerGameState, rules: &Rules) -> Value {
    let time = |ms: Option<i64>| ms.map(rfc3339_ms);
    let missions: Map<String, Value> = s
        .missions
        .iter()
        .map(|(id, m)| {
            (
                id.clone(),
                json!({
                    "count": m.count,
                    "sum": m.sum_milli as f64 / 1000.0,
                    "step": m.step,
                    "completions": m.completions,
                    "last_completed_at": time(m.last_completed_at),
                }),
            )
        })
        .collect();
    let streaks: Map<String, Value> = s
        .streaks
        .iter()
        .map(|(id, st)| {
            (
                id.clone(),
                json!({
                    "current": st.now.current,
                    "longest": st.now.longest,
                    "last_day": st.now.last_day.map(day_string),
                }),
            )
        })
        .collect();
    json!({
        "customer_id": customer_id,
        "rules_version": rules.version,
        "profile": {
            "first_event_at": time(s.profile.first_event_at),
            "last_event_at": time(s.profile.last_event_at),
            "events": s.profile.events,
            "value": s.profile.value_milli as f64 / 1000.0,
            "events_by_type": s.profile.by_type,
        },
        "points": s.points,
        "scores": s.scores,
        "tier": s.tier,
        "badges": s.badges,
        "missions": missions,
        "missions_completed": s.missions_completed,
        "streaks": streaks,
    })
}
