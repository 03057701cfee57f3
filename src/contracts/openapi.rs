//! The OpenAPI 3.1 document of the HTTP API (DESIGN §5): health and readiness, Prometheus
//! metrics, the interactive queries and the `POST /events` webhook. Its input event schema
//! is [`super::input::input_event`]; `tests/schemas.rs` checks its paths against the router
//! and real answers against its response schemas.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn unavailable() -> Value {
    json!({
        "description": "Not ready (starting, rebalancing, or the owning task is restoring): retry after Retry-After seconds.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn query_answer(schema: &str, description: &str) -> Value {
    json!({
        "description": description,
        "headers": {"x-scorestream-served-by": {
            "description": "The instance that answered (`local`, or the owner's advertised address when the query was forwarded).",
            "schema": {"type": "string"}
        }},
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ScoreStream HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Served by every instance on http_addr (SCORESTREAM_HTTP_ADDR). Any instance answers a query for any key: it forwards to the instance that owns the key's task. Errors are JSON objects with an `error` message and a status code that means what it says."
        },
        "paths": paths(),
        "components": components(),
    })
}

/// The paths: health, readiness, instances, metrics, the queries and the webhook.
fn paths() -> Value {
    json!({
        "/health": {"get": {
            "summary": "The process is alive (liveness).",
            "responses": {"200": {"description": "Alive.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}
        }},
        "/ready": {"get": {
            "summary": "Every assigned task is restored and running (readiness).",
            "responses": {
                "200": {"description": "Ready.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}},
                "503": {
                    "description": "Not ready, with the reason.",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ready"}}}
                }
            }
        }},
        "/instances": {"get": {
            "summary": "The application's live instances and the partitions each owns, from the instance registry (claims older than 45 s left out).",
            "responses": {
                "200": {"description": "The instances.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Instances"}}}},
                "503": unavailable()
            }
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics, text exposition format 0.0.4 (see docs/operations.md).",
            "responses": {"200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}}
        }},
        "/customers/{customer_id}": {"get": {
            "summary": "A customer's state: profile, points, scores, tier, badges, missions, streaks, latest churn risk.",
            "parameters": [{"name": "customer_id", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {
                "200": query_answer("Customer", "The customer's state."),
                "400": error_response("The customer id is empty."),
                "404": error_response("No event of this customer has been processed."),
                "502": error_response("The owning instance could not be reached."),
                "503": unavailable(),
                "504": error_response("The owning instance did not answer within http.forward_timeout.")
            }
        }},
        "/leaderboards/{board}": {"get": {
            "summary": "A leaderboard's ranking for one period.",
            "parameters": [
                {"name": "board", "in": "path", "required": true, "description": "A board id of the rules file's [leaderboards.<id>].", "schema": {"type": "string"}},
                {"name": "period", "in": "query", "required": false, "description": "daily, weekly, monthly, all_time (the current one), or a period key such as daily:2024-01-15. Default: all_time if the board keeps it, else its first period.", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": false, "description": "Entries from the top.", "schema": {"type": "integer", "minimum": 1, "maximum": crate::topology::query::MAX_LIMIT, "default": 100}}
            ],
            "responses": {
                "200": query_answer("Leaderboard", "The ranking (empty when nothing was ranked in the period yet)."),
                "400": error_response("A bad period or limit."),
                "404": error_response("No such board in the rules."),
                "502": error_response("The owning instance could not be reached."),
                "503": unavailable(),
                "504": error_response("The owning instance did not answer within http.forward_timeout.")
            }
        }},
        "/events": {"post": {
            "summary": "The webhook: one event or a JSON array of events, validated whole, then written to the webhook topic.",
            "description": "Any invalid event: 400 with the errors per array index, and nothing is written. Otherwise 202 once every event is acknowledged by Kafka. A retried request is deduplicated by event_id downstream.",
            "security": [{"bearer": []}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/InputEvent"},
                {"type": "array", "items": {"$ref": "#/components/schemas/InputEvent"}}
            ]}}}},
            "responses": {
                "202": {"description": "Every event written.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}},
                "400": {"description": "Invalid events (nothing written) or a body that is not JSON.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rejected"}}}},
                "401": error_response("No or a malformed Authorization header."),
                "403": error_response("A wrong token, or the webhook is disabled (no http.webhook_token)."),
                "413": error_response("The body is larger than http.max_body_bytes."),
                "503": unavailable()
            }
        }}
    })
}

