//! The gateway (BG) role: take a BAP's `search`, find the providers that serve its domain and
//! place, and forward the original bytes to each of them concurrently; carry their `on_search`
//! answers back to the BAP. The gateway adds its own `X-Gateway-Authorization` signature and
//! never re-serialises what it forwards.
//!
//! Each search forwarded is recorded in the store (as a request this flow sent, with the BPPs
//! it went to and when it expires) before the ACK. An `on_search` is relayed only when it
//! answers such a search, in time, from one of those BPPs, signed by a subscriber registered
//! as a BPP of the domain: being in the registry as a BAP, or answering a search never routed,
//! earns a NACK. The store is shared by every gateway process on PostgreSQL, so an answer may
//! land on another process than the one that forwarded its search.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::Services;
use crate::beckn::ack::{Rejection, ack};
use crate::beckn::context::check_times;
use crate::beckn::registry::{LookupQuery, Subscriber, SubscriberType};
use crate::beckn::schema::CoreSchemas;
use crate::beckn::trust::{self, GATEWAY_HEADER};
use crate::compile::{CompiledFlow, CompiledSet};
use crate::engine::call_log::CallNote;
use crate::intake::body::read_body;
use crate::intake::content_type::check_content_type;
use crate::intake::validate::action_matches;
use crate::store::{NotedCalls, SentRequest};
use crate::telemetry::traces;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

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
    let root = root_span(&ep, "search", &headers);
    let mut read = None;
    let outcome = root
        .wrap(receive_search(&ep, &headers, body, &mut read))
        .await;
    if let Err(rejection) = &outcome {
        note_nack(
            &ep,
            ("search", "bap_id"),
            &headers,
            read.as_ref(),
            rejection,
        );
    }
    respond(&ep, "search", outcome, started, root)
}

/// `POST {base_path}/on_search`.
pub async fn on_search(
    State(ep): State<Arc<GatewayEndpoint>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let root = root_span(&ep, "on_search", &headers);
    let mut read = None;
    let outcome = root
        .wrap(receive_on_search(&ep, &headers, body, &mut read))
        .await;
    if let Err(rejection) = &outcome {
        note_nack(
            &ep,
            ("on_search", "bpp_id"),
            &headers,
            read.as_ref(),
            rejection,
        );
    }
    respond(&ep, "on_search", outcome, started, root)
}

/// Keeps a refused `action` for the console (`sender`: the context field naming who sent it).
fn note_nack(
    ep: &GatewayEndpoint,
    (action, sender): (&str, &str),
    headers: &HeaderMap,
    read: Option<&Bytes>,
    rejection: &Rejection,
) {
    let names = (ep.flow_name.as_str(), "gateway", action);
    super::note_nack(&ep.services, names, headers, read, rejection, sender);
}

/// The root span of a message the gateway relays (under the sender's `traceparent`, if any).
fn root_span(ep: &GatewayEndpoint, action: &'static str, headers: &HeaderMap) -> traces::Step {
    ep.services
        .traces
        .received((&ep.flow_name, "gateway", action), headers)
}

