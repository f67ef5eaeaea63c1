//! `POST /lookup`: the embedded registry, served so that a local network needs nothing else.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::beckn::registry::LookupQuery;
use crate::compile::{CompiledSet, RegistrySource};

/// The flow whose registry file is served; looked up per request so reloads take effect.
pub struct LookupEndpoint {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub flow_name: String,
}

pub async fn lookup(State(ep): State<Arc<LookupEndpoint>>, body: axum::body::Bytes) -> Response {
    let query: LookupQuery = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"code": "1000", "message": format!("bad lookup request: {e}")}})),
            )
                .into_response();
        }
    };
    let set = ep.flows.load();
    let found = match set
        .flow(&ep.flow_name)
        .and_then(|f| f.participant.registry.clone())
    {
        Some(RegistrySource::Embedded(reg)) => reg.find(&query),
        _ => Vec::new(),
    };
    tracing::debug!(flow = %ep.flow_name, ?query, found = found.len(), "registry lookup served");
    Json(found).into_response()
}
