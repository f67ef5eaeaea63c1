//! The Beckn roles the adapter plays, on top of the engine and the protocol layer.
//!
//! Each role is a file (or directory) of its own and never uses another; what they share at
//! run time lives here: the [`Services`] they are given, the [`rules`] a flow's messages are
//! checked against, queueing a callback ([`queue_callback`]) and resuming the work a stopped
//! process left ([`rescue_unfinished`]). What they share before and after their work (body,
//! content type, checks, NACKs, error bodies) is `crate::intake`.

pub mod bap;
pub mod bpp;
pub mod events;
pub mod gateway;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;

use crate::backend::Transport;
use crate::beckn::ack::Rejection;
use crate::beckn::action::Action;
use crate::beckn::schema::CoreSchemas;
use crate::beckn::trust::RegistryPool;
use crate::clock::SharedClock;
use crate::compile::{CompiledFlow, CompiledSet};
use crate::delivery::Outbox;
use crate::intake::validate::Rules;
use crate::sinks::Sinks;
use crate::store::{HeldRequest, NackBudget, NackRecord, NewOutbox, StoreError};
use crate::telemetry::traces::Traces;

/// What every role needs from the outside world; injected so tests and `render` can swap parts.
pub struct Services {
    pub transport: Arc<dyn Transport>,
    /// Durable state and delivery: requests are recorded in `outbox.store` before their ACK.
    pub outbox: Arc<Outbox>,
    pub registries: RegistryPool,
    /// The time of day every decision is made on (the same clock the store, the outbox and
    /// the registries have).
    pub clock: SharedClock,
    /// Where each message's trace goes (nowhere unless an OTLP endpoint is configured).
    pub traces: Traces,
    /// How many NACKed requests this process may still keep (see `store::nacks`).
    pub nacks: NackBudget,
}

/// Keeps a request a role of `flow` refused with `rejection`, for the console: only one
/// whose body names a transaction, only within the process's budget (a flood of refused
/// requests is answered and counted, not stored), written without delaying the NACK.
/// `sender` is the context field naming who it claims to come from.
pub(crate) fn note_nack(
    services: &Services,
    (flow, role, action): (&str, &str, &str),
    headers: &axum::http::HeaderMap,
    body: Option<&bytes::Bytes>,
    rejection: &Rejection,
    sender: &str,
) {
    let Some(body) = body else { return };
    if !services.nacks.take() {
        return;
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let text = |k: &str| crate::intake::message::text(&parsed, &format!("/context/{k}"));
    let transaction_id = text("transaction_id");
    if transaction_id.is_empty() {
        return;
    }
    let (code, status, path) = rejection.classify();
    let record = NackRecord::new(
        flow,
        role,
        action,
        (transaction_id, text("message_id"), text(sender)),
        (
            code.code(),
            status.as_u16(),
            &rejection.to_string(),
            path.as_deref(),
        ),
        crate::beckn::redact::headers_json(headers),
        body,
    );
    let store = services.outbox.store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.record_nack(record).await {
            tracing::warn!(error = %e, "a NACKed request could not be kept");
        }
    });
}

/// What `flow`'s messages, arriving and leaving, are checked against.
pub fn rules<'a>(flow: &'a CompiledFlow, core: &'a CoreSchemas) -> Rules<'a> {
    Rules {
        flow: &flow.name,
        subscriber_id: &flow.participant.subscriber_id,
        core,
        domain: flow.domain_rules.as_deref(),
        allow_loopback_uris: flow.allow_loopback_uris,
        time_limits: &flow.participant.time_limits,
    }
}

/// Why a callback was not queued.
#[derive(Debug)]
pub(crate) enum NotQueued {
    /// The request's claim was taken over: another process answers it.
    ClaimLost,
    Failed(String),
}

impl From<StoreError> for NotQueued {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ClaimLost => NotQueued::ClaimLost,
            e => NotQueued::Failed(e.to_string()),
        }
    }
}

