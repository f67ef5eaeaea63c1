//! The Beckn callback: an `on_*` message (an answer, or an unsolicited update) POSTed to a
//! participant's registered URL, signed with the flow's key (once per message while the
//! signature is fresh), its answer read as Beckn reads it (a NACK is a refusal even under a
//! 2xx).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

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

/// Signatures kept for messages not yet delivered at most; past it they are all forgotten.
const SIGNED_KEPT: usize = 4096;

/// Sends Beckn callbacks (and every kind no other destination claims).
#[derive(Default)]
pub struct BecknCallback {
    /// The signature of each message whose attempt has not settled it, by outbox id: a retry
    /// within the first half of the signature's validity sends it again instead of signing
    /// (an ed25519 signature costs as much as the rest of a small attempt).
    signed: Mutex<HashMap<i64, Signed>>,
}

struct Signed {
    body: Bytes,
    subscriber_id: String,
    key_id: String,
    created: i64,
    reuse_until: i64,
    headers: Vec<(String, String)>,
}

impl BecknCallback {
    /// The signature headers of `item` at `now`: the ones of an earlier attempt when the same
    /// key signed the same bytes and the signature is in the first half of its validity.
    fn headers(
        &self,
        me: &crate::beckn::participant::Participant,
        item: &OutboxItem,
        now: i64,
    ) -> Vec<(String, String)> {
        let Some((key_id, _)) = me.signer_at(now) else {
            return Vec::new();
        };
        let signed = self.signed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = signed.get(&item.id)
            && s.key_id == key_id
            && s.subscriber_id == me.subscriber_id
            && (s.created..s.reuse_until).contains(&now)
            && s.body == item.body
        {
            return s.headers.clone();
        }
        drop(signed);
        let headers = trust::sign_outbound(me, &item.body, now);
        let mut signed = self.signed.lock().unwrap_or_else(|p| p.into_inner());
        if signed.len() >= SIGNED_KEPT {
            signed.clear();
        }
        signed.insert(
            item.id,
            Signed {
                body: item.body.clone(),
                subscriber_id: me.subscriber_id.clone(),
                key_id: key_id.to_string(),
                created: now,
                reuse_until: now + me.signature_validity / 2,
                headers: headers.clone(),
            },
        );
        headers
    }
}

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
            .map(|f| self.headers(&f.participant, item, now))
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(request(flow, item, headers))))
    }

    fn classify(&self, item: &OutboxItem, answer: Answer<'_>) -> Verdict {
        let verdict = read_answer(answer);
        if !matches!(verdict, Verdict::Transient(..)) {
            self.signed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&item.id);
        }
        verdict
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beckn::participant::test_lab;

    fn item(id: i64, body: &'static str) -> OutboxItem {
        OutboxItem {
            id,
            flow: "lab".into(),
            kind: "callback".into(),
            url: "http://127.0.0.1:9/on_search".into(),
            action: "on_search".into(),
            transaction_id: "t".into(),
            message_id: "m".into(),
            body: Bytes::from_static(body.as_bytes()),
            attempts: 0,
            deadline: None,
            epoch: 1,
            claimed_until: 0,
        }
    }

    /// A retry sends the signature of the first attempt while it is in the first half of its
    /// validity, and a new one after; another body, or a settled message, is signed anew.
    #[test]
    fn a_retry_reuses_a_fresh_signature_and_only_that() {
        let (me, callback, at) = (test_lab(), BecknCallback::default(), 1_800_000_000);
        let first = callback.headers(&me, &item(1, "{}"), at);
        assert!(first[0].1.contains(&format!("created=\"{at}\"")));
        assert_eq!(callback.headers(&me, &item(1, "{}"), at + 29), first);
        let later = callback.headers(&me, &item(1, "{}"), at + 30);
        assert!(later[0].1.contains(&format!("created=\"{}\"", at + 30)));
        let other_body = callback.headers(&me, &item(1, "{\"a\":1}"), at + 31);
        assert_ne!(other_body, later);
        let verdict = callback.classify(
            &item(1, "{\"a\":1}"),
            Answer::Unreachable {
                error: "refused".into(),
                timed_out: None,
            },
        );
        assert!(matches!(verdict, Verdict::Transient(..)));
        assert_eq!(
            callback.headers(&me, &item(1, "{\"a\":1}"), at + 32),
            other_body
        );
        let headers = reqwest::header::HeaderMap::new();
        let verdict = callback.classify(
            &item(1, "{\"a\":1}"),
            Answer::Http {
                status: 200,
                headers: &headers,
                body: b"{}",
                now: jiff::Timestamp::from_second(at + 32).unwrap(),
            },
        );
        assert_eq!(verdict, Verdict::Delivered);
        assert!(callback.signed.lock().unwrap().is_empty());
    }
}
