//! A sample ERP of a soil-testing laboratory business.
//!
//! It hosts two labs, GreenField Soil Labs (New Delhi, `GFSL`) and Krishi
//! Test House (Pune, `KTH`), behind one REST API under `/api/v1`: catalog
//! search, slots, quotes, orders with a status life cycle, cancellation,
//! tracking, feedback and support tickets. State lives in memory and is
//! seeded at start.
//!
//! The API is the ERP's own and knows nothing of any network protocol: it is
//! what a protocol adapter has to map, and its demo and integration tests run
//! against it. To make those tests honest it can also misbehave on request
//! ([`Fault`]). Status changes are logged as events, which it posts to a
//! webhook and lists at `GET /api/v1/labs/{lab}/order-events?after=N` for
//! callers that poll.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use sample_erp::{ErpConfig, SampleErp};
//!
//! let erp = SampleErp::new(ErpConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! erp.serve(listener, std::future::pending()).await
//! # }
//! ```

mod api;
mod catalog;
mod error;
mod events;
mod extract;
mod faults;
mod orders;
mod quotes;
mod slots;
mod store;
mod support;
mod webhook;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;

pub use catalog::Mode;
pub use error::ErpError;
pub use events::{EventPage, STATUS_CHANGED, StatusEvent};
pub use faults::Fault;
pub use orders::{
    Agent, Billing, Cancellation, CancelledBy, Customer, HistoryEntry, Order, OrderStatus, Payment,
    PaymentMode, PaymentStatus,
};
pub use quotes::Line;
pub use slots::Slot;
pub use support::Feedback;
pub use webhook::{SIGNATURE_HEADER, WebhookConfig, sign as sign_webhook};

use events::{EventLog, EventQuery};
use store::{Books, LabBook};
use webhook::Webhook;

/// The API key of [`ErpConfig::default`]. A well-known, test-only value:
/// never use it for anything reachable from outside the machine.
pub const DEFAULT_API_KEY: &str = "sample-erp-key";

/// How to run the ERP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpConfig {
    /// Expected in the `X-Api-Key` header of every lab and control call.
    /// Defaults to [`DEFAULT_API_KEY`], a test-only key.
    pub api_key: String,
    /// Where to post status-change events, if anywhere.
    pub webhook: Option<WebhookConfig>,
}

impl Default for ErpConfig {
    fn default() -> ErpConfig {
        ErpConfig {
            api_key: DEFAULT_API_KEY.to_owned(),
            webhook: None,
        }
    }
}

/// A handle to one running ERP: cheap to clone, all clones share its state.
#[derive(Clone)]
pub struct SampleErp {
    shared: Arc<Shared>,
}

struct Shared {
    config: ErpConfig,
    books: Mutex<Books>,
    fault: Mutex<Option<Fault>>,
    events: Mutex<EventLog>,
    webhook: Option<Webhook>,
    /// Orders placed under an `Idempotency-Key`: (lab, key) -> order number.
    placed_under_key: Mutex<std::collections::HashMap<(String, String), String>>,
}

