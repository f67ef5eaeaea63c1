//! Order events from the backend (an ERP), pushed to a webhook ([`webhook`]) or found by
//! polling ([`poller`]). A webhook's event is authenticated (HMAC-SHA256 of the body with a
//! shared secret); then every event, however it came, takes one path, [`accept_event`]: it is
//! recorded like a request, and mapped by the flow's `events:` templates into an unsolicited
//! `on_status` or `on_update` (a fresh message id, the transaction's id) sent through the
//! outbox to the buyer app of that transaction.

pub mod order_poller;
pub mod poller;
mod supervise;
pub mod webhook;

use std::sync::Arc;

use axum::http::StatusCode;
use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use serde_json::{Value, json};

use super::{NotQueued, Services, queue_callback, rules};
use crate::beckn::context::callback_context;
use crate::compile::{CompiledEvents, CompiledFlow, CompiledSet, Placement};
use crate::engine;
use crate::intake::answer::callback_body;
use crate::store::heartbeat::{Held, while_held};
use crate::store::{Admission, Inbound, InboundKey};
use crate::store::{Claim, HeldRequest, Unfinished};
use crate::telemetry;

/// The action name events are recorded under in the inbox.
pub const EVENT: &str = "event";

/// Why an event was refused; a webhook caller gets the status and the reason.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadEvent(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("this flow takes no events")]
    NotConfigured,
    #[error("{0}")]
    Unavailable(String),
}

impl EventError {
    fn status(&self) -> StatusCode {
        match self {
            EventError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            EventError::BadEvent(_) => StatusCode::BAD_REQUEST,
            EventError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            EventError::NotConfigured => StatusCode::NOT_FOUND,
            EventError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// For metrics: `unauthorized`, `refused`, `not_configured` or `unavailable`.
    fn kind(&self) -> &'static str {
        match self {
            EventError::Unauthorized(_) => "unauthorized",
            EventError::BadEvent(_) | EventError::TooLarge(_) => "refused",
            EventError::NotConfigured => "not_configured",
            EventError::Unavailable(_) => "unavailable",
        }
    }
}

/// How an event reached the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    /// Posted by the backend to the flow's `events.webhook`.
    Webhook,
    /// Found by polling the backend (`events.poll`).
    Poll,
    /// A changed state the backend gave when asked about an open order (`events.poll_orders`).
    OrderPoll,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Webhook => "webhook",
            EventSource::Poll => "poll",
            EventSource::OrderPoll => "poll_orders",
        }
    }
}

/// An event whose transaction and identity its source knows already (an order's state
/// change found by the order poller): `when`, `transaction_id`, `erp_order_id` and
/// `event_id` are not asked.
#[derive(Debug, Clone)]
pub struct KnownEvent {
    pub transaction_id: String,
    pub event_id: String,
}

/// One order event from the backend, once its source has vouched for it (a webhook's
/// signature checked; a poll's answer came from the backend itself).
pub struct IncomingEvent {
    pub event: Value,
    /// The event as received, recorded in the inbox (a resumed event is read back from it).
    pub body: Bytes,
    /// Headers of the delivery as JSON, secrets redacted (`{}` when there were none).
    pub headers: String,
    pub source: EventSource,
    /// Where the event belongs, when its source knows; None: found by the flow's expressions.
    pub known: Option<KnownEvent>,
}

/// What became of an event.
#[derive(Debug)]
pub enum EventOutcome {
    /// Recorded; `task` maps it into its callback and queues that. Waiting for it is
    /// optional: the work goes on, and survives a crash, either way.
    Accepted { task: tokio::task::JoinHandle<()> },
    /// The same event was recorded before; nothing more is done.
    Duplicate,
    /// Not for us: `events.when` is false, or the transaction (or the order) was not made
    /// through Beckn.
    Ignored,
}

impl EventOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventOutcome::Accepted { .. } => "accepted",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Ignored => "ignored",
        }
    }
}

/// The one way in for order events, whatever brought them (webhook, poll): places the event
/// in its transaction, records it in the inbox (a repeat, by `events.event_id` or else by
/// its JSON, is recognised and dropped), and starts mapping it into its unsolicited callback,
/// queued in the outbox for the buyer app of that transaction.
pub async fn accept_event(
    set: Arc<CompiledSet>,
    flow: Arc<CompiledFlow>,
    services: &Arc<Services>,
    incoming: IncomingEvent,
) -> Result<EventOutcome, EventError> {
    let source = incoming.source.as_str();
    let outcome = record_event(set, flow.clone(), services, incoming).await;
    let label = match &outcome {
        Ok(o) => o.as_str(),
        Err(e) => e.kind(),
    };
    telemetry::event_received(&flow.name, source, label);
    outcome
}

