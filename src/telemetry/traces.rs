//! Traces: one trace per message received, a span per step of its handling, exported over
//! OTLP/HTTP (protobuf) when an endpoint is configured.
//!
//! Spans are made with the OpenTelemetry API through a tracer provider the application owns
//! ([`Traces`]), not through a `tracing` subscriber layer: the subscriber is one per process,
//! while every application (a `serve`, each integration test's adapter) must export to its own
//! endpoint or not at all. The message's root span puts the tracer into the OpenTelemetry
//! context, and the message's work runs in that context (`with_context` on its futures, the
//! context carried with work handed to other tasks); a step finds its parent and the tracer
//! there. Without an endpoint no context carries a tracer, and [`step`] is a thread-local
//! look-up that finds nothing: no span, no allocation.
//!
//! An inbound `traceparent` (W3C trace context) is only ever the parent of the message's root
//! span: it decides nothing else (every message is sampled, whatever its flags say).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;
use opentelemetry::trace::{
    FutureExt as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

/// Where and as what traces are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The OTLP/HTTP base URL (`/v1/traces` is appended, as for `OTEL_EXPORTER_OTLP_ENDPOINT`);
    /// None: nothing is exported.
    pub endpoint: Option<String>,
    /// The `service.name` of every span.
    pub service_name: String,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            endpoint: None,
            service_name: SERVICE_NAME.into(),
        }
    }
}

/// The service name unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "beckn-adapter";

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("the OTLP endpoint `{0}` is not an http(s) URL")]
    Endpoint(String),
    #[error("the OTLP exporter cannot be built: {0}")]
    Exporter(String),
    #[error("traces are exported from within a Tokio runtime only")]
    NoRuntime,
}

/// The application's tracer, or nothing when traces are off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Traces(Option<Arc<Exporting>>);

impl fmt::Debug for Traces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Traces(exporting)"
        } else {
            "Traces(off)"
        })
    }
}

struct Exporting {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Drop for Exporting {
    /// The last spans are sent on a thread of their own: shutting the batch processor down
    /// waits for its export, which must not block a runtime's thread (the export runs on it).
    fn drop(&mut self) {
        let provider = self.provider.clone();
        let _ = std::thread::Builder::new()
            .name("traces-shutdown".into())
            .spawn(move || {
                let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
            });
    }
}

/// The tracer as the context carries it to a message's steps.
#[derive(Clone)]
struct TracerOf(SdkTracer);

/// How often the batch processor sends what it has (the OpenTelemetry default is 5 s).
const EXPORT_EVERY: Duration = Duration::from_secs(1);

impl Traces {
    /// No traces: no span is made anywhere.
    pub fn off() -> Self {
        Traces(None)
    }

    /// Traces as `settings` say: exported in batches to its endpoint, or off without one. Must
    /// be called within the Tokio runtime the exports are to run on.
    pub fn new(settings: &TraceSettings) -> Result<Self, TraceError> {
        let Some(endpoint) = settings.endpoint.as_deref().filter(|e| !e.is_empty()) else {
            return Ok(Traces::off());
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(TraceError::Endpoint(endpoint.into()));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TraceError::NoRuntime)?;
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_http_client(OnRuntime {
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| TraceError::Exporter(e.to_string()))?,
                runtime,
            })
            .build()
            .map_err(|e| TraceError::Exporter(e.to_string()))?;
        let batches = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(EXPORT_EVERY)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                opentelemetry_sdk::Resource::builder_empty()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, SERVICE_NAME);
        Ok(Traces(Some(Arc::new(Exporting { provider, tracer }))))
    }

    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// The root span of a message received (`beckn.<action>`), under the sender's
    /// `traceparent` when it sent a valid one; a span that records nothing when traces are off.
    pub fn message(
        &self,
        action: &str,
        traceparent: Option<&str>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Step {
        self.root(
            || format!("beckn.{action}"),
            traceparent,
            SpanKind::Server,
            attributes,
        )
    }

    /// The root span of a message `role` of `flow` received (`beckn.<action>`), under the
    /// `traceparent` among its `headers`, if any.
    pub fn received(
        &self,
        (flow, role, action): (&str, &'static str, &str),
        headers: &reqwest::header::HeaderMap,
    ) -> Step {
        let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
        self.message(action, traceparent, || {
            vec![
                KeyValue::new("flow", flow.to_string()),
                KeyValue::new("role", role),
                KeyValue::new("action", action.to_string()),
            ]
        })
    }

    /// The root span of work the adapter starts itself (a buyer app's request from its app,
    /// a delivery whose message's trace is not at hand), kind `kind`. The name and the
    /// attributes are made only when traces are on.
    pub fn root(
        &self,
        name: impl FnOnce() -> String,
        traceparent: Option<&str>,
        kind: SpanKind,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Step {
        let Some(exporting) = &self.0 else {
            return Step(None);
        };
        let parent = match traceparent.and_then(parse_traceparent) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        }
        .with_value(TracerOf(exporting.tracer.clone()));
        let span = exporting
            .tracer
            .span_builder(name())
            .with_kind(kind)
            .with_attributes(attributes())
            .start_with_context(&exporting.tracer, &parent);
        Step(Some(parent.with_span(span)))
    }

    /// Sends the spans ended so far (for a test, or before the process ends).
    pub fn flush(&self) {
        if let Some(exporting) = &self.0 {
            let provider = exporting.provider.clone();
            let _ = std::thread::spawn(move || provider.force_flush()).join();
        }
    }
}

/// A span, ended when dropped (or by [`Step::end`]); nothing when traces are off.
#[must_use = "a step's span ends when it is dropped"]
pub struct Step(Option<Context>);

/// A child span of the current context's span, if the current work is traced.
pub fn step(name: &'static str) -> Step {
    step_with(name, SpanKind::Internal, Vec::new)
}

/// [`step`] of `kind` with `attributes` (made only when the span is).
pub fn step_with(
    name: &'static str,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Step {
    Context::map_current(|cx| child_of(cx, name, kind, attributes))
}

/// A span under `parent`'s (from [`current`] or [`Step::context`]), if it is traced.
pub fn child_of(
    parent: &Context,
    name: &'static str,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Step {
    let Some(tracer) = parent.get::<TracerOf>() else {
        return Step(None);
    };
    let span = tracer
        .0
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes())
        .start_with_context(&tracer.0, parent);
    Step(Some(parent.with_span(span)))
}

