//! Order events into OMS updates. An order event is a callback carrying an order: one a
//! provider sends (its answer to `confirm`, `status`, `cancel`, or an unsolicited update from
//! its ERP) or one a buyer app receives. The flow's `ultra:` mapping turns it into an Ultra
//! `Order`, which is checked (schema and rules) and queued in the outbox in the same commit
//! that notes the order's state, so each state of an order is sent once and in order.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::UltraConnection;
use super::oms;
use super::states::{OMS_STATES, OmsState, sequence_key};
use crate::compile::{CompiledFlow, CompiledSet};
use crate::delivery::Outbox;
use crate::engine::flow_value;
use crate::intake::message::text;
use crate::store::{LedgerEntry, LedgerQueued, NewOutbox, OrderEvent, OutboxItem, StoreError};

pub use crate::sinks::Reported;

/// An order event that gives no OMS update, and why.
struct Failure {
    /// The `outcome` label of the order-update metric.
    outcome: &'static str,
    why: String,
}

/// Maps the order event `body` (a Beckn callback named `callback`) of `flow` into an OMS
/// update and queues it. An event whose mapping fails (or gives an order that breaks Ultra's
/// rules) becomes a dead letter with the reason, kept with the event: fixing the mapping and
/// `outbox retry` reports it. Only a store failure is an error: the caller should make the
/// event come again (NACK, or leave its request unfinished).
pub async fn order_event(
    outbox: &Outbox,
    flow: &CompiledFlow,
    callback: &str,
    body: &Value,
) -> Result<Reported, StoreError> {
    let failure = match map_and_queue(outbox, flow, callback, body).await? {
        Ok(reported) => return Ok(reported),
        Err(failure) => failure,
    };
    let Some(u) = &flow.sinks.ultra else {
        return Ok(Reported::Refused(failure.why));
    };
    let conn = &u.connection;
    let transaction_id = text(body, "/context/transaction_id").to_string();
    let order_id = text(body, "/message/order/id").to_string();
    let why = failure.why;
    let reported = refuse(
        flow,
        &order_id,
        &transaction_id,
        failure.outcome,
        why.clone(),
    );
    let item = NewOutbox {
        flow: conn.name.clone(),
        kind: super::OUTBOX_KIND.to_string(),
        url: conn.oms_endpoint(),
        action: callback.to_string(),
        transaction_id: transaction_id.clone(),
        message_id: format!(
            "{order_id}/{callback}/{}",
            text(body, "/context/message_id")
        ),
        body: Bytes::new(),
        deadline: None,
        completes: None,
        order: None,
        not_before: None,
        sequence: Some(sequence_key(
            &conn.name,
            &provider_of(body),
            &transaction_id,
            &order_id,
        )),
        claimed_by: None,
        steps: None,
    };
    let id = outbox
        .store
        .bury_order_event(event(flow, callback, body), item, why)
        .await?;
    tracing::warn!(flow = %flow.name, %transaction_id, %order_id, outbox_id = id, "the order event is kept as a dead letter: fix the mapping, then `outbox retry {id}`");
    Ok(reported)
}

/// The kept copy of an order event.
fn event(flow: &CompiledFlow, callback: &str, body: &Value) -> OrderEvent {
    OrderEvent {
        flow: flow.name.clone(),
        callback: callback.to_string(),
        body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    }
}

/// The lab an order is with: the BPP and its provider.
fn provider_of(body: &Value) -> String {
    format!(
        "{}/{}",
        text(body, "/context/bpp_id"),
        text(body, "/message/order/provider/id")
    )
}

/// The identity token of the order's user: the flow's `identity_token` expression
/// (providers), else the one noted on the transaction (buyer apps). Err: the expression failed.
async fn identity(
    outbox: &Outbox,
    flow: &CompiledFlow,
    callback: &str,
    body: &Value,
) -> Result<Result<Option<String>, String>, StoreError> {
    let Some(u) = &flow.sinks.ultra else {
        return Ok(Ok(None));
    };
    let identity = match &u.identity_token {
        Some(expr) => {
            let scope = json!({"context": body.get("context"), "message": body.get("message"), "action": callback});
            match flow
                .templates
                .render_json(expr, &crate::mapping::jvalue(&scope))
            {
                Ok(Value::String(s)) => Some(s),
                Ok(_) => None,
                Err(e) => return Ok(Err(format!("ultra.identity_token: {e}"))),
            }
        }
        None => {
            outbox
                .store
                .identity_token(&flow.name, text(body, "/context/transaction_id"))
                .await?
        }
    };
    Ok(Ok(identity.filter(|s| !s.is_empty())))
}

