//! The client API a buyer app offers its own application (under `client.base_path`, default
//! `/api`):
//!
//! - `POST {base}/{action}[?mode=sync|async|webhook]`: sends one Beckn request. The body is a
//!   Beckn request (`{"context": {...}, "message": {...}}`, context optional: the call may set
//!   `transaction_id`, `bpp_id`, `ttl`, `location`), or the app's own JSON when the flow has a
//!   request template for the action. `mode` may also be a top-level body field.
//! - `GET {base}/responses/{message_id}`: the answer document of a request.
//! - `GET {base}/transactions/{transaction_id}`: everything filed under a transaction,
//!   unsolicited updates included.
//!
//! Answers: `sync` waits until every expected callback arrived or the ttl ended (200);
//! `async` and `webhook` answer at once (202). A request the recipient did not acknowledge is
//! answered 502 with its NACK. Problems of the call itself are 4xx with `{"error": {code,
//! message}}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::answers::{self, AnswerDoc};
use super::{BapEndpoint, outbound};
use crate::beckn::action::Action;
use crate::compile::{CompiledBap, CompiledFlow};
use crate::config::model::AnswerMode;
use crate::intake::body::read_body;
use crate::store::{Disposition, StoreError};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// Why a call of the client API was refused (nothing was sent), or could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("this API needs `Authorization: Bearer <token>` with the flow's client token")]
    Unauthorized,
    #[error(
        "`{0}` is not a Beckn action (search, select, init, confirm, status, track, cancel, update, rating, support)"
    )]
    UnknownAction(String),
    #[error("{0}")]
    BadBody(String),
    #[error("{0}")]
    BadMode(String),
    #[error("request template: {0}")]
    Template(String),
    #[error("the request breaks the Beckn schema or the domain rules; it was not sent")]
    Invalid(Vec<Value>),
    #[error(
        "this buyer app has no gateway (`gateway:` in its flow): name the BPP to search with context.bpp_id"
    )]
    NoGateway,
    #[error("{0}")]
    Unroutable(String),
    /// The call names a BPP the registry does not list as subscribed: the app's mistake.
    #[error("{0} is not a subscribed BPP in the registry")]
    UnknownBpp(String),
    #[error(
        "transaction {transaction_id} is with no BPP yet: name one with context.bpp_id (or search first)"
    )]
    NoCounterpart { transaction_id: String },
    #[error("several BPPs answered the search of transaction {transaction_id} ({}): name one with context.bpp_id, or the order's provider.id", candidates.join(", "))]
    AmbiguousCounterpart {
        transaction_id: String,
        candidates: Vec<String>,
    },
    #[error("transaction {transaction_id} is with {bpp_id}")]
    OtherCounterpart {
        transaction_id: String,
        bpp_id: String,
    },
    #[error("no request {0} of this buyer app")]
    NotFound(String),
    #[error("{0}; retry later")]
    Unavailable(String),
    #[error("this buyer app has no Ultra connection (`ultra:` in its flow)")]
    NoSink,
    #[error("no Ultra user signed in with this session: sign in again")]
    UnknownSession,
    #[error("{0}")]
    SinkRefused(String),
}

impl ClientError {
    pub fn store(e: StoreError) -> Self {
        tracing::error!(error = %e, "buyer app: store failure");
        ClientError::Unavailable("the store cannot be reached".into())
    }

