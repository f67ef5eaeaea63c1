//! A sample laboratory information system (LIMS) of Bhoomi Soil Labs, Bengaluru: the second
//! kind of lab system the adapter's sample network wires, deliberately unlike the sample ERP.
//!
//! - OAuth2 client credentials (`POST /oauth/token`, form body, client id and secret in the
//!   form or as HTTP Basic) with short-lived bearer tokens; `401` on a dead token.
//! - A paged catalog (`GET /api/tests?page=N&per_page=M`, `{"data", "meta": {"page",
//!   "pages"}}`), prices as decimal rupee strings (`"1250.00"`).
//! - Quotations, then bookings that answer only `{"booking_no", "state"}`; a status endpoint
//!   with the state and little else; cancellation; field-visit slots in local time
//!   (`YYYY-MM-DDTHH:MM`, Asia/Kolkata); feedback and enquiries.
//! - Faults as `{"fault": {"code": "SLOT_TAKEN", "detail": "..."}}`.
//! - No webhook, no event feed: a client learns of changes only by asking.
//!
//! Tests and the demo move bookings (`POST /_lab/bookings/{no}/advance` or
//! [`SampleLims::advance`]), read the token counters (`GET /_test/tokens`,
//! [`SampleLims::tokens_issued`]) and the status calls ([`SampleLims::status_calls`]), revoke every token ([`SampleLims::revoke_tokens`]) and
//! take the system down for maintenance ([`SampleLims::set_down`]).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use sample_lims::{LimsConfig, SampleLims};
//!
//! let lims = SampleLims::new(LimsConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! lims.serve(listener, std::future::pending()).await
//! # }
//! ```

mod api;
mod bookings;
mod catalog;
mod error;
mod oauth;
mod slots;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use bookings::{Booking, BookingState, BookingStatus, Farmer};
pub use catalog::{Collection, LabTest};
pub use error::LimsError;
pub use slots::{Slot, ZONE};

use bookings::Books;
use oauth::TokenBook;

/// The client id of [`LimsConfig::default`].
pub const DEFAULT_CLIENT_ID: &str = "bhoomi-adapter";
/// The client secret of [`LimsConfig::default`]: a well-known, TEST-ONLY value.
pub const DEFAULT_CLIENT_SECRET: &str = "test-only-lims-secret";
/// The lab's helpline and help desk, given with every enquiry.
pub const HELPLINE: &str = "+91-80-4567-8900";
pub const HELPDESK_EMAIL: &str = "care@bhoomi-labs.example";

/// How to run the LIMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimsConfig {
    pub client_id: String,
    /// TEST-ONLY by default ([`DEFAULT_CLIENT_SECRET`]).
    pub client_secret: String,
    /// How long a token lives (`expires_in`); default 5 minutes.
    pub token_lifetime: Duration,
    /// Tests added after the seven seeded ones, for catalogs longer than a client pages.
    pub extra_tests: usize,
}

impl Default for LimsConfig {
    fn default() -> LimsConfig {
        LimsConfig {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            token_lifetime: Duration::from_secs(300),
            extra_tests: 0,
        }
    }
}

/// A handle to one running LIMS: cheap to clone, all clones share its state.
#[derive(Clone)]
pub struct SampleLims {
    shared: Arc<Shared>,
}

struct Shared {
    config: LimsConfig,
    catalog: Mutex<Vec<LabTest>>,
    books: Mutex<Books>,
    tokens: Mutex<TokenBook>,
    down: AtomicBool,
    status_calls: AtomicUsize,
}

impl std::fmt::Debug for SampleLims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleLims")
            .field("client_id", &self.shared.config.client_id)
            .field("token_lifetime", &self.shared.config.token_lifetime)
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, carrying on if a panicking thread poisoned it: every operation checks
/// before it changes anything, so the data is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SampleLims {
    /// A LIMS with its catalog seeded and no bookings.
    pub fn new(config: LimsConfig) -> SampleLims {
        let mut tests = catalog::seeded();
        tests.extend(catalog::extra(1, config.extra_tests));
        SampleLims {
            shared: Arc::new(Shared {
                config,
                catalog: Mutex::new(tests),
                books: Mutex::default(),
                tokens: Mutex::default(),
                down: AtomicBool::new(false),
                status_calls: AtomicUsize::new(0),
            }),
        }
    }

    /// The whole HTTP API, ready to serve.
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
            tracing::info!(%address, "sample LIMS listening");
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// The catalog as it stands.
    pub fn catalog(&self) -> Vec<LabTest> {
        lock(&self.shared.catalog).clone()
    }

    /// Adds `count` tests to the catalog.
    pub fn add_tests(&self, count: usize) {
        let mut catalog = lock(&self.shared.catalog);
        let from = catalog.len();
        catalog.extend(catalog::extra(from, count));
    }

    /// Every booking, for test assertions.
    pub fn bookings(&self) -> Vec<Booking> {
        lock(&self.shared.books).bookings()
    }

    /// Moves a booking to its next state, as the lab's staff do.
    pub fn advance(&self, booking_no: &str) -> Result<BookingStatus, LimsError> {
        let status = lock(&self.shared.books).advance(booking_no)?;
        tracing::info!(
            booking_no,
            state = status.state.as_str(),
            "LIMS booking moved"
        );
        Ok(status)
    }

    /// Booking status calls answered (`GET /api/bookings/{no}`, past the token check): how a
    /// client without a feed follows its bookings.
    pub fn status_calls(&self) -> usize {
        self.shared.status_calls.load(Ordering::SeqCst)
    }

    /// Tokens handed out so far.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.shared.tokens).issued()
    }

    /// Every token handed out so far, live or not.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.shared.tokens).handed_out()
    }

    /// `/api` calls refused for their token.
    pub fn calls_refused(&self) -> usize {
        lock(&self.shared.tokens).refused()
    }

    /// Tokens the LIMS still takes.
    pub fn live_tokens(&self) -> usize {
        lock(&self.shared.tokens).live(Instant::now())
    }

    /// Forgets every token, as after a key rotation: the next call with one gets `401`.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).revoke_all();
    }

    /// Takes every `/api` call down for maintenance (`503`, fault `MAINTENANCE`), or back up.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    fn count_status_call(&self) {
        self.shared.status_calls.fetch_add(1, Ordering::SeqCst);
    }

    fn down(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst)
    }

    fn is_client(&self, id: &str, secret: &str) -> bool {
        id == self.shared.config.client_id && secret == self.shared.config.client_secret
    }

    /// A new token and its lifetime in seconds.
    fn issue_token(&self) -> (String, u64) {
        let lifetime = self.shared.config.token_lifetime;
        let token = lock(&self.shared.tokens).issue(Instant::now(), lifetime);
        (token, lifetime.as_secs().max(1))
    }

    fn admit(&self, token: Option<&str>) -> bool {
        lock(&self.shared.tokens).admit(token, Instant::now())
    }

    fn with_books<R>(&self, operation: impl FnOnce(&mut Books) -> R) -> R {
        operation(&mut lock(&self.shared.books))
    }
}

#[cfg(test)]
mod tests;
