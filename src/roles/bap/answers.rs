//! What the app hears about a request: the answers filed so far, whether more are expected,
//! and what did not arrive before the ttl ended. Every answer mode reads the same document from
//! the store: a synchronous call when it is complete (or the ttl ended), `GET responses/{id}`
//! at any time, and each webhook delivery carries the callback it is about.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};

use super::BapEndpoint;
use super::signals::announced;
use crate::compile::CompiledFlow;
use crate::engine::flow_value;
use crate::store::{Disposition, RefusedCallback, SentRequest, StoreError};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// Every expected answer arrived, none with an error.
    Complete,
    /// Every expected answer arrived, some with an error (listed in `errors`).
    CompleteWithErrors,
    /// Every expected answer arrived, each with an error (listed in `errors`).
    Error,
    /// Acknowledged; answers may still come until the ttl ends.
    Waiting,
    /// The ttl ended first: `missing` says who did not answer.
    TimedOut,
    /// Not acknowledged (NACK, or the recipient could not be reached): nothing will come.
    Refused,
}

impl AnswerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerStatus::Complete => "complete",
            AnswerStatus::CompleteWithErrors => "complete_with_errors",
            AnswerStatus::Error => "error",
            AnswerStatus::Waiting => "waiting",
            AnswerStatus::TimedOut => "timed_out",
            AnswerStatus::Refused => "refused",
        }
    }
}

/// A BPP expected to answer that has not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub bpp_id: String,
    pub reason: String,
}

/// An answer that carries a Beckn `error` instead of (or besides) a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerError {
    pub bpp_id: String,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<String>,
}

/// The answer document of one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerDoc {
    pub action: String,
    pub transaction_id: String,
    pub message_id: String,
    pub mode: String,
    pub status: AnswerStatus,
    /// A sentence for people: how many answers, and what is missing.
    pub summary: String,
    /// Who the request went to, and where.
    pub sent: Value,
    /// The recipient's ACK, NACK (with its error) or why it failed.
    pub ack: Value,
    /// `timestamp + ttl` of the request (RFC 3339).
    pub expires_at: String,
    pub expected: Vec<String>,
    /// The Beckn request as sent (the context the adapter built, the message).
    pub request: Value,
    /// The `on_*` callbacks answering the request, in the order they arrived.
    pub responses: Vec<Value>,
    /// The errors those callbacks carry, one per callback with an `error`.
    pub errors: Vec<AnswerError>,
    pub missing: Vec<Missing>,
    /// Callbacks naming this request that were refused (NACKed, not filed): from whom (as
    /// claimed), when, the NACK's code and why. An expected BPP listed here and in `missing`
    /// did answer, unusably.
    pub refused: Vec<RefusedCallback>,
    /// The action's response template applied to the above, when the flow has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the response template failed (the Beckn answers above are complete regardless).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_error: Option<String>,
}