/// The OMS updates of one order event, queued; Err(failure) when its mapping gives none.
async fn map_and_queue(
    outbox: &Outbox,
    flow: &CompiledFlow,
    callback: &str,
    body: &Value,
) -> Result<Result<Reported, Failure>, StoreError> {
    let Some(u) = &flow.sinks.ultra else {
        return Ok(Ok(Reported::NotReported("no ultra block")));
    };
    if !u.on.iter().any(|c| c == callback) {
        return Ok(Ok(Reported::NotReported("not an event this flow reports")));
    }
    if !body.pointer("/message/order").is_some_and(Value::is_object) {
        return Ok(Ok(Reported::NotReported("no order in the message")));
    }
    let transaction_id = text(body, "/context/transaction_id").to_string();
    let beckn_order_id = text(body, "/message/order/id");
    let identity = match identity(outbox, flow, callback, body).await? {
        Ok(i) => i,
        Err(why) => {
            return Ok(Err(Failure {
                outcome: "mapping_failed",
                why,
            }));
        }
    };
    let Some(identity) = identity else {
        tracing::debug!(flow = %flow.name, %transaction_id, order_id = %beckn_order_id, "order of a user not signed in with Ultra: not reported");
        crate::telemetry::sink_order(super::SINK, &flow.name, "skipped");
        return Ok(Ok(Reported::NotReported("not an Ultra user")));
    };
    let checked = match build_order(flow, callback, body, &identity) {
        Ok(Some(c)) => c,
        Ok(None) => {
            crate::telemetry::sink_order(super::SINK, &flow.name, "nothing");
            return Ok(Ok(Reported::Nothing));
        }
        Err(e) => {
            return Ok(Err(Failure {
                outcome: e.outcome(),
                why: e.to_string(),
            }));
        }
    };
    let conn = &u.connection;
    let record = |state: &str, order_id: &str| LedgerEntry {
        connection: conn.name.clone(),
        provider: provider_of(body),
        transaction_id: transaction_id.clone(),
        order_id: order_id.to_string(),
        state: state.to_string(),
        event: event(flow, callback, body),
    };
    // Ultra takes ORDER_CONFIRMED first. An order first seen in a terminal state (its
    // on_confirm came late, or before the user signed in) is confirmed first, from the same
    // order; when it was, the store says so and nothing is sent twice.
    if checked.state.is_terminal() {
        let confirmed = confirmed_first(checked.clone());
        let r = record(confirmed.state.as_str(), &confirmed.order_id);
        queue(outbox, flow, conn, r, confirmed, None).await?;
    }
    let now = outbox.clock.now_ms();
    let not_before = (u.hold_fulfilled && checked.state == OmsState::Fulfilled)
        .then(|| to_ms(checked.last_fulfillment_date, conn.unit) - HOLD_MARGIN_MS)
        .filter(|t| *t > now);
    let r = record(checked.state.as_str(), &checked.order_id);
    Ok(Ok(queue(outbox, flow, conn, r, checked, not_before).await?))
}

/// The ORDER_CONFIRMED that goes before a terminal state seen first.
fn confirmed_first(mut order: oms::OmsOrder) -> oms::OmsOrder {
    order.state = OmsState::Confirmed;
    order.body["orderState"] = json!(OmsState::Confirmed.as_str());
    order.body["reverseTransaction"] = json!(0);
    order
}

/// A held ORDER_FULFILLED goes this long before its `lastFulfillmentDate`, after which Ultra
/// takes no change.
const HOLD_MARGIN_MS: i64 = 3_600_000;