    /// HTTP status and a stable code for the app to branch on.
    pub fn classify(&self) -> (StatusCode, &'static str) {
        use ClientError::*;
        match self {
            Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            UnknownAction(_) => (StatusCode::NOT_FOUND, "unknown_action"),
            BadBody(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            BadMode(_) => (StatusCode::BAD_REQUEST, "bad_mode"),
            Template(_) => (StatusCode::UNPROCESSABLE_ENTITY, "template_failed"),
            Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            NoGateway => (StatusCode::CONFLICT, "no_gateway"),
            Unroutable(_) => (StatusCode::BAD_GATEWAY, "unroutable"),
            UnknownBpp(_) => (StatusCode::CONFLICT, "unknown_bpp"),
            NoCounterpart { .. } => (StatusCode::CONFLICT, "no_counterpart"),
            AmbiguousCounterpart { .. } => (StatusCode::CONFLICT, "ambiguous_counterpart"),
            OtherCounterpart { .. } => (StatusCode::CONFLICT, "other_counterpart"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            NoSink => (StatusCode::NOT_FOUND, "no_ultra"),
            UnknownSession => (StatusCode::UNAUTHORIZED, "unknown_session"),
            SinkRefused(_) => (StatusCode::BAD_GATEWAY, "ultra_refused"),
        }
    }
}

impl IntoResponse for ClientError {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        let mut error = json!({"code": code, "message": self.to_string()});
        if let ClientError::Invalid(violations) = &self {
            error["violations"] = json!(violations);
        }
        (status, Json(json!({"error": error}))).into_response()
    }
}

/// `POST {base}/{action}`.
pub async fn call(
    State(ep): State<Arc<BapEndpoint>>,
    Path(action): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The app's call is the root of its trace (under the app's `traceparent`, if it sent one).
    let label = action.parse::<Action>().map_or("other", Action::as_str);
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let root = ep.services.traces.root(
        || format!("bap.{label}"),
        traceparent,
        SpanKind::Server,
        || {
            vec![
                KeyValue::new("flow", ep.flow_name.clone()),
                KeyValue::new("role", "bap"),
                KeyValue::new("action", label),
            ]
        },
    );
    let sent = root
        .wrap(send(&ep, &action, &query, &headers, body))
        .await
        .inspect_err(|e| root.fail(e));
    match sent {
        Ok((status, doc)) => (status, Json(doc)).into_response(),
        Err(e) => {
            tracing::info!(flow = %ep.flow_name, %action, error = %e, "client call refused");
            e.into_response()
        }
    }
}

async fn send(
    ep: &BapEndpoint,
    action: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, AnswerDoc), ClientError> {
    let (set, flow) = loaded(ep)?;
    let bap = buyer(&flow)?;
    authorize(bap, headers)?;
    let action: Action = action
        .parse()
        .map_err(|_| ClientError::UnknownAction(action.to_string()))?;
    let bytes = read_body(body, flow.max_body_bytes)
        .await
        .map_err(|r| ClientError::BadBody(r.to_string()))?;
    let input: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::BadBody(format!("the body is not JSON: {e}")))?
    };
    let mode = answer_mode(bap, query, &input)?;
    let user = super::ultra::session_user(ep, &flow, headers).await?;
    let user_value = user
        .as_ref()
        .map(super::ultra::user_value)
        .unwrap_or(Value::Null);
    let envelope = outbound::envelope(&flow, bap, action, input, &user_value)?;
    let prepared = outbound::prepare(ep, &set, &flow, bap, action, mode, envelope).await?;
    let mut request = prepared.request;
    let store = ep.store();
    let counterpart = prepared
        .body
        .get("context")
        .and_then(|c| {
            Some(crate::store::Counterpart {
                bpp_id: c.get("bpp_id")?.as_str()?.to_string(),
                bpp_uri: c.get("bpp_uri")?.as_str()?.to_string(),
            })
        })
        // A search names no counterpart for the transaction, even when sent to one BPP.
        .filter(|_| action != Action::Search);
    store
        .record_request(request.clone(), counterpart)
        .await
        .map_err(ClientError::store)?;
    if let Some(user) = &user {
        store
            .note_identity(&flow.name, &request.transaction_id, &user.identity_token)
            .await
            .map_err(ClientError::store)?;
    }
    let (ack, call) = outbound::send(
        ep,
        &flow,
        (&request.action, &request.recipient),
        &request.url,
        request.body.clone(),
    )
    .await;
    let calls = serde_json::to_string(&[call])
        .ok()
        .map(|calls| crate::store::NotedCalls {
            transaction_id: request.transaction_id.clone(),
            action: request.action.clone(),
            message_id: request.message_id.clone(),
            calls,
        });
    let ack_json = ack.to_json().to_string();
    tracing::info!(flow = %flow.name, %action, transaction_id = %request.transaction_id, message_id = %request.message_id, to = %request.recipient, url = %request.url, mode = mode.as_str(), ack = %ack_json, "request sent");
    if let Err(e) = store
        .note_ack(&flow.name, &request.message_id, ack_json.clone(), calls)
        .await
    {
        tracing::warn!(flow = %flow.name, message_id = %request.message_id, error = %e, "the acknowledgement could not be noted");
    }
    request.ack = Some(ack_json);
    let acked = ack == outbound::Ack::Ack;
    let doc = if acked && mode == AnswerMode::Sync {
        answers::wait(ep, &flow, &request).await
    } else {
        answers::document(ep, &flow, &request).await
    }
    .map_err(ClientError::store)?;
    let status = match (acked, mode) {
        (false, _) => StatusCode::BAD_GATEWAY,
        (true, AnswerMode::Sync) => StatusCode::OK,
        (true, _) => StatusCode::ACCEPTED,
    };
    Ok((status, doc))
}

