//! Order states polled from the backend (`events.poll_orders`), for backends that neither call
//! a webhook nor keep a feed of changes and only answer "what is the state of order X". One
//! task per flow asks, every `every`, the state of each open order (`store::ErpOrderStore`:
//! confirmed, not settled in a final state, not cancelled through Beckn), `concurrency` calls
//! at a time, and compares it with the last state it saw:
//!
//! - the first state seen of an order is its baseline, saved without an event (the buyer app
//!   learnt the state at confirm);
//! - a different state is an event, handed to [`accept_event`] like a webhook's, with an id
//!   made of the order, the count of changes saved before and the new state; the state is
//!   saved only once the event is recorded, so a crash between the two sees the change again,
//!   and the inbox knows the event by its id: acted on once;
//! - a state among `final` stops the polling of that order.
//!
//! A failed call (backend down, 5xx, timeout, no state in the answer) is logged with the flow
//! and order and asked again after a pause that doubles per failure of that order; the state
//! stays as it was, so no change is lost. Processes sharing a store poll a flow one at a time,
//! under the lease `poll:` uses (its key `<flow>#orders`); should two ever overlap, each
//! change is still saved once (the save is conditional on the count of changes) and acted on
//! once (its event id). The flow's current settings are read at every round; a reload wakes
//! the poller.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::poller::backoff;
use super::{EventError, EventOutcome, EventSource, IncomingEvent, KnownEvent, accept_event};
use crate::backend::{BackendFailure, BackendRequest};
use crate::compile::{CompiledFlow, CompiledPollOrders, CompiledSet};
use crate::engine::EngineError;
use crate::roles::Services;
use crate::store::{OpenOrder, StoreError};
use crate::telemetry;

/// The poll lease's holder on a store only one process uses.
const SOLE_PROCESS: &str = "sole-process";
/// The most open orders one round asks about (the oldest first), a bound on a round's memory
/// and length; past it the newer orders wait until older ones settle, and the log says so.
const MAX_ORDERS_PER_ROUND: usize = 10_000;

/// Why one order's state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OrderPollError {
    #[error("the status request could not be built: {0}")]
    Request(#[from] EngineError),
    #[error("no backend named {0}")]
    NoBackend(String),
    #[error("the backend {backend} {failure}")]
    Backend {
        backend: String,
        failure: BackendFailure,
    },
    #[error("the backend's answer has no state at `{pointer}`: {answer}")]
    NoState { pointer: String, answer: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the change could not be recorded: {0}")]
    Unrecorded(EventError),
}

impl OrderPollError {
    /// For metrics: `failed` (the backend or the store) or `no_state` (an unreadable answer).
    fn outcome(&self) -> &'static str {
        match self {
            OrderPollError::NoState { .. } => "no_state",
            _ => "failed",
        }
    }
}

/// What asking one order gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The first state seen, saved as the baseline.
    Baseline,
    /// The same state as before.
    Unchanged,
    /// A new state, recorded as an event and saved.
    Changed,
}

impl Seen {
    fn as_str(self) -> &'static str {
        match self {
            Seen::Baseline => "baseline",
            Seen::Unchanged => "unchanged",
            Seen::Changed => "changed",
        }
    }
}

/// Runs an order poller for every flow with `events.poll_orders` until `shutdown`, following
/// reloads.
pub async fn run(
    flows: Arc<ArcSwap<CompiledSet>>,
    services: Arc<Services>,
    shutdown: impl Future<Output = ()> + Send,
) {
    super::supervise::per_flow(
        flows,
        services,
        shutdown,
        |flow| flow.events().is_some_and(|e| e.poll_orders.is_some()),
        "asking the backend the state of open orders",
        poll_flow,
    )
    .await
}

/// An order's failures in a row and when it is asked again (Unix ms).
#[derive(Debug, Clone, Copy)]
struct Failing {
    failures: u32,
    retry_at: i64,
}

