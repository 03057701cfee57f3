//! `GET /instances`: the application's live instances and the partitions each owns, as the
//! instance registry knows them (the `<application-id>-instances` topic; a claim not renewed
//! within [`STALE_AFTER`](crate::runtime::registry::STALE_AFTER) is left out). For operators
//! and scripts: who runs what after a rebalance, which instance a key's queries go to.
//!
//! ```json
//! {"this_instance": "scorestream-1:8080",
//!  "instances": [{"http": "scorestream-1:8080", "this_instance": true,
//!                 "partitions": {"customer-events": [0, 3], "scorestream-events-by-customer": [0, 3]},
//!                 "announced_at_ms": 1717000000000}]}
//! ```

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::query::unavailable;
use super::HttpContext;

/// `GET /instances`; 503 with `Retry-After` until the runtime runs.
pub async fn list(State(ctx): State<HttpContext>) -> Response {
    let Some(q) = ctx.queries.get().cloned() else {
        return unavailable(
            "starting: topics are being checked and the consumer group joined".into(),
        );
    };
    let me = q.reader.advertised();
    let instances: Vec<serde_json::Value> = q
        .reader
        .instances()
        .into_iter()
        .map(|a| {
            json!({
                "http": a.http,
                "this_instance": me.as_deref() == Some(a.http.as_str()),
                "partitions": a.partitions,
                "announced_at_ms": a.at_ms,
            })
        })
        .collect();
    Json(json!({"this_instance": me, "instances": instances})).into_response()
}
