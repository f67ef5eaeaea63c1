//! The network side of a buyer app: `POST {base_path}/on_{action}` from BPPs (directly, or
//! through the gateway for `on_search`).
//!
//! Checks, in order (each failure a NACK): endpoint, content type, size, signatures over the raw
//! bytes (the BPP's, and the gateway's when it relayed), JSON, `context.action`, the core
//! schema, recipient (`bap_id` is us), domain rules, signer = `context.bpp_id`. Then the
//! callback is classified against what we sent:
//!
//! - it answers a request of ours (same message id and action, from a BPP the request could
//!   reach) before that request's `timestamp + ttl`: an answer;
//! - an `on_status`, `on_update` or `on_cancel` no request asked for (the BPP reports a
//!   change, or cancels the order itself), in a transaction of ours (and from its BPP, once that
//!   is known): unsolicited;
//! - an answer after the ttl: late, NACKed (30022);
//! - anything else: unknown, NACKed (30000).
//!
//! Every one is filed in the store before the answer is given (late and unknown ones kept for
//! inspection); a repeat is filed once and answered as before. Filing an answer wakes the
//! callers waiting for it, and queues its webhook delivery in the same commit when the app
//! wants one.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{BapEndpoint, webhook};
use crate::beckn::ack::{Rejection, ack};
use crate::beckn::action::Action;
use crate::beckn::redact;
use crate::beckn::trust;
use crate::compile::CompiledFlow;
use crate::config::model::AnswerMode;
use crate::intake::body::read_body;
use crate::intake::content_type::check_content_type;
use crate::intake::message::text;
use crate::intake::payloads;
use crate::roles::rules;
use crate::sinks::Sinks;
use crate::store::{Accepted, Disposition, NewCallback, RefusedCallback, SentRequest};

/// `POST {base_path}/{callback}`.
pub async fn receive(
    State(ep): State<Arc<BapEndpoint>>,
    Path(callback): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let label = callback
        .strip_prefix("on_")
        .and_then(|a| a.parse::<Action>().ok())
        .map_or("other", Action::callback);
    let root = ep
        .services
        .traces
        .received((&ep.flow_name, "bap", label), &headers);
    let mut read = None;
    let accepted = root
        .wrap(accept(&ep, &callback, &headers, body, &mut read))
        .await;
    match accepted {
        Ok(()) => {
            root.attr("outcome", "ack");
            ack()
        }
        Err(rejection) => {
            let (code, status, path) = rejection.classify();
            root.attr("outcome", "nack");
            root.attr("error.code", code.code().to_string());
            tracing::info!(flow = %ep.flow_name, action = %callback, code = code.code(), status = status.as_u16(), path = path.as_deref().unwrap_or(""), reason = %rejection, "NACK");
            // A late or unknown callback is filed, and shown as such, already.
            if !matches!(
                rejection,
                Rejection::LateCallback { .. } | Rejection::UnknownRequest { .. }
            ) {
                let names = (ep.flow_name.as_str(), "bap", callback.as_str());
                crate::roles::note_nack(
                    &ep.services,
                    names,
                    &headers,
                    read.as_ref(),
                    &rejection,
                    "bpp_id",
                );
            }
            rejection.into_response()
        }
    }
}