fn respond(
    ep: &GatewayEndpoint,
    action: &'static str,
    outcome: Result<(), Rejection>,
    started: std::time::Instant,
    root: traces::Step,
) -> Response {
    root.attr("outcome", if outcome.is_ok() { "ack" } else { "nack" });
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
            root.attr("error.code", code.code().to_string());
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

/// What a message passing [`accept`] is: its flow, the core schemas, the bytes as received,
/// the parsed body and when it stops being valid (Unix ms).
type Accepted = (Arc<CompiledFlow>, Arc<CoreSchemas>, Bytes, Value, i64);

/// What both directions check before acknowledging: signature, JSON, core schema, signer,
/// timestamp and ttl. `read` gets the body once read (for the NACK's record).
async fn accept(
    ep: &GatewayEndpoint,
    headers: &HeaderMap,
    (body, read): (Body, &mut Option<Bytes>),
    action: &str,
    signer_field: &'static str,
) -> Result<Accepted, Rejection> {
    let set = ep.flows.load_full();
    let flow = set
        .flow(&ep.flow_name)
        .cloned()
        .ok_or_else(|| Rejection::Unavailable(format!("flow {} is not loaded", ep.flow_name)))?;
    check_content_type(headers)?;
    let bytes = read_body(body, flow.max_body_bytes).await?;
    *read = Some(bytes.clone());
    let verified =
        trust::verify_inbound(&flow.participant, &ep.services.registries, headers, &bytes).await?;
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| Rejection::malformed(&e))?;
    action_matches(action, &request)?;
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
            realm: flow.participant.subscriber_id.clone(),
            signer,
            field: signer_field,
            claimed,
        });
    }
    let context = request.get("context").unwrap_or(&Value::Null);
    let expires = check_times(
        context,
        &flow.participant.time_limits,
        ep.services.clock.now(),
    )?;
    Ok((
        flow,
        set.core.clone(),
        bytes,
        request,
        expires.as_millisecond(),
    ))
}

async fn receive_search(
    ep: &Arc<GatewayEndpoint>,
    headers: &HeaderMap,
    body: Body,
    read: &mut Option<Bytes>,
) -> Result<(), Rejection> {
    let (flow, _, bytes, request, expires_at) =
        accept(ep, headers, (body, read), "search", "bap_id").await?;
    let text = |p: &str| {
        request
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let bap_id = text("/context/bap_id").unwrap_or_default();
    trust::callback_base(
        &flow.participant,
        &ep.services.registries,
        &bap_id,
        &text("/context/bap_uri").unwrap_or_default(),
    )
    .await?;
    let targets = providers(ep, &flow, &request).await?;
    let message_id = text("/context/message_id").unwrap_or_default();
    let store = &ep.services.outbox.store;
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(flow = %flow.name, %message_id, error = %e, "search could not be recorded");
        Rejection::Unavailable("the search could not be recorded".into())
    };
    if let Some(earlier) = store
        .sent_request(&flow.name, &message_id)
        .await
        .map_err(unavailable)?
    {
        // A repeat of a search already forwarded is acknowledged again, not forwarded again.
        return match searched_by(&earlier) {
            Some(from) if from == bap_id => {
                tracing::info!(flow = %flow.name, %message_id, "search repeated: acknowledged again, not forwarded again");
                Ok(())
            }
            _ => Err(Rejection::Schema {
                path: "context.message_id".into(),
                message: format!(
                    "context.message_id `{message_id}` was already used by another search"
                ),
            }),
        };
    }
    let record = SentRequest {
        flow: flow.name.clone(),
        message_id: message_id.clone(),
        transaction_id: text("/context/transaction_id").unwrap_or_default(),
        action: "search".into(),
        mode: "relay".into(),
        recipient: text("/context/bpp_id").unwrap_or_else(|| "*".into()),
        url: String::new(),
        expected: targets.iter().map(|s| s.subscriber_id.clone()).collect(),
        body: bytes.clone(),
        ack: None,
        refused: None,
        expires_at,
        created_at: ep.services.clock.now_ms(),
    };
    store
        .record_request(record, None)
        .await
        .map_err(unavailable)?;
    let auth = original_auth(headers);
    let ep = ep.clone();
    let transaction_id = text("/context/transaction_id").unwrap_or_default();
    let trace = traces::current();
    tokio::spawn(traces::resume(trace, async move {
        let gateway_sig = gateway_signature(&flow, &bytes, ep.services.clock.now().as_second());
        let started = std::time::Instant::now();
        let sends = targets.into_iter().map(|bpp| {
            let url = format!("{}/search", bpp.url.trim_end_matches('/'));
            let relay = Relay {
                to: bpp.subscriber_id,
                url,
                started,
            };
            forward(
                &ep,
                &flow,
                relay,
                bytes.clone(),
                auth.clone(),
                gateway_sig.clone(),
            )
        });
        let notes = futures::future::join_all(sends).await;
        note_relays(&ep, &flow, ("search", &transaction_id, &message_id), notes).await;
    }));
    Ok(())
}

