//! Outgoing HTTP calls to backends (the lab's ERP): auth, timeouts, and a transport seam so
//! `test` and `render` can answer calls from fixtures instead of the network.

pub mod auth;
pub mod retry_after;

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

pub use auth::BackendAuth;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Secret;
use crate::telemetry::traces;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// A backend as compiled from the flow file.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    /// Without a trailing slash.
    pub base_url: String,
    /// How calls prove who is calling (a key, a bearer or OAuth2 token, a signature...).
    pub auth: Option<BackendAuth>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Attempts after the first, and the pause before each, for idempotent actions only.
    pub retry: Option<(u32, Duration)>,
    /// JSON pointer to the backend's error code inside an error body.
    pub error_code: Option<String>,
    /// Header carrying each non-GET call's idempotency key, if the backend takes one.
    pub idempotency_header: Option<String>,
}

/// One call, fully rendered.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackendRequest {
    pub method: String,
    /// Path under the base URL, starting with `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// A JSON body.
    pub body: Option<Value>,
    /// A form body (`application/x-www-form-urlencoded`), when the call has `form:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<Vec<(String, String)>>,
    /// A raw text body (`text_body:`) and its content type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextBody>,
}

/// A raw text body and the `Content-Type` it is sent with.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextBody {
    pub content_type: String,
    pub text: String,
}

/// A successful (2xx, JSON) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendResponse {
    pub status: u16,
    pub body: Value,
    /// The `Link` header's `rel="next"` URL, as given (for `next_link` pagination).
    pub next_link: Option<String>,
}

/// Why a call did not give a usable answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendFailure {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("is unreachable: {0}")]
    Unreachable(String),
    /// Non-2xx; `body` is the JSON body, or the text as a JSON string when it was not JSON.
    /// `retry_after`: the wait a 429 or 503 asked for (`Retry-After`).
    #[error("answered HTTP {status}: {}", preview(body.to_string().as_bytes()))]
    Status {
        status: u16,
        body: Value,
        retry_after: Option<Duration>,
    },
    #[error("answered HTTP {status} with a body that is not JSON: {detail}")]
    InvalidResponse { status: u16, detail: String },
    /// A paged list had more pages than the call's `paginate.max_pages`.
    #[error("has more than {max_pages} pages (paginate.max_pages); the list was not cut short")]
    TooManyPages { max_pages: u32 },
    /// A `for_each` list was longer than its `max_items`.
    #[error(
        "was to be called for {count} elements, more than for_each.max_items {max_items}; none was called"
    )]
    TooManyItems { count: usize, max_items: usize },
    /// The OAuth2 token endpoint gave no token (`status`: its HTTP status, if it answered).
    #[error("got no access token for backend `{backend}` from {token_url}: {}{detail}", status.map(|s| format!("HTTP {s}, ")).unwrap_or_default())]
    TokenRefused {
        backend: String,
        token_url: String,
        status: Option<u16>,
        detail: String,
    },
}

impl BackendFailure {
    /// Worth another attempt on an idempotent call.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendFailure::Timeout(_) | BackendFailure::Unreachable(_) => true,
            BackendFailure::Status { status, .. } => *status >= 500 || *status == 429,
            BackendFailure::InvalidResponse { .. }
            | BackendFailure::TooManyPages { .. }
            | BackendFailure::TooManyItems { .. } => false,
            BackendFailure::TokenRefused { status, .. } => status.is_none_or(|s| s >= 500),
        }
    }

    /// The keys of a call's `errors:` table that match, most specific first: the backend's own
    /// error code (found at `code_pointer` in the body), the status, the status class.
    pub fn rule_keys(&self, code_pointer: Option<&str>) -> Vec<String> {
        match self {
            BackendFailure::Timeout(_) => vec!["timeout".into()],
            BackendFailure::Unreachable(_) => vec!["unreachable".into()],
            BackendFailure::Status { status, body, .. } => {
                let own = code_pointer
                    .and_then(|p| body.pointer(p))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                own.into_iter()
                    .chain([status.to_string(), format!("{}xx", status / 100)])
                    .collect()
            }
            BackendFailure::InvalidResponse { .. } => vec!["invalid_response".into()],
            BackendFailure::TooManyPages { .. } => vec!["max_pages".into()],
            BackendFailure::TooManyItems { .. } => vec!["max_items".into()],
            BackendFailure::TokenRefused { .. } => vec!["auth".into()],
        }
    }

    /// A short name of the failure, for metrics: `timeout`, `unreachable`, `http_404`...
    pub fn kind(&self) -> String {
        match self {
            BackendFailure::Timeout(_) => "timeout".into(),
            BackendFailure::Unreachable(_) => "unreachable".into(),
            BackendFailure::Status { status, .. } => format!("http_{status}"),
            BackendFailure::InvalidResponse { .. } => "invalid_response".into(),
            BackendFailure::TooManyPages { .. } => "max_pages".into(),
            BackendFailure::TooManyItems { .. } => "max_items".into(),
            BackendFailure::TokenRefused { .. } => "auth".into(),
        }
    }

    /// The backend's own error body, for error message templates.
    pub fn body(&self) -> Value {
        match self {
            BackendFailure::Status { body, .. } => body.clone(),
            _ => Value::Null,
        }
    }
}

