//! From an app's call to a signed Beckn request on the wire: the request itself (the app's
//! `message`, or its own JSON through the flow's request template), the context the adapter
//! owns, the route, the outgoing checks, and the send.
//!
//! Routing: a search goes to the flow's gateway unless the call names a BPP; every other
//! action goes to the BPP the transaction is with: the one the call names, the one remembered
//! for the transaction, or the one whose `on_search` offered the order's provider. Recipient
//! URLs come from the registry, never from the app, like every address the adapter calls.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::BapEndpoint;
use super::client::ClientError;
use crate::beckn::action::Action;
use crate::beckn::context::{expiry, rfc3339};
use crate::beckn::registry::{LookupQuery, SubscriberType};
use crate::beckn::trust;
use crate::compile::{CompiledBap, CompiledFlow, CompiledSet, GatewayTarget};
use crate::config::model::AnswerMode;
use crate::engine::call_log::CallNote;
use crate::engine::flow_value;
use crate::intake::message::text;
use crate::roles::rules;
use crate::store::{Counterpart, Disposition, SentRequest};
use crate::telemetry::traces;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// Context fields only the adapter sets.
const ADAPTER_OWNED: [&str; 7] = [
    "domain",
    "action",
    "version",
    "bap_id",
    "bap_uri",
    "message_id",
    "timestamp",
];

/// The request as the app gave it: context fields it may set, and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub context: Map<String, Value>,
    pub message: Value,
}

/// Reads the app's body: a Beckn request (`{"context"?, "message"}`), or, for a body without
/// `message`, the result of the action's request template applied to it.
pub fn envelope(
    flow: &CompiledFlow,
    bap: &CompiledBap,
    action: Action,
    input: Value,
    user: &Value,
) -> Result<Envelope, ClientError> {
    let raw = if input.get("message").is_some_and(Value::is_object) {
        input
    } else if let Some(name) = bap.actions.get(&action).and_then(|a| a.request.as_ref()) {
        let scope = crate::mapping::jvalue(json!({
            "input": input,
            "user": user,
            "flow": flow_value(flow),
            "context": null,
            "message": null,
        }));
        flow.templates
            .render_json(name, &scope)
            .map_err(|e| ClientError::Template(format!("{name}: {}", e.detail)))?
    } else {
        return Err(ClientError::BadBody(format!(
            "send a Beckn request {{\"context\": {{...}}, \"message\": {{...}}}} (context optional), \
             or give the flow a request template (client.actions.{action}.request_template) for app-shaped bodies"
        )));
    };
    let Some(message) = raw.get("message").filter(|m| m.is_object()).cloned() else {
        return Err(ClientError::Template(
            "the request template must produce {\"message\": {...}} (and optionally \"context\")"
                .into(),
        ));
    };
    let context = match raw.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ClientError::BadBody("`context` must be an object".into()));
        }
    };
    if let Some(owned) = context.keys().find(|k| ADAPTER_OWNED.contains(&k.as_str())) {
        return Err(ClientError::BadBody(format!(
            "context.{owned} is set by the adapter; the call may set transaction_id, bpp_id, ttl, location"
        )));
    }
    Ok(Envelope { context, message })
}

/// Where a request goes and who is expected to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The gateway or BPP (subscriber id; a gateway named by URL: its URL).
    pub recipient: String,
    /// Base URL of the recipient (the action is appended).
    pub base_url: String,
    /// The BPP the request is addressed to (`context.bpp_id`, `bpp_uri`), None for a search
    /// through a gateway.
    pub bpp: Option<Counterpart>,
    pub expected: Vec<String>,
}

/// A request ready to record and send.
pub struct Prepared {
    pub body: Value,
    pub request: SentRequest,
}