/// The `bap_id` of a recorded search.
fn searched_by(search: &SentRequest) -> Option<String> {
    serde_json::from_slice::<Value>(&search.body)
        .ok()?
        .pointer("/context/bap_id")?
        .as_str()
        .map(str::to_string)
}

async fn receive_on_search(
    ep: &Arc<GatewayEndpoint>,
    headers: &HeaderMap,
    body: Body,
    read: &mut Option<Bytes>,
) -> Result<(), Rejection> {
    let (flow, _, bytes, request, _) =
        accept(ep, headers, (body, read), "on_search", "bpp_id").await?;
    let text = |p: &str| {
        request
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (bpp_id, bap_id, message_id) = (
        text("/context/bpp_id"),
        text("/context/bap_id"),
        text("/context/message_id"),
    );
    registered_provider(ep, &flow, &bpp_id, &text("/context/domain")).await?;
    let not_routed = |detail: String| Rejection::NotRouted {
        message_id: message_id.clone(),
        detail,
    };
    let search = ep
        .services
        .outbox
        .store
        .sent_request(&flow.name, &message_id)
        .await
        .map_err(|e| {
            tracing::error!(flow = %flow.name, %message_id, error = %e, "searches forwarded cannot be read");
            Rejection::Unavailable("the searches forwarded cannot be read".into())
        })?
        .ok_or_else(|| not_routed("no search with this id went through it".into()))?;
    if !search.expected.contains(&bpp_id) {
        return Err(not_routed(format!("the search was not sent to {bpp_id}")));
    }
    if searched_by(&search).as_deref() != Some(bap_id.as_str()) {
        return Err(not_routed(format!("the search did not come from {bap_id}")));
    }
    if ep.services.clock.now_ms() > search.expires_at {
        return Err(Rejection::LateCallback {
            message_id,
            expired_at: jiff::Timestamp::from_millisecond(search.expires_at)
                .map(|t| t.to_string())
                .unwrap_or_default(),
        });
    }
    let base = trust::callback_base(
        &flow.participant,
        &ep.services.registries,
        &bap_id,
        &text("/context/bap_uri"),
    )
    .await?;
    let auth = original_auth(headers);
    let ep = ep.clone();
    let transaction_id = text("/context/transaction_id");
    let trace = traces::current();
    tokio::spawn(traces::resume(trace, async move {
        let gateway_sig = gateway_signature(&flow, &bytes, ep.services.clock.now().as_second());
        let relay = Relay {
            to: bap_id,
            url: format!("{base}/on_search"),
            started: std::time::Instant::now(),
        };
        let note = forward(&ep, &flow, relay, bytes, auth, gateway_sig).await;
        let ids = ("on_search", transaction_id.as_str(), message_id.as_str());
        note_relays(&ep, &flow, ids, vec![note]).await;
    }));
    Ok(())
}

/// `bpp_id` must be subscribed in the registry as a BPP of `domain`: a BAP's key signs no
/// catalogue.
async fn registered_provider(
    ep: &GatewayEndpoint,
    flow: &CompiledFlow,
    bpp_id: &str,
    domain: &str,
) -> Result<(), Rejection> {
    let Some(source) = &flow.participant.registry else {
        return Err(Rejection::Unavailable("the gateway has no registry".into()));
    };
    let query = LookupQuery {
        subscriber_id: Some(bpp_id.to_string()),
        kind: Some(SubscriberType::Bpp),
        domain: Some(domain.to_string()),
        ..Default::default()
    };
    let now = ep.services.clock.now();
    let found = ep
        .services
        .registries
        .lookup(source, query)
        .await
        .map_err(|e| Rejection::Unavailable(format!("registry lookup of {bpp_id} failed: {e}")))?
        .iter()
        .any(|s| s.is_valid_at(now));
    if found {
        Ok(())
    } else {
        Err(Rejection::Unauthorized {
            realm: flow.participant.subscriber_id.clone(),
            proxy: false,
            reason: format!(
                "{bpp_id} is not subscribed as a BPP of domain `{domain}`: only providers answer searches"
            ),
        })
    }
}

/// The providers a search goes to: the one named by `bpp_id`/`bpp_uri`, or every subscribed
/// BPP of the context's domain, city and country.
async fn providers(
    ep: &GatewayEndpoint,
    flow: &CompiledFlow,
    request: &Value,
) -> Result<Vec<Subscriber>, Rejection> {
    let Some(source) = &flow.participant.registry else {
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
    let now = ep.services.clock.now();
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

fn gateway_signature(flow: &CompiledFlow, body: &[u8], now: i64) -> Option<String> {
    trust::sign_outbound(&flow.participant, body, now)
        .into_iter()
        .next()
        .map(|(_, v)| v)
}

/// Where a message is relayed: the participant, its address, and when relaying began (the
/// notes count from then).
struct Relay {
    to: String,
    url: String,
    started: std::time::Instant,
}

/// Notes the relays of a message (`action`, transaction id, message id) as its calls, for the
/// transaction's timeline; a store failure is logged, the relays stand.
async fn note_relays(
    ep: &GatewayEndpoint,
    flow: &CompiledFlow,
    (action, transaction_id, message_id): (&str, &str, &str),
    notes: Vec<CallNote>,
) {
    let Ok(calls) = serde_json::to_string(&notes) else {
        return;
    };
    let noted = NotedCalls {
        transaction_id: transaction_id.to_string(),
        action: action.to_string(),
        message_id: message_id.to_string(),
        calls,
    };
    if let Err(e) = ep.services.outbox.store.note_calls(&flow.name, noted).await {
        tracing::warn!(flow = %flow.name, %message_id, error = %e, "the relays could not be noted");
    }
}

/// Sends `bytes` as received, with the sender's signature and the gateway's; the send as a
/// call note.
async fn forward(
    ep: &GatewayEndpoint,
    flow: &CompiledFlow,
    relay: Relay,
    bytes: Bytes,
    auth: Option<String>,
    gateway_sig: Option<String>,
) -> CallNote {
    let Relay { to, url, started } = relay;
    let mut note = CallNote::post_to("relay", to, url.clone(), started.elapsed());
    // The registry names the address: the same rules as every other outgoing message.
    if let Err(refused) = ep.services.outbox.destinations.check(&url).await {
        tracing::error!(flow = %flow.name, %url, reason = %refused, "not forwarded: the provider's registered address is refused");
        note.failure = Some("refused_address".into());
        return note;
    }
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
    let span = traces::step_with("gateway.relay", SpanKind::Client, || {
        vec![KeyValue::new("url.full", url.clone())]
    });
    if let Some(traceparent) = span.in_scope(traces::traceparent) {
        req = req.header("traceparent", traceparent);
    }
    let sending = std::time::Instant::now();
    let sent = span.wrap(req.body(bytes).send()).await;
    match &sent {
        Ok(resp) => span.attr(
            "http.response.status_code",
            i64::from(resp.status().as_u16()),
        ),
        Err(e) => span.fail(e),
    }
    match sent {
        Ok(resp) if resp.status().is_success() => {
            note.status = Some(resp.status().as_u16());
            tracing::info!(flow = %flow.name, %url, status = resp.status().as_u16(), elapsed_ms = sending.elapsed().as_millis() as u64, "forwarded");
        }
        Ok(resp) => {
            note.status = Some(resp.status().as_u16());
            note.failure = Some(format!("http_{}", resp.status().as_u16()));
            tracing::warn!(flow = %flow.name, %url, status = resp.status().as_u16(), "forward refused");
        }
        Err(e) => {
            note.failure = Some(
                if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                }
                .into(),
            );
            tracing::warn!(flow = %flow.name, %url, error = %e, timeout = ?flow.forward_timeout, "forward failed");
        }
    }
    note.took_ms = sending.elapsed().as_millis() as u64;
    note
}