/// Checks and files a callback; `read` gets its body once read (for the NACK's record).
async fn accept(
    ep: &BapEndpoint,
    callback: &str,
    headers: &HeaderMap,
    body: Body,
    read: &mut Option<bytes::Bytes>,
) -> Result<(), Rejection> {
    let action = callback
        .strip_prefix("on_")
        .and_then(|a| a.parse::<Action>().ok())
        .ok_or_else(|| Rejection::UnknownEndpoint(callback.to_string()))?;
    let (set, flow) = ep
        .current()
        .ok_or_else(|| Rejection::Unavailable(format!("flow {} is not loaded", ep.flow_name)))?;
    check_content_type(headers)?;
    let bytes = read_body(body, flow.max_body_bytes).await?;
    *read = Some(bytes.clone());
    payloads::received(&flow.name, callback, headers, &bytes);
    let checked = async {
        let verified =
            trust::verify_inbound(&flow.participant, &ep.services.registries, headers, &bytes)
                .await?;
        let parsed: Value = serde_json::from_slice(&bytes).map_err(|e| Rejection::malformed(&e))?;
        rules(&flow, &set.core).check_callback(action, &parsed)?;
        let bpp_id = text(&parsed, "/context/bpp_id").to_string();
        if let Some(signer) = &verified.signer
            && *signer != bpp_id
        {
            return Err(Rejection::SignerMismatch {
                realm: flow.participant.subscriber_id.clone(),
                signer: signer.clone(),
                field: "bpp_id",
                claimed: bpp_id,
            });
        }
        Ok((verified, parsed, bpp_id))
    }
    .await;
    let (verified, parsed, bpp_id) = match checked {
        Ok(c) => c,
        Err(rejection) => {
            note_refusal(ep, &flow, action, &bytes, &rejection).await;
            return Err(rejection);
        }
    };
    let message_id = text(&parsed, "/context/message_id").to_string();
    let transaction_id = text(&parsed, "/context/transaction_id").to_string();
    let store = ep.store();
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(flow = %flow.name, action = %callback, %transaction_id, %message_id, error = %e, "callback could not be filed");
        Rejection::Unavailable("the callback could not be recorded".into())
    };
    let request = store
        .sent_request(&flow.name, &message_id)
        .await
        .map_err(unavailable)?;
    let (disposition, why) = classify(ep, &flow, action, &parsed, request.as_ref())
        .await
        .map_err(unavailable)?;
    let callback_record = NewCallback {
        flow: flow.name.clone(),
        action: action.callback().to_string(),
        message_id: message_id.clone(),
        transaction_id: transaction_id.clone(),
        bpp_id: bpp_id.clone(),
        via: verified.gateway.clone(),
        disposition,
        body: bytes,
        headers: redact::headers_json(headers),
    };
    let wants_webhook = match (disposition, &request) {
        (Disposition::Answer, Some(r)) => r.mode == AnswerMode::Webhook.as_str(),
        (Disposition::Unsolicited, _) => true,
        _ => false,
    };
    let forward = flow
        .bap()
        .and_then(|b| b.webhook.as_ref())
        .filter(|_| wants_webhook)
        .and_then(|w| {
            let request_body = request
                .as_ref()
                .filter(|_| disposition == Disposition::Answer)
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok());
            webhook::delivery(
                &flow,
                w,
                &ep.services.outbox.settings,
                &callback_record,
                &parsed,
                request_body.as_ref(),
                ep.services.clock.now(),
            )
        });
    let forwarding = forward.is_some();
    match store
        .file_callback(callback_record, forward)
        .await
        .map_err(unavailable)?
    {
        Accepted::New => {
            tracing::info!(flow = %flow.name, action = %callback, %transaction_id, %message_id, %bpp_id, via = verified.gateway.as_deref().unwrap_or(""), disposition = disposition.as_str(), webhook = forwarding, "callback filed");
            if forwarding {
                ep.services.outbox.queued();
            }
            if disposition == Disposition::Answer {
                ep.signals.announce(&message_id);
            }
        }
        Accepted::Duplicate => {
            tracing::info!(flow = %flow.name, action = %callback, %transaction_id, %message_id, %bpp_id, "repeated callback: answered again, filed once");
        }
    }
    if matches!(disposition, Disposition::Answer | Disposition::Unsolicited) {
        // Also for a repeat: the first delivery may have been filed by a process that stopped
        // before this; the store queues each state of an order once.
        Sinks::of_flow(&flow)
            .order_event(&ep.services.outbox, &flow, callback, &parsed)
            .await
            .map_err(|e| unavailable(e.source))?;
    }
    match disposition {
        Disposition::Answer | Disposition::Unsolicited => Ok(()),
        Disposition::Late => {
            let expired_at = request
                .as_ref()
                .and_then(|r| jiff::Timestamp::from_millisecond(r.expires_at).ok())
                .map(|t| t.to_string())
                .unwrap_or_default();
            tracing::warn!(flow = %flow.name, action = %callback, %transaction_id, %message_id, %bpp_id, %expired_at, "late callback: NACKed and kept");
            Err(Rejection::LateCallback {
                message_id,
                expired_at,
            })
        }
        Disposition::Unknown => {
            tracing::warn!(flow = %flow.name, action = %callback, %transaction_id, %message_id, %bpp_id, reason = %why, "unknown callback: NACKed and kept");
            Err(Rejection::UnknownRequest {
                message_id,
                detail: why,
            })
        }
    }
}