/// How calls reach a backend.
pub trait Transport: Send + Sync {
    /// `step` names the flow step making the call (fixtures are matched by it).
    fn send<'a>(
        &'a self,
        backend: &'a Backend,
        step: &'a str,
        request: BackendRequest,
    ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>>;

    /// A step of the action that is not a call (`kind`: `script`, `template`) ran from
    /// `started` for `took`; `failed` if it did. Noted by a transport that keeps a timeline.
    fn step_done(
        &self,
        _kind: &'static str,
        _name: &str,
        _started: std::time::Instant,
        _took: Duration,
        _failed: bool,
    ) {
    }
}

/// The real transport: HTTP with reqwest (rustls, connection pooling).
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    /// What an HTTP-date `Retry-After` is read against.
    clock: SharedClock,
}

/// Bodies larger than this are refused rather than buffered.
const MAX_RESPONSE_BYTES: usize = 8 << 20;

impl HttpTransport {
    /// A transport on the system clock.
    pub fn new() -> Self {
        HttpTransport::with_clock(SystemClock::shared())
    }

    /// A transport reading `Retry-After` dates against `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .user_agent(concat!("beckn-adapter/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        HttpTransport { client, clock }
    }

    /// One call; with OAuth2, a 401 retires the token it carried and the call is made once
    /// more with a new one.
    async fn call(
        &self,
        backend: &Backend,
        request: BackendRequest,
    ) -> Result<BackendResponse, BackendFailure> {
        let (answer, token) = self.attempt(backend, &request).await;
        match (&backend.auth, answer, token) {
            (
                Some(BackendAuth::OAuth2(oauth)),
                Err(BackendFailure::Status { status: 401, .. }),
                Some(used),
            ) => {
                tracing::info!(backend = %backend.name, "backend refused its OAuth2 token; fetching a new one");
                oauth.forget(&used).await;
                self.attempt(backend, &request).await.0
            }
            (_, answer, _) => answer,
        }
    }

    /// One attempt, and the OAuth2 token it carried.
    async fn attempt(
        &self,
        backend: &Backend,
        request: &BackendRequest,
    ) -> (Result<BackendResponse, BackendFailure>, Option<Secret>) {
        let mut token = None;
        let answer = self.send_once(backend, request, &mut token).await;
        let answer = match (answer, &backend.auth) {
            (Err(BackendFailure::Unreachable(why)), Some(auth)) => {
                Err(BackendFailure::Unreachable(auth.scrub(&why)))
            }
            (answer, _) => answer,
        };
        (answer, token)
    }

    async fn send_once(
        &self,
        backend: &Backend,
        request: &BackendRequest,
        token: &mut Option<Secret>,
    ) -> Result<BackendResponse, BackendFailure> {
        let mut url = reqwest::Url::parse(&format!("{}{}", backend.base_url, request.path))
            .map_err(|e| BackendFailure::Unreachable(format!("bad URL: {e}")))?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| BackendFailure::Unreachable(format!("bad method {}", request.method)))?;
        let auth_query = backend.auth.as_ref().map(BackendAuth::query);
        let auth_query = auth_query.as_deref().unwrap_or_default();
        if !request.query.is_empty() || !auth_query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &request.query {
                pairs.append_pair(k, v);
            }
            for (k, v) in auth_query {
                pairs.append_pair(k, v.expose());
            }
        }
        let (body, content_type) = match (&request.body, &request.form, &request.text) {
            (Some(json), _, _) => (
                serde_json::to_vec(json).unwrap_or_default(),
                Some("application/json"),
            ),
            (None, Some(form), _) => (
                serde_urlencoded::to_string(form)
                    .unwrap_or_default()
                    .into_bytes(),
                Some("application/x-www-form-urlencoded"),
            ),
            (None, None, Some(text)) => (
                text.text.clone().into_bytes(),
                Some(text.content_type.as_str()),
            ),
            (None, None, None) => (Vec::new(), None),
        };
        let mut rb = self
            .client
            .request(method, url.clone())
            .timeout(backend.timeout)
            .header("accept", "application/json");
        // An ERP that traces joins the message's trace.
        if let Some(traceparent) = traces::traceparent() {
            rb = rb.header("traceparent", traceparent);
        }
        let given = backend.headers.iter().chain(request.headers.iter());
        let mut has_content_type = false;
        for (k, v) in given {
            has_content_type |= k.eq_ignore_ascii_case("content-type");
            rb = rb.header(k, v);
        }
        if let Some(auth) = &backend.auth {
            let parts = auth::RequestParts {
                method: &request.method,
                path: url.path(),
                query: url.query().unwrap_or_default(),
                body: &body,
            };
            let credentials = auth
                .credentials(
                    &self.client,
                    &backend.name,
                    backend.timeout,
                    parts,
                    self.clock.now().as_second(),
                )
                .await?;
            *token = credentials.token;
            for (name, value) in credentials.headers {
                rb = rb.header(name, value.expose());
            }
        }
        if let Some(ct) = content_type {
            if !has_content_type {
                rb = rb.header("content-type", ct);
            }
            rb = rb.body(body);
        }
        let response = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                BackendFailure::Timeout(backend.timeout)
            } else {
                BackendFailure::Unreachable(root_cause(&e))
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = retry_after::asked(status, response.headers(), self.clock.now());
        let next_link = link_next(response.headers());
        let bytes = read_limited(response, backend.timeout).await?;
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if (200..300).contains(&status) {
            match parsed {
                Ok(body) => Ok(BackendResponse {
                    status,
                    body,
                    next_link,
                }),
                Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(BackendResponse {
                    status,
                    body: Value::Null,
                    next_link,
                }),
                Err(e) => Err(BackendFailure::InvalidResponse {
                    status,
                    detail: format!("{e}; body starts with `{}`", preview(&bytes)),
                }),
            }
        } else {
            let body = parsed.unwrap_or_else(|_| Value::String(preview(&bytes)));
            Err(BackendFailure::Status {
                status,
                body,
                retry_after,
            })
        }
    }
}

