//! One transaction's timeline: every message in and out, in the order recorded, each with
//! what answered it: the ACK of a request accepted, a buyer app's request's ACK or NACK with
//! its code, a callback's delivery attempts and last answer, how a received callback was
//! filed, order sink updates with their answers, requests refused with a NACK (code, message,
//! body as kept: masked and cut short), and the calls noted of a message (a provider's backend
//! calls, a buyer app's sends, a gateway's relays) with status and duration. Payloads are
//! shown masked exactly as the payload logs mask them (`beckn::redact`), whatever the log kept.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Console, refusal};
use crate::beckn::redact;
use crate::store::TransactionRecord;
use crate::store::history::{CallNotes, Delivery, LoggedMessage, NackedRequest};

pub async fn timeline(
    State(console): State<Arc<Console>>,
    Path((flow, transaction_id)): Path<(String, String)>,
) -> Response {
    let record = match console
        .admin
        .store
        .transaction_record(&flow, &transaction_id)
        .await
    {
        Ok(r) => r,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if record.messages.is_empty() && record.deliveries.is_empty() && record.nacks.is_empty() {
        return refusal(
            StatusCode::NOT_FOUND,
            &format!("nothing is recorded of transaction `{transaction_id}` of flow `{flow}`"),
        );
    }
    let verifies = console
        .admin
        .reloader
        .flows
        .load()
        .flow(&flow)
        .map(|f| f.participant.verify_signatures);
    Json(json!({
        "flow": flow,
        "transaction_id": transaction_id,
        "entries": entries(&record, verifies),
    }))
    .into_response()
}

/// The timeline's entries, oldest first.
pub fn entries(record: &TransactionRecord, verifies: Option<bool>) -> Vec<Value> {
    let mut out: Vec<(i64, i64, Value)> = Vec::new();
    let mut shown_deliveries = Vec::new();
    let mut shown_calls = vec![false; record.steps.len()];
    for m in &record.messages {
        let mut entry = json!({
            "kind": if m.direction == "in" { "received" } else { "sent" },
            "at": m.created_at,
            "action": m.action,
            "message_id": m.message_id,
            "headers": serde_json::from_str::<Value>(&m.headers).unwrap_or(Value::Null),
            "body": body(m),
        });
        let (calls, trace_id) = calls_of(record, &m.action, &m.message_id, &mut shown_calls);
        if let Some(calls) = calls {
            entry["calls"] = calls;
        }
        if let Some(trace_id) = trace_id {
            entry["trace_id"] = trace_id;
        }
        if m.direction == "in" {
            received(record, m, verifies, &mut entry);
        } else {
            let deliveries: Vec<&Delivery> = record
                .deliveries
                .iter()
                .filter(|d| d.action == m.action && d.message_id == m.message_id)
                .collect();
            shown_deliveries.extend(deliveries.iter().map(|d| d.id));
            entry["deliveries"] = json!(deliveries.iter().map(|d| delivery(d)).collect::<Vec<_>>());
            if let Some(s) = record
                .sent
                .iter()
                .find(|s| s.action == m.action && s.message_id == m.message_id)
            {
                entry["recipient"] = json!(s.recipient);
                entry["url"] = json!(s.url);
                entry["answer"] = s
                    .ack
                    .as_deref()
                    .and_then(|a| serde_json::from_str(a).ok())
                    .unwrap_or(Value::Null);
                entry["ack"] = json!(ack_of(&entry["answer"]));
                if let Some(refused) = s.refused.as_deref() {
                    entry["refused_answers"] = serde_json::from_str(refused).unwrap_or(Value::Null);
                }
            }
        }
        out.push((m.created_at, m.id, entry));
    }
    for u in &record.sink_updates {
        let d = record.deliveries.iter().find(|d| d.id == u.outbox_id);
        shown_deliveries.push(u.outbox_id);
        out.push((
            u.created_at,
            i64::MAX,
            json!({
                "kind": "sink_update",
                "at": u.created_at,
                "order_id": u.order_id,
                "state": u.state,
                "deliveries": d.map(delivery).into_iter().collect::<Vec<_>>(),
            }),
        ));
    }
    for n in &record.nacks {
        out.push((n.created_at, n.id, nacked(n)));
    }
    for (c, shown) in record.steps.iter().zip(&shown_calls) {
        if !shown {
            out.push((
                c.created_at,
                i64::MAX,
                json!({"kind": "calls", "at": c.created_at, "action": c.action,
                       "message_id": c.message_id, "calls": parse_calls(c).0}),
            ));
        }
    }
    for d in &record.deliveries {
        if !shown_deliveries.contains(&d.id) {
            out.push((
                d.created_at,
                i64::MAX,
                json!({"kind": "queued", "at": d.created_at, "action": d.action,
                       "message_id": d.message_id, "deliveries": [delivery(d)]}),
            ));
        }
    }
    out.sort_by_key(|(at, id, _)| (*at, *id));
    out.into_iter().map(|(_, _, v)| v).collect()
}

/// What was made of a message received: a request accepted (ACKed) by a provider, or a
/// callback filed by a buyer app (late and unknown ones were NACKed).
fn received(
    record: &TransactionRecord,
    m: &LoggedMessage,
    verifies: Option<bool>,
    entry: &mut Value,
) {
    if let Some(a) = record
        .accepted
        .iter()
        .find(|a| a.action == m.action && a.message_id == m.message_id)
    {
        entry["ack"] = json!("ACK");
        entry["state"] = json!(a.state);
        entry["done_at"] = json!(a.done_at);
        entry["took_ms"] = json!(a.done_at.map(|d| d - a.received_at));
    }
    if let Some(f) = record
        .filed
        .iter()
        .find(|f| f.action == m.action && f.message_id == m.message_id)
    {
        let (ack, code) = match f.disposition.as_str() {
            "late" => ("NACK", Some("30022")),
            "unknown" => ("NACK", Some("30000")),
            _ => ("ACK", None),
        };
        entry["ack"] = json!(ack);
        entry["code"] = json!(code);
        entry["filed_as"] = json!(f.disposition);
        entry["from"] = json!(f.bpp_id);
    }
    entry["signature"] = json!(match verifies {
        Some(true) => "verified (signature checks on; only signed messages are recorded)",
        Some(false) => "not checked (verify_signatures is off for this flow)",
        None => "unknown (the flow is no longer loaded)",
    });
}

/// Every call noted of the message `action`/`message_id`, in one array (marked shown; None
/// when none was noted), and the trace id noted with them when the message was traced.
fn calls_of(
    record: &TransactionRecord,
    action: &str,
    message_id: &str,
    shown: &mut [bool],
) -> (Option<Value>, Option<Value>) {
    let mut calls = Vec::new();
    let mut trace_id = None;
    for (c, shown) in record.steps.iter().zip(shown.iter_mut()) {
        if c.action == action && c.message_id == message_id {
            *shown = true;
            let (noted, traced) = parse_calls(c);
            trace_id = trace_id.or(traced);
            match noted {
                Value::Array(a) => calls.extend(a),
                other => calls.push(other),
            }
        }
    }
    ((!calls.is_empty()).then_some(Value::Array(calls)), trace_id)
}

/// The calls noted, and the trace id noted with them: an array, or for a traced message an
/// object of its trace id and calls.
fn parse_calls(c: &CallNotes) -> (Value, Option<Value>) {
    match serde_json::from_str(&c.steps).unwrap_or(Value::Null) {
        Value::Object(mut noted) => (
            noted.remove("calls").unwrap_or(Value::Null),
            noted.remove("trace_id"),
        ),
        calls => (calls, None),
    }
}

/// A request refused with a NACK: a received entry with the code, the message and what of the
/// request was kept.
fn nacked(n: &NackedRequest) -> Value {
    let masked = redact::for_the_log(n.body.as_bytes());
    let body = serde_json::from_slice(&masked)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&masked).into_owned()));
    json!({
        "kind": "received",
        "at": n.created_at,
        "action": n.action,
        "message_id": n.message_id,
        "ack": "NACK",
        "code": n.code,
        "status": n.status,
        "error": n.error,
        "path": n.path,
        "from": n.counterpart,
        "nacked": true,
        "headers": serde_json::from_str::<Value>(&n.headers).unwrap_or(Value::Null),
        "body": body,
        "body_bytes": n.body_bytes,
        "body_cut": n.body.len() == crate::store::nacks::MAX_BODY,
    })
}