/// Queues the callback `body` for `{callback_base}/on_<action>` (of `kind`: an answer or an
/// unsolicited update), noting the order it carries; the same commit marks `completes` done,
/// if its claim still holds it, with `steps`, the backend calls made to answer it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn queue_callback(
    services: &Services,
    flow: &CompiledFlow,
    kind: &str,
    callback_base: &str,
    action: Action,
    body: &Value,
    deadline: i64,
    completes: HeldRequest,
    steps: Option<String>,
) -> Result<i64, NotQueued> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| NotQueued::Failed(format!("cannot serialise: {e}")))?;
    let sinks = Sinks::of_flow(flow);
    if !sinks.is_empty() {
        // The order updates below are not fenced: a process that lost the request reports no
        // order. (One that loses it between the two commits is refused by the fence on its
        // callback; the sink's repeat rule drops its report when the new holder reports.)
        let lease = services.outbox.settings.work_lease.as_millis() as i64;
        let held = services
            .outbox
            .store
            .renew_request(
                &completes.key,
                &completes.claim,
                services.clock.now_ms() + lease,
            )
            .await?;
        if !held {
            return Err(NotQueued::ClaimLost);
        }
    }
    // The order event goes to the sinks first: if the process stops between the two, the
    // request runs again and a sink's update, already noted, is not queued twice.
    sinks
        .order_event(&services.outbox, flow, action.callback(), body)
        .await
        .map_err(|e| NotQueued::Failed(e.to_string()))?;
    let mut item = callback_item(flow, kind, callback_base, action, body, bytes);
    item.deadline = Some(deadline);
    item.completes = Some(completes);
    item.steps = steps;
    services.outbox.submit(item).await.map_err(NotQueued::from)
}

/// The outbox message carrying callback `body` (already serialised as `bytes`), due at once,
/// with no deadline and answering nothing yet.
pub(crate) fn callback_item(
    flow: &CompiledFlow,
    kind: &str,
    callback_base: &str,
    action: Action,
    body: &Value,
    bytes: Vec<u8>,
) -> NewOutbox {
    let text = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
    let order = text("/message/order/id").map(|id| (id, text("/message/order/status")));
    NewOutbox {
        flow: flow.name.clone(),
        kind: kind.into(),
        url: format!("{callback_base}/{}", action.callback()),
        action: action.callback().to_string(),
        transaction_id: text("/context/transaction_id").unwrap_or_default(),
        message_id: text("/context/message_id").unwrap_or_default(),
        body: bytes::Bytes::from(bytes),
        deadline: None,
        completes: None,
        order,
        not_before: None,
        sequence: None,
        claimed_by: None,
        steps: None,
    }
}

/// Runs again the requests and events that were accepted but never answered: at start, every
/// one left by this store's previous process (single-process stores); then, on stores shared
/// by several processes, those whose process stopped (its lease ended, not renewed), checked
/// every tenth of the lease, so a take-over comes at most 1.1 leases after the last renewal.
pub async fn rescue_unfinished(
    flows: Arc<ArcSwap<CompiledSet>>,
    services: Arc<Services>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    const PAGE: usize = 256;
    let store = &services.outbox.store;
    let lease = services.outbox.settings.work_lease;
    let mut take_all = !store.shared();
    tokio::pin!(shutdown);
    loop {
        loop {
            let claimed = store
                .claim_unfinished(
                    &services.outbox.owner,
                    services.clock.now_ms(),
                    lease.as_millis() as i64,
                    PAGE,
                    take_all,
                )
                .await;
            let batch = match claimed {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read unfinished requests");
                    break;
                }
            };
            let n = batch.len();
            let set = flows.load_full();
            for u in batch {
                if u.key.action == events::EVENT {
                    events::resume(&set, u, &services);
                } else {
                    bpp::resume(&set, u, &services);
                }
            }
            if n < PAGE {
                break;
            }
        }
        take_all = false;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(recheck_interval(lease)) => {}
        }
    }
}

/// How often the store is asked for requests whose lease ended: a tenth of the lease.
fn recheck_interval(lease: std::time::Duration) -> std::time::Duration {
    (lease / 10).max(std::time::Duration::from_millis(50))
}
