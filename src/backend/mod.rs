//! Outgoing HTTP calls to backends (the lab's ERP): auth, timeouts, and a transport seam so
//! `test` and `render` can answer calls from fixtures instead of the network.

pub mod auth;
pub mod retry_after;

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

pub use auth::BackendAuth;

use crate::clock::{SharedClock, SystemClock};

/// A backend as compiled from the flow file.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    /// Without a trailing slash.
    pub base_url: String,
    /// How calls prove who is calling (a key header, a bearer token).
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
    pub body: Option<Value>,
}

/// A successful (2xx, JSON) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendResponse {
    pub status: u16,
    pub body: Value,
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
}

impl BackendFailure {
    /// Worth another attempt on an idempotent call.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendFailure::Timeout(_) | BackendFailure::Unreachable(_) => true,
            BackendFailure::Status { status, .. } => *status >= 500 || *status == 429,
            BackendFailure::InvalidResponse { .. } => false,
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
        }
    }

    /// A short name of the failure, for metrics: `timeout`, `unreachable`, `http_404`...
    pub fn kind(&self) -> String {
        match self {
            BackendFailure::Timeout(_) => "timeout".into(),
            BackendFailure::Unreachable(_) => "unreachable".into(),
            BackendFailure::Status { status, .. } => format!("http_{status}"),
            BackendFailure::InvalidResponse { .. } => "invalid_response".into(),
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

    async fn call(
        &self,
        backend: &Backend,
        request: BackendRequest,
    ) -> Result<BackendResponse, BackendFailure> {
        let url = format!("{}{}", backend.base_url, request.path);
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| BackendFailure::Unreachable(format!("bad method {}", request.method)))?;
        let mut rb = self
            .client
            .request(method, &url)
            .timeout(backend.timeout)
            .header("accept", "application/json");
        if !request.query.is_empty() {
            rb = rb.query(&request.query);
        }
        for (k, v) in backend.headers.iter().chain(request.headers.iter()) {
            rb = rb.header(k, v);
        }
        if let Some(auth) = &backend.auth {
            let (name, value) = auth.header();
            rb = rb.header(name, value.expose());
        }
        if let Some(body) = &request.body {
            rb = rb.json(body);
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
        let bytes = read_limited(response, backend.timeout).await?;
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if (200..300).contains(&status) {
            match parsed {
                Ok(body) => Ok(BackendResponse { status, body }),
                Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(BackendResponse {
                    status,
                    body: Value::Null,
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
        _step: &'a str,
        request: BackendRequest,
    ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>> {
        Box::pin(self.call(backend, request))
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
