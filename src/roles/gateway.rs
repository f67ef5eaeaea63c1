//! The gateway (BG) role: take a BAP's `search`, find the providers that serve its domain and
//! place, and forward the original bytes to each of them concurrently; carry their `on_search`
//! answers back to the BAP. The gateway adds its own `X-Gateway-Authorization` signature and
//! never re-serialises what it forwards.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::Services;
use super::bpp::read_body;
use crate::beckn::ack::{Rejection, ack};
use crate::beckn::registry::{LookupQuery, Subscriber, SubscriberType};
use crate::beckn::schema::CoreSchemas;
use crate::beckn::trust::{self, GATEWAY_HEADER};
use crate::compile::{CompiledFlow, CompiledSet};

/// One gateway flow's endpoints.
pub struct GatewayEndpoint {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub flow_name: String,
    pub services: Arc<Services>,
    pub client: reqwest::Client,
}

/// `POST {base_path}/search`.
pub async fn search(
    State(ep): State<Arc<GatewayEndpoint>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let outcome = receive_search(&ep, &headers, body).await;
    respond(&ep, "search", outcome, started)
}

/// `POST {base_path}/on_search`.
pub async fn on_search(
    State(ep): State<Arc<GatewayEndpoint>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    respond(
        &ep,
        "on_search",
        receive_on_search(&ep, &headers, body).await,
        started,
    )
}

fn respond(
    ep: &GatewayEndpoint,
    action: &str,
    outcome: Result<(), Rejection>,
    started: std::time::Instant,
) -> Response {
    match outcome {
        Ok(()) => {
            crate::telemetry::request_answered(
                &ep.flow_name,
                "gateway",
                action,
                None,
                started.elapsed(),
            );
            ack()
        }
        Err(rejection) => {
            let (code, status, _) = rejection.classify();
            crate::telemetry::request_answered(
                &ep.flow_name,
                "gateway",
                action,
                Some(code.code()),
                started.elapsed(),
            );
            tracing::info!(flow = %ep.flow_name, action, code = code.code(), status = status.as_u16(), reason = %rejection, "NACK");
            rejection.into_response()
        }
    }
}