/// The schemas the paths refer to, the input event's among them.
fn components() -> Value {
    let mut input = super::input::input_event();
    if let Some(o) = input.as_object_mut() {
        o.remove("$schema");
    }
    let nullable_time = json!({"type": ["string", "null"], "format": "date-time"});
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "http.webhook_token (SCORESTREAM_WEBHOOK_TOKEN)."}},
        "schemas": {
            "InputEvent": input,
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}}
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"const": "ok"}}
            },
            "Instances": {
                "type": "object",
                "required": ["this_instance", "instances"],
                "properties": {
                    "this_instance": {"type": ["string", "null"], "description": "This instance's advertised address."},
                    "instances": {"type": "array", "items": {
                        "type": "object",
                        "required": ["http", "this_instance", "partitions", "announced_at_ms"],
                        "properties": {
                            "http": {"type": "string", "description": "Advertised host:port."},
                            "this_instance": {"type": "boolean"},
                            "partitions": {"type": "object", "description": "Topic → partitions owned.", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
                            "announced_at_ms": {"type": "integer", "description": "When the claim was last renewed (epoch ms)."}
                        }
                    }}
                }
            },
            "Ready": {
                "type": "object",
                "required": ["ready"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "reason": {"type": "string", "description": "Why not ready."},
                    "tasks": {"type": "integer", "description": "Tasks assigned to this instance."}
                }
            },
            "Accepted": {
                "type": "object",
                "required": ["accepted", "topic", "event_ids"],
                "properties": {
                    "accepted": {"type": "integer"},
                    "topic": {"type": "string"},
                    "event_ids": {"type": "array", "items": {"type": "string"}, "description": "In request order; derived ids for events that had none."}
                }
            },
            "Rejected": {
                "type": "object",
                "required": ["error", "errors"],
                "properties": {
                    "error": {"type": "string"},
                    "errors": {"type": "array", "items": {
                        "type": "object",
                        "required": ["index", "reason", "message"],
                        "properties": {
                            "index": {"type": "integer", "description": "Position in the request (0 for a single event)."},
                            "reason": {"type": "string", "description": "The dead-letter reason code (DESIGN §2), e.g. missing_field."},
                            "message": {"type": "string"}
                        }
                    }}
                }
            },
            "Customer": customer_schema(&nullable_time),
            "Leaderboard": leaderboard_schema(&nullable_time),
        }
    })
}

/// A customer's state, as `GET /customers/{customer_id}` answers it.
fn customer_schema(nullable_time: &Value) -> Value {
    json!({
        "type": "object",
        "required": ["customer_id", "rules_version", "profile", "points", "scores", "tier", "badges", "missions", "missions_completed", "streaks", "churn"],
        "properties": {
            "customer_id": {"type": "string"},
            "rules_version": {"type": "string"},
            "profile": {
                "type": "object",
                "required": ["first_event_at", "last_event_at", "events", "value", "events_by_type"],
                "properties": {
                    "first_event_at": nullable_time,
                    "last_event_at": nullable_time,
                    "events": {"type": "integer"},
                    "value": {"type": "number"},
                    "events_by_type": {"type": "object", "additionalProperties": {"type": "integer"}}
                }
            },
            "points": {"type": "object", "description": "All-time total per point type.", "additionalProperties": {"type": "integer"}},
            "scores": {"type": "object", "description": "Behaviour score (0 to 100) per score id.", "additionalProperties": {"type": "number"}},
            "tier": {"type": ["string", "null"]},
            "badges": {"type": "object", "description": "Level per badge id.", "additionalProperties": {"type": "integer"}},
            "missions": {"type": "object", "additionalProperties": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer"},
                    "sum": {"type": "number"},
                    "step": {"type": "integer"},
                    "completions": {"type": "integer"},
                    "last_completed_at": nullable_time
                }
            }},
            "missions_completed": {"type": "integer"},
            "streaks": {"type": "object", "additionalProperties": {
                "type": "object",
                "properties": {
                    "current": {"type": "integer"},
                    "longest": {"type": "integer"},
                    "last_day": {"type": ["string", "null"]}
                }
            }},
            "churn": {"oneOf": [{"type": "null"}, {
                "type": "object",
                "required": ["probability", "risk_band", "scored_at", "high_risk_alerted"],
                "properties": {
                    "probability": {"type": "number"},
                    "risk_band": {"enum": ["low", "medium", "high"]},
                    "scored_at": {"type": "string", "format": "date-time"},
                    "high_risk_alerted": {"type": "boolean"}
                }
            }]}
        }
    })
}

/// One leaderboard period's ranking, as `GET /leaderboards/{board}` answers it.
fn leaderboard_schema(nullable_time: &Value) -> Value {
    json!({
        "type": "object",
        "required": ["board", "period", "period_ends_at", "final", "rules_version", "entries"],
        "properties": {
            "board": {"type": "string"},
            "period": {"type": "string"},
            "period_ends_at": nullable_time,
            "final": {"type": "boolean"},
            "rules_version": {"type": "string"},
            "entries": {"type": "array", "items": {
                "type": "object",
                "required": ["rank", "customer_id", "total", "reached_at"],
                "properties": {
                    "rank": {"type": "integer", "minimum": 1},
                    "customer_id": {"type": "string"},
                    "total": {"type": "integer"},
                    "reached_at": {"type": "string", "format": "date-time"}
                }
            }}
        }
    })
}