async fn record_event(
    set: Arc<CompiledSet>,
    flow: Arc<CompiledFlow>,
    services: &Arc<Services>,
    incoming: IncomingEvent,
) -> Result<EventOutcome, EventError> {
    let events = flow.events().ok_or(EventError::NotConfigured)?;
    let IncomingEvent {
        event,
        body,
        headers,
        source,
        known,
    } = incoming;
    let store = &services.outbox.store;
    let (transaction_id, event_id) = match known {
        Some(known) => (known.transaction_id, known.event_id),
        None => match place(&flow, events, &event, services).await? {
            Some(placed) => placed,
            None => return Ok(EventOutcome::Ignored),
        },
    };
    let Some((request, callback_base)) = store
        .last_request(&flow.name, &transaction_id)
        .await
        .map_err(|e| EventError::Unavailable(e.to_string()))?
    else {
        tracing::info!(flow = %flow.name, source = source.as_str(), %transaction_id, "event for a transaction not made through Beckn: ignored");
        return Ok(EventOutcome::Ignored);
    };
    let bap_id = serde_json::from_slice::<Value>(&request)
        .ok()
        .and_then(|r| {
            r.pointer("/context/bap_id")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let key = InboundKey {
        flow: flow.name.clone(),
        action: EVENT.to_string(),
        message_id: event_id,
    };
    let inbound = Inbound {
        key: key.clone(),
        transaction_id: transaction_id.clone(),
        counterpart: bap_id,
        role: flow.role().as_str().to_string(),
        body,
        headers,
        callback_base: callback_base.clone(),
        owner: services.outbox.owner.clone(),
        lease_until: services.clock.now_ms()
            + services.outbox.settings.work_lease.as_millis() as i64,
    };
    match store.accept(inbound).await {
        Ok(Admission::Duplicate) => Ok(EventOutcome::Duplicate),
        // The backend's event id is its identity: a changed body under a known id (a polled
        // event read again, say) is the same event.
        Ok(Admission::Reused { .. }) => {
            tracing::info!(flow = %flow.name, source = source.as_str(), %transaction_id, event_id = %key.message_id, "event id seen before with other content: acted on once");
            Ok(EventOutcome::Duplicate)
        }
        Ok(Admission::Foreign) => {
            tracing::warn!(flow = %flow.name, source = source.as_str(), %transaction_id, "event for a transaction of another buyer app than its last request's: ignored");
            Ok(EventOutcome::Ignored)
        }
        Ok(Admission::New) => {
            tracing::info!(flow = %flow.name, source = source.as_str(), %transaction_id, event_id = %key.message_id, "event accepted");
            let held = HeldRequest {
                key,
                claim: Claim::first(&services.outbox.owner),
            };
            // Boxed: the action's future is kilobytes large (see `bpp::receive`).
            let task = tokio::spawn(Box::pin(process(
                flow,
                set,
                event,
                transaction_id,
                callback_base,
                held,
                services.clone(),
            )));
            Ok(EventOutcome::Accepted { task })
        }
        Err(e) => Err(EventError::Unavailable(format!(
            "the event could not be recorded: {e}"
        ))),
    }
}

/// The transaction and the id of a webhook or poll event, by the flow's expressions; None
/// when `events.when` is false or the event names an order no transaction of the flow has.
async fn place(
    flow: &CompiledFlow,
    events: &CompiledEvents,
    event: &Value,
    services: &Services,
) -> Result<Option<(String, String)>, EventError> {
    let scope = crate::mapping::jvalue(json!({"event": event, "context": null, "message": null}));
    if let Some(when) = &events.when {
        let wanted = flow
            .templates
            .render_json(when, &scope)
            .map_err(|e| EventError::BadEvent(format!("events.when: {e}")))?;
        if wanted != Value::Bool(true) {
            return Ok(None);
        }
    }
    let id = |key: &str, expr: &str| match flow.templates.render_json(expr, &scope) {
        Ok(Value::String(s)) if !s.is_empty() => Ok(s),
        Ok(Value::Number(n)) if key != "transaction_id" => Ok(n.to_string()),
        Ok(other) => Err(EventError::BadEvent(format!(
            "events.{key} gave {other}, not an id"
        ))),
        Err(e) => Err(EventError::BadEvent(format!("events.{key}: {e}"))),
    };
    let transaction_id = match &events.placement {
        Some(Placement::TransactionId(expr)) => id("transaction_id", expr)?,
        Some(Placement::ErpOrderId(expr)) => {
            let order_id = id("erp_order_id", expr)?;
            let found = services
                .outbox
                .store
                .transaction_of_order(&flow.name, &order_id)
                .await
                .map_err(|e| EventError::Unavailable(e.to_string()))?;
            match found {
                Some(t) => t,
                None => {
                    tracing::info!(flow = %flow.name, erp_order_id = %order_id, "event for an order no transaction of this flow carries: ignored");
                    return Ok(None);
                }
            }
        }
        None => {
            return Err(EventError::BadEvent(
                "this flow's events are found by polling its orders only".into(),
            ));
        }
    };
    // The same event delivered twice is recorded and answered once: known by its own id, or
    // else by its content.
    let event_id = match &events.event_id {
        Some(expr) => id("event_id", expr)?,
        None => {
            let canonical = serde_json::to_vec(event)
                .map_err(|e| EventError::BadEvent(format!("event cannot be read: {e}")))?;
            hex::encode(&Blake2b512::digest(&canonical)[..16])
        }
    };
    Ok(Some((transaction_id, event_id)))
}

/// Maps again an event `u` accepted but never answered (its process stopped), unless its flow
/// is gone.
pub(crate) fn resume(set: &Arc<CompiledSet>, u: Unfinished, services: &Arc<Services>) {
    let flow = set.flow(&u.key.flow).cloned();
    let event = serde_json::from_slice::<Value>(&u.body).ok();
    if let (Some(flow), Some(event)) = (flow, event) {
        tracing::info!(flow = %flow.name, transaction_id = %u.transaction_id, "resuming an accepted event");
        tokio::spawn(Box::pin(process(
            flow,
            set.clone(),
            event,
            u.transaction_id,
            u.callback_base,
            HeldRequest {
                key: u.key,
                claim: u.claim,
            },
            services.clone(),
        )));
    }
}

/// Maps an accepted event into its unsolicited callback and queues it.
async fn process(
    flow: Arc<CompiledFlow>,
    set: Arc<CompiledSet>,
    event: Value,
    transaction_id: String,
    callback_base: String,
    held: HeldRequest,
    services: Arc<Services>,
) {
    let Some(events) = flow.events() else {
        return;
    };
    let request = match services
        .outbox
        .store
        .last_request(&flow.name, &transaction_id)
        .await
    {
        Ok(Some((body, _))) => serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let request_ctx = request.get("context").cloned().unwrap_or(Value::Null);
    let mut context = callback_context(
        &flow.participant,
        &flow.domain,
        events.callback,
        &request_ctx,
        services.clock.now(),
    );
    let message_id = uuid::Uuid::new_v4().to_string();
    context["message_id"] = json!(message_id);
    let callback = events.callback.callback();
    let lease = services.outbox.settings.work_lease;
    let store = &services.outbox.store;
    let renew = |until| store.renew_request(&held.key, &held.claim, until);
    // Read only for a mapping that reads `transaction` (known since compile time).
    let memory = match events.action.reads_transaction {
        false => Default::default(),
        true => match store.recall(&flow.name, &transaction_id).await {
            Ok(memory) => {
                telemetry::memory_read(&flow.name, "events");
                memory
            }
            Err(e) => {
                tracing::error!(flow = %flow.name, %callback, %transaction_id, error = %e, "the transaction's memory could not be read; the event will run again after a restart");
                return;
            }
        },
    };
    let mapping = engine::run_event(
        &flow,
        events,
        &event,
        &request_ctx,
        &memory,
        services.transport.as_ref(),
        &*services.clock,
    );
    let held_until = services.clock.now_ms() + lease.as_millis() as i64;
    let outcome = match while_held(&*services.clock, lease, held_until, renew, mapping).await {
        Held::Done(outcome) => outcome,
        Held::Lost => {
            tracing::warn!(flow = %flow.name, %callback, %transaction_id, "the event was taken over by another process while it was mapped; stopped here");
            crate::telemetry::claim_lost("request");
            return;
        }
    };
    if let Ok(out) = &outcome
        && let Err(e) = store
            .remember(&flow.name, &transaction_id, &out.remembered)
            .await
    {
        tracing::error!(flow = %flow.name, %callback, %transaction_id, error = %e, "what the event remembers could not be recorded; the event will run again after a restart");
        return;
    }
    let outcome = outcome.map(|out| out.message).map_err(|e| {
        tracing::warn!(flow = %flow.name, %callback, %transaction_id, %message_id, error = %e, "event mapping failed; telling the buyer app with an error");
        e.to_beckn()
    });
    let body = callback_body(&rules(&flow, &set.core), events.callback, context, outcome);
    let deadline = services.clock.now_ms()
        + flow
            .callback_deadline
            .unwrap_or(services.outbox.settings.default_deadline)
            .as_millis() as i64;
    tracing::info!(flow = %flow.name, action = %callback, %transaction_id, %message_id, "unsolicited callback ready");
    let queued = queue_callback(
        &services,
        &flow,
        "unsolicited",
        &callback_base,
        events.callback,
        &body,
        deadline,
        held,
        None,
    )
    .await;
    match queued {
        Ok(_) => {}
        Err(NotQueued::ClaimLost) => {
            tracing::warn!(flow = %flow.name, %callback, %transaction_id, "the event was taken over by another process; this callback is dropped");
            crate::telemetry::claim_lost("request");
        }
        Err(NotQueued::Failed(e)) => {
            tracing::error!(flow = %flow.name, error = %e, "unsolicited callback could not be queued; the event will run again after a restart")
        }
    }
}