impl Default for HttpTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport for HttpTransport {
    fn send<'a>(
        &'a self,
        backend: &'a Backend,
        step: &'a str,
        request: BackendRequest,
    ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>> {
        // The span's path is the call's without its query (which may carry what logs mask).
        let span = traces::step_with("backend.call", SpanKind::Client, || {
            vec![
                KeyValue::new("backend", backend.name.clone()),
                KeyValue::new("step", step.to_string()),
                KeyValue::new("http.request.method", request.method.clone()),
                KeyValue::new("url.path", request.path.clone()),
            ]
        });
        Box::pin(async move {
            let answer = span.wrap(self.call(backend, request)).await;
            match &answer {
                Ok(r) => span.attr("http.response.status_code", i64::from(r.status)),
                Err(e) => {
                    if let BackendFailure::Status { status, .. } = e {
                        span.attr("http.response.status_code", i64::from(*status));
                    }
                    span.fail(e.kind());
                }
            }
            answer
        })
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, BackendFailure> {
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(BackendFailure::InvalidResponse {
                        status: response.status().as_u16(),
                        detail: format!("body larger than {MAX_RESPONSE_BYTES} bytes"),
                    });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) if e.is_timeout() => return Err(BackendFailure::Timeout(timeout)),
            Err(e) => return Err(BackendFailure::Unreachable(root_cause(&e))),
        }
    }
}

/// The `rel="next"` target of the `Link` headers (RFC 8288), if any.
fn link_next(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(next_in_link)
}

/// The `rel="next"` URL of one `Link` header value: `<url>; rel="next", <url>; rel="prev"`.
pub fn next_in_link(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |n| close + n);
        let params = rest[close + 1..params_end].trim().trim_end_matches(',');
        let is_next = params.split(';').any(|p| {
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = &rest[params_end..];
    }
    None
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The innermost cause of an error chain: what actually failed (`Connection refused`), not
/// the outer wrapper (`error sending request`).
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod link_tests {
    use super::next_in_link;

    #[test]
    fn the_next_link_among_several() {
        let v = r#"</items?p=0>; rel="first", </items?p=2>; rel="next prefetch", <x>; rel=last"#;
        assert_eq!(next_in_link(v).as_deref(), Some("/items?p=2"));
        assert_eq!(next_in_link(r#"<a>; rel="prev""#), None);
        assert_eq!(next_in_link("<b>; rel=next").as_deref(), Some("b"));
        assert_eq!(next_in_link("garbage"), None);
    }
}
