//! The machine-readable contracts under `schemas/` are what the code generates, and the
//! code's real records honour them:
//! - every file equals `scorestream::contracts::generate()` (regenerate with
//!   `SCORESTREAM_WRITE_SCHEMAS=1 cargo test --test schemas`);
//! - every record the topology writes for every case file in `tests/cases/`, and for the
//!   seed-shaped events of docs/outputs.md, validates against its topic's schema (which
//!   allows no field it does not name), as does every example in docs/outputs.md;
//! - every generated event the normalizer accepts validates against the input schema, and
//!   shapes it rejects for their shape do not;
//! - the OpenAPI document has exactly the router's routes, and real answers of the router
//!   validate against its response schemas.

use std::collections::BTreeSet;
use std::path::Path;

use scorestream::contracts;
use serde_json::{json, Value};

/// Seed 000/002 shapes (as in tests/outputs_doc.rs): a recharge, data usage, an order and
/// a failed payment, which re-scores churn risk and raises a critical alert.
const SEED_EVENTS: &[&str] = &[
    r#"{"source":"in","customer_id":"254700000001","event_type":"recharge","timestamp":"2024-06-10T08:15:00Z","amount":100.0}"#,
    r#"{"source":"in","customer_id":"254700000001","event_type":"data_usage","timestamp":"2024-06-10T09:30:00Z","value":250,"metadata":{"network":"5G"}}"#,
    r#"{"event_id":"ord-1","event_type":"order_placed","customer_id":"CUST-001","timestamp":"2024-06-10T10:00:00Z","data":{"order_id":"ORD-1","order_value":120.5}}"#,
    r#"{"event_id":"pay-1","event_type":"payment_failed","customer_id":"CUST-001","timestamp":"2024-06-10T10:05:00Z","data":{"order_id":"ORD-1","reason":"card_declined"}}"#,
];

fn schemas_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

fn schema(file: &str) -> Value {
    let text = std::fs::read_to_string(schemas_dir().join(file)).expect(file);
    serde_json::from_str(&text).expect(file)
}

/// Every validation error of `instance`, one line each.
fn errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("a valid JSON Schema");
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

fn schema_for_topic(topic: &str) -> Option<Value> {
    match topic {
        "gamification-results" => Some(schema("gamification-results.schema.json")),
        "churn-predictions" => Some(schema("churn-predictions.schema.json")),
        "customer-alerts" => Some(schema("customer-alerts.schema.json")),
        _ => None,
    }
}

