//! The overview page's API: the flows being served, the serving set and the last reload
//! with its diagnostics, the headline counters since start and for the last minutes (this
//! process's); and a reload.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Console;
use crate::reload::ReloadOutcome;
use crate::telemetry;

pub async fn overview(State(console): State<Arc<Console>>) -> Response {
    let admin = &console.admin;
    let set = admin.reloader.flows.load();
    let flows: Vec<_> = set
        .flows
        .iter()
        .map(|f| {
            let mut actions: Vec<&str> = f.actions.keys().map(|a| a.as_str()).collect();
            actions.sort();
            json!({
                "name": f.name,
                "role": f.role().as_str(),
                "listen": f.listen.to_string(),
                "base_path": f.base_path,
                "subscriber_id": f.participant.subscriber_id,
                "verify_signatures": f.participant.verify_signatures,
                "actions": actions,
            })
        })
        .collect();
    let outbox = admin.store.counts().await.ok();
    Json(json!({
        "set": {"hash": set.hash, "loaded_at": set.loaded_at.to_string(), "flows": flows},
        "last_reload": admin.reloader.last(),
        "last_rejected_reload": admin.reloader.last_rejected(),
        "outbox": outbox,
        "counters": telemetry::headline(),
        "recent": {
            "minutes": telemetry::recent::WINDOW_MINUTES,
            "counters": telemetry::recent_headline(),
        },
        "token_required": console.guard.required(),
    }))
    .into_response()
}

/// Reloads as `POST /admin/reload` does; the outcome with its located diagnostics.
pub async fn reload(State(console): State<Arc<Console>>) -> Response {
    let reloader = console.admin.reloader.clone();
    let outcome = tokio::task::spawn_blocking(move || reloader.reload("console"))
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
