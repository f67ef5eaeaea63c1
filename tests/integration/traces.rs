//! Traces: the adapter built as `serve` builds it, exporting OTLP/HTTP (protobuf) to a
//! collector stand-in on a loopback port; the sample lab's ERP behind a stand-in that notes
//! the `traceparent` of every call before passing it on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use beckn_adapter::telemetry::traces::TraceSettings;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message as _;
use serde_json::json;

use crate::common::{Network, bind, repo};

/// A span as the collector stand-in received it.
#[derive(Debug, Clone)]
pub struct Got {
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    pub attributes: HashMap<String, String>,
    pub service: String,
}

impl Got {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// The OTLP/HTTP collector stand-in: every span it was sent.
#[derive(Default)]
pub struct Collector {
    pub spans: Mutex<Vec<Got>>,
    posts: Mutex<usize>,
}

async fn collect(State(c): State<Arc<Collector>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    *c.posts.lock().unwrap() += 1;
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
        .as_ref()
        .and_then(|v| v.value.as_ref())
    {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    };
    let mut spans = c.spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Got {
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    name: s.name,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    StatusCode::OK
}

/// The collector stand-in and its base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT` names one).
pub async fn start_collector() -> (Arc<Collector>, String) {
    let collector = Arc::new(Collector::default());
    let (listener, addr) = bind().await;
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(collector.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (collector, format!("http://{addr}"))
}

/// The ERP stand-in: notes each call's `traceparent` (or its absence), then passes the call
/// on to a sample ERP.
#[derive(Default)]
struct Erp {
    traceparents: Mutex<Vec<Option<String>>>,
    upstream: String,
}

async fn pass_on(State(erp): State<Arc<Erp>>, request: Request) -> Response {
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    erp.traceparents.lock().unwrap().push(traceparent);
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut pass = reqwest::Client::new().get(format!("{}{path_and_query}", erp.upstream));
    for (name, value) in request.headers() {
        if name != "host" {
            pass = pass.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = pass.send().await.expect("sample ERP reachable");
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let body = answer.bytes().await.unwrap_or_default();
    (status, [("content-type", "application/json")], body).into_response()
}

/// A sample ERP behind the noting stand-in; returns the stand-in and the lab's base URL on it.
async fn start_erp() -> (Arc<Erp>, String) {
    let sample = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
    let (listener, addr) = bind().await;
    tokio::spawn(sample.serve(listener, std::future::pending()));
    let erp = Arc::new(Erp {
        upstream: format!("http://{addr}"),
        ..Erp::default()
    });
    let (listener, addr) = bind().await;
    let app = Router::new().fallback(pass_on).with_state(erp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (erp, format!("http://{addr}/api/v1/labs/GFSL"))
}

async fn network(erp_url: String, endpoint: Option<String>) -> Network {
    Network::start_app(
        &repo().join("flows"),
        Some(erp_url),
        HashMap::new(),
        Vec::new(),
        |settings| {
            settings.traces = TraceSettings {
                endpoint,
                ..TraceSettings::default()
            }
        },
    )
    .await
}

/// Sends a signed search (with `traceparent`, if given), asserts its ACK and waits for its
/// callback; returns the message id.
async fn search(net: &Network, traceparent: Option<&str>) -> String {
    let body = net.request(
        "search",
        &uuid::Uuid::new_v4().to_string(),
        json!({"intent": {"fulfillment": {"type": "home"}}}),
    );
    let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
    let bytes = serde_json::to_vec(&body).unwrap();
    let auth = crate::common::bap_signature(&bytes);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    let (status, ack) = net
        .post_with("search", "application/json", bytes, &headers)
        .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
    net.bap
        .wait("on_search", &message_id, Duration::from_secs(10))
        .await;
    message_id
}

/// The spans of the trace of the message `message_id`, once they include every one of
/// `names` (waited for up to 15 s).
async fn trace_of(collector: &Collector, message_id: &str, names: &[&str]) -> Vec<Got> {
    trace_when(collector, message_id, |spans| {
        names.iter().all(|n| spans.iter().any(|s| s.name == *n))
    })
    .await
}

/// The spans of the trace of the message `message_id` (its `beckn.search` span), once `ready`
/// holds of them (waited for up to 15 s).
pub async fn trace_when(
    collector: &Collector,
    message_id: &str,
    ready: impl Fn(&[Got]) -> bool,
) -> Vec<Got> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let spans = collector.spans.lock().unwrap().clone();
        let trace_id = spans
            .iter()
            .find(|s| {
                s.name == "beckn.search"
                    && s.attributes.get("message_id").map(String::as_str) == Some(message_id)
            })
            .map(|s| s.trace_id.clone());
        if let Some(trace_id) = trace_id {
            let of_trace: Vec<Got> = spans
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if ready(&of_trace) {
                return of_trace;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spans of {message_id} did not all arrive: {:#?}",
            collector.spans.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every span's parent is a span of the same trace (or none: the root).
pub fn assert_parents_within(spans: &[Got]) {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for s in spans {
        assert!(
            s.parent.is_empty() || ids.contains(s.parent.as_str()),
            "{} has a parent outside its trace: {spans:#?}",
            s.name
        );
    }
}

const STEPS: [&str; 10] = [
    "beckn.search",
    "beckn.verify",
    "beckn.check",
    "store.accept",
    "beckn.work",
    "script",
    "backend.call",
    "template",
    "delivery.sign",
    "delivery.attempt",
];

#[tokio::test]
async fn a_search_is_one_trace_with_a_span_per_step_that_the_erp_joins() {
    let (collector, endpoint) = start_collector().await;
    let (erp, erp_url) = start_erp().await;
    let net = network(erp_url, Some(endpoint)).await;
    let message_id = search(&net, None).await;
    let spans = trace_of(&collector, &message_id, &STEPS).await;

    // one root, the message's, with what it was and how it was answered
    let roots: Vec<&Got> = spans.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    let root = roots[0];
    assert_eq!(root.name, "beckn.search");
    for (key, value) in [
        ("flow", "greenfield-lab"),
        ("role", "bpp"),
        ("action", "search"),
        ("outcome", "ack"),
    ] {
        assert_eq!(
            root.attributes.get(key).map(String::as_str),
            Some(value),
            "{root:?}"
        );
    }
    assert!(root.attributes.contains_key("transaction_id"), "{root:?}");
    assert_eq!(root.service, "beckn-adapter");

    assert_parents_within(&spans);
    // the calls the flow makes, each with its path (no query) and status
    let calls: Vec<&Got> = spans.iter().filter(|s| s.name == "backend.call").collect();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for call in &calls {
        assert_eq!(call.attributes["http.response.status_code"], "200");
        assert!(!call.attributes["url.path"].contains('?'), "{call:?}");
    }
    let attempt = spans.iter().find(|s| s.name == "delivery.attempt").unwrap();
    assert_eq!(attempt.attributes["outcome"], "delivered", "{attempt:?}");
    assert_eq!(attempt.attributes["http.response.status_code"], "200");
    // no other trace claims the message
    let elsewhere = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| {
            s.trace_id != root.trace_id
                && s.attributes.get("message_id").map(String::as_str) == Some(&message_id)
        })
        .count();
    assert_eq!(elsewhere, 0);

    // the ERP was told the trace with every call
    let traceparents = erp.traceparents.lock().unwrap().clone();
    assert_eq!(traceparents.len(), 2, "{traceparents:?}");
    for tp in traceparents {
        let tp = tp.expect("a traceparent with every backend call");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts[1], root.trace_id, "{tp}");
        assert!(
            calls.iter().any(|c| c.span_id == parts[2]),
            "the call's own span is the ERP's parent: {tp}"
        );
    }

    // the console's timeline shows the trace id and each step's time
    let transaction_id = root.attributes["transaction_id"].clone();
    let timeline: serde_json::Value = net
        .http
        .get(format!(
            "http://{}/console/api/transactions/greenfield-lab/{transaction_id}",
            net.admin_addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = timeline["entries"].as_array().expect("entries");
    let received = entries
        .iter()
        .find(|e| e["kind"] == "received")
        .expect("the search");
    assert_eq!(received["trace_id"], root.trace_id.as_str(), "{received}");
    let kinds: Vec<&str> = received["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap_or("call"))
        .collect();
    assert_eq!(kinds, ["script", "call", "call", "template"], "{received}");
}

#[tokio::test]
async fn an_inbound_traceparent_is_only_the_parent_of_the_message_trace() {
    let (collector, endpoint) = start_collector().await;
    let (_erp, erp_url) = start_erp().await;
    let net = network(erp_url, Some(endpoint)).await;
    // not sampled by the sender: traced all the same
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    let message_id = search(&net, Some(parent)).await;
    let spans = trace_of(
        &collector,
        &message_id,
        &["beckn.search", "delivery.attempt"],
    )
    .await;
    let root = spans.iter().find(|s| s.name == "beckn.search").unwrap();
    assert_eq!(root.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(root.parent, "b7ad6b7169203331");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_requests_are_answered() {
    let (collector, _endpoint) = start_collector().await;
    let (erp, erp_url) = start_erp().await;
    let net = network(erp_url, None).await;
    assert!(!net.services.traces.is_on());
    search(&net, None).await;
    let traceparents = erp.traceparents.lock().unwrap().clone();
    assert_eq!(traceparents, [None, None], "no trace, no traceparent");
    assert_eq!(*collector.posts.lock().unwrap(), 0);
}