/// Sets an attribute of the current span, if traced.
pub fn note(key: &'static str, value: impl Into<Value>) {
    Context::map_current(|cx| {
        if cx.get::<TracerOf>().is_some() {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    });
}

/// The current context when it is traced: to carry a message's trace with work handed to
/// another task (an outbox delivery) and resume it there with [`resume`].
pub fn current() -> Option<Context> {
    Context::map_current(|cx| cx.get::<TracerOf>().is_some().then(|| cx.clone()))
}

/// Runs `work` in `context` (from [`current`]), or as it is when there is none.
pub fn resume<F: Future>(
    context: Option<Context>,
    work: F,
) -> Either<impl Future<Output = F::Output>, F> {
    match context {
        Some(cx) => Either::Left(work.with_context(cx)),
        None => Either::Right(work),
    }
}

/// The `traceparent` header (W3C trace context) of the current span, when traced: sent with
/// backend calls and callbacks so that their receivers join the trace.
pub fn traceparent() -> Option<String> {
    Context::map_current(|cx| {
        cx.get::<TracerOf>()?;
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            )
        })
    })
}

impl Step {
    /// A step that is not traced.
    pub fn none() -> Self {
        Step(None)
    }

    /// Whether this span records (traces are exported).
    pub fn is_traced(&self) -> bool {
        self.0.is_some()
    }

    /// Sets an attribute (nothing when not traced).
    pub fn attr(&self, key: &'static str, value: impl Into<Value>) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with `why`.
    pub fn fail(&self, why: impl fmt::Display) {
        if let Some(cx) = &self.0 {
            cx.span().set_status(Status::error(why.to_string()));
        }
    }

    /// The trace id (32 hex digits), when traced.
    pub fn trace_id(&self) -> Option<String> {
        self.0
            .as_ref()
            .map(|cx| cx.span().span_context().trace_id().to_string())
    }

    /// The span's context, to carry to work done elsewhere.
    pub fn context(&self) -> Option<Context> {
        self.0.clone()
    }

    /// Runs `work` with this span as the current one.
    pub fn wrap<F: Future>(&self, work: F) -> Either<impl Future<Output = F::Output>, F> {
        resume(self.0.clone(), work)
    }

    /// Runs `work` with this span as the current one, and ends the span when it is done.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        let out = resume(self.0.clone(), work).await;
        drop(self);
        out
    }

    /// Runs `work` (synchronous) with this span as the current one.
    pub fn in_scope<T>(&self, work: impl FnOnce() -> T) -> T {
        match &self.0 {
            Some(cx) => {
                let _attached = cx.clone().attach();
                work()
            }
            None => work(),
        }
    }

    /// Ends the span now.
    pub fn end(self) {}
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(cx) = &self.0 {
            cx.span().end();
        }
    }
}

/// The trace id of the current context's span, when traced.
pub fn current_trace_id() -> Option<String> {
    Context::map_current(|cx| {
        cx.get::<TracerOf>()?;
        let id = cx.span().span_context().trace_id();
        (id != TraceId::INVALID).then(|| id.to_string())
    })
}

/// A `traceparent` header value read as the W3C trace context defines version 00 (later
/// versions by their first four fields); None for anything else.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) {
        return None;
    }
    if !hex(flags, 2) || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    ))
}

/// The OTLP exporter's HTTP client: reqwest, its requests run on the application's runtime
/// (the batch processor exports from a thread of its own, outside any runtime).
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

type Sent = Result<opentelemetry_http::Response<bytes::Bytes>, opentelemetry_http::HttpError>;

impl opentelemetry_http::HttpClient for OnRuntime {
    fn send_bytes<'s, 'f>(
        &'s self,
        request: opentelemetry_http::Request<bytes::Bytes>,
    ) -> Pin<Box<dyn Future<Output = Sent> + Send + 'f>>
    where
        's: 'f,
        Self: 'f,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let status = response.status();
            let body = response.bytes().await?;
            let mut out = opentelemetry_http::Response::new(body);
            *out.status_mut() = status;
            Ok::<_, opentelemetry_http::HttpError>(out)
        });
        Box::pin(async move { sent.await? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_only_when_well_formed() {
        let sc = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(sc.is_remote());
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_an_exporter_no_step_makes_a_span() {
        let traces = Traces::new(&TraceSettings::default()).expect("off needs no runtime");
        assert!(!traces.is_on());
        let root = traces.message("search", None, Vec::new);
        assert!(root.trace_id().is_none());
        root.in_scope(|| {
            assert!(step("verify").trace_id().is_none());
            assert!(traceparent().is_none());
            assert!(current().is_none());
        });
    }
}