/// Asks one flow's open orders, round after round, while the flow has `poll_orders`.
async fn poll_flow(
    name: String,
    flows: Arc<ArcSwap<CompiledSet>>,
    services: Arc<Services>,
    mut reloads: watch::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing: HashMap<String, Failing> = HashMap::new();
    let mut next_round = services.clock.now_ms();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            // A reload may change what is asked and how often: a round now.
            _ = reloads.changed() => {}
            _ = services.clock.sleep_until_ms(next_round) => {}
        }
        if *stop.borrow() {
            return;
        }
        let set = flows.load_full();
        let Some(flow) = set.flow(&name).cloned() else {
            return;
        };
        let Some(every) = flow
            .events()
            .and_then(|e| e.poll_orders.as_ref())
            .map(|p| p.every)
        else {
            tracing::info!(flow = %name, "no longer asking the backend the state of open orders");
            return;
        };
        next_round = services.clock.now_ms() + every.as_millis() as i64;
        if let Err(e) = round(&set, &flow, &services, &mut failing).await {
            tracing::warn!(flow = %name, error = %e, "the open orders could not be asked this round");
        }
    }
}

/// One round: the lease, the open orders due, each asked (at most `concurrency` at once).
async fn round(
    set: &Arc<CompiledSet>,
    flow: &Arc<CompiledFlow>,
    services: &Arc<Services>,
    failing: &mut HashMap<String, Failing>,
) -> Result<(), OrderPollError> {
    let Some(poll) = flow.events().and_then(|e| e.poll_orders.as_ref()) else {
        return Ok(());
    };
    let backend = flow
        .backends
        .get(&poll.backend)
        .ok_or_else(|| OrderPollError::NoBackend(poll.backend.clone()))?;
    let store = &services.outbox.store;
    let owner = if store.shared() {
        services.outbox.owner.as_str()
    } else {
        SOLE_PROCESS
    };
    let lease_ms = (poll.every * 2 + backend.timeout)
        .max(services.outbox.settings.work_lease)
        .as_millis() as i64;
    let lease_key = format!("{}#orders", flow.name);
    if store
        .claim_poll(&lease_key, owner, services.clock.now_ms(), lease_ms)
        .await?
        .is_none()
    {
        return Ok(());
    }
    let orders = store.open_orders(&flow.name, MAX_ORDERS_PER_ROUND).await?;
    if orders.len() == MAX_ORDERS_PER_ROUND {
        tracing::warn!(flow = %flow.name, asked = MAX_ORDERS_PER_ROUND, "more open orders than one round asks about; the newest wait until older ones settle (add `final:` states?)");
    }
    // An order no longer open (settled, cancelled) forgets its failures.
    let open: HashSet<&str> = orders.iter().map(|o| o.transaction_id.as_str()).collect();
    failing.retain(|txn, _| open.contains(txn.as_str()));
    let now = services.clock.now_ms();
    let due: Vec<OpenOrder> = orders
        .into_iter()
        .filter(|o| {
            failing
                .get(&o.transaction_id)
                .is_none_or(|f| f.retry_at <= now)
        })
        .collect();
    let asked: Vec<(OpenOrder, Result<Seen, OrderPollError>)> = futures::stream::iter(due)
        .map(|order| async move {
            let seen = ask(set, flow, poll, services, &order).await;
            (order, seen)
        })
        .buffer_unordered(poll.concurrency)
        .collect()
        .await;
    for (order, seen) in asked {
        let outcome = match &seen {
            Ok(s) => s.as_str(),
            Err(e) => e.outcome(),
        };
        telemetry::order_status_called(&flow.name, outcome);
        match seen {
            Ok(_) => {
                if let Some(f) = failing.remove(&order.transaction_id) {
                    tracing::info!(flow = %flow.name, transaction_id = %order.transaction_id, erp_order_id = %order.erp_order_id, failures = f.failures, "the order's state can be read again");
                }
            }
            Err(e) => {
                let failures = failing
                    .get(&order.transaction_id)
                    .map_or(1, |f| f.failures.saturating_add(1));
                let pause = backoff(poll.every, failures);
                failing.insert(
                    order.transaction_id.clone(),
                    Failing {
                        failures,
                        retry_at: services.clock.now_ms() + pause.as_millis() as i64,
                    },
                );
                tracing::warn!(flow = %flow.name, transaction_id = %order.transaction_id, erp_order_id = %order.erp_order_id, error = %e, failures, retry_in = ?pause, "the order's state could not be read");
            }
        }
    }
    Ok(())
}