/// Builds the context, routes the request and checks it as a provider would on arrival.
pub async fn prepare(
    ep: &BapEndpoint,
    set: &CompiledSet,
    flow: &CompiledFlow,
    bap: &CompiledBap,
    action: Action,
    mode: AnswerMode,
    envelope: Envelope,
) -> Result<Prepared, ClientError> {
    let mut given = envelope.context;
    let mut take_text = |key: &str| -> Result<Option<String>, ClientError> {
        match given.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(_) => Err(ClientError::BadBody(format!(
                "context.{key} must be a non-empty string"
            ))),
        }
    };
    let transaction_id =
        take_text("transaction_id")?.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let named_bpp = take_text("bpp_id")?;
    let given_uri = take_text("bpp_uri")?;
    let ttl = take_text("ttl")?.unwrap_or_else(|| iso_seconds(bap.ttl));
    let location = given
        .remove("location")
        .filter(|l| !l.is_null())
        .or_else(|| bap.location.clone());
    let mut context = Map::new();
    for (k, v) in [
        ("domain", json!(flow.domain)),
        ("action", json!(action.as_str())),
        ("version", json!("1.1.0")),
        ("bap_id", json!(flow.participant.subscriber_id)),
        ("bap_uri", json!(flow.participant.subscriber_uri)),
        ("transaction_id", json!(transaction_id)),
        ("message_id", json!(uuid::Uuid::new_v4().to_string())),
        ("timestamp", json!(rfc3339(ep.services.clock.now()))),
        ("ttl", json!(ttl)),
    ] {
        context.insert(k.to_string(), v);
    }
    if let Some(location) = location {
        context.insert("location".into(), location);
    }
    // Other context fields the app set (`key`, `max_callbacks`...) travel as given.
    context.extend(given);
    let mut context = Value::Object(context);
    let route = route(
        ep,
        flow,
        bap,
        action,
        &transaction_id,
        named_bpp,
        given_uri,
        &context,
        &envelope.message,
    )
    .await?;
    if let Some(bpp) = &route.bpp {
        context["bpp_id"] = json!(bpp.bpp_id);
        context["bpp_uri"] = json!(bpp.bpp_uri);
    }
    let body = crate::beckn::context::envelope(context, envelope.message);
    let violations = rules(flow, &set.core).outgoing_violations(action.as_str(), &body);
    if !violations.is_empty() {
        return Err(ClientError::Invalid(
            violations
                .into_iter()
                .map(|v| json!({"path": v.path, "message": v.message}))
                .collect(),
        ));
    }
    let expires_at = expiry(&body["context"])
        .map(|t| t.as_millisecond())
        .ok_or_else(|| {
            ClientError::BadBody(format!("context.ttl `{ttl}` is not an ISO 8601 duration"))
        })?;
    let bytes = serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| ClientError::BadBody(format!("the request cannot be written: {e}")))?;
    let request = SentRequest {
        refused: None,
        flow: flow.name.clone(),
        message_id: text(&body, "/context/message_id").to_string(),
        transaction_id,
        action: action.as_str().to_string(),
        mode: mode.as_str().to_string(),
        recipient: route.recipient.clone(),
        url: format!("{}/{}", route.base_url, action.as_str()),
        expected: route.expected.clone(),
        body: bytes,
        ack: None,
        expires_at,
        created_at: ep.services.clock.now_ms(),
    };
    Ok(Prepared { body, request })
}

/// `PT30S`, `PT2.5S`: a duration as an ISO 8601 ttl.
fn iso_seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    format!("PT{secs}S")
}

#[allow(clippy::too_many_arguments)]
async fn route(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    bap: &CompiledBap,
    action: Action,
    transaction_id: &str,
    named_bpp: Option<String>,
    given_uri: Option<String>,
    context: &Value,
    message: &Value,
) -> Result<Route, ClientError> {
    if action == Action::Search {
        if let Some(bpp_id) = named_bpp {
            let bpp_uri = bpp_uri(ep, flow, &bpp_id, given_uri).await?;
            return Ok(Route {
                recipient: bpp_id.clone(),
                base_url: bpp_uri.clone(),
                expected: vec![bpp_id.clone()],
                bpp: Some(Counterpart { bpp_id, bpp_uri }),
            });
        }
        let (recipient, base_url) = match &bap.gateway {
            Some(GatewayTarget::Url(url)) => (url.clone(), url.clone()),
            Some(GatewayTarget::Subscriber(id)) => {
                let base = trust::gateway_base(&flow.participant, &ep.services.registries, id)
                    .await
                    .map_err(|r| ClientError::Unroutable(r.to_string()))?;
                (id.clone(), base)
            }
            None => return Err(ClientError::NoGateway),
        };
        return Ok(Route {
            recipient,
            base_url,
            bpp: None,
            expected: expected_providers(ep, flow, context).await,
        });
    }
    let store = ep.store();
    let known = store
        .buyer_transaction(&flow.name, transaction_id)
        .await
        .map_err(ClientError::store)?
        .and_then(|t| t.counterpart);
    let counterpart = match (named_bpp, known) {
        (Some(named), Some(known)) if named != known.bpp_id => {
            return Err(ClientError::OtherCounterpart {
                transaction_id: transaction_id.to_string(),
                bpp_id: known.bpp_id,
            });
        }
        (_, Some(known)) => known,
        (Some(named), None) => {
            let bpp_uri = bpp_uri(ep, flow, &named, given_uri).await?;
            Counterpart {
                bpp_id: named,
                bpp_uri,
            }
        }
        (None, None) => {
            let bpp_id = answered_search(ep, flow, transaction_id, message).await?;
            let bpp_uri = bpp_uri(ep, flow, &bpp_id, given_uri).await?;
            Counterpart { bpp_id, bpp_uri }
        }
    };
    Ok(Route {
        recipient: counterpart.bpp_id.clone(),
        base_url: counterpart.bpp_uri.clone(),
        expected: vec![counterpart.bpp_id.clone()],
        bpp: Some(counterpart),
    })
}

