//! Every status code of DESIGN §5's queries and webhook, through the real router with a
//! fake state reader and a fake Kafka sink; forwarding between two real listeners.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::query::{StateReader, FORWARDED_HEADER, SERVED_BY_HEADER};
use super::webhook::{EventSink, Outgoing, Webhook};
use super::*;
use crate::gamification::{CustomerGameState, Rules};
use crate::runtime::LocalRead;
use crate::state::codec::{encode_key, encode_value};
use crate::topology::game::{StoredGameState, STATE_STORE};
use crate::topology::query::QuerySpec;

/// Answers reads from a map, as one instance that owns the partitions in `owned`.
struct FakeReader {
    me: String,
    /// Partitions of any topic this instance runs, and how.
    owned: HashMap<i32, &'static str>,
    values: HashMap<Vec<u8>, Vec<u8>>,
    owner: Option<String>,
}

impl StateReader for FakeReader {
    fn partition_of(&self, _topic: &str, key: &[u8]) -> Option<i32> {
        Some(crate::runtime::partitioner::partition_for_key(key, 4))
    }
    fn read(&self, _t: &str, partition: i32, _s: &str, key: &[u8]) -> Result<LocalRead, String> {
        Ok(match self.owned.get(&partition).copied() {
            Some("running") => LocalRead::Value(self.values.get(key).cloned()),
            Some("restoring") => LocalRead::Restoring { remaining: 42 },
            Some(_) => LocalRead::Starting,
            None => LocalRead::NotOwned,
        })
    }
    fn owner(&self, _t: &str, _p: i32) -> Option<String> {
        self.owner.clone()
    }
    fn advertised(&self) -> Option<String> {
        Some(self.me.clone())
    }
    /// This instance with the partitions in `owned`, and the other owner, if any, with none.
    fn instances(&self) -> Vec<crate::runtime::registry::Announcement> {
        let mut mine: Vec<i32> = self.owned.keys().copied().collect();
        mine.sort();
        let me = crate::runtime::registry::Announcement {
            http: self.me.clone(),
            partitions: [("customer-events".to_string(), mine)].into(),
            at_ms: 1_000,
        };
        let other = self
            .owner
            .iter()
            .map(|o| crate::runtime::registry::Announcement {
                http: o.clone(),
                partitions: Default::default(),
                at_ms: 2_000,
            });
        std::iter::once(me).chain(other).collect()
    }
}