/// What both directions check before acknowledging: signature, JSON, core schema, signer.
async fn accept(
    ep: &GatewayEndpoint,
    headers: &HeaderMap,
    body: Body,
    action: &str,
    signer_field: &'static str,
) -> Result<(Arc<CompiledFlow>, Arc<CoreSchemas>, Bytes, Value), Rejection> {
    let set = ep.flows.load_full();
    let flow = set
        .flow(&ep.flow_name)
        .cloned()
        .ok_or_else(|| Rejection::Unavailable(format!("flow {} is not loaded", ep.flow_name)))?;
    super::bpp::check_content_type(headers)?;
    let bytes = read_body(body, flow.max_body_bytes).await?;
    let verified = trust::verify_inbound(&flow, &ep.services.registries, headers, &bytes).await?;
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| Rejection::malformed(&e))?;
    if let Some(found) = request.pointer("/context/action").and_then(Value::as_str)
        && found != action
    {
        return Err(Rejection::ActionMismatch {
            endpoint: action.to_string(),
            found: found.to_string(),
        });
    }
    if let Some(v) = set.core.get(action)
        && let Some(first) = v.violations(&request, 1).into_iter().next()
    {
        return Err(Rejection::Schema {
            message: format!("{}: {}", first.path, first.message),
            path: first.path,
        });
    }
    let claimed = request
        .pointer(&format!("/context/{signer_field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(signer) = verified.signer
        && signer != claimed
    {
        return Err(Rejection::SignerMismatch {
            realm: flow.subscriber_id.clone(),
            signer,
            field: signer_field,
            claimed,
        });
    }
    Ok((flow, set.core.clone(), bytes, request))
}

async fn receive_search(
    ep: &Arc<GatewayEndpoint>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Rejection> {
    let (flow, _, bytes, request) = accept(ep, headers, body, "search", "bap_id").await?;
    let text = |p: &str| {
        request
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let bap_id = text("/context/bap_id").unwrap_or_default();
    trust::callback_base(
        &flow,
        &ep.services.registries,
        &bap_id,
        &text("/context/bap_uri").unwrap_or_default(),
    )
    .await?;
    let targets = providers(ep, &flow, &request).await?;
    let auth = original_auth(headers);
    let ep = ep.clone();
    tokio::spawn(async move {
        let gateway_sig = gateway_signature(&flow, &bytes);
        let sends = targets.into_iter().map(|bpp| {
            let url = format!("{}/search", bpp.url.trim_end_matches('/'));
            forward(
                &ep,
                &flow,
                url,
                bytes.clone(),
                auth.clone(),
                gateway_sig.clone(),
            )
        });
        futures::future::join_all(sends).await;
    });
    Ok(())
}

async fn receive_on_search(
    ep: &Arc<GatewayEndpoint>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), Rejection> {
    let (flow, _, bytes, request) = accept(ep, headers, body, "on_search", "bpp_id").await?;
    let text = |p: &str| {
        request
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let base = trust::callback_base(
        &flow,
        &ep.services.registries,
        &text("/context/bap_id"),
        &text("/context/bap_uri"),
    )
    .await?;
    let auth = original_auth(headers);
    let ep = ep.clone();
    tokio::spawn(async move {
        let gateway_sig = gateway_signature(&flow, &bytes);
        forward(
            &ep,
            &flow,
            format!("{base}/on_search"),
            bytes,
            auth,
            gateway_sig,
        )
        .await;
    });
    Ok(())
}

/// The providers a search goes to: the one named by `bpp_id`/`bpp_uri`, or every subscribed
/// BPP of the context's domain, city and country.
async fn providers(
    ep: &GatewayEndpoint,
    flow: &CompiledFlow,
    request: &Value,
) -> Result<Vec<Subscriber>, Rejection> {
    let Some(source) = &flow.registry else {
        return Err(Rejection::Unavailable("the gateway has no registry".into()));
    };
    let text = |p: &str| {
        request
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let query = LookupQuery {
        subscriber_id: text("/context/bpp_id"),
        kind: Some(SubscriberType::Bpp),
        domain: text("/context/domain"),
        city: text("/context/location/city/code"),
        country: text("/context/location/country/code"),
        ..Default::default()
    };
    let now = jiff::Timestamp::now();
    let mut found: Vec<Subscriber> = ep
        .services
        .registries
        .lookup(source, query)
        .await
        .map_err(|e| Rejection::Unavailable(format!("registry lookup failed: {e}")))?
        .into_iter()
        .filter(|s| s.is_valid_at(now))
        .collect();
    if let Some(uri) = text("/context/bpp_uri") {
        found.retain(|s| s.url.trim_end_matches('/') == uri.trim_end_matches('/'));
    }
    found.sort_by(|a, b| a.subscriber_id.cmp(&b.subscriber_id));
    found.dedup_by(|a, b| a.subscriber_id == b.subscriber_id);
    Ok(found)
}

fn original_auth(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn gateway_signature(flow: &CompiledFlow, body: &[u8]) -> Option<String> {
    trust::sign_outbound(flow, body)
        .into_iter()
        .next()
        .map(|(_, v)| v)
}

/// Sends `bytes` as received, with the sender's signature and the gateway's.
async fn forward(
    ep: &GatewayEndpoint,
    flow: &CompiledFlow,
    url: String,
    bytes: Bytes,
    auth: Option<String>,
    gateway_sig: Option<String>,
) {
    let mut req = ep
        .client
        .post(&url)
        .timeout(flow.forward_timeout)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    if let Some(g) = gateway_sig {
        req = req.header(GATEWAY_HEADER, g);
    }
    let started = std::time::Instant::now();
    match req.body(bytes).send().await {
        Ok(resp) if resp.status().is_success() => {
            tracing::info!(flow = %flow.name, %url, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "forwarded");
        }
        Ok(resp) => {
            tracing::warn!(flow = %flow.name, %url, status = resp.status().as_u16(), "forward refused");
        }
        Err(e) => {
            tracing::warn!(flow = %flow.name, %url, error = %e, timeout = ?flow.forward_timeout, "forward failed");
        }
    }
}