/// The BPP whose `on_search` in this transaction offered the order's provider (or the only
/// BPP that answered the search at all).
async fn answered_search(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    transaction_id: &str,
    message: &Value,
) -> Result<String, ClientError> {
    let filed = ep
        .store()
        .callbacks_for_transaction(&flow.name, transaction_id)
        .await
        .map_err(ClientError::store)?;
    let provider = message
        .pointer("/order/provider/id")
        .and_then(Value::as_str);
    let mut offered: Vec<String> = Vec::new();
    let mut answered: Vec<String> = Vec::new();
    for cb in filed
        .iter()
        .filter(|c| c.action == "on_search" && c.disposition == Disposition::Answer)
    {
        let body: Value = serde_json::from_slice(&cb.body).unwrap_or(Value::Null);
        let providers = body
            .pointer("/message/catalog/providers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !answered.contains(&cb.bpp_id) {
            answered.push(cb.bpp_id.clone());
        }
        if provider.is_some_and(|p| providers.iter().any(|x| x["id"] == p))
            && !offered.contains(&cb.bpp_id)
        {
            offered.push(cb.bpp_id.clone());
        }
    }
    let candidates = if provider.is_some() && !offered.is_empty() {
        offered
    } else {
        answered
    };
    match candidates.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ClientError::NoCounterpart {
            transaction_id: transaction_id.to_string(),
        }),
        many => Err(ClientError::AmbiguousCounterpart {
            transaction_id: transaction_id.to_string(),
            candidates: many.to_vec(),
        }),
    }
}

/// The registered URL of the BPP `bpp_id`; without a registry, the `bpp_uri` the call gave.
async fn bpp_uri(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    bpp_id: &str,
    given: Option<String>,
) -> Result<String, ClientError> {
    let Some(source) = &flow.participant.registry else {
        return given.map(|u| u.trim_end_matches('/').to_string()).ok_or_else(|| {
            ClientError::BadBody(format!(
                "context.bpp_uri is needed for {bpp_id}: this flow has no registry to look it up in"
            ))
        });
    };
    let query = LookupQuery {
        subscriber_id: Some(bpp_id.to_string()),
        kind: Some(SubscriberType::Bpp),
        ..Default::default()
    };
    let now = ep.services.clock.now();
    let registered = ep
        .services
        .registries
        .lookup(source, query)
        .await
        .map_err(|e| ClientError::Unroutable(format!("registry lookup of {bpp_id} failed: {e}")))?
        .into_iter()
        .find(|s| s.is_valid_at(now))
        .map(|s| s.url.trim_end_matches('/').to_string())
        .ok_or_else(|| ClientError::UnknownBpp(bpp_id.to_string()))?;
    if let Some(given) = given
        && given.trim_end_matches('/') != registered
    {
        return Err(ClientError::BadBody(format!(
            "context.bpp_uri `{given}` is not the URL registered for {bpp_id} (`{registered}`)"
        )));
    }
    Ok(registered)
}

