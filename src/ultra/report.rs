//! Order events into OMS updates. An order event is a callback carrying an order: one a
//! provider sends (its answer to `confirm`, `status`, `cancel`, or an unsolicited update from
//! its ERP) or one a buyer app receives. The flow's `ultra:` mapping turns it into an Ultra
//! `Order`, which is checked (schema and rules) and queued in the outbox in the same commit
//! that notes the order's state, so each state of an order is sent once and in order.

use serde_json::{Map, Value, json};

use super::UltraConnection;
use super::oms::{self, OmsState};
use crate::compile::CompiledFlow;
use crate::roles::Services;
use crate::roles::bap::text;
use crate::store::ultra::sequence_key;
use crate::store::{NewOutbox, OmsQueued, OmsRecord, StoreError, now_ms};

/// What became of one order event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// The flow reports no such event, or the order's user is not an Ultra user.
    NotReported(&'static str),
    /// The mapping rendered `null`: nothing to tell Ultra.
    Nothing,
    Queued {
        order_id: String,
        state: String,
    },
    Repeat,
    /// Refused before sending: the mapping failed, the order broke the rules, or the state
    /// may not follow the ones reported. Logged with the order id.
    Refused(String),
}

/// Maps the order event `body` (a Beckn callback named `callback`) of `flow` into an OMS
/// update and queues it. Only a store failure is an error: the caller should make the event
/// come again (NACK, or leave its request unfinished).
pub async fn order_event(
    services: &Services,
    flow: &CompiledFlow,
    callback: &str,
    body: &Value,
) -> Result<Reported, StoreError> {
    let Some(u) = &flow.ultra else {
        return Ok(Reported::NotReported("no ultra block"));
    };
    if !u.on.iter().any(|c| c == callback) {
        return Ok(Reported::NotReported("not an event this flow reports"));
    }
    let Some(order) = body.pointer("/message/order").filter(|o| o.is_object()) else {
        return Ok(Reported::NotReported("no order in the message"));
    };
    let transaction_id = text(body, "/context/transaction_id").to_string();
    let beckn_order_id = text(order, "/id").to_string();
    let store = &services.outbox.store;
    let scope =
        json!({"context": body.get("context"), "message": body.get("message"), "action": callback});
    let identity = match &u.identity_token {
        Some(expr) => match flow
            .templates
            .render_json(expr, &crate::mapping::jvalue(&scope))
        {
            Ok(Value::String(s)) => Some(s),
            Ok(_) => None,
            Err(e) => {
                return Ok(refuse(
                    flow,
                    &beckn_order_id,
                    &transaction_id,
                    "mapping_failed",
                    format!("ultra.identity_token: {e}"),
                ));
            }
        },
        None => store.identity_token(&flow.name, &transaction_id).await?,
    };
    let Some(identity) = identity.filter(|s| !s.is_empty()) else {
        tracing::debug!(flow = %flow.name, %transaction_id, order_id = %beckn_order_id, "order of a user not signed in with Ultra: not reported");
        crate::telemetry::ultra_order(&flow.name, "skipped");
        return Ok(Reported::NotReported("not an Ultra user"));
    };
    let checked = match build_order(flow, callback, body, &identity) {
        Ok(Some(c)) => c,
        Ok(None) => {
            crate::telemetry::ultra_order(&flow.name, "nothing");
            return Ok(Reported::Nothing);
        }
        Err(e) => {
            return Ok(refuse(
                flow,
                &beckn_order_id,
                &transaction_id,
                e.outcome(),
                e.to_string(),
            ));
        }
    };
    let conn = &u.connection;
    // Ultra takes ORDER_CONFIRMED first. An order first seen in a terminal state (its
    // on_confirm came late, or before the user signed in) is confirmed first, from the same
    // order; when it was, the store says so and nothing is sent twice.
    if checked.state.is_terminal() {
        let mut confirmed = checked.clone();
        confirmed.state = OmsState::Confirmed;
        confirmed.body["orderState"] = json!(OmsState::Confirmed.as_str());
        confirmed.body["reverseTransaction"] = json!(0);
        queue(services, flow, conn, &transaction_id, confirmed, None).await?;
    }
    let now = now_ms();
    let not_before = (u.hold_fulfilled && checked.state == OmsState::Fulfilled)
        .then(|| to_ms(checked.last_fulfillment_date, conn.unit) - HOLD_MARGIN_MS)
        .filter(|t| *t > now);
    queue(services, flow, conn, &transaction_id, checked, not_before).await
}

/// A held ORDER_FULFILLED goes this long before its `lastFulfillmentDate`, after which Ultra
/// takes no change.
const HOLD_MARGIN_MS: i64 = 3_600_000;

/// Queues one checked update (held until `not_before`, if given) and says what became of it.
async fn queue(
    services: &Services,
    flow: &CompiledFlow,
    conn: &UltraConnection,
    transaction_id: &str,
    checked: oms::OmsOrder,
    not_before: Option<i64>,
) -> Result<Reported, StoreError> {
    let now = now_ms();
    let transaction_id = transaction_id.to_string();
    let store = &services.outbox.store;
    let state = checked.state.as_str().to_string();
    let body_bytes = serde_json::to_vec(&checked.body).unwrap_or_default();
    let item = NewOutbox {
        flow: conn.name.clone(),
        kind: super::OUTBOX_KIND.to_string(),
        url: conn.oms_endpoint(),
        action: state.clone(),
        transaction_id: transaction_id.clone(),
        message_id: format!("{}/{}", checked.order_id, state),
        body: bytes::Bytes::from(body_bytes),
        deadline: Some(not_before.unwrap_or(now) + conn.retry_for.as_millis() as i64),
        completes: None,
        order: None,
        not_before,
        sequence: Some(sequence_key(&conn.name, &checked.order_id)),
        claimed_by: None,
    };
    let record = OmsRecord {
        connection: conn.name.clone(),
        order_id: checked.order_id.clone(),
        state: state.clone(),
        flow: flow.name.clone(),
        transaction_id: transaction_id.clone(),
    };
    let order_id = checked.order_id;
    match store.queue_oms(record, item).await? {
        OmsQueued::Queued(id) => {
            tracing::info!(flow = %flow.name, connection = %conn.name, %transaction_id, %order_id, %state, outbox_id = id, held_until_ms = not_before.unwrap_or_default(), "Ultra order update queued");
            crate::telemetry::ultra_order(&flow.name, "queued");
            services.outbox.queued();
            Ok(Reported::Queued { order_id, state })
        }
        OmsQueued::Repeat => {
            tracing::debug!(flow = %flow.name, %transaction_id, %order_id, %state, "Ultra already has this order state queued or sent");
            crate::telemetry::ultra_order(&flow.name, "repeat");
            Ok(Reported::Repeat)
        }
        OmsQueued::OutOfOrder(why) => Ok(refuse(
            flow,
            &order_id,
            &transaction_id,
            "out_of_order",
            format!("{state} not sent: {why}"),
        )),
    }
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
    let Some(u) = &flow.ultra else {
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
    let Some(u) = &flow.ultra else {
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
    vars.insert("flow".into(), crate::roles::bap::flow_value(flow));
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
    crate::telemetry::ultra_order(&flow.name, outcome);
    Reported::Refused(why)
}

fn to_ms(t: i64, unit: crate::config::ultra::TimestampUnit) -> i64 {
    match unit {
        crate::config::ultra::TimestampUnit::Seconds => t.saturating_mul(1000),
        crate::config::ultra::TimestampUnit::Milliseconds => t,
    }
}
