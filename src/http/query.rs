//! Interactive queries (DESIGN §5): `GET /customers/{id}` and `GET /leaderboards/{board}`.
//!
//! Any instance answers for any key: the key's partition names the owning task; when that
//! task runs here its store is read (uncommitted writes included, as the task itself would
//! read them), when it is restoring here the answer is 503 with `Retry-After`, and when
//! another instance owns it the request is forwarded there once (marked with
//! [`FORWARDED_HEADER`], so a stale view of the owners never bounces a request around).
//! Every answer names the instance that read the state in [`SERVED_BY_HEADER`].

// Helpers return a finished error `Response` (128 bytes) as their `Err`: it is built once per
// failed request, never on a hot path, and keeps each status next to its message.
#![allow(clippy::result_large_err)]
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{error, HttpContext, RETRY_AFTER_SECS};
use crate::runtime::LocalRead;
use crate::topology::query::{Lookup, QueryError, QuerySpec, MAX_LIMIT};

/// Set on a request one instance forwards to another; its value is the sender.
pub const FORWARDED_HEADER: &str = "x-scorestream-forwarded-by";
/// Set on every query answer: the advertised address of the instance that read the state.
pub const SERVED_BY_HEADER: &str = "x-scorestream-served-by";

/// Reads task state and knows who owns what; implemented by the runtime's
/// [`crate::runtime::StateQuery`] (a trait so handlers can be tested without Kafka).
pub trait StateReader: Send + Sync + 'static {
    fn partition_of(&self, topic: &str, key: &[u8]) -> Option<i32>;
    fn read(
        &self,
        topic: &str,
        partition: i32,
        store: &str,
        key: &[u8],
    ) -> Result<LocalRead, String>;
    /// The advertised HTTP address of the partition's owner.
    fn owner(&self, topic: &str, partition: i32) -> Option<String>;
    /// This instance's advertised HTTP address.
    fn advertised(&self) -> Option<String>;
    /// Every live instance and its partitions, by advertised address (`GET /instances`).
    fn instances(&self) -> Vec<crate::runtime::registry::Announcement>;
}

impl StateReader for crate::runtime::StateQuery {
    fn partition_of(&self, topic: &str, key: &[u8]) -> Option<i32> {
        crate::runtime::StateQuery::partition_of(self, topic, key)
    }
    fn read(
        &self,
        topic: &str,
        partition: i32,
        store: &str,
        key: &[u8],
    ) -> Result<LocalRead, String> {
        crate::runtime::StateQuery::read(self, topic, partition, store, key)
            .map_err(|e| e.to_string())
    }
    fn owner(&self, topic: &str, partition: i32) -> Option<String> {
        crate::runtime::StateQuery::owner(self, topic, partition)
    }
    fn advertised(&self) -> Option<String> {
        crate::runtime::StateQuery::advertised(self).map(str::to_string)
    }
    fn instances(&self) -> Vec<crate::runtime::registry::Announcement> {
        crate::runtime::StateQuery::instances(self)
    }
}

/// What the query handlers need once the runtime runs.
#[derive(Clone)]
pub struct Queries {
    pub reader: Arc<dyn StateReader>,
    pub spec: Arc<QuerySpec>,
}

/// How requests are forwarded to the owner.
#[derive(Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(timeout: Duration) -> Forwarder {
        Forwarder {
            client: reqwest::Client::builder()
                .connect_timeout(timeout)
                .timeout(timeout)
                .build()
                .expect("an HTTP client with default TLS-less settings builds"),
            timeout,
        }
    }
}

#[derive(Deserialize)]
pub struct BoardParams {
    period: Option<String>,
    limit: Option<String>,
}

/// `GET /customers/{customer_id}`.
pub async fn customer(
    State(ctx): State<HttpContext>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let Some(q) = ctx.queries.get().cloned() else {
        return starting();
    };
    let lookup = match q.spec.customer(&id) {
        Ok(l) => l,
        Err(e) => return query_error(e),
    };
    answer(&ctx, &q, lookup, request, move |spec, raw| match raw {
        None => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "no customer '{}' (no event of theirs has been processed)",
                id.trim()
            ),
        )),
        Some(raw) => spec
            .customer_json(&id, raw)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    })
    .await
}