fn all_partitions(how: &'static str) -> HashMap<i32, &'static str> {
    (0..4).map(|p| (p, how)).collect()
}

fn spec() -> Arc<QuerySpec> {
    Arc::new(QuerySpec::new("app", Arc::new(Rules::bundled().unwrap())))
}

fn customer_entry(id: &str, xp: i64) -> (Vec<u8>, Vec<u8>) {
    let mut state = CustomerGameState::default();
    state.points.insert("xp".into(), xp);
    state.profile.events = 3;
    state.tier = Some("silver".into());
    (
        encode_key(STATE_STORE, &id.to_string()).unwrap(),
        encode_value(STATE_STORE, &StoredGameState::V3(state)).unwrap(),
    )
}

fn context(reader: FakeReader) -> HttpContext {
    let ctx = HttpContext::new(Metrics::new());
    ctx.serve_queries(Arc::new(reader), spec());
    ctx
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    served_by: Option<String>,
    body: Value,
}

async fn send(ctx: &HttpContext, request: Request<Body>) -> Reply {
    let res = router(ctx.clone()).oneshot(request).await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (retry_after, served_by) = (header("retry-after"), header(SERVED_BY_HEADER));
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
    Reply {
        status,
        retry_after,
        served_by,
        body,
    }
}

async fn get(ctx: &HttpContext, path: &str) -> Reply {
    send(ctx, Request::get(path).body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn customer_queries_answer_found_not_found_restoring_and_starting() {
    let (k, v) = customer_entry("C-1", 120);
    let ctx = context(FakeReader {
        me: "a:1".into(),
        owned: all_partitions("running"),
        values: [(k, v)].into(),
        owner: None,
    });
    let r = get(&ctx, "/customers/C-1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["customer_id"], "C-1");
    assert_eq!(r.body["points"], json!({"xp": 120}));
    assert_eq!(r.body["tier"], "silver");
    assert_eq!(r.body["profile"]["events"], 3);
    assert_eq!(r.served_by.as_deref(), Some("a:1"));

    let r = get(&ctx, "/customers/C-2").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body["error"].as_str().unwrap().contains("C-2"),
        "{}",
        r.body
    );

    let r = get(&ctx, "/customers/%20").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    for (how, says) in [("restoring", "restoring"), ("starting", "starting")] {
        let ctx = context(FakeReader {
            me: "a:1".into(),
            owned: all_partitions(how),
            values: HashMap::new(),
            owner: None,
        });
        let r = get(&ctx, "/customers/C-1").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.retry_after.as_deref(), Some("5"));
        assert!(
            r.body["error"].as_str().unwrap().contains(says),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn queries_before_the_runtime_runs_are_503() {
    let ctx = HttpContext::new(Metrics::new());
    let r = get(&ctx, "/customers/C-1").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.retry_after.as_deref(), Some("5"));
}

#[tokio::test]
async fn instances_lists_every_instance_and_its_partitions() {
    let ctx = HttpContext::new(Metrics::new());
    let r = get(&ctx, "/instances").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("5"));

    let ctx = context(FakeReader {
        me: "a:1".into(),
        owned: [(0, "running"), (2, "restoring")].into(),
        values: HashMap::new(),
        owner: Some("b:2".into()),
    });
    let r = get(&ctx, "/instances").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({
            "this_instance": "a:1",
            "instances": [
                {"http": "a:1", "this_instance": true,
                 "partitions": {"customer-events": [0, 2]}, "announced_at_ms": 1000},
                {"http": "b:2", "this_instance": false,
                 "partitions": {}, "announced_at_ms": 2000},
            ]
        })
    );
    // Counted by its route, like every other.
    let counted = ctx
        .metrics
        .http_requests
        .with_label_values(&["/instances", "200"])
        .get();
    assert_eq!(counted, 1);
}

#[tokio::test]
async fn leaderboard_queries_check_board_period_and_limit() {
    let ctx = context(FakeReader {
        me: "a:1".into(),
        owned: all_partitions("running"),
        values: HashMap::new(),
        owner: None,
    });
    let r = get(&ctx, "/leaderboards/xp").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["period"], "all_time");
    assert_eq!(r.body["entries"], json!([]));
    let r = get(&ctx, "/leaderboards/xp?period=daily:2024-01-15&limit=5").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["period"], "daily:2024-01-15");
    let r = get(&ctx, "/leaderboards/rewards").await;
    assert!(
        r.body["period"].as_str().unwrap().starts_with("monthly:"),
        "a board without all_time defaults to its first period: {}",
        r.body
    );
    let r = get(&ctx, "/leaderboards/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(
        r.body["error"].as_str().unwrap().contains("xp"),
        "{}",
        r.body
    );
    let r = get(&ctx, "/leaderboards/rewards?period=daily").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    for bad in ["0", "abc", "1001"] {
        let r = get(&ctx, &format!("/leaderboards/xp?limit={bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "limit={bad}");
    }
}

/// Serves `ctx` on a real port; returns its address.
async fn serve(ctx: HttpContext) -> String {
    let listener = bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    spawn(listener, router(ctx));
    addr
}

#[tokio::test]
async fn a_query_to_a_non_owner_is_answered_by_the_owner() {
    let (k, v) = customer_entry("C-9", 77);
    // The owner runs every partition; it does not know its own port until bound, which
    // does not matter: it never forwards.
    let owner = serve(context(FakeReader {
        me: "owner".into(),
        owned: all_partitions("running"),
        values: [(k, v)].into(),
        owner: None,
    }))
    .await;
    let front = context(FakeReader {
        me: "front:1".into(),
        owned: HashMap::new(),
        values: HashMap::new(),
        owner: Some(owner.clone()),
    });
    let r = get(&front, "/customers/C-9").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["points"]["xp"], 77);
    assert_eq!(r.served_by.as_deref(), Some("owner"));
    // 404 and query strings are relayed as the owner says them.
    let r = get(&front, "/customers/nobody").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get(&front, "/leaderboards/xp?limit=3").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.served_by.as_deref(), Some("owner"));

    // A forwarded request reaching a non-owner is not forwarded again.
    let forwarded = Request::get("/customers/C-9")
        .header(FORWARDED_HEADER, "someone:1")
        .body(Body::empty())
        .unwrap();
    let r = send(&front, forwarded).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.retry_after.as_deref(), Some("5"));

    // An owner that is gone: 502, not a hang.
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let front = context(FakeReader {
        me: "front:1".into(),
        owned: HashMap::new(),
        values: HashMap::new(),
        owner: Some(gone),
    });
    let r = get(&front, "/customers/C-9").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    // Nobody owns it (rebalancing): 503.
    let front = context(FakeReader {
        me: "front:1".into(),
        owned: HashMap::new(),
        values: HashMap::new(),
        owner: None,
    });
    let r = get(&front, "/customers/C-9").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Remembers what it was asked to send; fails when told to.
#[derive(Default)]
struct FakeSink {
    sent: Mutex<Vec<(String, Outgoing)>>,
    fail: bool,
}

