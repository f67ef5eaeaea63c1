//! The backend calls of a live action, noted compactly (step, backend, method, path, status or
//! failure kind, when it started and how long it took after the action began) so that a
//! transaction's timeline can show them. The note is kept in the commit that queues the
//! action's answer: no write per call, nothing at all for an action that calls nothing (and
//! is not traced). Scripts and the reply's template are noted too, with their durations, and
//! the trace id of a traced message, so that the console can link to the trace.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;

use crate::backend::{Backend, BackendFailure, BackendRequest, BackendResponse, Transport};
use crate::telemetry::traces;

/// One call as noted (or a script or template: `kind`, its name in `path`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallNote {
    /// `call` (left out), `script` or `template`.
    #[serde(skip_serializing_if = "is_call")]
    pub kind: &'static str,
    pub step: String,
    pub backend: String,
    pub method: String,
    /// The path under the backend's base URL (no query: it may carry what the log masks);
    /// for a message posted to another participant, its registered URL.
    pub path: String,
    /// The HTTP status answered, if any.
    pub status: Option<u16>,
    /// The failure kind (`timeout`, `unreachable`, `http_503`...), if it failed.
    pub failure: Option<String>,
    /// Milliseconds from the action's start to the call's.
    pub at_ms: u64,
    pub took_ms: u64,
}

fn is_call(kind: &&'static str) -> bool {
    *kind == "call"
}

impl CallNote {
    /// A Beckn message POSTed to another participant (`to`, at `url`) as `step` (a buyer
    /// app's `send`, a gateway's `relay`), `at` into the work it is part of; its status,
    /// failure and duration are the caller's to fill in.
    pub fn post_to(step: &str, to: String, url: String, at: std::time::Duration) -> CallNote {
        CallNote {
            kind: "call",
            step: step.into(),
            backend: to,
            method: "POST".into(),
            path: url,
            status: None,
            failure: None,
            at_ms: at.as_millis() as u64,
            took_ms: 0,
        }
    }
}

/// Passes calls to `inner`, noting each.
pub struct CallLog<'t> {
    inner: &'t dyn Transport,
    started: Instant,
    calls: Mutex<Vec<CallNote>>,
    /// The trace of the message whose action this is, when traced.
    trace_id: Option<String>,
}

impl<'t> CallLog<'t> {
    /// A log of the current message's action (its trace id taken from the current context).
    pub fn new(inner: &'t dyn Transport) -> Self {
        CallLog {
            inner,
            started: Instant::now(),
            calls: Mutex::new(Vec::new()),
            trace_id: traces::current_trace_id(),
        }
    }

    /// The notes as a JSON array; with a trace id, an object of `trace_id` and `calls`; None
    /// when no backend was called and the message is not traced.
    pub fn into_json(self) -> Option<String> {
        let calls = self.calls.into_inner().unwrap_or_default();
        match self.trace_id {
            Some(trace_id) => {
                serde_json::to_string(&serde_json::json!({"trace_id": trace_id, "calls": calls}))
                    .ok()
            }
            // Scripts and the template alone are not worth a write on every message.
            None if calls.iter().all(|n| n.kind != "call") => None,
            None => serde_json::to_string(&calls).ok(),
        }
    }

    fn note(&self, note: CallNote) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(note);
        }
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
            self.note(CallNote {
                kind: "call",
                step: step.to_string(),
                backend: backend.name.clone(),
                method,
                path,
                status,
                failure,
                at_ms: at.as_millis() as u64,
                took_ms: took.as_millis() as u64,
            });
            answer
        })
    }

    fn step_done(
        &self,
        kind: &'static str,
        name: &str,
        started: Instant,
        took: Duration,
        failed: bool,
    ) {
        self.note(CallNote {
            kind,
            step: kind.to_string(),
            backend: String::new(),
            method: String::new(),
            path: name.to_string(),
            status: None,
            failure: failed.then(|| "failed".to_string()),
            at_ms: started.saturating_duration_since(self.started).as_millis() as u64,
            took_ms: took.as_millis() as u64,
        });
    }
}

#[cfg(test)]
mod tests {
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
        assert!(notes[0].get("kind").is_none(), "a call has no kind");
    }

    #[test]
    fn an_untraced_action_that_calls_no_backend_writes_no_notes() {
        let log = CallLog::new(&Stub);
        log.step_done(
            "template",
            "soil/on_search.j2",
            Instant::now(),
            Duration::ZERO,
            false,
        );
        assert_eq!(
            log.into_json(),
            None,
            "the reply template alone is not worth a write"
        );
    }

    #[tokio::test]
    async fn scripts_and_templates_are_noted_by_kind_with_their_times() {
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
        let log = CallLog::new(&Stub);
        let started = Instant::now();
        let _ = log.send(&backend, "order", request("/ok")).await;
        log.step_done(
            "script",
            "soil/search_filters.rhai",
            started,
            Duration::from_millis(3),
            false,
        );
        log.step_done(
            "template",
            "soil/on_search.j2",
            started,
            Duration::from_millis(1),
            true,
        );
        let notes: serde_json::Value =
            serde_json::from_str(&log.into_json().expect("a call and two steps")).unwrap();
        assert!(notes[0].get("kind").is_none(), "a call has no kind");
        assert_eq!(notes[1]["kind"], "script");
        assert_eq!(notes[1]["path"], "soil/search_filters.rhai");
        assert_eq!(notes[1]["took_ms"], 3);
        assert_eq!(notes[1]["failure"], serde_json::Value::Null);
        assert_eq!(notes[2]["kind"], "template");
        assert_eq!(notes[2]["failure"], "failed");
    }
}