#[test]
fn schema_files_are_what_the_code_generates() {
    let write = std::env::var_os("SCORESTREAM_WRITE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (file, document) in contracts::generate() {
        let path = schemas_dir().join(file);
        let text = contracts::render(&document);
        if write {
            std::fs::create_dir_all(schemas_dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
        // Each is a valid schema / document (the OpenAPI one as a JSON value at least).
        if file.ends_with(".schema.json") {
            jsonschema::validator_for(&document).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ is out of date for {stale:?}: run `SCORESTREAM_WRITE_SCHEMAS=1 cargo test --test schemas`"
    );
}

#[test]
fn every_record_of_every_case_file_validates_and_every_type_is_covered() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases"));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    let schemas: Vec<(&str, Value)> = [
        "gamification-results",
        "churn-predictions",
        "customer-alerts",
    ]
    .into_iter()
    .map(|t| (t, schema_for_topic(t).unwrap()))
    .collect();
    // The seed-shaped events of docs/outputs.md, which also raise churn predictions and
    // alerts (no case file has a churn trigger).
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seed_events.toml");
    let steps: String = SEED_EVENTS
        .iter()
        .map(|e| format!("[[step]]\nevent = '{e}'\n"))
        .collect();
    std::fs::write(
        &seeds,
        format!("about = \"seed events\"\n{steps}[[step]]\nadvance = \"2s\"\n"),
    )
    .unwrap();
    paths.push(seeds);
    for path in &paths {
        let outputs = scorestream::cli::case_file::outputs(path, None)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (topic, record) in outputs {
            let Some((_, schema)) = schemas.iter().find(|(t, _)| *t == topic) else {
                continue;
            };
            let v: Value = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            seen.insert(v["type"].as_str().unwrap_or("?").to_string());
            for e in errors(schema, &v) {
                problems.push(format!("{}: {topic}: {e}\n  {v}", path.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for t in [
        "score_updated",
        "points_awarded",
        "mission_progress",
        "mission_completed",
        "badge_awarded",
        "streak_updated",
        "tier_changed",
        "leaderboard_updated",
        "churn_prediction",
        "customer_alert",
    ] {
        assert!(seen.contains(t), "no case file produced a {t}: {seen:?}");
    }
}

#[test]
fn a_record_with_an_unknown_field_or_a_wrong_type_does_not_validate() {
    let schema = schema("gamification-results.schema.json");
    let good = json!({"type":"points_awarded","schema_version":1,"result_id":"0123456789abcdef",
        "customer_id":"c1","event_id":"e1","occurred_at":"2024-03-04T09:00:00.000Z",
        "rules_version":"r","point_type":"xp","points":20,"uncapped":20,"capped":false,
        "source":{"kind":"rule","id":"buy"},"total":20});
    assert_eq!(errors(&schema, &good), Vec::<String>::new());
    let mut extra = good.clone();
    extra["bonus"] = json!(1);
    assert!(!errors(&schema, &extra).is_empty(), "an unnamed field");
    let mut wrong = good.clone();
    wrong["points"] = json!("20");
    assert!(!errors(&schema, &wrong).is_empty(), "a string for a number");
    let mut untyped = good;
    untyped["type"] = json!("points_given");
    assert!(!errors(&schema, &untyped).is_empty(), "an unknown type");
}

/// The ```json blocks of docs/outputs.md that are records (they have a `type`).
fn documented_examples() -> Vec<Value> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/outputs.md")).unwrap();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&body[..end]) {
            if v.get("type").is_some() {
                out.push(v);
            }
        }
        rest = &body[end..];
    }
    out
}

#[test]
fn the_documented_examples_validate() {
    let examples = documented_examples();
    assert!(examples.len() >= 10, "{examples:?}");
    let mut problems = Vec::new();
    for v in examples {
        let topic = match v["type"].as_str().unwrap() {
            "churn_prediction" => "churn-predictions",
            "customer_alert" => "customer-alerts",
            _ => "gamification-results",
        };
        for e in errors(&schema_for_topic(topic).unwrap(), &v) {
            problems.push(format!("{e}\n  {v}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn accepted_events_validate_against_the_input_schema_and_bad_shapes_do_not() {
    use scorestream::generator::{Generator, GeneratorConfig};
    use scorestream::ingest::mapping::{NormalizerConfig, SourceMappings};
    use scorestream::ingest::normalize::{Normalizer, RawInput};
    let schema = schema("input-event.schema.json");
    let normalizer = Normalizer::new(NormalizerConfig {
        mapping: SourceMappings::bundled(),
        max_record_bytes: 1 << 20,
        max_depth: 64,
        max_future_skew_ms: 3_600_000,
        strict_event_types: None,
    });
    let now = 1_717_000_000_000;
    let mut generator = Generator::new(GeneratorConfig {
        bad_ratio: 0.3,
        topics: vec!["customer-events".into()],
        ..GeneratorConfig::default()
    });
    let mut accepted = 0;
    for _ in 0..2000 {
        let g = generator.next_event(now);
        let input = RawInput {
            topic: "customer-events",
            value: Some(&g.value),
            kafka_timestamp_ms: Some(now),
            now_ms: now,
        };
        if normalizer.normalize(&input).is_ok() {
            accepted += 1;
            let v: Value = serde_json::from_slice(&g.value).unwrap();
            let e = errors(&schema, &v);
            assert!(e.is_empty(), "accepted but invalid: {v}\n{e:?}");
        }
    }
    assert!(accepted > 1000, "{accepted}");
    for bad in [
        json!({"event_type": "recharge", "amount": 5}),
        json!({"customer_id": 1.5, "event_type": "recharge"}),
        json!({"customer_id": "  ", "event_type": "recharge"}),
        json!({"customer_id": "c1"}),
        json!({"customer_id": "c1", "event_type": ["recharge"]}),
        json!({"customer_id": "c1", "event_type": "recharge", "timestamp": true}),
        json!(["not", "an", "object"]),
    ] {
        assert!(
            !errors(&schema, &bad).is_empty(),
            "valid but rejected: {bad}"
        );
        let bytes = serde_json::to_vec(&bad).unwrap();
        let input = RawInput {
            topic: "customer-events",
            value: Some(&bytes),
            kafka_timestamp_ms: Some(now),
            now_ms: now,
        };
        assert!(normalizer.normalize(&input).is_err(), "{bad}");
    }
}

/// `(method, path)` of every `.route(...)` in the router's source.
fn router_routes() -> BTreeSet<(String, String)> {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs")).unwrap();
    let mut out = BTreeSet::new();
    for line in src.lines() {
        let Some(rest) = line.trim().strip_prefix(".route(\"") else {
            continue;
        };
        let (path, handler) = rest.split_once('"').unwrap();
        let handler = handler.trim_start_matches([',', ' ']);
        let method = handler.split('(').next().unwrap().to_string();
        out.insert((method, path.to_string()));
    }
    out
}

#[test]
fn the_openapi_document_has_exactly_the_routers_routes() {
    let doc = schema("openapi.json");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let routes = router_routes();
    assert!(routes.len() >= 6, "{routes:?}");
    assert_eq!(documented, routes);
}

/// The OpenAPI component `name` as a standalone schema.
fn component(name: &str) -> Value {
    let doc = schema("openapi.json");
    json!({"$ref": format!("#/components/schemas/{name}"), "components": doc["components"]})
}

#[test]
fn the_webhook_request_and_answers_match_the_openapi_document() {
    // The OpenAPI InputEvent is the input schema.
    let doc = schema("openapi.json");
    let mut input = schema("input-event.schema.json");
    input.as_object_mut().unwrap().remove("$schema");
    assert_eq!(doc["components"]["schemas"]["InputEvent"], input);
    let rejected = json!({"error": "1 of 2 event(s) are invalid; nothing was written",
        "errors": [{"index": 1, "reason": "missing_field", "message": "no customer id"}]});
    assert!(errors(&component("Rejected"), &rejected).is_empty());
    assert!(!errors(&component("Rejected"), &json!({"error": "x"})).is_empty());
    assert!(errors(&component("Health"), &json!({"status": "ok"})).is_empty());
}

/// The response schema the document gives for `method path` answering `status`.
fn response_schema(method: &str, path: &str, status: u16) -> Option<Value> {
    let doc = schema("openapi.json");
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let schema = response["content"]["application/json"]["schema"].clone();
    (!schema.is_null()).then(|| json!({"$ref": schema["$ref"], "components": doc["components"]}))
}

#[tokio::test]
async fn real_answers_of_the_router_match_the_documented_responses() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let ctx = scorestream::http::HttpContext::new(scorestream::metrics::Metrics::new());
    let router = scorestream::http::router(ctx);
    for (method, uri, template) in [
        ("get", "/health", "/health"),
        ("get", "/ready", "/ready"),
        ("get", "/instances", "/instances"),
        ("get", "/customers/c1", "/customers/{customer_id}"),
        ("get", "/leaderboards/xp?limit=5", "/leaderboards/{board}"),
        ("post", "/events", "/events"),
    ] {
        let request = axum::http::Request::builder()
            .method(method.to_uppercase().as_str())
            .uri(uri)
            .header("content-type", "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        let schema = response_schema(method, template, status)
            .unwrap_or_else(|| panic!("{method} {template} answered {status}, undocumented"));
        let e = errors(&schema, &body);
        assert!(e.is_empty(), "{method} {uri} {status}: {body}\n{e:?}");
    }
}
