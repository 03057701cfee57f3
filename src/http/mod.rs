//! The HTTP listener (DESIGN §5): `/metrics` for Prometheus, `/health` (the process is
//! alive), `/ready` (the instance has joined the group and every task it owns is
//! restored), `/instances` (who owns which partitions, [`instances`]), interactive queries
//! ([`query`]) and the `POST /events` webhook
//! ([`webhook`]). Errors are JSON with a status code that means what it says.
//!
//! The listener is bound before anything else starts, so a bad `http_addr` fails at once
//! and `/health` answers while topics are created and the group is joined.

pub mod instances;
pub mod query;
pub mod webhook;

#[cfg(test)]
mod api_tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Seconds a client is asked to wait before asking `/ready` again.
const RETRY_AFTER_SECS: &str = "5";

/// What the handlers read: the metrics registry, whether the runtime has started, the
/// state queries once it has, and the webhook.
#[derive(Clone)]
pub struct HttpContext {
    pub metrics: Metrics,
    /// Set once topics are ready and the processing thread runs.
    pub started: Arc<AtomicBool>,
    /// Set once the runtime runs; queries answer 503 before.
    pub queries: Arc<OnceLock<query::Queries>>,
    pub forwarder: query::Forwarder,
    /// `POST /events`; `None` answers 403 (not configured).
    pub webhook: Option<Arc<webhook::Webhook>>,
}

impl HttpContext {
    pub fn new(metrics: Metrics) -> HttpContext {
        HttpContext {
            metrics,
            started: Arc::new(AtomicBool::new(false)),
            queries: Arc::new(OnceLock::new()),
            forwarder: query::Forwarder::new(Duration::from_secs(5)),
            webhook: None,
        }
    }
}

impl HttpContext {
    /// The context `scorestream run` serves: forwarding timeout from `http`, and the
    /// webhook writing to `http.webhook_topic` when a token is configured.
    pub fn for_config(
        config: &crate::config::Config,
        metrics: Metrics,
        normalizer: Arc<crate::ingest::normalize::Normalizer>,
    ) -> Result<HttpContext, rdkafka::error::KafkaError> {
        let webhook = match &config.http.webhook_token {
            None => None,
            Some(token) => Some(Arc::new(webhook::Webhook {
                token: Some(token.clone()),
                topic: config.webhook_topic().to_string(),
                max_body_bytes: config.http.max_body_bytes,
                normalizer,
                sink: Arc::new(webhook::KafkaSink::new(config)?),
            })),
        };
        Ok(HttpContext {
            forwarder: query::Forwarder::new(config.http.forward_timeout),
            webhook,
            ..HttpContext::new(metrics)
        })
    }

    /// Makes the queries answerable (once the runtime runs).
    pub fn serve_queries(
        &self,
        reader: Arc<dyn query::StateReader>,
        spec: Arc<crate::topology::query::QuerySpec>,
    ) {
        let _ = self.queries.set(query::Queries { reader, spec });
    }
}

/// The address other instances reach this one at: `http.advertised_addr`, else the bound
/// address with an unspecified host (`0.0.0.0`, `::`) replaced by the host name.
pub fn advertised_addr(config: &crate::config::Config, bound: std::net::SocketAddr) -> String {
    if let Some(a) = &config.http.advertised_addr {
        return a.clone();
    }
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", bound.port())
}

/// A JSON error: `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for HTTP on '{addr}' (http_addr / SCORESTREAM_HTTP_ADDR): {source}")]
pub struct BindError {
    addr: String,
    #[source]
    source: std::io::Error,
}

/// Binds `addr` (e.g. `0.0.0.0:8080`; port 0 picks a free one).
pub async fn bind(addr: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        addr: addr.to_string(),
        source,
    })
}

/// Every route.
pub fn router(ctx: HttpContext) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/instances", get(instances::list))
        .route("/customers/{customer_id}", get(query::customer))
        .route("/leaderboards/{board}", get(query::leaderboard))
        .route("/events", post(webhook::post_events))
        .layer(webhook::body_limit())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            count_requests,
        ))
        .with_state(ctx)
}

/// Counts every answer by route template (never the concrete path: it holds customer ids).
async fn count_requests(
    State(ctx): State<HttpContext>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    ctx.metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Serves `router` on `listener` until the process ends.
pub fn spawn(listener: TcpListener, router: Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP listener stopped.");
        }
    })
}