impl EventSink for FakeSink {
    fn send_all(
        &self,
        topic: &str,
        records: Vec<Outgoing>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        let topic = topic.to_string();
        Box::pin(async move {
            if self.fail {
                return Err("broker down".into());
            }
            let mut sent = self.sent.lock().unwrap();
            sent.extend(records.into_iter().map(|r| (topic.clone(), r)));
            Ok(())
        })
    }
}

fn webhook_context(token: Option<&str>, sink: Arc<FakeSink>) -> HttpContext {
    let mut ctx = HttpContext::new(Metrics::new());
    ctx.webhook = Some(Arc::new(Webhook {
        token: token.map(str::to_string),
        topic: "customer-events".into(),
        max_body_bytes: 2048,
        normalizer: Arc::new(
            crate::topology::normalizer(&crate::config::Config::default()).unwrap(),
        ),
        sink,
    }));
    ctx
}

fn post(body: &str, auth: Option<&str>) -> Request<Body> {
    let mut r = Request::post("/events").header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

const GOOD: &str = r#"{"customer_id":"123","event_type":"recharge","timestamp":"2024-01-01T12:00:00Z","amount":50.00}"#;

#[tokio::test]
async fn webhook_accepts_one_event_or_an_array_after_the_sink_acknowledges() {
    let sink = Arc::new(FakeSink::default());
    let ctx = webhook_context(Some("s3cret"), sink.clone());
    let r = send(&ctx, post(GOOD, Some("Bearer s3cret"))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["accepted"], 1);
    let first_id = r.body["event_ids"][0].as_str().unwrap().to_string();

    let array = format!(
        r#"[{GOOD}, {{"event_id":"E-7","customerId":42,"event_type":"OrderPlaced","timestamp":1704110400,"data":{{"order_value":9.5}}}}]"#
    );
    let r = send(&ctx, post(&array, Some("Bearer s3cret"))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(r.body["accepted"], 2);
    // The same event gets the same derived id: a retried request is a duplicate downstream.
    assert_eq!(r.body["event_ids"], json!([first_id, "E-7"]));
    let bad = send(&ctx, post("[]", Some("Bearer s3cret"))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let metrics = ctx.metrics.render();
    for line in [
        r#"scorestream_webhook_events_total{outcome="accepted"} 3"#,
        r#"scorestream_webhook_events_total{outcome="rejected"} 1"#,
        r#"scorestream_http_requests_total{route="/events",status="202"} 2"#,
        r#"scorestream_http_requests_total{route="/events",status="400"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    let sent = sink.sent.lock().unwrap();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|(t, _)| t == "customer-events"));
    assert_eq!(sent[2].1.key, b"42", "keyed by the normalized customer id");
    assert_eq!(
        sent[0].1.value,
        GOOD.as_bytes(),
        "the original bytes are sent"
    );
}

#[tokio::test]
async fn webhook_rejects_the_whole_request_when_one_event_is_bad() {
    let sink = Arc::new(FakeSink::default());
    let ctx = webhook_context(Some("s3cret"), sink.clone());
    let body = format!(r#"[{GOOD}, {{"event_type":"login"}}, 5, {GOOD}]"#);
    let r = send(&ctx, post(&body, Some("Bearer s3cret"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let errors = r.body["errors"].as_array().unwrap();
    let indexes: Vec<u64> = errors
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 2]);
    assert_eq!(errors[0]["reason"], "missing_field");
    assert_eq!(errors[1]["reason"], "not_an_object");
    assert!(sink.sent.lock().unwrap().is_empty(), "nothing is written");

    for bad in ["", "[]", "\"text\"", "[1,"] {
        let r = send(&ctx, post(bad, Some("Bearer s3cret"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", r.body);
    }
}

#[tokio::test]
async fn webhook_status_codes_for_auth_size_and_kafka_failures() {
    let sink = Arc::new(FakeSink::default());
    let ctx = webhook_context(Some("s3cret"), sink.clone());
    let r = send(&ctx, post(GOOD, None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(&ctx, post(GOOD, Some("Basic czNjcmV0"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(&ctx, post(GOOD, Some("Bearer wrong"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let big = format!("[{}]", vec![GOOD; 30].join(","));
    assert!(big.len() > 2048);
    let r = send(&ctx, post(&big, Some("Bearer s3cret"))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert!(sink.sent.lock().unwrap().is_empty());

    let disabled = webhook_context(None, sink.clone());
    let r = send(&disabled, post(GOOD, Some("Bearer s3cret"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let none = HttpContext::new(Metrics::new());
    let r = send(&none, post(GOOD, Some("Bearer s3cret"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let failing = webhook_context(
        Some("s3cret"),
        Arc::new(FakeSink {
            fail: true,
            ..FakeSink::default()
        }),
    );
    let r = send(&failing, post(GOOD, Some("Bearer s3cret"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("broker down"));
}