/// The BPPs a search through the gateway should hear from: those the registry lists for the
/// flow's domain and the context's city and country, as the gateway picks them. Empty when
/// the registry cannot say; the caller then waits for the ttl.
async fn expected_providers(ep: &BapEndpoint, flow: &CompiledFlow, context: &Value) -> Vec<String> {
    let Some(source) = &flow.participant.registry else {
        return Vec::new();
    };
    let field = |p: &str| {
        context
            .pointer(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let query = LookupQuery {
        kind: Some(SubscriberType::Bpp),
        domain: Some(flow.domain.clone()),
        city: field("/location/city/code"),
        country: field("/location/country/code"),
        ..Default::default()
    };
    let now = ep.services.clock.now();
    match ep.services.registries.lookup(source, query).await {
        Ok(found) => {
            let mut ids: Vec<String> = found
                .into_iter()
                .filter(|s| s.is_valid_at(now))
                .map(|s| s.subscriber_id)
                .collect();
            ids.sort();
            ids.dedup();
            ids
        }
        Err(e) => {
            tracing::warn!(flow = %flow.name, error = %e, "cannot tell which providers a search should hear from; waiting for the ttl");
            Vec::new()
        }
    }
}

/// The recipient's synchronous answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Ack {
    Ack,
    /// NACK, with the error the recipient gave.
    Nack(Value),
    /// No ACK or NACK: unreachable, or an answer that is neither.
    Failed(String),
}

impl Ack {
    pub fn to_json(&self) -> Value {
        match self {
            Ack::Ack => json!({"status": "ACK"}),
            Ack::Nack(error) => json!({"status": "NACK", "error": error}),
            Ack::Failed(why) => json!({"status": "FAILED", "error": {"message": why}}),
        }
    }
}

/// Signs and POSTs `bytes` to `url` as this flow's participant (logged with
/// `--log-payloads`); the answer, and the send noted as a call (`to`: the recipient) with its
/// HTTP status and duration for the transaction's timeline. An address messages may not go to
/// (not http(s), the adapter's own admin listener) is not sent to.
pub async fn send(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    (action, to): (&str, &str),
    url: &str,
    bytes: Bytes,
) -> (Ack, CallNote) {
    let started = std::time::Instant::now();
    let (ack, status) = post(ep, flow, action, url, bytes).await;
    let failure = match &ack {
        Ack::Ack => None,
        Ack::Nack(error) => Some(match error.get("code").and_then(Value::as_str) {
            Some(code) => format!("nack_{code}"),
            None => "nack".to_string(),
        }),
        Ack::Failed(_) if status.is_some() => Some("not_an_ack".to_string()),
        Ack::Failed(_) => Some("unreachable".to_string()),
    };
    let note = CallNote {
        status,
        failure,
        took_ms: started.elapsed().as_millis() as u64,
        ..CallNote::post_to("send", to.to_string(), url.to_string(), Duration::ZERO)
    };
    (ack, note)
}

/// The POST of [`send`]: the answer, and its HTTP status if one came.
async fn post(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    action: &str,
    url: &str,
    bytes: Bytes,
) -> (Ack, Option<u16>) {
    if let Err(refused) = ep.services.outbox.destinations.check(url).await {
        return (Ack::Failed(format!("not sent: {refused}")), None);
    }
    let headers = trust::sign_outbound(
        &flow.participant,
        &bytes,
        ep.services.clock.now().as_second(),
    );
    crate::intake::payloads::sent(&flow.name, action, url, &headers, &bytes);
    let mut req = ep
        .http
        .post(url)
        .timeout(flow.forward_timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let span = traces::step_with("beckn.send", SpanKind::Client, || {
        vec![
            KeyValue::new("action", action.to_string()),
            KeyValue::new("url.full", url.to_string()),
        ]
    });
    // A provider that traces joins the buyer app's trace.
    if let Some(traceparent) = span.in_scope(traces::traceparent) {
        req = req.header("traceparent", traceparent);
    }
    let resp = match span.wrap(req.body(bytes).send()).await {
        Ok(r) => r,
        Err(e) => {
            span.fail(&e);
            return (Ack::Failed(crate::backend::root_cause(&e)), None);
        }
    };
    let status = resp.status();
    span.attr("http.response.status_code", i64::from(status.as_u16()));
    let body = resp.bytes().await.unwrap_or_default();
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ack = match answer
        .pointer("/message/ack/status")
        .and_then(Value::as_str)
    {
        Some("ACK") if status.is_success() => Ack::Ack,
        Some("NACK") => Ack::Nack(answer.get("error").cloned().unwrap_or(Value::Null)),
        _ => {
            let preview = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
            Ack::Failed(format!("HTTP {status}: {preview}"))
        }
    };
    (ack, Some(status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_iso_durations() {
        assert_eq!(iso_seconds(Duration::from_secs(30)), "PT30S");
        assert_eq!(iso_seconds(Duration::from_millis(2500)), "PT2.5S");
        assert!("PT2.5S".parse::<jiff::Span>().is_ok());
    }
}