async fn metrics(State(ctx): State<HttpContext>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        ctx.metrics.render(),
    )
        .into_response()
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the runtime has started, the broker answers, every input topic exists, the
/// group has assigned this instance partitions, and every task it owns runs (none restoring
/// or waiting to start). An instance with no task is not ready: it processes nothing.
async fn ready(State(ctx): State<HttpContext>) -> Response {
    let m = &ctx.metrics;
    let not_ready = |reason: String| {
        let mut r = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason})),
        )
            .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
        r
    };
    if !ctx.started.load(Ordering::Relaxed) {
        return not_ready("starting: checking topics and joining the consumer group".into());
    }
    if m.broker_reachable.get() == 0 {
        return not_ready("the Kafka cluster does not answer".into());
    }
    let missing = m.input_topics_missing.get();
    if missing > 0 {
        return not_ready(format!(
            "{missing} input topic(s) do not exist on the broker"
        ));
    }
    if m.input_undecodable.get() > 0 {
        return not_ready(
            "an input record batch cannot be decoded (corrupt, or a codec this build lacks): its partition cannot advance (see the log and scorestream_undecodable_batches_total)"
                .into(),
        );
    }
    let beyond = m.input_beyond_end.get();
    if beyond > 0 {
        return not_ready(format!(
            "{beyond} input partition(s) positioned past the end of what the broker has (topic re-created or lost): they cannot advance until read again from their beginning (see the log and scorestream_state_ahead_of_broker_total{{kind=\"input\"}})"
        ));
    }
    if m.rebalances.with_label_values(&["assign"]).get() == 0 {
        return not_ready("waiting for the consumer group to assign partitions".into());
    }
    let restoring = m.tasks_restoring.get();
    if restoring > 0 {
        return not_ready(format!(
            "restoring {restoring} task(s) from their changelogs, {} record(s) to go",
            m.restore_remaining.get()
        ));
    }
    let waiting = m.tasks_waiting.get();
    if waiting > 0 {
        return not_ready(format!(
            "{waiting} task(s) cannot start yet: the broker did not answer (retrying)"
        ));
    }
    if m.tasks_assigned.get() == 0 {
        return not_ready("no task assigned to this instance: it processes nothing".into());
    }
    Json(json!({"ready": true, "tasks": m.tasks_assigned.get()})).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "not found", "routes": [
            "GET /metrics", "GET /health", "GET /ready", "GET /instances", "GET /customers/{customer_id}",
            "GET /leaderboards/{board}?period=&limit=", "POST /events",
        ]})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn call(ctx: &HttpContext, path: &str) -> (StatusCode, Option<String>, String) {
        let res = router(ctx.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let retry = res
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, retry, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_follows_start_assignment_and_restore() {
        let ctx = HttpContext::new(Metrics::new());
        let (s, retry, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("5"));
        assert!(body.contains("starting"), "{body}");

        ctx.started.store(true, Ordering::Relaxed);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("does not answer"), "{body}");

        ctx.metrics.broker_reachable.set(1);
        ctx.metrics.input_topics_missing.set(1);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("1 input topic(s) do not exist"), "{body}");

        ctx.metrics.input_topics_missing.set(0);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("assign"), "{body}");

        ctx.metrics.rebalances.with_label_values(&["assign"]).inc();
        ctx.metrics.tasks_restoring.set(2);
        ctx.metrics.restore_remaining.set(1234);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("restoring 2 task(s)") && body.contains("1234"),
            "{body}"
        );

        ctx.metrics.tasks_restoring.set(0);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no task assigned"), "{body}");

        ctx.metrics.tasks_waiting.set(1);
        ctx.metrics.tasks_assigned.set(3);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("1 task(s) cannot start"), "{body}");

        ctx.metrics.tasks_waiting.set(0);
        ctx.metrics.input_undecodable.set(1);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("cannot be decoded"), "{body}");

        ctx.metrics.input_undecodable.set(0);
        ctx.metrics.input_beyond_end.set(2);
        let (s, _, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("2 input partition(s) positioned past the end"),
            "{body}"
        );
        ctx.metrics.input_beyond_end.set(0);

        ctx.metrics.input_undecodable.set(0);
        let (s, retry, body) = call(&ctx, "/ready").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(retry, None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v, json!({"ready": true, "tasks": 3}));
    }

    #[tokio::test]
    async fn health_metrics_and_unknown_routes() {
        let ctx = HttpContext::new(Metrics::new());
        let (s, _, body) = call(&ctx, "/health").await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, r#"{"status":"ok"}"#));

        ctx.metrics.tasks_assigned.set(7);
        let (s, _, body) = call(&ctx, "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("scorestream_tasks_assigned 7"), "{body}");

        let (s, _, body) = call(&ctx, "/nope").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "not found");
    }

    #[tokio::test]
    async fn a_taken_address_is_a_clear_error() {
        let held = bind("127.0.0.1:0").await.unwrap();
        let addr = held.local_addr().unwrap().to_string();
        let err = bind(&addr).await.unwrap_err().to_string();
        assert!(err.contains(&addr) && err.contains("http_addr"), "{err}");
    }
}