/// `GET {base}/responses/{message_id}`.
pub async fn responses(
    State(ep): State<Arc<BapEndpoint>>,
    Path(message_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let (_, flow) = loaded(&ep)?;
        authorize(buyer(&flow)?, &headers)?;
        let request = ep
            .store()
            .sent_request(&flow.name, &message_id)
            .await
            .map_err(ClientError::store)?
            .ok_or_else(|| ClientError::NotFound(message_id.clone()))?;
        answers::document(&ep, &flow, &request)
            .await
            .map_err(ClientError::store)
    };
    match answer.await {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET {base}/transactions/{transaction_id}`: every callback filed under the transaction, as
/// received, with how it was filed; also for a transaction that is not ours (`ours: false`)
/// when callbacks of it were received and kept as unknown.
pub async fn transaction(
    State(ep): State<Arc<BapEndpoint>>,
    Path(transaction_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let (_, flow) = loaded(&ep)?;
        authorize(buyer(&flow)?, &headers)?;
        let store = ep.store();
        let known = store
            .buyer_transaction(&flow.name, &transaction_id)
            .await
            .map_err(ClientError::store)?;
        let filed = store
            .callbacks_for_transaction(&flow.name, &transaction_id)
            .await
            .map_err(ClientError::store)?;
        // Callbacks of a transaction that is not ours are kept (as unknown) for inspection:
        // they are listed too; only a transaction with nothing at all is not found.
        if known.is_none() && filed.is_empty() {
            return Err(ClientError::NotFound(format!(
                "in transaction {transaction_id}"
            )));
        }
        let callbacks: Vec<Value> = filed
            .iter()
            .map(|c| {
                json!({
                    "action": c.action,
                    "message_id": c.message_id,
                    "bpp_id": c.bpp_id,
                    "via": c.via,
                    "filed_as": c.disposition,
                    "received_at": jiff::Timestamp::from_millisecond(c.received_at).map(|t| t.to_string()).unwrap_or_default(),
                    "body": serde_json::from_slice::<Value>(&c.body).unwrap_or(Value::Null),
                })
            })
            .collect();
        let unsolicited = filed
            .iter()
            .filter(|c| c.disposition == Disposition::Unsolicited)
            .count();
        Ok::<_, ClientError>(json!({
            "transaction_id": transaction_id,
            "ours": known.is_some(),
            "counterpart": known.and_then(|k| k.counterpart),
            "unsolicited": unsolicited,
            "callbacks": callbacks,
        }))
    };
    match answer.await {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) fn loaded(
    ep: &BapEndpoint,
) -> Result<(Arc<crate::compile::CompiledSet>, Arc<CompiledFlow>), ClientError> {
    ep.current()
        .ok_or_else(|| ClientError::Unavailable(format!("flow {} is not loaded", ep.flow_name)))
}

pub(crate) fn buyer(flow: &CompiledFlow) -> Result<&CompiledBap, ClientError> {
    flow.bap()
        .ok_or_else(|| ClientError::Unavailable(format!("flow {} is not a buyer app", flow.name)))
}

/// Checks the bearer token when the flow sets one (compared in constant time).
pub(crate) fn authorize(bap: &CompiledBap, headers: &HeaderMap) -> Result<(), ClientError> {
    let Some(token) = &bap.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let want = token.expose().as_bytes();
    let same = given.len() == want.len()
        && given
            .as_bytes()
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ClientError::Unauthorized)
    }
}

/// The call's `?mode=`, else the body's top-level `mode`, else the flow's default.
fn answer_mode(
    bap: &CompiledBap,
    query: &HashMap<String, String>,
    input: &Value,
) -> Result<AnswerMode, ClientError> {
    let chosen = match (query.get("mode"), input.get("mode")) {
        (Some(q), _) => Some(q.clone()),
        (None, Some(Value::String(b))) => Some(b.clone()),
        (None, Some(other)) => {
            return Err(ClientError::BadMode(format!(
                "`mode` must be sync, async or webhook, not {other}"
            )));
        }
        (None, None) => None,
    };
    let mode = match chosen {
        Some(m) => m.parse::<AnswerMode>().map_err(ClientError::BadMode)?,
        None => bap.mode,
    };
    if mode == AnswerMode::Webhook && bap.webhook.is_none() {
        return Err(ClientError::BadMode(
            "webhook mode needs `client.webhook` in the flow".into(),
        ));
    }
    Ok(mode)
}