/// `GET /leaderboards/{board}?period=…&limit=…`.
pub async fn leaderboard(
    State(ctx): State<HttpContext>,
    Path(board): Path<String>,
    Query(params): Query<BoardParams>,
    request: Request,
) -> Response {
    let Some(q) = ctx.queries.get().cloned() else {
        return starting();
    };
    let limit = match params.limit.as_deref().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("limit must be a number from 1 to {MAX_LIMIT}"),
            )
        }
    };
    let (lookup, period_key) =
        match q
            .spec
            .board(&board, params.period.as_deref(), crate::runtime::now_ms())
        {
            Ok(x) => x,
            Err(e) => return query_error(e),
        };
    answer(&ctx, &q, lookup, request, move |spec, raw| {
        spec.board_json(&board, &period_key, raw, limit)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await
}

/// Reads locally, or says why not, or forwards to the owner.
async fn answer(
    ctx: &HttpContext,
    q: &Queries,
    lookup: Lookup,
    request: Request,
    render: impl FnOnce(&QuerySpec, Option<&[u8]>) -> Result<Value, Response> + Send + 'static,
) -> Response {
    let Some(partition) = q.reader.partition_of(&lookup.topic, &lookup.partition_key) else {
        return unavailable(format!(
            "topic '{}' is not known yet; the instance is starting",
            lookup.topic
        ));
    };
    let reader = q.reader.clone();
    let (topic, store, key) = (lookup.topic.clone(), lookup.store, lookup.store_key);
    // A read waits for the processing thread's current batch: keep it off the async workers.
    let read = tokio::task::spawn_blocking(move || reader.read(&topic, partition, store, &key))
        .await
        .unwrap_or_else(|e| Err(format!("the read panicked: {e}")));
    let served_by = q.reader.advertised().unwrap_or_else(|| "local".into());
    match read {
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Ok(LocalRead::Value(raw)) => {
            let mut response = match render(&q.spec, raw.as_deref()) {
                Ok(v) => axum::Json(v).into_response(),
                Err(r) => r,
            };
            if let Ok(v) = HeaderValue::from_str(&served_by) {
                response.headers_mut().insert(SERVED_BY_HEADER, v);
            }
            response
        }
        Ok(LocalRead::Restoring { remaining }) => unavailable(format!(
            "partition {partition} of '{}' is restoring its state here ({remaining} changelog record(s) to go)",
            lookup.topic
        )),
        Ok(LocalRead::Starting) => unavailable(format!(
            "partition {partition} of '{}' was just assigned here and is starting",
            lookup.topic
        )),
        Ok(LocalRead::NotOwned) => {
            if let Some(from) = request.headers().get(FORWARDED_HEADER) {
                return unavailable(format!(
                    "{} forwarded this here, but partition {partition} of '{}' is not owned here (a rebalance is moving it)",
                    from.to_str().unwrap_or("another instance"),
                    lookup.topic
                ));
            }
            match q.reader.owner(&lookup.topic, partition) {
                Some(owner) if Some(&owner) != q.reader.advertised().as_ref() => {
                    forward(&ctx.forwarder, &owner, &served_by, request).await
                }
                _ => unavailable(format!(
                    "no instance owns partition {partition} of '{}' right now (the group is rebalancing or the owner has not announced itself)",
                    lookup.topic
                )),
            }
        }
    }
}

/// Sends the request to `owner` and relays its answer.
async fn forward(f: &Forwarder, owner: &str, me: &str, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let url = format!("http://{owner}{path}");
    let sent = f.client.get(&url).header(FORWARDED_HEADER, me).send().await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the owner {owner} did not answer within {:?}", f.timeout),
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("could not reach the owner {owner}: {e}"),
            )
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in ["content-type", "retry-after", SERVED_BY_HEADER] {
        if let Some(v) = response.headers().get(name) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                headers.insert(name, v);
            }
        }
    }
    match response.bytes().await {
        Ok(body) => (status, headers, body).into_response(),
        Err(e) => error(
            StatusCode::BAD_GATEWAY,
            format!("the owner {owner} broke off its answer: {e}"),
        ),
    }
}

fn query_error(e: QueryError) -> Response {
    match e {
        QueryError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        QueryError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
    }
}

fn starting() -> Response {
    unavailable("starting: topics are being checked and the consumer group joined".into())
}

/// 503 with `Retry-After`.
pub(super) fn unavailable(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    r
}
