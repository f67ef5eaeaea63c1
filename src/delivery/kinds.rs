//! What the outbox sends, by kind. Every outbox message has a `kind`; the [`Destination`]
//! registered for it says how one attempt is made (URL, headers, body, timeout) and what the
//! receiver's answer means (delivered, worth another try, refused for good), and caps the
//! backoff between attempts. The Beckn callback and the app webhook are destinations of the
//! outbox itself; an order sink brings its own (`crate::sinks`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use tokio::sync::OwnedSemaphorePermit;

use super::{DeliverySettings, Outbox};
use crate::compile::CompiledSet;
use crate::store::OutboxItem;

/// One attempt, ready to POST.
pub struct Request {
    pub url: String,
    /// Besides `content-type: application/json`; shown in the payload log.
    pub headers: Vec<(String, String)>,
    /// Sent but never logged (a bearer token).
    pub secret_headers: Vec<(String, String)>,
    pub body: Bytes,
    pub timeout: Duration,
    /// Held until the answer is read: a receiver's limit of calls in flight.
    pub turn: Option<OwnedSemaphorePermit>,
}

/// What came back from one attempt.
pub enum Answer<'a> {
    /// No answer: the receiver could not be reached, or did not answer within the timeout.
    Unreachable {
        error: String,
        /// The timeout, when that is what ended the attempt.
        timed_out: Option<Duration>,
    },
    Http {
        status: u16,
        headers: &'a HeaderMap,
        body: &'a [u8],
        /// When it came, by the outbox's clock: what a `Retry-After` date is read against.
        now: jiff::Timestamp,
    },
}

/// What an attempt (or the preparation of one) comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth trying again, not before the wait a 429 or 503 asked for with `Retry-After`.
    Transient(String, Option<Duration>),
    /// Refused for good: retrying cannot help.
    Refused(String),
}

/// How messages of one outbox kind are sent.
pub trait Destination: Send + Sync {
    /// The outbox kinds this destination sends.
    fn kinds(&self) -> &[&'static str];

    /// The longest pause between two attempts.
    fn max_backoff(&self, settings: &DeliverySettings) -> Duration {
        settings.max_backoff
    }

    /// The request of one attempt at `item` (with a signature valid now: one made for an
    /// earlier attempt only while it is fresh), or the verdict when there is nothing to send.
    fn prepare<'a>(
        &'a self,
        outbox: &'a Outbox,
        set: &'a Arc<CompiledSet>,
        item: &'a OutboxItem,
    ) -> BoxFuture<'a, Result<Request, Verdict>>;

    /// What the receiver's `answer` to `request` means.
    fn classify(&self, item: &OutboxItem, answer: Answer<'_>) -> Verdict;
}

/// The destinations of an outbox, by kind; a kind nobody registered goes as a Beckn callback.
pub struct Kinds {
    by_kind: HashMap<&'static str, Arc<dyn Destination>>,
    fallback: Arc<dyn Destination>,
}

impl Kinds {
    pub fn new(fallback: Arc<dyn Destination>) -> Self {
        let mut kinds = Kinds {
            by_kind: HashMap::new(),
            fallback: fallback.clone(),
        };
        kinds.register(fallback);
        kinds
    }

    /// Sends the kinds `destination` names through it (replacing an earlier registration).
    pub fn register(&mut self, destination: Arc<dyn Destination>) {
        for kind in destination.kinds() {
            self.by_kind.insert(kind, destination.clone());
        }
    }

    /// The destination of messages of `kind`.
    pub fn of(&self, kind: &str) -> &Arc<dyn Destination> {
        self.by_kind.get(kind).unwrap_or(&self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_destination_and_unknown_kinds_go_as_callbacks() {
        let mut kinds = Kinds::new(Arc::new(crate::delivery::callback::BecknCallback::default()));
        kinds.register(Arc::new(crate::delivery::app_webhook::AppWebhook));
        for destination in crate::sinks::destinations() {
            kinds.register(destination);
        }
        assert_eq!(kinds.of("app_webhook").kinds(), ["app_webhook"]);
        assert_eq!(kinds.of("ultra").kinds(), ["ultra"]);
        assert_eq!(kinds.of("callback").kinds(), ["callback", "unsolicited"]);
        assert_eq!(kinds.of("forward").kinds(), ["callback", "unsolicited"]);
        let settings = DeliverySettings::default();
        assert_eq!(
            kinds.of("ultra").max_backoff(&settings),
            Duration::from_secs(300)
        );
        assert_eq!(
            kinds.of("callback").max_backoff(&settings),
            settings.max_backoff
        );
    }
}
