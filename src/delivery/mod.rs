//! Sending `on_*` callbacks. The pipeline hands a finished, signed message to a
//! [`CallbackSender`], which from then on owns its delivery; a durable outbox is one such sender.

use std::time::Duration;

use bytes::Bytes;

/// A callback ready to send: body final, headers signed.
#[derive(Debug, Clone)]
pub struct Callback {
    pub flow: String,
    pub url: String,
    /// `on_search`, `on_select`...
    pub action: String,
    pub transaction_id: String,
    pub message_id: String,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
    /// Give up after this instant (the request's `timestamp + ttl`, when known).
    pub deadline: Option<tokio::time::Instant>,
    pub attempt_timeout: Duration,
}

pub trait CallbackSender: Send + Sync {
    /// Takes over delivery of `callback`; returns at once.
    fn submit(&self, callback: Callback);
}

/// Delivers straight over HTTP with a few retries on network errors and 5xx/429 answers.
/// Nothing survives a restart: a durable sender replaces it where that matters.
pub struct DirectSender {
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
}

impl DirectSender {
    pub fn new(attempts: u32, backoff: Duration) -> Self {
        DirectSender {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
            attempts: attempts.max(1),
            backoff,
        }
    }
}

impl CallbackSender for DirectSender {
    fn submit(&self, cb: Callback) {
        let client = self.client.clone();
        let attempts = self.attempts;
        let backoff = self.backoff;
        tokio::spawn(async move {
            for attempt in 1..=attempts {
                let mut req = client
                    .post(&cb.url)
                    .timeout(cb.attempt_timeout)
                    .header("content-type", "application/json")
                    .body(cb.body.clone());
                for (k, v) in &cb.headers {
                    req = req.header(k, v);
                }
                let outcome = req.send().await;
                let retry = match &outcome {
                    Ok(resp) if resp.status().is_success() => {
                        tracing::info!(flow = %cb.flow, action = %cb.action, transaction_id = %cb.transaction_id, message_id = %cb.message_id, url = %cb.url, attempt, status = resp.status().as_u16(), "callback delivered");
                        return;
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        tracing::warn!(flow = %cb.flow, action = %cb.action, transaction_id = %cb.transaction_id, message_id = %cb.message_id, url = %cb.url, attempt, status = status.as_u16(), "callback refused");
                        status.is_server_error() || status.as_u16() == 429
                    }
                    Err(e) => {
                        tracing::warn!(flow = %cb.flow, action = %cb.action, transaction_id = %cb.transaction_id, message_id = %cb.message_id, url = %cb.url, attempt, error = %e, "callback not delivered");
                        true
                    }
                };
                let pause = backoff * 2u32.pow(attempt - 1);
                let past_deadline = cb
                    .deadline
                    .is_some_and(|d| tokio::time::Instant::now() + pause > d);
                if !retry || attempt == attempts || past_deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            tracing::error!(flow = %cb.flow, action = %cb.action, transaction_id = %cb.transaction_id, message_id = %cb.message_id, url = %cb.url, "callback given up");
        });
    }
}