/// `ACK`, `NACK <code>`, or a failure to send, of a recipient's answer as a buyer app noted it.
fn ack_of(answer: &Value) -> String {
    let status = answer
        .pointer("/message/ack/status")
        .and_then(Value::as_str);
    match (status, answer.pointer("/error/code")) {
        (Some("ACK"), _) => "ACK".into(),
        (Some(s), Some(code)) => format!("{s} {}", code.as_str().unwrap_or(&code.to_string())),
        (Some(s), None) => s.to_string(),
        (None, _) if answer.is_null() => "no answer yet".into(),
        (None, _) => "not sent".into(),
    }
}

fn delivery(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "kind": d.kind,
        "url": d.url,
        "state": d.state,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "queued_at": d.created_at,
        "finished_at": d.finished_at,
        "took_ms": d.finished_at.map(|f| f - d.created_at),
        "next_attempt_at": (d.state == "pending").then_some(d.next_attempt_at),
        "deadline": d.deadline,
    })
}

/// A logged body as JSON, masked as the payload logs mask it; text that is not JSON as text.
fn body(m: &LoggedMessage) -> Value {
    let masked = redact::for_the_log(&m.body);
    serde_json::from_slice(&masked)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&masked).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::{AcceptedRequest, LoggedMessage};

    fn logged(id: i64, direction: &str, action: &str, body: &str) -> LoggedMessage {
        LoggedMessage {
            id,
            direction: direction.into(),
            action: action.into(),
            message_id: format!("m{id}"),
            headers: "{}".into(),
            body: bytes::Bytes::from(body.to_string()),
            created_at: 1000 + id,
        }
    }

    #[test]
    fn bodies_are_masked_even_when_the_log_kept_them_in_clear() {
        let record = TransactionRecord {
            messages: vec![logged(
                1,
                "in",
                "init",
                r#"{"message":{"order":{"billing":{"name":"Asha","phone":"9999999999"}}}}"#,
            )],
            ..Default::default()
        };
        let text = serde_json::to_string(&entries(&record, Some(true))).unwrap();
        assert!(
            !text.contains("9999999999") && !text.contains("Asha"),
            "{text}"
        );
    }

    #[test]
    fn a_request_accepted_shows_its_ack_and_its_time_to_answer() {
        let record = TransactionRecord {
            messages: vec![logged(1, "in", "search", "{}")],
            accepted: vec![AcceptedRequest {
                action: "search".into(),
                message_id: "m1".into(),
                state: "done".into(),
                received_at: 1001,
                done_at: Some(1051),
            }],
            ..Default::default()
        };
        let e = &entries(&record, Some(true))[0];
        assert_eq!(e["ack"], "ACK");
        assert_eq!(e["took_ms"], 50);
    }

    #[test]
    fn a_nack_shows_its_code() {
        let answer = json!({"message": {"ack": {"status": "NACK"}}, "error": {"code": "30004"}});
        assert_eq!(ack_of(&answer), "NACK 30004");
    }
}
