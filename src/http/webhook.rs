//! `POST /events` (DESIGN §5, seed 001's hybrid design): the same JSON events producers
//! send to Kafka — one object or an array — over HTTP, protected by a bearer token.
//!
//! The whole request is validated first with the ingest normalizer: one invalid event → 400
//! with the errors per array index and nothing written. Otherwise every event's original
//! bytes go to the webhook's input topic, keyed by customer id and stamped with the
//! receipt time (the time validation used, so an event without a timestamp gets the same
//! derived `event_id` downstream as in the 202), and the answer — 202 with the event ids —
//! is sent only once Kafka has acknowledged every one. A retried request is deduplicated
//! downstream by `event_id`.

// Helpers return a finished error `Response` (128 bytes) as their `Err`: it is built once per
// failed request, never on a hot path, and keeps each status next to its message.
#![allow(clippy::result_large_err)]
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, value::RawValue, Value};
use subtle::ConstantTimeEq;

use super::{error, HttpContext};
use crate::ingest::normalize::{Normalizer, RawInput};

/// One record for the input topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub timestamp_ms: i64,
}

/// Where accepted events go; the runtime's Kafka producer in production (a trait so the
/// handler can be tested without a broker).
pub trait EventSink: Send + Sync + 'static {
    /// Resolves once every record is acknowledged, or with the first failure.
    fn send_all(
        &self,
        topic: &str,
        records: Vec<Outgoing>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// The webhook's settings and collaborators.
pub struct Webhook {
    /// `None`: the webhook is disabled (403).
    pub token: Option<String>,
    pub topic: String,
    pub max_body_bytes: usize,
    pub normalizer: Arc<Normalizer>,
    pub sink: Arc<dyn EventSink>,
}

/// A Kafka producer as an [`EventSink`]. Idempotent, acks=all: a 202 means durably in Kafka.
pub struct KafkaSink {
    producer: rdkafka::producer::FutureProducer,
    timeout: Duration,
}

impl KafkaSink {
    pub fn new(config: &crate::config::Config) -> Result<KafkaSink, rdkafka::error::KafkaError> {
        let mut c = crate::runtime::client::producer_config(config);
        c.set("acks", "all");
        Ok(KafkaSink {
            producer: c.create()?,
            timeout: Duration::from_secs(30),
        })
    }
}

impl EventSink for KafkaSink {
    fn send_all(
        &self,
        topic: &str,
        records: Vec<Outgoing>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let topic = topic.to_string();
        Box::pin(async move {
            let sends = records.iter().map(|r| {
                let record = rdkafka::producer::FutureRecord::to(&topic)
                    .key(&r.key)
                    .payload(&r.value)
                    .timestamp(r.timestamp_ms);
                self.producer
                    .send(record, rdkafka::util::Timeout::After(self.timeout))
            });
            for (i, result) in futures_join_all(sends).await.into_iter().enumerate() {
                if let Err((e, _)) = result {
                    return Err(format!("event {i} was not acknowledged by Kafka: {e}"));
                }
            }
            Ok(())
        })
    }
}

/// Awaits every future, in order (each delivery is already in flight in librdkafka, so
/// awaiting them one by one costs no extra round trips).
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<F> = futures.collect();
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

/// `POST /events`.
pub async fn post_events(State(ctx): State<HttpContext>, request: Request) -> Response {
    let Some(hook) = ctx.webhook.clone() else {
        return error(
            StatusCode::FORBIDDEN,
            "the webhook is disabled: set http.webhook_token (SCORESTREAM_WEBHOOK_TOKEN)".into(),
        );
    };
    if let Err(r) = authorize(&hook, request.headers()) {
        return r;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > hook.max_body_bytes) {
        return too_large(hook.max_body_bytes);
    }
    let body = match axum::body::to_bytes(request.into_body(), hook.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => return too_large(hook.max_body_bytes),
    };
    let now = crate::runtime::now_ms();
    let (records, event_ids) = match validate(&hook, &body, now) {
        Ok(x) => x,
        Err(r) => {
            ctx.metrics
                .webhook_events
                .with_label_values(&["rejected"])
                .inc();
            return r;
        }
    };
    let n = records.len();
    let sent = hook.sink.send_all(&hook.topic, records).await;
    let outcome = if sent.is_ok() { "accepted" } else { "failed" };
    ctx.metrics
        .webhook_events
        .with_label_values(&[outcome])
        .inc_by(n as u64);
    match sent {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"accepted": n, "topic": hook.topic, "event_ids": event_ids})),
        )
            .into_response(),
        Err(e) => super::query::unavailable(format!(
            "not accepted: {e}; nothing is acknowledged, retry the whole request"
        )),
    }
}

fn authorize(hook: &Webhook, headers: &axum::http::HeaderMap) -> Result<(), Response> {
    let Some(token) = &hook.token else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "the webhook is disabled: set http.webhook_token (SCORESTREAM_WEBHOOK_TOKEN)".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing 'Authorization: Bearer <token>'".into(),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(r)
        }
        // `subtle`'s comparison takes the same time wherever the first differing byte is
        // (only the length can be learnt), so the token cannot be guessed byte by byte.
        Some(g) if bool::from(g.trim().as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(error(
            StatusCode::FORBIDDEN,
            "the token is not valid".into(),
        )),
    }
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body is larger than http.max_body_bytes ({})",
            crate::config::size::format(limit)
        ),
    )
}

/// Every event validated; the records to send and their event ids, or a 400 listing every
/// invalid event by index.
fn validate(
    hook: &Webhook,
    body: &[u8],
    now: i64,
) -> Result<(Vec<Outgoing>, Vec<String>), Response> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let items: Vec<&[u8]> = match first {
        Some(b'[') => match serde_json::from_slice::<Vec<&RawValue>>(body) {
            Ok(items) => items.iter().map(|r| r.get().as_bytes()).collect(),
            Err(e) => {
                return Err(bad_body(format!(
                    "the body is not a JSON array of events: {e}"
                )))
            }
        },
        Some(b'{') => vec![body],
        Some(_) => {
            return Err(bad_body(
                "the body must be one JSON event object or an array of them".into(),
            ))
        }
        None => return Err(bad_body("the body is empty".into())),
    };
    if items.is_empty() {
        return Err(bad_body("the array holds no events".into()));
    }
    let mut records = Vec::with_capacity(items.len());
    let mut ids = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, bytes) in items.iter().enumerate() {
        let input = RawInput {
            topic: &hook.topic,
            value: Some(bytes),
            kafka_timestamp_ms: Some(now),
            now_ms: now,
        };
        match hook.normalizer.normalize(&input) {
            Ok(ev) => {
                records.push(Outgoing {
                    key: ev.customer_id.as_bytes().to_vec(),
                    value: bytes.to_vec(),
                    timestamp_ms: now,
                });
                ids.push(ev.event_id);
            }
            Err(r) => errors.push(json!({
                "index": index,
                "reason": r.reason.as_str(),
                "message": r.message,
            })),
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        return Err((
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "error": format!("{n} of {} event(s) are invalid; nothing was written", items.len()),
                "errors": errors,
            })),
        )
            .into_response());
    }
    Ok((records, ids))
}

fn bad_body(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": message, "errors": Value::Array(Vec::new())})),
    )
        .into_response()
}

/// Request bodies are read by the handler with its own limit (so the 413 is JSON).
pub fn body_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::disable()
}
