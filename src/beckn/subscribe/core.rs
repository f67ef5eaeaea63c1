//! Beckn core's `/subscribe`: the subscriber object (registry API 1.0: `subscriber_id`, `url`,
//! `type`, `domain`, `location`, `key_id`, keys and their validity) with a `nonce`; answered by
//! `{ "status": "UNDER_SUBSCRIPTION" }` while the registry challenges us.

use serde_json::{Value, json};

use super::{Keys, Outcome, Refusal, Registration};
use crate::beckn::participant::Participant;

pub(super) fn request(me: &Participant, reg: &Registration, keys: &Keys) -> Value {
    let kind = match reg.kind {
        crate::beckn::registry::SubscriberType::Bap => "BAP",
        crate::beckn::registry::SubscriberType::Bpp => "BPP",
        crate::beckn::registry::SubscriberType::Bg => "BG",
    };
    let city = reg.city_codes.first().map_or("*", String::as_str);
    json!({
        "subscriber_id": me.subscriber_id,
        "url": me.subscriber_uri,
        "type": kind,
        "domain": reg.domain,
        "location": { "city": { "code": city }, "country": { "code": reg.country } },
        "key_id": keys.key_id,
        "signing_public_key": keys.signing_public_key,
        "encr_public_key": keys.encryption_public_key,
        "valid_from": keys.valid_from.to_string(),
        "valid_until": keys.valid_until.to_string(),
        "nonce": uuid::Uuid::new_v4().to_string(),
    })
}

/// A 2xx with a subscription status is accepted; anything else is read for why not.
pub(super) fn interpret(status: u16, json: &Value) -> Outcome {
    let state = json.get("status").and_then(Value::as_str);
    let nack = json.pointer("/message/ack/status").and_then(Value::as_str) == Some("NACK");
    if let Some(state) = state.filter(|_| (200..300).contains(&status) && !nack) {
        if ["UNDER_SUBSCRIPTION", "SUBSCRIBED", "INITIATED"].contains(&state) {
            return Outcome::accepted(status, format!("status {state}"));
        }
        return Outcome::refused(
            Some(status),
            format!("status {state}"),
            Refusal::from_text(state),
        );
    }
    let said = json
        .pointer("/error/message")
        .or_else(|| json.get("error"))
        .or_else(|| json.get("message"))
        .map_or_else(
            || json.to_string(),
            |v| v.as_str().map_or_else(|| v.to_string(), str::to_string),
        );
    let code = json
        .pointer("/error/code")
        .map(|c| {
            format!(
                " (code {})",
                c.as_str().map_or_else(|| c.to_string(), str::to_string)
            )
        })
        .unwrap_or_default();
    Outcome::refused(
        Some(status),
        format!("HTTP {status}: {said}{code}"),
        Refusal::from_text(&said),
    )
}