/// Queues one checked update (held until `not_before`, if given) and says what became of it.
async fn queue(
    outbox: &Outbox,
    flow: &CompiledFlow,
    conn: &UltraConnection,
    record: LedgerEntry,
    checked: oms::OmsOrder,
    not_before: Option<i64>,
) -> Result<Reported, StoreError> {
    let now = outbox.clock.now_ms();
    let transaction_id = record.transaction_id.clone();
    let state = record.state.clone();
    let body_bytes = serde_json::to_vec(&checked.body).unwrap_or_default();
    let item = NewOutbox {
        flow: conn.name.clone(),
        kind: super::OUTBOX_KIND.to_string(),
        url: conn.oms_endpoint(),
        action: state.clone(),
        transaction_id: transaction_id.clone(),
        message_id: format!("{}/{}", checked.order_id, state),
        body: Bytes::from(body_bytes),
        deadline: Some(not_before.unwrap_or(now) + conn.retry_for.as_millis() as i64),
        completes: None,
        order: None,
        not_before,
        sequence: Some(sequence_key(
            &conn.name,
            &record.provider,
            &transaction_id,
            &checked.order_id,
        )),
        claimed_by: None,
        steps: None,
    };
    let order_id = checked.order_id;
    match outbox.store.queue_entry(&OMS_STATES, record, item).await? {
        LedgerQueued::Queued(id) => {
            tracing::info!(flow = %flow.name, connection = %conn.name, %transaction_id, %order_id, %state, outbox_id = id, held_until_ms = not_before.unwrap_or_default(), "Ultra order update queued");
            crate::telemetry::sink_order(super::SINK, &flow.name, "queued");
            outbox.queued();
            Ok(Reported::Queued { order_id, state })
        }
        LedgerQueued::Repeat => {
            tracing::debug!(flow = %flow.name, %transaction_id, %order_id, %state, "Ultra already has this order state queued or sent");
            crate::telemetry::sink_order(super::SINK, &flow.name, "repeat");
            Ok(Reported::Repeat)
        }
        LedgerQueued::OutOfOrder(why) => Ok(refuse(
            flow,
            &order_id,
            &transaction_id,
            "out_of_order",
            format!("{state} not sent: {why}"),
        )),
    }
}

/// What the outbox is to do with an OMS message about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resend {
    /// POST this body: the update rebuilt from its order event with the mapping and
    /// connection of now (or as stored, when no event was kept).
    Send(Bytes),
    /// A dead letter's order event, mapped again, queued its updates (or had none to give):
    /// nothing more to send for it.
    Done(String),
    /// It cannot be sent as it stands (the mapping fails or now says something else): why.
    Refused(String),
    /// Not now (the store or the flow is not available): why.
    Later(String),
}

/// Rebuilds the OMS message `item` from the order event kept with it, so that a retried
/// update carries what the current mapping and settings make of it.
pub async fn resend(outbox: &Outbox, set: &CompiledSet, item: &OutboxItem) -> Resend {
    let stored = match outbox.store.order_event(item.id).await {
        Ok(Some(s)) => s,
        Ok(None) => return Resend::Send(item.body.clone()),
        Err(e) => return Resend::Later(e.to_string()),
    };
    let Some(flow) = set.flow(&stored.event.flow) else {
        return Resend::Later(format!("flow `{}` is not loaded", stored.event.flow));
    };
    let Ok(body) = serde_json::from_slice::<Value>(&stored.event.body) else {
        return Resend::Refused("the kept order event is not JSON".into());
    };
    let callback = stored.event.callback.as_str();
    if flow.sinks.ultra.is_none() {
        return Resend::Refused(format!(
            "flow `{}` no longer reports its orders to Ultra",
            flow.name
        ));
    }
    let Some(queued) = stored.update else {
        return match map_and_queue(outbox, flow, callback, &body).await {
            Err(e) => Resend::Later(e.to_string()),
            Ok(Err(failure)) => Resend::Refused(failure.why),
            Ok(Ok(reported)) => Resend::Done(format!("{reported:?}")),
        };
    };
    let identity = match identity(outbox, flow, callback, &body).await {
        Err(e) => return Resend::Later(e.to_string()),
        Ok(Err(why)) => return Resend::Refused(why),
        Ok(Ok(None)) => {
            return Resend::Refused("the order's user is no longer known as an Ultra user".into());
        }
        Ok(Ok(Some(i))) => i,
    };
    let mut order = match build_order(flow, callback, &body, &identity) {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Resend::Refused(format!("the mapping now gives nothing for this {callback}"));
        }
        Err(e) => return Resend::Refused(e.to_string()),
    };
    if queued.state == OmsState::Confirmed.as_str() && order.state.is_terminal() {
        order = confirmed_first(order);
    }
    if order.state.as_str() != queued.state || order.order_id != queued.order_id {
        return Resend::Refused(format!(
            "the mapping now makes {} {} of this {callback}, not {} {}",
            order.order_id,
            order.state.as_str(),
            queued.order_id,
            queued.state
        ));
    }
    Resend::Send(Bytes::from(
        serde_json::to_vec(&order.body).unwrap_or_default(),
    ))
}

