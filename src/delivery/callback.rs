//! The Beckn callback: an `on_*` message (an answer, or an unsolicited update) POSTed to a
//! participant's registered URL, signed with the flow's key at every attempt, its answer read
//! as Beckn reads it (a NACK is a refusal even under a 2xx).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::Outbox;
use super::kinds::{Answer, Destination, Request, Verdict};
use crate::beckn::trust;
use crate::compile::{CompiledFlow, CompiledSet};
use crate::store::OutboxItem;

/// The outbox kinds of Beckn callbacks: answers to requests and unsolicited updates.
pub const KINDS: [&str; 2] = ["callback", "unsolicited"];

/// How long an attempt waits when its flow is not loaded.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends Beckn callbacks (and every kind no other destination claims).
pub struct BecknCallback;

impl Destination for BecknCallback {
    fn kinds(&self) -> &[&'static str] {
        &KINDS
    }

    fn prepare<'a>(
        &'a self,
        outbox: &'a Outbox,
        set: &'a Arc<CompiledSet>,
        item: &'a OutboxItem,
    ) -> BoxFuture<'a, Result<Request, Verdict>> {
        let flow = set.flow(&item.flow);
        let now = outbox.clock.now().as_second();
        let headers = flow
            .map(|f| trust::sign_outbound(&f.participant, &item.body, now))
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(request(flow, item, headers))))
    }

    fn classify(&self, _item: &OutboxItem, answer: Answer<'_>) -> Verdict {
        read_answer(answer)
    }
}

/// The request of one attempt at `item` with `headers`, within `flow`'s callback timeout.
pub(super) fn request(
    flow: Option<&Arc<CompiledFlow>>,
    item: &OutboxItem,
    headers: Vec<(String, String)>,
) -> Request {
    Request {
        url: item.url.clone(),
        headers,
        secret_headers: Vec::new(),
        body: item.body.clone(),
        timeout: flow.map_or(DEFAULT_TIMEOUT, |f| f.callback_timeout),
        turn: None,
    }
}

/// A receiver's answer read as Beckn reads it: 2xx without a NACK is delivered; a NACK or a
/// 4xx other than 408 and 429 is final; anything else is tried again.
pub(super) fn read_answer(answer: Answer<'_>) -> Verdict {
    let (status, headers, body, now) = match answer {
        // The receiver may have taken the message and answer late: the retry is a repeat
        // it must recognise by message id (limits.callback_timeout gives it longer).
        Answer::Unreachable {
            timed_out: Some(timeout),
            ..
        } => {
            return Verdict::Transient(
                format!(
                    "no answer within the callback timeout ({timeout:?}); the receiver may see this message again"
                ),
                None,
            );
        }
        Answer::Unreachable { error, .. } => return Verdict::Transient(error, None),
        Answer::Http {
            status,
            headers,
            body,
            now,
        } => (status, headers, body, now),
    };
    let asked = crate::backend::retry_after::asked(status, headers, now);
    let nack = serde_json::from_slice::<Value>(body)
        .ok()
        .filter(|v| v.pointer("/message/ack/status").and_then(Value::as_str) == Some("NACK"));
    let preview = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
    let status = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
    match (status.as_u16(), nack) {
        (200..=299, None) => Verdict::Delivered,
        (200..=299, Some(_)) => Verdict::Refused(format!("NACK: {preview}")),
        (408 | 429, _) => Verdict::Transient(format!("HTTP {status}"), asked),
        (400..=499, _) => Verdict::Refused(format!("HTTP {status}: {preview}")),
        _ => Verdict::Transient(format!("HTTP {status}"), asked),
    }
}
