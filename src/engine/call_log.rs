//! The backend calls of a live action, noted compactly (step, backend, method, path, status or
//! failure kind, when it started and how long it took after the action began) so that a
//! transaction's timeline can show them. The note is kept in the commit that queues the
//! action's answer: no write per call, nothing at all for an action that calls nothing.

use std::sync::Mutex;
use std::time::Instant;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::backend::{Backend, BackendFailure, BackendRequest, BackendResponse, Transport};

/// One call as noted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallNote {
    pub step: String,
    pub backend: String,
    pub method: String,
    /// The path under the backend's base URL (no query: it may carry what the log masks).
    pub path: String,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// The failure kind (`timeout`, `unreachable`, `http_503`...), if it failed.
    pub failure: Option<String>,
    /// Milliseconds from the action's start to the call's.
    pub at_ms: u64,
    pub took_ms: u64,
}

/// Passes calls to `inner`, noting each.
pub struct CallLog<'t> {
    inner: &'t dyn Transport,
    started: Instant,
    calls: Mutex<Vec<CallNote>>,
}

impl<'t> CallLog<'t> {
    pub fn new(inner: &'t dyn Transport) -> Self {
        CallLog {
            inner,
            started: Instant::now(),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The calls as a JSON array, or None when none was made.
    pub fn into_json(self) -> Option<String> {
        let calls = self.calls.into_inner().unwrap_or_default();
        if calls.is_empty() {
            return None;
        }
        serde_json::to_string(&calls).ok()
    }
}

impl Transport for CallLog<'_> {
    fn send<'a>(
        &'a self,
        backend: &'a Backend,
        step: &'a str,
        request: BackendRequest,
    ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>> {
        Box::pin(async move {
            let method = request.method.clone();
            let path = request.path.clone();
            let at = self.started.elapsed();
            let answer = self.inner.send(backend, step, request).await;
            let took = self.started.elapsed().saturating_sub(at);
            let (status, failure) = match &answer {
                Ok(r) => (Some(r.status), None),
                Err(e @ BackendFailure::Status { status, .. }) => (Some(*status), Some(e.kind())),
                Err(e) => (None, Some(e.kind())),
            };
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(CallNote {
                    step: step.to_string(),
                    backend: backend.name.clone(),
                    method,
                    path,
                    status,
                    failure,
                    at_ms: at.as_millis() as u64,
                    took_ms: took.as_millis() as u64,
                });
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Answers `/ok` with 201 and anything else with a 503.
    struct Stub;

    impl Transport for Stub {
        fn send<'a>(
            &'a self,
            _: &'a Backend,
            _: &'a str,
            request: BackendRequest,
        ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>> {
            Box::pin(async move {
                if request.path == "/ok" {
                    Ok(BackendResponse {
                        status: 201,
                        body: serde_json::Value::Null,
                        next_link: None,
                    })
                } else {
                    Err(BackendFailure::Status {
                        status: 503,
                        body: serde_json::Value::Null,
                        retry_after: None,
                    })
                }
            })
        }
    }

    fn request(path: &str) -> BackendRequest {
        BackendRequest {
            method: "POST".into(),
            path: path.into(),
            query: vec![("phone".into(), "98100".into())],
            headers: Vec::new(),
            body: None,
            form: None,
            text: None,
        }
    }

    #[tokio::test]
    async fn each_call_is_noted_with_its_status_or_failure_and_no_call_means_no_note() {
        let backend = Backend {
            name: "erp".into(),
            base_url: "http://127.0.0.1:9".into(),
            auth: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            retry: None,
            error_code: None,
            idempotency_header: None,
        };
        assert_eq!(CallLog::new(&Stub).into_json(), None);
        let log = CallLog::new(&Stub);
        let _ = log.send(&backend, "order", request("/ok")).await;
        let _ = log.send(&backend, "slots", request("/down")).await;
        let text = log.into_json().expect("two calls");
        assert!(!text.contains("98100"), "no query is kept: {text}");
        let notes: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(notes[0]["step"], "order");
        assert_eq!(notes[0]["backend"], "erp");
        assert_eq!(notes[0]["path"], "/ok");
        assert_eq!(notes[0]["status"], 201);
        assert_eq!(notes[1]["status"], 503);
        assert_eq!(notes[1]["failure"], "http_503");
    }
}
