//! Durable state: what was accepted (so an ACK is a kept promise), what is still to be sent
//! (the outbox), the message log and each transaction's facts.
//!
//! One trait per concern ([`InboxStore`], [`OutboxStore`], [`BuyerStore`], [`PollStore`],
//! [`LedgerStore`], [`MemoryStore`], [`ErpOrderStore`], [`NackStore`]), and [`Store`], all of them together. Each is implemented once, in its
//! file, over a database (`backend.rs`): SQLite, the embedded default, and PostgreSQL for
//! several processes, whose files of the same names hold what a concern commits its own way.
//! Every method returns only after its writes are committed, so "recorded" always means "on
//! disk".

mod backend;
pub mod buyer;
pub mod erp_orders;
pub mod heartbeat;
pub mod history;
pub mod inbox;
pub mod ledger;
pub mod memory;
pub mod nacks;
pub mod outbox;
pub mod polling;
pub mod postgres;
mod rows;
mod sql;
pub mod sqlite;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::clock::{SharedClock, SystemClock};

pub use buyer::{
    Accepted, BuyerStore, BuyerTransaction, Counterpart, Disposition, FiledCallback, NewCallback,
    NotedCalls, RefusedCallback, SentRequest,
};
pub use erp_orders::{ErpOrderStore, OpenOrder, OrderState, SeenState};
pub use history::{
    ChangeMark, Delivery, HistoryStore, TransactionFilter, TransactionRecord, TransactionSummary,
};
pub use inbox::{Admission, Claim, HeldRequest, Inbound, InboundKey, InboxStore, Unfinished};
pub use ledger::{
    LedgerEntry, LedgerQueued, LedgerStore, OrderEvent, QueuedState, SinkUser, StoredOrderEvent,
};
pub use memory::MemoryStore;
pub use nacks::{NackBudget, NackRecord, NackStore};
pub use outbox::{DeadLetter, NewOutbox, OutboxCounts, OutboxItem, OutboxStore};
pub use polling::{PollPosition, PollStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite store's writer.
    #[error("store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("store is shutting down")]
    Closed,
    /// The work was taken over by another claim (its lease ended): nothing was recorded.
    #[error("the claim on this work was lost to another process; nothing recorded")]
    ClaimLost,
    #[error(
        "`{0}` is not a store URL (use sqlite://PATH[?synchronous=full|normal] or postgres://USER@HOST/DB)"
    )]
    BadUrl(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The adapter's durable state: every concern, and what spans them.
pub trait Store:
    InboxStore
    + OutboxStore
    + BuyerStore
    + PollStore
    + LedgerStore
    + MemoryStore
    + ErpOrderStore
    + HistoryStore
    + NackStore
{
    /// Whether several adapter processes may share this store.
    fn shared(&self) -> bool;
    /// Deletes log entries, delivered messages, finished inbox records, buyer-app requests
    /// and callbacks, users signed in to a sink, transaction memory not written since, NACK
    /// records, and the states of orders settled (their transactions keep that they settled),
    /// older than `before`.
    fn purge(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>>;
}

impl<B: backend::Backend> Store for B {
    fn shared(&self) -> bool {
        backend::Backend::shared(self)
    }

    fn purge(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>> {
        let statements = sql::PURGE.map(|statement| (statement, vec![before.into()]));
        let work = backend::Work::Execute(statements.to_vec());
        Box::pin(backend::written!(self, work, backend::Outcome::Count))
    }
}

/// Opens the store named by `url` (`sqlite://path/to/file.db` or `postgres://…`), creating
/// and migrating it.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    open_with_clock(url, SystemClock::shared()).await
}

/// [`open`], recording the times of `clock` (the application's).
pub async fn open_with_clock(url: &str, clock: SharedClock) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(
            sqlite::SqliteStore::open_with_clock(path, clock).await?,
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(
            postgres::PgStore::open_with_clock(url, clock).await?,
        ));
    }
    Err(StoreError::BadUrl(url.to_string()))
}

/// The digest an inbound request is known by: a message id used again is a repeat only if
/// the bytes are the same. BLAKE2b-512 cut to 128 bits, hex.
pub fn body_digest(body: &[u8]) -> String {
    use blake2::{Blake2b512, Digest};
    hex::encode(&Blake2b512::digest(body)[..16])
}

/// Unix milliseconds now by the system clock, for callers with no clock of the application
/// (tests, the CLI); the adapter reads its [`crate::clock::Clock`].
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