/// The document of `request` as the store has it now.
pub async fn document(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    request: &SentRequest,
) -> Result<AnswerDoc, StoreError> {
    let filed = ep
        .store()
        .callbacks_for_message(&flow.name, &request.message_id)
        .await?;
    let callback = format!("on_{}", request.action);
    let answers: Vec<_> = filed
        .iter()
        .filter(|c| c.disposition == Disposition::Answer && c.action == callback)
        .collect();
    let answered: BTreeSet<&str> = answers.iter().map(|c| c.bpp_id.as_str()).collect();
    let ack: Value = request
        .ack
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_else(|| json!({"status": "PENDING"}));
    let acked = ack["status"] == "ACK";
    let expires_at = jiff::Timestamp::from_millisecond(request.expires_at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let expected_all = !request.expected.is_empty()
        && request
            .expected
            .iter()
            .all(|e| answered.contains(e.as_str()));
    let responses: Vec<Value> = answers
        .iter()
        .map(|c| serde_json::from_slice(&c.body).unwrap_or(Value::Null))
        .collect();
    let errors: Vec<AnswerError> = answers
        .iter()
        .zip(&responses)
        .filter_map(|(c, body)| answer_error(&c.bpp_id, body))
        .collect();
    let status = answer_status(
        acked,
        expected_all,
        ep.services.clock.now_ms() >= request.expires_at,
        answers.len(),
        errors.len(),
    );
    let refused: Vec<RefusedCallback> = request
        .refused
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let missing: Vec<Missing> = request
        .expected
        .iter()
        .filter(|e| !answered.contains(e.as_str()))
        .map(|e| Missing {
            bpp_id: e.clone(),
            reason: with_refusal(
                e,
                &refused,
                match status {
                    AnswerStatus::Refused => {
                        format!("the request was not acknowledged by {}", request.recipient)
                    }
                    AnswerStatus::TimedOut => {
                        format!("no {callback} before the ttl ended at {expires_at}")
                    }
                    _ => format!("awaited until {expires_at}"),
                },
            ),
        })
        .collect();
    let mut summary = summary(
        request,
        status,
        &callback,
        answers.len(),
        &missing,
        &ack,
        &expires_at,
    );
    let unanswered: Vec<&RefusedCallback> = refused
        .iter()
        .filter(|r| !answered.contains(r.bpp_id.as_str()))
        .collect();
    if !unanswered.is_empty() {
        let each: Vec<String> = unanswered
            .iter()
            .map(|r| {
                format!(
                    "{}'s at {} ({} {})",
                    r.bpp_id, r.received_at, r.code, r.reason
                )
            })
            .collect();
        summary.push_str(&format!(
            "; {} {callback} refused: {}",
            unanswered.len(),
            each.join("; ")
        ));
    }
    if !errors.is_empty() {
        let each: Vec<String> = errors
            .iter()
            .map(|e| format!("{} {} {}", e.bpp_id, e.code, e.message))
            .collect();
        summary.push_str(&format!(
            "; {} with an error: {}",
            errors.len(),
            each.join("; ")
        ));
    }
    let request_body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let mut doc = AnswerDoc {
        action: request.action.clone(),
        transaction_id: request.transaction_id.clone(),
        message_id: request.message_id.clone(),
        mode: request.mode.clone(),
        status,
        summary,
        sent: json!({"to": request.recipient, "url": request.url}),
        ack,
        expires_at,
        expected: request.expected.clone(),
        request: request_body.clone(),
        responses,
        errors,
        missing,
        refused,
        result: None,
        result_error: None,
    };
    let template = flow
        .bap()
        .and_then(|b| request.action.parse().ok().and_then(|a| b.actions.get(&a)))
        .and_then(|t| t.response.clone());
    if let Some(name) = template {
        let missing = serde_json::to_value(&doc.missing).unwrap_or(Value::Null);
        match render_result(
            flow,
            &name,
            &doc.responses,
            &missing,
            status.as_str(),
            &request_body,
        ) {
            Ok(v) => doc.result = Some(v),
            Err(e) => {
                tracing::warn!(flow = %flow.name, action = %request.action, transaction_id = %request.transaction_id, message_id = %request.message_id, error = %e, "response template failed");
                doc.result_error = Some(e);
            }
        }
    }
    Ok(doc)
}

/// A missing BPP's `reason`, saying so when its callback came and was refused (the latest).
fn with_refusal(bpp_id: &str, refused: &[RefusedCallback], reason: String) -> String {
    match refused.iter().rev().find(|r| r.bpp_id == bpp_id) {
        Some(r) => format!(
            "{reason}; its {} at {} was refused ({} {})",
            r.action, r.received_at, r.code, r.reason
        ),
        None => reason,
    }
}

/// Where a request stands: refused, else complete once every expected answer arrived (with or
/// without errors), else timed out or waiting.
fn answer_status(
    acked: bool,
    all_arrived: bool,
    expired: bool,
    answers: usize,
    errors: usize,
) -> AnswerStatus {
    if !acked {
        AnswerStatus::Refused
    } else if all_arrived && errors == 0 {
        AnswerStatus::Complete
    } else if all_arrived && errors >= answers {
        AnswerStatus::Error
    } else if all_arrived {
        AnswerStatus::CompleteWithErrors
    } else if expired {
        AnswerStatus::TimedOut
    } else {
        AnswerStatus::Waiting
    }
}

/// The Beckn `error` a callback carries, if any.
fn answer_error(bpp_id: &str, body: &Value) -> Option<AnswerError> {
    let error = body.get("error").filter(|e| e.is_object())?;
    let field = |k: &str| match error.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    Some(AnswerError {
        bpp_id: bpp_id.to_string(),
        code: field("code").unwrap_or_default(),
        message: field("message").unwrap_or_default(),
        paths: field("paths"),
    })
}

fn summary(
    request: &SentRequest,
    status: AnswerStatus,
    callback: &str,
    arrived: usize,
    missing: &[Missing],
    ack: &Value,
    expires_at: &str,
) -> String {
    let expected = request.expected.len();
    let names = |m: &[Missing]| {
        m.iter()
            .map(|x| x.bpp_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match status {
        AnswerStatus::Refused => format!(
            "{} did not acknowledge the {} ({}): {}",
            request.recipient,
            request.action,
            ack["status"].as_str().unwrap_or("no answer"),
            ack.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ),
        AnswerStatus::Complete | AnswerStatus::CompleteWithErrors | AnswerStatus::Error => {
            format!("{arrived} of {expected} expected {callback} arrived")
        }
        AnswerStatus::TimedOut if missing.is_empty() => format!(
            "{arrived} {callback} arrived before the ttl ended at {expires_at} (no provider was known to be expected)"
        ),
        AnswerStatus::TimedOut => format!(
            "{} of {expected} expected {callback} arrived before the ttl ended at {expires_at}; no answer from {}",
            expected - missing.len(),
            names(missing)
        ),
        AnswerStatus::Waiting => format!(
            "{arrived} {callback} so far; awaited until {expires_at}{}",
            if missing.is_empty() {
                String::new()
            } else {
                format!(" from {}", names(missing))
            }
        ),
    }
}

/// Waits until the request is complete or its ttl ended (answers filed in this or, on a shared
/// store, another process wake it), then returns its document.
pub async fn wait(
    ep: &BapEndpoint,
    flow: &CompiledFlow,
    request: &SentRequest,
) -> Result<AnswerDoc, StoreError> {
    let store = ep.store();
    // A shared store's announcements can be missed while its listener reconnects: re-read it
    // now and then regardless.
    let poll = store
        .shared()
        .then_some(std::time::Duration::from_millis(500));
    let mut rx = ep.signals.subscribe(store);
    loop {
        let doc = document(ep, flow, request).await?;
        if doc.status != AnswerStatus::Waiting {
            return Ok(doc);
        }
        let look_again = async {
            match poll {
                Some(p) => tokio::time::sleep(p).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = announced(&mut rx, &request.message_id) => {}
            _ = ep.services.clock.sleep_until_ms(request.expires_at + 1) => {}
            _ = look_again => {}
        }
    }
}

/// The action's response template applied to callbacks: `responses`, `missing`, `status`, the
/// request's `context` and `message`, and `flow`.
pub fn render_result(
    flow: &CompiledFlow,
    template: &str,
    responses: &[Value],
    missing: &Value,
    status: &str,
    request: &Value,
) -> Result<Value, String> {
    let scope = crate::mapping::jvalue(json!({
        "responses": responses,
        "missing": missing,
        "status": status,
        "context": request.get("context").cloned().unwrap_or(Value::Null),
        "message": request.get("message").cloned().unwrap_or(Value::Null),
        "flow": flow_value(flow),
    }));
    flow.templates
        .render_json(template, &scope)
        .map_err(|e| format!("{template}: {}", e.detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_answers_show_in_the_status() {
        use AnswerStatus::*;
        assert_eq!(answer_status(true, true, false, 2, 0), Complete);
        assert_eq!(answer_status(true, true, false, 2, 1), CompleteWithErrors);
        assert_eq!(answer_status(true, true, false, 1, 1), Error);
        assert_eq!(answer_status(true, false, true, 1, 1), TimedOut);
        assert_eq!(answer_status(true, false, false, 0, 0), Waiting);
        assert_eq!(answer_status(false, false, false, 0, 0), Refused);
        let e = answer_error(
            "bpp.example",
            &json!({"error": {"code": "30010", "message": "no such order", "paths": null}}),
        );
        assert_eq!(
            e,
            Some(AnswerError {
                bpp_id: "bpp.example".into(),
                code: "30010".into(),
                message: "no such order".into(),
                paths: None,
            })
        );
        assert_eq!(answer_error("b", &json!({"message": {}})), None);
    }
}
