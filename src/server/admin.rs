//! The admin listener: health, readiness, Prometheus metrics, status of the loaded flows,
//! reload, the outbox's dead letters, and subscribing a flow with its registry. Bound to loopback by default; elsewhere it needs a
//! bearer token for its `/admin` endpoints.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::clock::SharedClock;
use crate::config::Secret;
use crate::reload::{ReloadOutcome, Reloader};
use crate::store::Store;
use crate::telemetry;

pub struct Admin {
    pub reloader: Arc<Reloader>,
    pub store: Arc<dyn Store>,
    /// Required as `Authorization: Bearer …` on `/admin/*` when set.
    pub token: Option<Secret>,
    /// When a dead letter sent again is due, and its new deadline.
    pub clock: SharedClock,
}

pub fn router(admin: Arc<Admin>) -> Router {
    let guarded = Router::new()
        .route("/admin/status", get(status))
        .route("/admin/reload", post(reload))
        .route("/admin/outbox", get(outbox))
        .route("/admin/outbox/{id}/retry", post(retry))
        .route("/admin/outbox/{id}", axum::routing::delete(drop_dead))
        .route("/admin/flows/{name}/subscribe", post(subscribe))
        .route_layer(middleware::from_fn_with_state(admin.clone(), require_token));
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(guarded)
        .with_state(admin.clone())
        .merge(super::console::router(admin))
}

async fn require_token(State(admin): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    let Some(token) = &admin.token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.expose()) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "admin endpoints need Authorization: Bearer <admin token>"})),
        )
            .into_response()
    }
}

/// Ready when flows are loaded and the store answers.
async fn ready(State(admin): State<Arc<Admin>>) -> Response {
    let flows = admin.reloader.flows.load().flows.len();
    match admin.store.counts().await {
        Ok(_) if flows > 0 => Json(json!({"status": "ready", "flows": flows})).into_response(),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "no flows"})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "store unavailable", "error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    if let Ok(c) = admin.store.counts().await {
        telemetry::outbox_sampled(c.pending, c.dead);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        telemetry::metrics().render(),
    )
        .into_response()
}

async fn status(State(admin): State<Arc<Admin>>) -> Response {
    let set = admin.reloader.flows.load();
    let flows: Vec<_> = set
        .flows
        .iter()
        .map(|f| {
            let mut actions: Vec<&str> = f.actions.keys().map(|a| a.as_str()).collect();
            actions.sort();
            json!({
                "name": f.name, "role": f.role().as_str(), "subscriber_id": f.participant.subscriber_id,
                "listen": f.listen.to_string(), "base_path": f.base_path, "actions": actions,
                "verify_signatures": f.participant.verify_signatures,
            })
        })
        .collect();
    let outbox = admin.store.counts().await.ok();
    Json(json!({
        "set": {
            "hash": set.hash,
            "loaded_at": set.loaded_at.to_string(),
            "sources": set.sources,
            "flows": flows,
        },
        "last_rejected_reload": admin.reloader.last_rejected(),
        "outbox": outbox,
    }))
    .into_response()
}

async fn reload(State(admin): State<Arc<Admin>>) -> Response {
    let reloader = admin.reloader.clone();
    let outcome = tokio::task::spawn_blocking(move || reloader.reload("admin"))
        .await
        .unwrap_or_else(|e| ReloadOutcome::Rejected {
            diagnostics: vec![crate::config::Diagnostic::new("reload", e.to_string())],
        });
    let status = match outcome {
        ReloadOutcome::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    (status, Json(outcome)).into_response()
}

async fn outbox(State(admin): State<Arc<Admin>>) -> Response {
    match (
        admin.store.counts().await,
        admin.store.dead_letters(200).await,
    ) {
        (Ok(counts), Ok(dead)) => {
            Json(json!({"counts": counts, "dead_letters": dead})).into_response()
        }
        (Err(e), _) | (_, Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn retry(State(admin): State<Arc<Admin>>, Path(id): Path<i64>) -> Response {
    let now = admin.clock.now_ms();
    match admin.store.revive(id, now, now + 600_000).await {
        Ok(true) => Json(json!({"id": id, "status": "queued again"})).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("#{id} is not a dead letter")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn drop_dead(State(admin): State<Arc<Admin>>, Path(id): Path<i64>) -> Response {
    match admin.store.discard(id).await {
        Ok(true) => Json(json!({"id": id, "status": "dropped"})).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("#{id} is not a dead letter")})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

/// Subscribes the flow `name` with its registry, as `beckn-adapter subscribe` does; the
/// registry's challenge is answered by this same process. 200 when the registry accepted,
/// 502 with the registry's answer and a hint when it refused or did not answer.
async fn subscribe(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Response {
    let set = admin.reloader.flows.load_full();
    let Some(flow) = set.flow(&name) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no flow named `{name}` is loaded")})),
        )
            .into_response();
    };
    let now = admin.clock.now();
    match crate::beckn::subscribe::subscribe(&flow.participant, now).await {
        Ok((request, outcome)) => {
            tracing::info!(flow = %name, registry = %request.url, accepted = outcome.accepted, said = %outcome.said, "subscribe");
            let status = if outcome.accepted {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            let dialect = flow
                .participant
                .registration
                .as_ref()
                .map(|r| r.dialect.as_str());
            (
                status,
                Json(json!({"flow": name, "registry": request.url, "dialect": dialect, "outcome": outcome})),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"flow": name, "error": e.to_string()})),
        )
            .into_response(),
    }
}