/// Asks the backend the state of `order`; a change becomes an event, then the new state.
async fn ask(
    set: &Arc<CompiledSet>,
    flow: &Arc<CompiledFlow>,
    poll: &CompiledPollOrders,
    services: &Arc<Services>,
    order: &OpenOrder,
) -> Result<Seen, OrderPollError> {
    let backend = flow
        .backends
        .get(&poll.backend)
        .ok_or_else(|| OrderPollError::NoBackend(poll.backend.clone()))?;
    let store = &services.outbox.store;
    let memory = store.recall(&flow.name, &order.transaction_id).await?;
    let request = status_request(flow, poll, order, memory)?;
    let started = Instant::now();
    let sent = services
        .transport
        .send(backend, "poll_orders", request)
        .await;
    let outcome = match &sent {
        Ok(_) => "ok".to_string(),
        Err(f) => f.kind(),
    };
    telemetry::backend_called(&flow.name, &backend.name, &outcome, started.elapsed());
    let answer = sent
        .map_err(|failure| OrderPollError::Backend {
            backend: backend.name.clone(),
            failure,
        })?
        .body;
    let state = match answer.pointer(&poll.state) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(OrderPollError::NoState {
                pointer: poll.state.clone(),
                answer: preview(&answer),
            });
        }
    };
    let settled = poll.final_states.contains(&state);
    let Some(seen) = &order.seen else {
        store
            .save_order_state(&flow.name, order, &state, settled)
            .await?;
        tracing::info!(flow = %flow.name, transaction_id = %order.transaction_id, erp_order_id = %order.erp_order_id, %state, settled, "first state seen of the order, kept as its baseline");
        return Ok(Seen::Baseline);
    };
    if seen.state == state {
        return Ok(Seen::Unchanged);
    }
    let incoming = IncomingEvent {
        body: Bytes::from(answer.to_string()),
        event: answer,
        headers: "{}".to_string(),
        source: EventSource::OrderPoll,
        known: Some(KnownEvent {
            transaction_id: order.transaction_id.clone(),
            event_id: change_id(order, seen.changes, &state),
        }),
    };
    match accept_event(set.clone(), flow.clone(), services, incoming).await {
        // Recorded: the callback is mapped and queued by its own task, resumed after a crash.
        Ok(EventOutcome::Accepted { .. } | EventOutcome::Duplicate | EventOutcome::Ignored) => {}
        Err(e) => return Err(OrderPollError::Unrecorded(e)),
    }
    if store
        .save_order_state(&flow.name, order, &state, settled)
        .await?
    {
        telemetry::order_state_changed(&flow.name);
        tracing::info!(flow = %flow.name, transaction_id = %order.transaction_id, erp_order_id = %order.erp_order_id, from = %seen.state, to = %state, settled, "the order's state changed");
    }
    Ok(Seen::Changed)
}

/// The event id of `order`'s change to `state` after `changes` saved changes: the same change
/// seen again (after a crash, by another process) has the same id, and a state the order
/// returns to later is a change of its own.
pub fn change_id(order: &OpenOrder, changes: i64, state: &str) -> String {
    let key = json!([order.transaction_id, order.erp_order_id, changes, state]).to_string();
    format!(
        "order-state-{}",
        hex::encode(&Blake2b512::digest(key.as_bytes())[..16])
    )
}

/// The status call for `order`: templates see `transaction` (its memory, with
/// `erp_order_id`), `order_id` and `flow`.
fn status_request(
    flow: &CompiledFlow,
    poll: &CompiledPollOrders,
    order: &OpenOrder,
    mut memory: serde_json::Map<String, Value>,
) -> Result<BackendRequest, EngineError> {
    memory.insert(
        "erp_order_id".into(),
        Value::String(order.erp_order_id.clone()),
    );
    let scope = crate::mapping::jvalue(json!({
        "transaction": memory,
        "order_id": order.erp_order_id,
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

    fn order(txn: &str, erp: &str) -> OpenOrder {
        OpenOrder {
            transaction_id: txn.into(),
            erp_order_id: erp.into(),
            seen: None,
        }
    }

    #[test]
    fn a_change_is_known_by_its_order_its_place_and_its_state() {
        let a = order("t-1", "ORD-1");
        assert_eq!(change_id(&a, 0, "TESTING"), change_id(&a, 0, "TESTING"));
        assert_ne!(change_id(&a, 0, "TESTING"), change_id(&a, 0, "READY"));
        assert_ne!(
            change_id(&a, 0, "TESTING"),
            change_id(&a, 2, "TESTING"),
            "a state returned to later is a change of its own"
        );
        assert_ne!(
            change_id(&a, 0, "TESTING"),
            change_id(&order("t-2", "ORD-1"), 0, "TESTING")
        );
        // no separator trick makes two orders' changes collide
        assert_ne!(
            change_id(&order("t", "1:2"), 0, "X"),
            change_id(&order("t:1", "2"), 0, "X")
        );
    }
}
