//! Signing a Flipkart Ultra user in and out on a buyer app's client API:
//! `POST {client.base_path}/ultra/sign-in` with `{"grantToken": "..."}` (the single-use token
//! the Ultra SDK gave the app) answers with a session id once `crate::sinks::ultra::sign_in` has
//! exchanged it; the user is kept in the store under that session. Later calls that carry
//! `X-Ultra-Session: <session>` are tied to the user ([`session_user`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::BapEndpoint;
use super::client::{ClientError, authorize, buyer, loaded};
use crate::compile::CompiledFlow;
use crate::intake::body::read_body;
use crate::sinks::ultra::api::UltraError;
use crate::sinks::ultra::sign_in;
pub use crate::sinks::ultra::sign_in::user_value;
use crate::store::SinkUser;

/// `POST {base}/ultra/sign-in`.
pub async fn sign_in(
    State(ep): State<Arc<BapEndpoint>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run(&ep, &headers, body).await {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => {
            tracing::info!(flow = %ep.flow_name, error = %e, "Ultra sign-in refused");
            e.into_response()
        }
    }
}

async fn run(ep: &BapEndpoint, headers: &HeaderMap, body: Body) -> Result<Value, ClientError> {
    let (_, flow) = loaded(ep)?;
    authorize(buyer(&flow)?, headers)?;
    let ultra = flow.sinks.ultra.as_ref().ok_or(ClientError::NoSink)?;
    let bytes = read_body(body, flow.max_body_bytes)
        .await
        .map_err(|r| ClientError::BadBody(r.to_string()))?;
    let input: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::BadBody(format!("the body is not JSON: {e}")))?;
    let grant = ["grantToken", "grant_token"]
        .iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .filter(|g| !g.is_empty())
        .ok_or_else(|| ClientError::BadBody("send {\"grantToken\": \"...\"}".into()))?;
    let conn = &ultra.connection;
    let user = sign_in::sign_in(
        &ep.http,
        conn,
        &flow.name,
        grant,
        ep.services.clock.now_ms(),
    )
    .await
    .map_err(ultra_error)?;
    ep.store()
        .save_sink_user(user.clone())
        .await
        .map_err(ClientError::store)?;
    tracing::info!(flow = %flow.name, connection = %conn.name, "Ultra user signed in");
    Ok(json!({"session": user.session, "user": user_value(&user)}))
}

/// `POST {base}/ultra/sign-out` with `X-Ultra-Session`: the adapter forgets the user (their
/// identity token and contact). Transactions already tied to the user keep reporting their
/// orders; new calls with the session are refused as an unknown session.
pub async fn sign_out(State(ep): State<Arc<BapEndpoint>>, headers: HeaderMap) -> Response {
    let result = async {
        let (_, flow) = loaded(&ep)?;
        authorize(buyer(&flow)?, &headers)?;
        if flow.sinks.ultra.is_none() {
            return Err(ClientError::NoSink);
        }
        let session = sign_in::session(&headers).ok_or(ClientError::UnknownSession)?;
        let forgotten = ep
            .store()
            .forget_sink_user(session)
            .await
            .map_err(ClientError::store)?;
        if !forgotten {
            return Err(ClientError::UnknownSession);
        }
        tracing::info!(flow = %flow.name, "Ultra user signed out");
        Ok(json!({"signed_out": true}))
    }
    .await;
    match result {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => e.into_response(),
    }
}

fn ultra_error(e: UltraError) -> ClientError {
    match e {
        UltraError::Unreachable { .. } => ClientError::Unavailable(e.to_string()),
        other => ClientError::SinkRefused(other.to_string()),
    }
}

/// The signed-in user a client API call names with `X-Ultra-Session`, if it names one.
pub async fn session_user(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    headers: &HeaderMap,
) -> Result<Option<SinkUser>, ClientError> {
    let Some(session) = sign_in::session(headers) else {
        return Ok(None);
    };
    if flow.sinks.ultra.is_none() {
        return Err(ClientError::NoSink);
    }
    ep.store()
        .sink_user(session)
        .await
        .map_err(ClientError::store)?
        .map(Some)
        .ok_or(ClientError::UnknownSession)
}
