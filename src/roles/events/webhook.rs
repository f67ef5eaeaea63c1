//! An order event posted by the backend to the flow's `events.webhook`: read under the body
//! limit, authenticated (HMAC-SHA256 of the body with a shared secret), then handed to
//! [`accept_event`] like any other event.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{EventError, EventOutcome, EventSource, IncomingEvent, accept_event};
use crate::beckn::ack::Rejection;
use crate::beckn::redact;
use crate::compile::CompiledSet;
use crate::intake::body::read_body;
use crate::roles::Services;
use crate::telemetry;

/// One flow's event webhook.
pub struct EventsEndpoint {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub flow_name: String,
    pub services: Arc<Services>,
}

/// `POST {base_path}{events.webhook.path}`.
pub async fn receive(
    State(ep): State<Arc<EventsEndpoint>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match webhook_event(&ep, &headers, body).await {
        Ok(outcome) => (
            StatusCode::ACCEPTED,
            Json(json!({"status": outcome.as_str()})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(flow = %ep.flow_name, error = %e, "event refused");
            (e.status(), Json(json!({"error": e.to_string()}))).into_response()
        }
    }
}

/// Authenticates a webhook's event, then hands it to [`accept_event`].
async fn webhook_event(
    ep: &EventsEndpoint,
    headers: &HeaderMap,
    body: Body,
) -> Result<EventOutcome, EventError> {
    let set = ep.flows.load_full();
    let flow = set
        .flow(&ep.flow_name)
        .cloned()
        .ok_or_else(|| EventError::Unavailable(format!("flow {} is not loaded", ep.flow_name)))?;
    let checked = async {
        let webhook = flow
            .events()
            .and_then(|e| e.webhook.as_ref())
            .ok_or(EventError::NotConfigured)?;
        let bytes = read_body(body, flow.max_body_bytes)
            .await
            .map_err(|e| match e {
                Rejection::TooLarge(_) => EventError::TooLarge(e.to_string()),
                e => EventError::BadEvent(e.to_string()),
            })?;
        let signature = headers
            .get(webhook.signature_header.as_str())
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                EventError::Unauthorized(format!("missing {} header", webhook.signature_header))
            })?;
        verify_hmac(webhook.secret.expose().as_bytes(), &bytes, signature)?;
        let event: Value = serde_json::from_slice(&bytes)
            .map_err(|e| EventError::BadEvent(format!("event is not JSON: {e}")))?;
        Ok((event, bytes))
    }
    .await;
    let (event, body) = checked.inspect_err(|e: &EventError| {
        telemetry::event_received(&flow.name, EventSource::Webhook.as_str(), e.kind());
    })?;
    let incoming = IncomingEvent {
        event,
        body,
        headers: redact::headers_json(headers),
        source: EventSource::Webhook,
        known: None,
    };
    accept_event(set, flow, &ep.services, incoming).await
}

fn verify_hmac(secret: &[u8], body: &[u8], header: &str) -> Result<(), EventError> {
    let bad = || EventError::Unauthorized("the event signature does not match its body".into());
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .unwrap_or(header.trim());
    let tag = hex::decode(hex_sig).map_err(|_| bad())?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| bad())?;
    mac.update(body);
    mac.verify_slice(&tag).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_signatures() {
        let sig = {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").unwrap();
            mac.update(b"{}");
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        };
        assert!(verify_hmac(b"k", b"{}", &sig).is_ok());
        assert!(verify_hmac(b"k", b"{ }", &sig).is_err());
        assert!(verify_hmac(b"other", b"{}", &sig).is_err());
        assert!(verify_hmac(b"k", b"{}", "sha256=zz").is_err());
    }
}
