//! Order events found by polling the backend (`events.poll`): one task per flow asks the
//! backend for the events after the cursor it last saw, hands each to
//! [`accept_event`] (the path webhook events take once authenticated), and saves the
//! next cursor in the store only after the page's events are recorded. A crash re-reads the
//! page; the inbox drops the events it recorded already.
//!
//! Several processes sharing a store poll a flow one at a time: each poll first takes (or
//! renews) the flow's lease in the store; the others stand by and take over when it ends.
//!
//! Pollers follow reloads: the flow's current `events.poll` is read before every poll, a
//! reload wakes the poller at once, and a flow that gains or loses `poll:` starts or stops
//! polling. Nothing is bound, so no restart is needed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{EventError, EventOutcome, EventSource, IncomingEvent, accept_event};
use crate::backend::{BackendFailure, BackendRequest};
use crate::compile::{CompiledFlow, CompiledPoll, CompiledSet};
use crate::engine::EngineError;
use crate::roles::Services;
use crate::store::StoreError;
use crate::telemetry;

/// The longest pause between polls after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The poll lease's holder on a store only one process uses.
const SOLE_PROCESS: &str = "sole-process";

/// Why a poll did not get through its page.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("the poll request could not be built: {0}")]
    Request(#[from] EngineError),
    #[error("no backend named {0}")]
    NoBackend(String),
    #[error("the backend {backend} {failure}")]
    Backend {
        backend: String,
        failure: BackendFailure,
    },
    #[error("the backend's answer has no list of events at `{pointer}`: {answer}")]
    NoEvents { pointer: String, answer: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("an event could not be recorded: {0}")]
    Unrecorded(EventError),
}

/// How a poll ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A page of events and a new cursor: there may be more right away.
    More,
    /// Nothing more for now.
    CaughtUp,
    /// Another process holds the flow's lease.
    Standby,
}

/// Runs a poller for every flow with `events.poll` until `shutdown`, following reloads.
pub async fn run(
    flows: Arc<ArcSwap<CompiledSet>>,
    services: Arc<Services>,
    shutdown: impl Future<Output = ()> + Send,
) {
    super::supervise::per_flow(
        flows,
        services,
        shutdown,
        |flow| flow.events().is_some_and(|e| e.poll.is_some()),
        "polling the backend for order events",
        poll_flow,
    )
    .await
}

/// Polls one flow's backend while the flow has `events.poll`.
async fn poll_flow(
    name: String,
    flows: Arc<ArcSwap<CompiledSet>>,
    services: Arc<Services>,
    mut reloads: watch::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    let mut pause = Duration::ZERO;
    loop {
        if !pause.is_zero() {
            tokio::select! {
                _ = stop.changed() => return,
                // A reload may change what is polled and how often: poll now.
                _ = reloads.changed() => {}
                _ = services.clock.sleep_until_ms(services.clock.now_ms() + pause.as_millis() as i64) => {}
            }
        }
        if *stop.borrow() {
            return;
        }
        let set = flows.load_full();
        let Some(flow) = set.flow(&name).cloned() else {
            return;
        };
        let Some(every) = flow.events().and_then(|e| e.poll.as_ref()).map(|p| p.every) else {
            tracing::info!(flow = %name, "no longer polling the backend for order events");
            return;
        };
        match poll_once(&set, &flow, &services).await {
            Ok(pass) => {
                telemetry::events_polled(
                    &name,
                    if pass == Pass::Standby {
                        "standby"
                    } else {
                        "ok"
                    },
                );
                if failures > 0 && pass != Pass::Standby {
                    tracing::info!(flow = %name, failures, "polling the backend for order events works again");
                    failures = 0;
                }
                pause = if pass == Pass::More {
                    Duration::ZERO
                } else {
                    every
                };
            }
            Err(e) => {
                telemetry::events_polled(&name, "failed");
                failures = failures.saturating_add(1);
                pause = backoff(every, failures);
                tracing::warn!(flow = %name, error = %e, failures, retry_in = ?pause, "polling the backend for order events failed");
            }
        }
    }
}

/// The pause after `failures` failed polls in a row: `every` doubled per failure, up to 32
/// times `every` or [`MAX_BACKOFF`], whichever is shorter (never less than `every`).
pub(super) fn backoff(every: Duration, failures: u32) -> Duration {
    let cap = every.saturating_mul(32).min(MAX_BACKOFF).max(every);
    every
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(cap)
}