/// Why an order event gives no OMS order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The flow's script or template failed.
    #[error("{0}")]
    Mapping(String),
    /// The order breaks the OMS schema or rules.
    #[error("{0}")]
    Invalid(String),
}

impl BuildError {
    /// The `outcome` label of the order-update metric.
    fn outcome(&self) -> &'static str {
        match self {
            BuildError::Mapping(_) => "mapping_failed",
            BuildError::Invalid(_) => "invalid",
        }
    }
}

/// The OMS order the flow's `ultra:` mapping makes of the order event `body` for the user
/// `identity`, checked; None when the mapping says there is nothing to tell Ultra. Pure: no
/// store, no network (`ultra render` runs it offline).
pub fn build_order(
    flow: &CompiledFlow,
    callback: &str,
    body: &Value,
    identity: &str,
) -> Result<Option<oms::OmsOrder>, BuildError> {
    let Some(u) = &flow.sinks.ultra else {
        return Err(BuildError::Mapping(format!(
            "flow {} has no `ultra:` block",
            flow.name
        )));
    };
    let conn = &u.connection;
    let vars = order_scope(flow, callback, body, identity)?;
    let rendered = flow
        .templates
        .render_json(&u.order_template, &crate::mapping::jvalue(&vars))
        .map_err(|e| BuildError::Mapping(e.to_string()))?;
    if rendered.is_null() {
        return Ok(None);
    }
    oms::check(rendered, &conn.order_schema, conn.unit)
        .map(Some)
        .map_err(|violations| {
            let why = violations
                .iter()
                .map(|v| {
                    let path = if v.path.is_empty() {
                        "(order)"
                    } else {
                        &v.path
                    };
                    format!("{path}: {}", v.message)
                })
                .collect::<Vec<_>>()
                .join("; ");
            BuildError::Invalid(format!("the OMS order breaks the rules: {why}"))
        })
}

/// The variables the flow's `ultra:` template sees for the order event `body`: `context`,
/// `message`, `action`, `user`, `unit`, `flow`, and `prepared` (the script's result, when the
/// mapping has one). `test` renders the template again from them to find the line that wrote
/// each value.
pub fn order_scope(
    flow: &CompiledFlow,
    callback: &str,
    body: &Value,
    identity: &str,
) -> Result<Map<String, Value>, BuildError> {
    let Some(u) = &flow.sinks.ultra else {
        return Err(BuildError::Mapping(format!(
            "flow {} has no `ultra:` block",
            flow.name
        )));
    };
    let conn = &u.connection;
    let mut vars = Map::new();
    vars.insert(
        "context".into(),
        body.get("context").cloned().unwrap_or(Value::Null),
    );
    vars.insert(
        "message".into(),
        body.get("message").cloned().unwrap_or(Value::Null),
    );
    vars.insert("action".into(), json!(callback));
    vars.insert("user".into(), json!({"identity_token": identity}));
    vars.insert("unit".into(), json!(conn.unit.as_str()));
    vars.insert("flow".into(), flow_value(flow));
    if let Some(script) = &u.script {
        let prepared = flow
            .scripts
            .run(script, &vars)
            .map_err(|e| BuildError::Mapping(e.to_string()))?;
        vars.insert("prepared".into(), prepared);
    }
    Ok(vars)
}

fn refuse(
    flow: &CompiledFlow,
    order_id: &str,
    transaction_id: &str,
    outcome: &str,
    why: String,
) -> Reported {
    tracing::error!(flow = %flow.name, %transaction_id, %order_id, reason = %why, "no OMS update sent to Ultra for this order event");
    crate::telemetry::sink_order(super::SINK, &flow.name, outcome);
    Reported::Refused(why)
}

fn to_ms(t: i64, unit: crate::config::ultra::TimestampUnit) -> i64 {
    match unit {
        crate::config::ultra::TimestampUnit::Seconds => t.saturating_mul(1000),
        crate::config::ultra::TimestampUnit::Milliseconds => t,
    }
}