/// Longest reason (and claimed sender) kept with a refused callback.
const MAX_REASON: usize = 300;

/// Notes a refused callback under the request it names (its `context.message_id`, read from
/// the unchecked bytes), so the request's answer document can say that a callback came and why
/// it was refused. Only for a request of ours whose action it answers, a few per request; a
/// store failure is logged, the NACK stands regardless.
async fn note_refusal(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    action: Action,
    bytes: &[u8],
    rejection: &Rejection,
) {
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let message_id = text(&body, "/context/message_id");
    if message_id.is_empty() {
        return;
    }
    let store = ep.store();
    match store.sent_request(&flow.name, message_id).await {
        Ok(Some(r)) if r.action == action.as_str() => {}
        _ => return,
    }
    let (code, _, path) = rejection.classify();
    let mut reason = rejection.to_string();
    if let Some(p) = path.filter(|p| !reason.contains(p.as_str())) {
        reason = format!("{p}: {reason}");
    }
    let refused = RefusedCallback {
        // as claimed, and perhaps by anyone: both kept short
        bpp_id: cut(text(&body, "/context/bpp_id").to_string(), MAX_REASON),
        reason: cut(reason, MAX_REASON),
        action: action.callback().to_string(),
        received_at: ep.services.clock.now().to_string(),
        code: code.code().to_string(),
    };
    let Ok(json) = serde_json::to_string(&refused) else {
        return;
    };
    if let Err(e) = store
        .note_refused_callback(&flow.name, message_id, json)
        .await
    {
        tracing::error!(flow = %flow.name, %message_id, error = %e, "a refused callback could not be noted");
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(text.floor_char_boundary(max));
        text.push('…');
    }
    text
}

/// How a checked callback is filed, and (for unknown ones) why.
async fn classify(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    action: Action,
    body: &Value,
    request: Option<&SentRequest>,
) -> Result<(Disposition, String), crate::store::StoreError> {
    let transaction_id = text(body, "/context/transaction_id");
    let bpp_id = text(body, "/context/bpp_id");
    if let Some(r) = request
        && r.action == action.as_str()
    {
        if r.transaction_id != transaction_id {
            return Ok((
                Disposition::Unknown,
                format!(
                    "that request is in transaction {}, not {transaction_id}",
                    r.transaction_id
                ),
            ));
        }
        // A search through a gateway may be answered by any provider the gateway reached;
        // anything else only by the BPP it went to.
        let through_gateway = action == Action::Search && !r.expected.contains(&r.recipient);
        if !through_gateway && r.recipient != bpp_id {
            return Ok((
                Disposition::Unknown,
                format!("that request went to {}, not {bpp_id}", r.recipient),
            ));
        }
        if ep.services.clock.now_ms() > r.expires_at {
            return Ok((Disposition::Late, String::new()));
        }
        return Ok((Disposition::Answer, String::new()));
    }
    if matches!(action, Action::Status | Action::Update | Action::Cancel) {
        let known = ep
            .store()
            .buyer_transaction(&flow.name, transaction_id)
            .await?;
        match known {
            Some(t) => match t.counterpart {
                Some(c) if c.bpp_id != bpp_id => {
                    return Ok((
                        Disposition::Unknown,
                        format!(
                            "transaction {transaction_id} is with {}, not {bpp_id}",
                            c.bpp_id
                        ),
                    ));
                }
                _ => return Ok((Disposition::Unsolicited, String::new())),
            },
            None => {
                return Ok((
                    Disposition::Unknown,
                    format!("transaction {transaction_id} is not one of ours"),
                ));
            }
        }
    }
    Ok((
        Disposition::Unknown,
        match request {
            Some(r) => format!(
                "the request with that id was a {}, not a {}",
                r.action,
                action.as_str()
            ),
            None => "nothing was sent with that id".to_string(),
        },
    ))
}
