//! The provider (BPP) role: receive a request, check it, ACK or NACK at once, then run the
//! action's flow and send the `on_*` callback.
//!
//! Order of checks (each failure is a NACK with a code and path): endpoint, content type, size,
//! trust (signature), JSON, action, Beckn core schema, recipient, domain rules, expiry,
//! capacity. Only then is the request acknowledged and handed to a worker.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{NotQueued, Services, callback_item, queue_callback, rules};
use crate::beckn::ack::{Rejection, ack};
use crate::beckn::action::Action;
use crate::beckn::context::{callback_context, expiry};
use crate::beckn::error::{BecknError, ErrorCode};
use crate::beckn::order_ref;
use crate::beckn::redact;
use crate::beckn::schema::CoreSchemas;
use crate::beckn::trust;
use crate::compile::{CompiledFlow, CompiledSet};
use crate::engine;
use crate::engine::call_log::CallLog;
use crate::intake::answer::{callback_body, error_body};
use crate::intake::body::read_body;
use crate::intake::content_type::check_content_type;
use crate::intake::payloads;
use crate::store::heartbeat::{Held, while_held};
use crate::store::{Admission, Claim, HeldRequest, Inbound, InboundKey, Unfinished};
use crate::telemetry;
use crate::telemetry::traces;
use opentelemetry::KeyValue;
use tracing::Instrument;

/// One BPP flow's endpoints. The flow is looked up in the current set on every request, so a
/// reload takes effect for the next request while requests in flight keep their snapshot.
pub struct BppEndpoint {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub flow_name: String,
    pub services: Arc<Services>,
    pub in_flight: Arc<Semaphore>,
}

/// `POST {base_path}/{action}`.
pub async fn handle(
    State(ep): State<Arc<BppEndpoint>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    // The path is the caller's to choose: metrics count it as `other` unless it is an action.
    let label = action.parse::<Action>().map_or("other", Action::as_str);
    // The sender's trace context is only ever the parent of this message's trace.
    let root = ep
        .services
        .traces
        .received((&ep.flow_name, "bpp", label), &headers);
    let mut read = None;
    let received = root
        .wrap(receive(&ep, &action, &headers, body, &root, &mut read))
        .await;
    match received {
        Ok(()) => {
            root.attr("outcome", "ack");
            telemetry::request_answered(&ep.flow_name, "bpp", label, None, started.elapsed());
            ack()
        }
        Err(rejection) => {
            let (code, status, path) = rejection.classify();
            root.attr("outcome", "nack");
            root.attr("error.code", code.code().to_string());
            root.fail(&rejection);
            tracing::info!(flow = %ep.flow_name, action = %action, code = code.code(), status = status.as_u16(), path = path.as_deref().unwrap_or(""), reason = %rejection, "NACK");
            telemetry::request_answered(
                &ep.flow_name,
                "bpp",
                label,
                Some(code.code()),
                started.elapsed(),
            );
            let names = (ep.flow_name.as_str(), "bpp", label);
            super::note_nack(
                &ep.services,
                names,
                &headers,
                read.as_ref(),
                &rejection,
                "bap_id",
            );
            rejection.into_response()
        }
    }
}

