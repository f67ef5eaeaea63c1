//! Deliveries to the app's webhook: each callback of a `webhook`-mode call, and every
//! unsolicited `on_status`/`on_update`/`on_cancel`, wrapped in an envelope saying what it is, queued in the
//! outbox in the same commit that files the callback (so a delivery is never lost), and signed
//! at each attempt with the HMAC of `delivery::app_webhook`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::answers::render_result;
use crate::beckn::action::Action;
use crate::compile::{CompiledAppWebhook, CompiledFlow};
use crate::delivery::DeliverySettings;
use crate::delivery::app_webhook::KIND;
use crate::store::{Disposition, NewCallback, NewOutbox};

/// The delivery of `callback` (parsed as `body`) to the app. `request` is the request it
/// answers (None for an unsolicited one), for the response template. `now`: when the callback
/// was received.
pub fn delivery(
    flow: &CompiledFlow,
    webhook: &CompiledAppWebhook,
    settings: &DeliverySettings,
    callback: &NewCallback,
    body: &Value,
    request: Option<&Value>,
    now: jiff::Timestamp,
) -> Option<NewOutbox> {
    let event = match callback.disposition {
        Disposition::Answer => "answer",
        Disposition::Unsolicited => "unsolicited",
        Disposition::Late | Disposition::Unknown => return None,
    };
    let mut envelope = json!({
        "event": event,
        "flow": flow.name,
        "action": callback.action,
        "transaction_id": callback.transaction_id,
        "message_id": callback.message_id,
        "bpp_id": callback.bpp_id,
        "received_at": crate::beckn::context::rfc3339(now),
        "callback": body,
    });
    if let Some(via) = &callback.via {
        envelope["via"] = json!(via);
    }
    let action = callback
        .action
        .strip_prefix("on_")
        .and_then(|a| a.parse::<Action>().ok());
    let template = action.and_then(|a| {
        flow.bap()
            .and_then(|b| b.actions.get(&a))
            .and_then(|t| t.response.clone())
    });
    if let Some(name) = template {
        // The request's context and message when there is one; an unsolicited update
        // stands for itself.
        let own = json!({"context": body.get("context").cloned().unwrap_or(Value::Null)});
        match render_result(
            flow,
            &name,
            std::slice::from_ref(body),
            &json!([]),
            "callback",
            request.unwrap_or(&own),
        ) {
            Ok(v) => envelope["result"] = v,
            Err(e) => envelope["result_error"] = json!(e),
        }
    }
    let bytes = serde_json::to_vec(&envelope).ok()?;
    let deadline = now.as_millisecond()
        + flow
            .callback_deadline
            .unwrap_or(settings.default_deadline)
            .as_millis() as i64;
    Some(NewOutbox {
        flow: flow.name.clone(),
        kind: KIND.to_string(),
        url: webhook.url.clone(),
        action: callback.action.clone(),
        transaction_id: callback.transaction_id.clone(),
        message_id: callback.message_id.clone(),
        body: Bytes::from(bytes),
        deadline: Some(deadline),
        completes: None,
        order: None,
        not_before: None,
        sequence: None,
        claimed_by: None,
        steps: None,
    })
}
