//! Deliveries to a buyer app's own application (its webhook): the `on_*` callbacks of
//! `webhook`-mode calls and unsolicited updates, posted through the outbox like any message so
//! that they survive restarts and are retried.
//!
//! They are not Beckn messages, so they are not signed with the participant's key: the app
//! checks an HMAC-SHA256 of a secret it shares with the adapter. The header is
//! `t=<unix seconds>,sha256=<hex of HMAC(secret, "<t>.<body>")>`: binding the time into the
//! signature lets the app refuse replays of old deliveries.

use std::sync::Arc;

use futures::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::Outbox;
use super::callback::{read_answer, request};
use super::kinds::{Answer, Destination, Request, Verdict};
use crate::compile::{CompiledFlow, CompiledSet};
use crate::store::OutboxItem;

/// The outbox `kind` of a delivery to the app's webhook.
pub const KIND: &str = "app_webhook";

/// Sends deliveries to a buyer app's webhook: HMAC-signed at every attempt, answers read as a
/// callback's are.
pub struct AppWebhook;

impl Destination for AppWebhook {
    fn kinds(&self) -> &[&'static str] {
        &[KIND]
    }

    fn prepare<'a>(
        &'a self,
        outbox: &'a Outbox,
        set: &'a Arc<CompiledSet>,
        item: &'a OutboxItem,
    ) -> BoxFuture<'a, Result<Request, Verdict>> {
        let flow = set.flow(&item.flow);
        let now = outbox.clock.now().as_second();
        let headers = flow.map(|f| headers_for(f, item, now)).unwrap_or_default();
        Box::pin(std::future::ready(Ok(request(flow, item, headers))))
    }

    fn classify(&self, _item: &OutboxItem, answer: Answer<'_>) -> Verdict {
        read_answer(answer)
    }
}

/// The HMAC header that authenticates one delivery attempt of `item` to `flow`'s webhook, made
/// at `now` (unix seconds).
pub fn headers_for(flow: &CompiledFlow, item: &OutboxItem, now: i64) -> Vec<(String, String)> {
    let Some(webhook) = flow.bap().and_then(|b| b.webhook.as_ref()) else {
        return Vec::new();
    };
    vec![(
        webhook.signature_header.clone(),
        signature(webhook.secret.expose().as_bytes(), &item.body, now),
    )]
}

/// `t=<at>,sha256=<hex>` for `body` under `secret`, made at `at` (Unix seconds).
pub fn signature(secret: &[u8], body: &[u8], at: i64) -> String {
    format!("t={at},sha256={}", hex::encode(tag(secret, body, at)))
}

fn tag(secret: &[u8], body: &[u8], at: i64) -> Vec<u8> {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(format!("{at}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSignatureError {
    #[error("the signature header is not `t=<unix seconds>,sha256=<hex>`")]
    Malformed,
    #[error("the signature was made at {at}, more than {tolerance}s from now ({now})")]
    OutOfTime { at: i64, now: i64, tolerance: i64 },
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a delivery as the app should: the HMAC over `"<t>.<body>"` with the shared secret,
/// and `t` within `tolerance` seconds of `now`.
pub fn verify(
    secret: &[u8],
    body: &[u8],
    header: &str,
    now: i64,
    tolerance: i64,
) -> Result<(), WebhookSignatureError> {
    let mut at = None;
    let mut hex_tag = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => at = v.parse::<i64>().ok(),
            Some(("sha256", v)) => hex_tag = Some(v),
            _ => {}
        }
    }
    let (Some(at), Some(hex_tag)) = (at, hex_tag) else {
        return Err(WebhookSignatureError::Malformed);
    };
    let given = hex::decode(hex_tag).map_err(|_| WebhookSignatureError::Malformed)?;
    if (now - at).abs() > tolerance {
        return Err(WebhookSignatureError::OutOfTime { at, now, tolerance });
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .map_err(|_| WebhookSignatureError::Mismatch)?;
    mac.update(format!("{at}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| WebhookSignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_body_secret_and_time() {
        let sig = signature(b"s3cret", b"{\"a\":1}", 1_800_000_000);
        assert!(sig.starts_with("t=1800000000,sha256="), "{sig}");
        assert_eq!(
            verify(b"s3cret", b"{\"a\":1}", &sig, 1_800_000_010, 300),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", b"{\"a\":2}", &sig, 1_800_000_010, 300),
            Err(WebhookSignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", b"{\"a\":1}", &sig, 1_800_000_010, 300),
            Err(WebhookSignatureError::Mismatch)
        );
        assert!(matches!(
            verify(b"s3cret", b"{\"a\":1}", &sig, 1_800_001_000, 300),
            Err(WebhookSignatureError::OutOfTime { .. })
        ));
        // a replayed tag under another time does not verify
        let moved = sig.replace("t=1800000000", "t=1800000500");
        assert_eq!(
            verify(b"s3cret", b"{\"a\":1}", &moved, 1_800_000_500, 300),
            Err(WebhookSignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", b"{}", "sha256=00", 0, 300),
            Err(WebhookSignatureError::Malformed)
        );
    }
}