/// One poll: the lease, one page of events, each accepted, then the next cursor saved.
async fn poll_once(
    set: &Arc<CompiledSet>,
    flow: &Arc<CompiledFlow>,
    services: &Arc<Services>,
) -> Result<Pass, PollError> {
    let Some(poll) = flow.events().and_then(|e| e.poll.as_ref()) else {
        return Ok(Pass::CaughtUp);
    };
    let backend = flow
        .backends
        .get(&poll.backend)
        .ok_or_else(|| PollError::NoBackend(poll.backend.clone()))?;
    let store = &services.outbox.store;
    // A store of one process: whoever polled before was this process, before a restart, whose
    // lease need not be waited out.
    let owner = if store.shared() {
        services.outbox.owner.as_str()
    } else {
        SOLE_PROCESS
    };
    // Long enough to outlive a poll, so that no other process starts one meanwhile.
    let lease_ms = (poll.every * 2 + backend.timeout)
        .max(services.outbox.settings.work_lease)
        .as_millis() as i64;
    let Some(position) = store
        .claim_poll(&flow.name, owner, services.clock.now_ms(), lease_ms)
        .await?
    else {
        return Ok(Pass::Standby);
    };
    let cursor = position
        .cursor
        .as_deref()
        .map(|c| serde_json::from_str(c).unwrap_or_else(|_| Value::String(c.to_string())))
        .unwrap_or(Value::Null);
    let request = poll_request(flow, poll, &cursor)?;
    let started = Instant::now();
    let sent = services.transport.send(backend, "poll", request).await;
    let outcome = match &sent {
        Ok(_) => "ok".to_string(),
        Err(f) => f.kind(),
    };
    telemetry::backend_called(&flow.name, &backend.name, &outcome, started.elapsed());
    let answer = sent
        .map_err(|failure| PollError::Backend {
            backend: backend.name.clone(),
            failure,
        })?
        .body;
    let items = answer
        .pointer(&poll.items)
        .and_then(Value::as_array)
        .ok_or_else(|| PollError::NoEvents {
            pointer: poll.items.clone(),
            answer: preview(&answer),
        })?;
    for item in items {
        let incoming = IncomingEvent {
            event: item.clone(),
            body: Bytes::from(item.to_string()),
            headers: "{}".to_string(),
            source: EventSource::Poll,
            known: None,
        };
        match accept_event(set.clone(), flow.clone(), services, incoming).await {
            // In order: each event's callback is queued before the next event is taken.
            Ok(EventOutcome::Accepted { task }) => {
                let _ = task.await;
            }
            Ok(EventOutcome::Duplicate | EventOutcome::Ignored) => {}
            // Not recorded: the cursor stays, and the page is read again.
            Err(e @ EventError::Unavailable(_)) => return Err(PollError::Unrecorded(e)),
            // An event that can never be taken is skipped, not retried for ever.
            Err(e) => {
                tracing::warn!(flow = %flow.name, error = %e, event = %preview(item), "polled event refused; skipped");
            }
        }
    }
    let next = poll
        .cursor
        .as_deref()
        .and_then(|p| answer.pointer(p))
        .filter(|n| !n.is_null() && **n != cursor);
    let Some(next) = next else {
        return Ok(Pass::CaughtUp);
    };
    if !store
        .advance_poll(
            &flow.name,
            owner,
            &next.to_string(),
            services.clock.now_ms(),
            lease_ms,
        )
        .await?
    {
        tracing::warn!(flow = %flow.name, "another process took over polling this flow; its cursor was kept");
        return Ok(Pass::Standby);
    }
    Ok(if items.is_empty() {
        Pass::CaughtUp
    } else {
        Pass::More
    })
}

/// The poll's backend request for `cursor` (null before the first page).
fn poll_request(
    flow: &CompiledFlow,
    poll: &CompiledPoll,
    cursor: &Value,
) -> Result<BackendRequest, EngineError> {
    let scope = crate::mapping::jvalue(json!({
        "cursor": cursor,
        "flow": crate::engine::flow_value(flow),
    }));
    let t = &flow.templates;
    Ok(BackendRequest {
        method: "GET".into(),
        path: poll
            .path
            .render_text(t, &scope)
            .map_err(EngineError::Template)?,
        query: crate::engine::render_pairs(&poll.query, t, &scope)?,
        headers: crate::engine::render_pairs(&poll.headers, t, &scope)?,
        body: None,
        form: None,
        text: None,
    })
}

/// The start of a JSON value, for logs.
fn preview(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(5), 1), s(10));
        assert_eq!(backoff(s(5), 2), s(20));
        assert_eq!(backoff(s(5), 5), s(160));
        assert_eq!(backoff(s(5), 6), s(160), "32 times every");
        assert_eq!(backoff(s(60), 9), MAX_BACKOFF, "at most five minutes");
        assert_eq!(backoff(s(600), 3), s(600), "never less than every");
        assert_eq!(backoff(s(5), u32::MAX), s(160));
    }

    #[test]
    fn previews_are_short() {
        let long = Value::String("x".repeat(500));
        assert!(preview(&long).chars().count() <= 201);
        assert_eq!(preview(&json!({"a": 1})), r#"{"a":1}"#);
    }
}
