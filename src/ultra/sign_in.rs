//! Signing a Flipkart user in on a buyer app's client API:
//! `POST {client.base_path}/ultra/sign-in` with `{"grantToken": "..."}` (the single-use token
//! the Ultra SDK gave the app). The adapter exchanges it, fetches the user's mobile number and
//! email, keeps the identity token, and answers with a session id. Later calls that carry
//! `X-Ultra-Session: <session>` tie their transaction to the user (so its orders are reported
//! to Ultra) and give request templates `user.mobile` and `user.email`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::{self, UltraError};
use crate::compile::CompiledFlow;
use crate::roles::bap::BapEndpoint;
use crate::roles::bap::client::{ClientError, authorize, buyer, loaded};
use crate::roles::bpp::read_body;
use crate::store::{UltraUser, now_ms};

/// The header naming a signed-in user on client API calls.
pub const SESSION_HEADER: &str = "x-ultra-session";

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
    let ultra = flow.ultra.as_ref().ok_or(ClientError::NoUltra)?;
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
    let http = &ep.http;
    let tokens = api::exchange_grant(http, conn, grant)
        .await
        .map_err(ultra_error)?;
    // The grant is spent by now: a contact Ultra cannot give is missing, not a failed sign-in.
    let contact = match api::fetch_contact(http, conn, &tokens.access_token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(flow = %flow.name, connection = %conn.name, error = %e, "the user's contact could not be fetched; signed in without it");
            api::Contact::default()
        }
    };
    let user = UltraUser {
        session: uuid::Uuid::new_v4().to_string(),
        connection: conn.name.clone(),
        identity_token: tokens.identity_token,
        mobile: contact.mobile,
        email: contact.email,
        created_at: now_ms(),
    };
    ep.store()
        .save_ultra_user(user.clone())
        .await
        .map_err(ClientError::store)?;
    tracing::info!(flow = %flow.name, connection = %conn.name, "Ultra user signed in");
    Ok(json!({"session": user.session, "user": user_value(&user)}))
}

/// `POST {base}/ultra/sign-out` with [`SESSION_HEADER`]: the adapter forgets the user (their
/// identity token and contact). Transactions already tied to the user keep reporting their
/// orders; new calls with the session are refused as an unknown session.
pub async fn sign_out(State(ep): State<Arc<BapEndpoint>>, headers: HeaderMap) -> Response {
    let result = async {
        let (_, flow) = loaded(&ep)?;
        authorize(buyer(&flow)?, &headers)?;
        if flow.ultra.is_none() {
            return Err(ClientError::NoUltra);
        }
        let session = headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(ClientError::UnknownSession)?;
        let forgotten = ep
            .store()
            .forget_ultra_user(session)
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
        other => ClientError::UltraRefused(other.to_string()),
    }
}

/// The signed-in user a client API call names with [`SESSION_HEADER`], if it names one.
pub async fn session_user(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    headers: &HeaderMap,
) -> Result<Option<UltraUser>, ClientError> {
    let Some(session) = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    if flow.ultra.is_none() {
        return Err(ClientError::NoUltra);
    }
    ep.store()
        .ultra_user(session)
        .await
        .map_err(ClientError::store)?
        .map(Some)
        .ok_or(ClientError::UnknownSession)
}

/// The user as templates see it (never the identity token: it stays with the adapter).
pub fn user_value(user: &UltraUser) -> Value {
    json!({"mobile": user.mobile, "email": user.email})
}