impl std::fmt::Debug for SampleErp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleErp")
            .field(
                "webhook",
                &self.shared.config.webhook.as_ref().map(|w| &w.url),
            )
            .field("fault", &self.fault())
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, carrying on if a panicking thread poisoned it: every
/// operation validates before it mutates, so the data is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SampleErp {
    /// An ERP with both labs seeded and no orders.
    pub fn new(config: ErpConfig) -> SampleErp {
        let webhook = config.webhook.clone().and_then(Webhook::new);
        SampleErp {
            shared: Arc::new(Shared {
                config,
                books: Mutex::new(Books::seeded()),
                fault: Mutex::new(None),
                events: Mutex::new(EventLog::default()),
                webhook,
                placed_under_key: Mutex::default(),
            }),
        }
    }

    /// The whole HTTP API, ready to serve or to call in-process.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "sample ERP listening");
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Makes every lab call misbehave (or behave again with `None`); the same
    /// as `PUT`/`DELETE /api/v1/faults`.
    pub fn set_fault(&self, fault: Option<Fault>) {
        tracing::info!(?fault, "fault injection changed");
        *lock(&self.shared.fault) = fault;
    }

    /// The fault currently injected, if any.
    pub fn fault(&self) -> Option<Fault> {
        *lock(&self.shared.fault)
    }

    /// A snapshot of every order of both labs, for test assertions.
    pub fn orders(&self) -> Vec<Order> {
        lock(&self.shared.books).orders()
    }

    /// Moves an order to its next status, as the lab's staff would, records
    /// the change in the event log and notifies the webhook.
    pub fn advance(&self, lab: &str, order_no: &str) -> Result<Order, ErpError> {
        self.advance_to(lab, order_no, None)
    }

    /// Moves an order forward to `target` (or one step), announcing each
    /// status entered.
    pub(crate) fn advance_to(
        &self,
        lab: &str,
        order_no: &str,
        target: Option<OrderStatus>,
    ) -> Result<Order, ErpError> {
        let changes =
            self.with_lab(lab, |book| book.advance(order_no, target, Timestamp::now()))?;
        let order = changes
            .last()
            .cloned()
            .ok_or_else(|| ErpError::Internal(format!("advancing {order_no} changed nothing")))?;
        self.announce(changes);
        Ok(order)
    }

    pub(crate) fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// Runs `operation` on the books of lab `code` under the state lock.
    /// The order placed at `lab` under idempotency `key`, if any.
    pub(crate) fn placed_under(&self, lab: &str, key: &str) -> Option<String> {
        lock(&self.shared.placed_under_key)
            .get(&(lab.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Notes that `order_no` was placed at `lab` under idempotency `key`.
    pub(crate) fn note_placed(&self, lab: &str, key: &str, order_no: &str) {
        lock(&self.shared.placed_under_key)
            .insert((lab.to_owned(), key.to_owned()), order_no.to_owned());
    }

    pub(crate) fn with_lab<R>(
        &self,
        code: &str,
        operation: impl FnOnce(&mut LabBook) -> Result<R, ErpError>,
    ) -> Result<R, ErpError> {
        let mut books = lock(&self.shared.books);
        operation(books.lab_mut(code)?)
    }

    /// Logs status changes, records them in the event log, and posts them to
    /// the webhook, if one is set.
    pub(crate) fn announce(&self, changes: Vec<Order>) {
        for order in &changes {
            tracing::info!(
                lab = %order.lab_code,
                order_no = %order.order_no,
                status = %order.status,
                "order status changed"
            );
        }
        let events = lock(&self.shared.events).record(&changes);
        if let Some(webhook) = &self.shared.webhook {
            webhook.notify(events);
        }
    }

    /// Lab `lab`'s status changes after `after` (their `seq`), at most
    /// `limit` of them; the same as `GET /api/v1/labs/{lab}/order-events`.
    pub fn events(
        &self,
        lab: &str,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<EventPage, ErpError> {
        catalog::lab(lab).ok_or_else(|| ErpError::UnknownLab(lab.to_owned()))?;
        lock(&self.shared.events).page(lab, &EventQuery { after, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_uses_the_test_key_and_no_webhook() {
        let config = ErpConfig::default();
        assert_eq!(config.api_key, "sample-erp-key");
        assert_eq!(config.webhook, None);
    }

    #[test]
    fn clones_share_state() {
        let erp = SampleErp::new(ErpConfig::default());
        let clone = erp.clone();
        clone.set_fault(Some(Fault::Html));
        assert_eq!(erp.fault(), Some(Fault::Html));
        erp.set_fault(None);
        assert_eq!(clone.fault(), None);
    }

    #[test]
    fn advancing_unknown_things_is_not_found() {
        let erp = SampleErp::new(ErpConfig::default());
        assert!(matches!(
            erp.advance("NOPE", "NOPE-000001"),
            Err(ErpError::UnknownLab(_))
        ));
        assert!(matches!(
            erp.advance("GFSL", "GFSL-000001"),
            Err(ErpError::OrderNotFound { .. })
        ));
    }
}
