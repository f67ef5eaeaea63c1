//! Status-change notifications to the caller's webhook.
//!
//! After every status change the ERP posts its `order.status_changed` event
//! (a [`StatusEvent`], as the event log lists it), signed with HMAC-SHA256
//! over the exact body bytes so the receiver can check it came from the ERP. Delivery is fire-and-forget: the API call that
//! caused the change never waits for, or fails because of, the receiver.
//! Events of one change are posted in order, one after the other.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::events::StatusEvent;

/// The header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Erp-Signature";
/// A receiver gets this long per event.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Where to post events and the shared secret to sign them with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: String,
    /// Per-lab receivers, by lab code, instead of `url` (each lab's own integration).
    pub lab_urls: std::collections::BTreeMap<String, String>,
}

/// `sha256=<hex>` for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A configured webhook with its HTTP client.
#[derive(Debug, Clone)]
pub struct Webhook {
    config: WebhookConfig,
    client: reqwest::Client,
}

impl Webhook {
    /// `None` (with an error logged) if no HTTP client can be built, so that
    /// a broken webhook set-up never stops the ERP itself.
    pub fn new(config: WebhookConfig) -> Option<Webhook> {
        match reqwest::Client::builder().timeout(TIMEOUT).build() {
            Ok(client) => Some(Webhook { config, client }),
            Err(error) => {
                tracing::error!(%error, "cannot build webhook client; webhooks disabled");
                None
            }
        }
    }

    /// Posts the events, in order, in a background task.
    pub fn notify(&self, changes: Vec<StatusEvent>) {
        if changes.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                events = changes.len(),
                "no async runtime; status-change webhooks not sent"
            );
            return;
        };
        let webhook = self.clone();
        runtime.spawn(async move {
            for event in &changes {
                webhook.post(event).await;
            }
        });
    }

    async fn post(&self, event: &StatusEvent) {
        let order = &event.order;
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, order_no = %order.order_no, "cannot serialize webhook event");
                return;
            }
        };
        let signature = sign(self.config.secret.as_bytes(), &body);
        let url = self
            .config
            .lab_urls
            .get(&order.lab_code)
            .unwrap_or(&self.config.url);
        if url.is_empty() {
            return;
        }
        let result = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match result {
            Ok(_) => tracing::debug!(
                order_no = %order.order_no,
                status = %order.status,
                "webhook delivered"
            ),
            Err(error) => tracing::warn!(
                %error,
                url = %self.config.url,
                order_no = %order.order_no,
                status = %order.status,
                "webhook delivery failed"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe".
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
