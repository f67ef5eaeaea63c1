//! The outbox page's API: messages waiting and dead letters with their last error; a dead
//! letter sent again or dropped (the page asks for a confirmation first).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{Console, refusal};

/// How long a dead letter sent again from the console may keep trying.
const REVIVED_FOR_MS: i64 = 600_000;

pub async fn list(State(console): State<Arc<Console>>) -> Response {
    let store = &console.admin.store;
    match (
        store.counts().await,
        store.pending(200).await,
        store.dead_letters(200).await,
    ) {
        (Ok(counts), Ok(pending), Ok(dead)) => {
            Json(json!({"counts": counts, "pending": pending, "dead_letters": dead}))
                .into_response()
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            refusal(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

pub async fn retry(State(console): State<Arc<Console>>, Path(id): Path<i64>) -> Response {
    let now = console.admin.clock.now_ms();
    match console
        .admin
        .store
        .revive(id, now, now + REVIVED_FOR_MS)
        .await
    {
        Ok(true) => Json(json!({"id": id, "status": "queued again"})).into_response(),
        Ok(false) => refusal(
            StatusCode::NOT_FOUND,
            &format!("#{id} is not a dead letter"),
        ),
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

pub async fn drop_dead(State(console): State<Arc<Console>>, Path(id): Path<i64>) -> Response {
    match console.admin.store.discard(id).await {
        Ok(true) => Json(json!({"id": id, "status": "dropped"})).into_response(),
        Ok(false) => refusal(
            StatusCode::NOT_FOUND,
            &format!("#{id} is not a dead letter"),
        ),
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
