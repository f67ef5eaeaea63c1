//! ONDC's `/subscribe` (registry onboarding docs): `context.operation.ops_no` and a `message`
//! with the `request_id`, the `entity` (gst, pan, signatory, contact, `subscriber_id`,
//! `unique_key_id`, `callback_url`, `key_pair`) and the `network_participant` list. Answered
//! `{"message":{"ack":{"status":"ACK"}},"error":null}` once the challenge and the site
//! verification passed, else a NACK with an error code and message.

use serde_json::{Value, json};

use super::{Keys, Outcome, Refusal, Registration, SubscribeError};
use crate::beckn::participant::Participant;
use crate::beckn::registry::SubscriberType;

/// ONDC writes key validity as RFC 3339 with milliseconds, UTC.
fn ondc_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub(super) fn request(
    me: &Participant,
    reg: &Registration,
    keys: &Keys,
    now: jiff::Timestamp,
) -> Result<Value, SubscribeError> {
    let mut entity = reg.entity.clone().ok_or(SubscribeError::Missing(
        "the entity details of ONDC's registry (network.subscription.entity)",
    ))?;
    let participant_type = match reg.kind {
        SubscriberType::Bap => "buyerApp",
        SubscriberType::Bpp => "sellerApp",
        SubscriberType::Bg => "gateway",
    };
    // The subscriber URL is a path under https://<subscriber_id>.
    let path = subscriber_path(&me.subscriber_uri);
    if let Value::Object(e) = &mut entity {
        e.insert("country".into(), json!(reg.country));
        e.insert("subscriber_id".into(), json!(me.subscriber_id));
        e.insert("unique_key_id".into(), json!(keys.key_id));
        e.insert("callback_url".into(), json!(reg.callback_url));
        e.insert(
            "key_pair".into(),
            json!({
                "signing_public_key": keys.signing_public_key,
                "encryption_public_key": keys.encryption_public_key,
                "valid_from": ondc_time(keys.valid_from),
                "valid_until": ondc_time(keys.valid_until),
            }),
        );
    }
    Ok(json!({
        "context": { "operation": { "ops_no": reg.ops_no } },
        "message": {
            "request_id": reg.request_id,
            "timestamp": ondc_time(now),
            "entity": entity,
            "network_participant": [{
                "subscriber_url": path,
                "domain": reg.domain,
                "type": participant_type,
                "msn": reg.msn,
                "city_code": reg.city_codes,
            }],
        },
    }))
}

/// The path of `uri` without a trailing slash (`/` when it has none).
pub(super) fn subscriber_path(uri: &str) -> String {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |at| after_scheme[at..].trim_end_matches('/'));
    if path.is_empty() {
        "/".into()
    } else {
        path.to_string()
    }
}

/// ACK is accepted; a NACK or an error status is read by its error code and message.
pub(super) fn interpret(status: u16, json: &Value) -> Outcome {
    let ack = json.pointer("/message/ack/status").and_then(Value::as_str);
    let error = json.get("error").filter(|e| !e.is_null());
    if (200..300).contains(&status) && ack == Some("ACK") && error.is_none() {
        return Outcome::accepted(status, "ACK".into());
    }
    let text = |v: Option<&Value>| {
        v.map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    let code = text(error.and_then(|e| e.get("code")));
    let message = text(error.and_then(|e| e.get("message")));
    let said = match (ack, error) {
        (_, Some(_)) => format!(
            "HTTP {status}, {} code {code}: {message}",
            ack.unwrap_or("no ACK")
        ),
        (Some(a), None) => format!("HTTP {status}, {a} without an error"),
        (None, None) => format!("HTTP {status}, an answer of unknown shape: {json}"),
    };
    Outcome::refused(Some(status), said, Refusal::from_text(&message))
}