/// Checks and records a request; `read` gets its body once read (for the NACK's record).
async fn receive(
    ep: &BppEndpoint,
    action: &str,
    headers: &HeaderMap,
    body: Body,
    root: &traces::Step,
    read: &mut Option<bytes::Bytes>,
) -> Result<(), Rejection> {
    let action: Action = action
        .parse()
        .map_err(|_| Rejection::UnknownEndpoint(action.to_string()))?;
    let set = ep.flows.load_full();
    let flow = set
        .flow(&ep.flow_name)
        .cloned()
        .ok_or_else(|| Rejection::Unavailable(format!("flow {} is not loaded", ep.flow_name)))?;
    if !flow.actions.contains_key(&action) {
        return Err(Rejection::NotServed(action.to_string()));
    }
    check_content_type(headers)?;
    let bytes = read_body(body, flow.max_body_bytes).await?;
    *read = Some(bytes.clone());
    payloads::received(&flow.name, action.as_str(), headers, &bytes);
    let verify = traces::step("beckn.verify");
    let verified = verify
        .wrap(trust::verify_inbound(
            &flow.participant,
            &ep.services.registries,
            headers,
            &bytes,
        ))
        .await
        .inspect_err(|e| verify.fail(e))?;
    verify.end();
    let check = traces::step("beckn.check");
    let request: Value = serde_json::from_slice(&bytes).map_err(|e| Rejection::malformed(&e))?;
    let context = request.get("context");
    let context_str = |k: &str| {
        context
            .and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let context_text = |k: &str| context_str(k).to_string();
    if root.is_traced() {
        root.attr("transaction_id", context_text("transaction_id"));
        root.attr("message_id", context_text("message_id"));
    }
    rules(&flow, &set.core)
        .check_request(action, &request, ep.services.clock.now())
        .inspect_err(|e| check.fail(e))?;
    check.end();
    let bap_id = context_text("bap_id");
    if let Some(signer) = &verified.signer
        && *signer != bap_id
    {
        return Err(Rejection::SignerMismatch {
            realm: flow.participant.subscriber_id.clone(),
            signer: signer.clone(),
            field: "bap_id",
            claimed: bap_id,
        });
    }
    // The BAP's registered URL must be the bap_uri, even when the answer goes via a gateway.
    let mut callback_base = trust::callback_base(
        &flow.participant,
        &ep.services.registries,
        &bap_id,
        context_str("bap_uri"),
    )
    .await?;
    if action == Action::Search
        && let Some(gateway) = &verified.gateway
    {
        callback_base =
            trust::gateway_base(&flow.participant, &ep.services.registries, gateway).await?;
    }
    let permit = in_flight_permit(&ep.in_flight).await?;
    // Nothing is acknowledged before it is durably recorded; a repeat is acknowledged again
    // without running the flow a second time.
    let key = InboundKey {
        flow: flow.name.clone(),
        action: action.to_string(),
        message_id: context_text("message_id"),
    };
    let inbound = Inbound {
        key: key.clone(),
        transaction_id: context_text("transaction_id"),
        counterpart: context_text("bap_id"),
        role: flow.role().as_str().to_string(),
        body: bytes,
        headers: redact::headers_json(headers),
        callback_base: callback_base.clone(),
        owner: ep.services.outbox.owner.clone(),
        lease_until: ep.services.clock.now_ms()
            + ep.services.outbox.settings.work_lease.as_millis() as i64,
    };
    let recorded = traces::step("store.accept")
        .run(ep.services.outbox.store.accept(inbound))
        .await;
    match recorded {
        Ok(Admission::New) => {}
        Ok(Admission::Duplicate) => {
            tracing::info!(flow = %flow.name, %action, message_id = %key.message_id, "duplicate message id: acknowledged again, not run again");
            return Ok(());
        }
        Ok(Admission::Reused { transaction_id }) => {
            tracing::warn!(flow = %flow.name, %action, message_id = %key.message_id, %bap_id, earlier_transaction_id = %transaction_id, "message id used again for a different message: refused");
            return Err(Rejection::MessageIdReused(key.message_id));
        }
        Ok(Admission::Foreign) => {
            let transaction_id = context_text("transaction_id");
            tracing::warn!(flow = %flow.name, %action, %transaction_id, %bap_id, "request in a transaction opened by another subscriber: refused");
            return Err(Rejection::ForeignTransaction(transaction_id));
        }
        Err(e) => {
            tracing::error!(flow = %flow.name, %action, message_id = %key.message_id, error = %e, "request could not be recorded");
            return Err(Rejection::Unavailable(
                "the request could not be recorded".into(),
            ));
        }
    }
    let services = ep.services.clone();
    let core = set.core.clone();
    let span = message_span(
        &flow.name,
        action,
        context_str("transaction_id"),
        &key.message_id,
    );
    // The work after the ACK stays in the message's trace. Its future (the whole action, with
    // every backend call and the callback) is kilobytes large: boxed, the task holds a pointer
    // to it, where tokio would otherwise copy it whole as it spawns, polls and completes the
    // task (about 6% of the ACK path's instructions).
    let work = traces::step("beckn.work");
    tokio::spawn(
        work.run(Box::pin(process(
            flow,
            core,
            action,
            request,
            callback_base,
            HeldRequest {
                key,
                claim: Claim::first(&ep.services.outbox.owner),
            },
            services,
            Run::Accepted { _permit: permit },
        )))
        .instrument(span),
    );
    Ok(())
}

/// How long a request waits for one of `max_in_flight` permits before it is refused as busy.
/// A burst on a cold process (pools empty, caches cold) runs ahead of the flows for a few
/// seconds; waiting briefly slows the senders down to the pace of the flows instead of
/// refusing them outright.
const CAPACITY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// One of the endpoint's `max_in_flight` permits, waited for at most [`CAPACITY_WAIT`].
async fn in_flight_permit(in_flight: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Rejection> {
    if let Ok(permit) = in_flight.clone().try_acquire_owned() {
        return Ok(permit);
    }
    match tokio::time::timeout(CAPACITY_WAIT, in_flight.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(Rejection::Busy),
    }
}

/// Runs again a request `u` accepted but never answered (its process stopped), unless its
/// flow or action is gone.
pub(crate) fn resume(set: &Arc<CompiledSet>, u: Unfinished, services: &Arc<Services>) {
    let flow = set.flow(&u.key.flow).cloned();
    let action = u.key.action.parse::<Action>().ok();
    let request = serde_json::from_slice::<Value>(&u.body).ok();
    let (Some(flow), Some(action), Some(request)) = (flow, action, request) else {
        tracing::warn!(flow = %u.key.flow, action = %u.key.action, message_id = %u.key.message_id, "unfinished request cannot be resumed (flow or action gone)");
        return;
    };
    tracing::info!(flow = %flow.name, %action, transaction_id = %u.transaction_id, message_id = %u.key.message_id, "resuming a request accepted but not answered");
    let span = message_span(&flow.name, action, &u.transaction_id, &u.key.message_id);
    // A new trace: the one of its first run ended with the process that stopped.
    let root = services.traces.message(action.as_str(), None, || {
        vec![
            KeyValue::new("flow", flow.name.clone()),
            KeyValue::new("role", "bpp"),
            KeyValue::new("action", action.as_str()),
            KeyValue::new("transaction_id", u.transaction_id.clone()),
            KeyValue::new("message_id", u.key.message_id.clone()),
            KeyValue::new("recovered", true),
        ]
    });
    tokio::spawn(
        root.run(Box::pin(process(
            flow,
            set.core.clone(),
            action,
            request,
            u.callback_base,
            HeldRequest {
                key: u.key,
                claim: u.claim,
            },
            services.clone(),
            Run::Recovered {
                received_at: u.received_at,
            },
        )))
        .instrument(span),
    );
}

/// The span of one message's work: every log line inside it (backend calls, scripts,
/// retries) carries the flow, action, transaction and message ids.
fn message_span(
    flow: &str,
    action: Action,
    transaction_id: &str,
    message_id: &str,
) -> tracing::Span {
    tracing::info_span!(
        "message",
        flow,
        action = action.as_str(),
        transaction_id,
        message_id
    )
}

/// How a request came to be run.
enum Run {
    /// Accepted by this process just now; the permit counts it against `max_in_flight`.
    Accepted { _permit: OwnedSemaphorePermit },
    /// Taken over from a process that stopped (or from this store's previous run).
    Recovered { received_at: i64 },
}

/// After the ACK: run the flow while renewing the request's claim, build and check the
/// callback, hand it to the outbox in the commit that marks the request done (if the claim
/// still holds it). A request taken over after its ttl is not run (see [`answer_expired`]).
#[allow(clippy::too_many_arguments)]
async fn process(
    flow: Arc<CompiledFlow>,
    core: Arc<CoreSchemas>,
    action: Action,
    request: Value,
    callback_base: String,
    held: HeldRequest,
    services: Arc<Services>,
    run: Run,
) {
    let request_ctx = request.get("context").cloned().unwrap_or(Value::Null);
    let text = |k: &str| {
        request_ctx
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (transaction_id, message_id) = (text("transaction_id"), text("message_id"));
    if let Run::Recovered { received_at } = run
        && let Some(expired) = expiry(&request_ctx).filter(|t| *t < services.clock.now())
    {
        let context = callback_context(
            &flow.participant,
            &flow.domain,
            action,
            &request_ctx,
            services.clock.now(),
        );
        answer_expired(
            &services,
            &flow,
            action,
            context,
            &callback_base,
            held,
            received_at,
            expired,
        )
        .await;
        return;
    }
    let started = std::time::Instant::now();
    let lease = services.outbox.settings.work_lease;
    let store = &services.outbox.store;
    let renew = |until| store.renew_request(&held.key, &held.claim, until);
    // The calls are noted for the transaction's timeline and kept with the answer.
    let calls = CallLog::new(services.transport.as_ref());
    let outcome = match not_their_order(&services, &flow, action, &request).await {
        Some(refusal) => Err(refusal),
        None => {
            // Read only for an action that reads `transaction` (known since compile time).
            let reads = flow
                .actions
                .get(&action)
                .is_some_and(|a| a.reads_transaction);
            let memory = match reads {
                false => Default::default(),
                true => match store.recall(&flow.name, &transaction_id).await {
                    Ok(memory) => {
                        telemetry::memory_read(&flow.name, action.as_str());
                        memory
                    }
                    Err(e) => {
                        tracing::error!(flow = %flow.name, %action, %transaction_id, %message_id, error = %e, "the transaction's memory could not be read; the request will run again after a restart");
                        return;
                    }
                },
            };
            let run_flow =
                engine::run_action_in(&flow, action, &request, &memory, &calls, &*services.clock);
            let held_until = services.clock.now_ms() + lease.as_millis() as i64;
            match while_held(&*services.clock, lease, held_until, renew, run_flow).await {
                Held::Done(Ok(out)) => {
                    // Remembered before the callback is queued: a callback is never sent
                    // for memory that was lost.
                    if let Err(e) = store
                        .remember(&flow.name, &transaction_id, &out.remembered)
                        .await
                    {
                        tracing::error!(flow = %flow.name, %action, %transaction_id, %message_id, error = %e, "what the action remembers could not be recorded; the request will run again after a restart");
                        return;
                    }
                    Ok(out.message)
                }
                Held::Done(Err(e)) => {
                    tracing::warn!(flow = %flow.name, %action, %transaction_id, %message_id, error = %e, "flow failed; answering with an error");
                    Err(e.to_beckn())
                }
                Held::Lost => {
                    tracing::warn!(flow = %flow.name, %action, %transaction_id, %message_id, "the request was taken over by another process while its flow ran (this one stood still past its lease); stopped, no callback from here");
                    telemetry::claim_lost("request");
                    return;
                }
            }
        }
    };
    let context = callback_context(
        &flow.participant,
        &flow.domain,
        action,
        &request_ctx,
        services.clock.now(),
    );
    let body = callback_body(&rules(&flow, &core), action, context, outcome);
    let steps = calls.into_json();
    let now = services.clock.now_ms();
    let deadline = match flow.callback_deadline {
        Some(d) => now + d.as_millis() as i64,
        None => expiry(&request_ctx).map_or(
            now + services.outbox.settings.default_deadline.as_millis() as i64,
            |t| t.as_millisecond(),
        ),
    };
    tracing::info!(flow = %flow.name, %action, %transaction_id, %message_id, elapsed_ms = started.elapsed().as_millis() as u64, error = body.get("error").is_some(), "callback ready");
    let queued = queue_callback(
        &services,
        &flow,
        "callback",
        &callback_base,
        action,
        &body,
        deadline,
        held,
        steps,
    )
    .await;
    match queued {
        Ok(_) => {}
        Err(NotQueued::ClaimLost) => {
            tracing::warn!(flow = %flow.name, %action, %transaction_id, %message_id, "the request was taken over by another process (this one stood still past its lease); this callback is dropped");
            telemetry::claim_lost("request");
        }
        Err(NotQueued::Failed(e)) => {
            tracing::error!(flow = %flow.name, %action, %transaction_id, %message_id, error = %e, "callback could not be queued; the request will run again after a restart")
        }
    }
}

/// A request taken over after its ttl ended (its process stopped): it is not run, so no backend
/// hears of it. Where the flow's `callback_deadline` (counted from its arrival) still allows
/// an answer, it is answered with a stale-request error; otherwise the error callback is
/// recorded as a dead letter with the reason, for `outbox list` and the admin API.
#[allow(clippy::too_many_arguments)]
async fn answer_expired(
    services: &Services,
    flow: &CompiledFlow,
    action: Action,
    context: Value,
    callback_base: &str,
    held: HeldRequest,
    received_at: i64,
    expired: jiff::Timestamp,
) {
    let ids = |k: &str| context[k].as_str().unwrap_or_default().to_string();
    let (transaction_id, message_id) = (ids("transaction_id"), ids("message_id"));
    let reason = format!(
        "its ttl ended at {expired}, before it could run (taken over from a process that stopped)"
    );
    let error = BecknError::new(
        ErrorCode::StaleRequest,
        format!("the request expired before it could be processed: {reason}"),
    );
    let body = error_body(action, context, error);
    let now = services.clock.now_ms();
    let deadline = flow
        .callback_deadline
        .map(|d| received_at + d.as_millis() as i64)
        .filter(|d| *d > now);
    telemetry::request_expired(&flow.name, action.as_str());
    let queued = match deadline {
        Some(deadline) => {
            tracing::warn!(flow = %flow.name, %action, %transaction_id, %message_id, %reason, "request not run; answering with an error");
            queue_callback(
                services,
                flow,
                "callback",
                callback_base,
                action,
                &body,
                deadline,
                held,
                None,
            )
            .await
        }
        None => {
            tracing::warn!(flow = %flow.name, %action, %transaction_id, %message_id, %reason, "request not run and too late to answer; recorded as expired");
            let Ok(bytes) = serde_json::to_vec(&body) else {
                return;
            };
            let mut item = callback_item(flow, "callback", callback_base, action, &body, bytes);
            item.deadline = Some(now);
            item.completes = Some(held);
            services
                .outbox
                .store
                .enqueue_dead(item, format!("expired: {reason}"))
                .await
                .map_err(NotQueued::from)
        }
    };
    match queued {
        Ok(_) => {}
        Err(NotQueued::ClaimLost) => {
            tracing::warn!(flow = %flow.name, %action, %transaction_id, %message_id, "the expired request was taken over by another process meanwhile");
            telemetry::claim_lost("request");
        }
        Err(NotQueued::Failed(e)) => {
            tracing::error!(flow = %flow.name, %action, %transaction_id, %message_id, error = %e, "the expired request could not be recorded; it will be looked at again")
        }
    }
}

/// The answer to an order action about an order the sender did not place with this flow (or
/// that does not exist): the error an unknown order gets, given without asking the backend, so
/// that order ids, however guessable, reveal and change nothing of another buyer app's orders.
async fn not_their_order(
    services: &Services,
    flow: &CompiledFlow,
    action: Action,
    request: &Value,
) -> Option<BecknError> {
    let message = request.get("message")?;
    let orders = order_ref::referenced_orders(action, message);
    if orders.is_empty() {
        return None;
    }
    let bap_id = request
        .pointer("/context/bap_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for order_id in orders {
        match services
            .outbox
            .store
            .placed_order(&flow.name, order_id, bap_id)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(flow = %flow.name, %action, %order_id, %bap_id, "order action about an order this buyer app did not place here: answered as an unknown order");
                return Some(BecknError::new(
                    order_ref::unknown_order_code(action),
                    format!("order {order_id} not found"),
                ));
            }
            Err(e) => {
                tracing::error!(flow = %flow.name, %action, %order_id, error = %e, "cannot look the order up");
                return Some(BecknError::new(
                    ErrorCode::InternalError,
                    "the order could not be looked up; retry later",
                ));
            }
        }
    }
    None
}
