//! Durable state: what was accepted (so an ACK is a kept promise), what is still to be sent
//! (the outbox), the message log and each transaction's facts.
//!
//! One interface, [`Store`], with SQLite as the embedded default. Every method returns only
//! after its writes are committed, so "recorded" always means "on disk".

pub mod buyer;
pub mod heartbeat;
pub mod postgres;
pub mod sqlite;
pub mod ultra;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

pub use buyer::{
    BuyerTransaction, Counterpart, Disposition, FiledCallback, NewCallback, RefusedCallback,
    SentRequest,
};
pub use ultra::{OmsEvent, OmsQueued, OmsRecord, QueuedState, StoredOmsEvent, UltraUser};

/// Identifies a request for idempotency: the same message id for the same action of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboundKey {
    pub flow: String,
    pub action: String,
    pub message_id: String,
}

/// Who holds a piece of work (an accepted request, an outbox message) and which take-over of
/// it: `epoch` counts the claims made on it. Every outcome is written only while the work is
/// still held by this owner at this epoch, so a process that lost its claim (paused past its
/// lease, then resumed) changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub owner: String,
    pub epoch: i64,
}

impl Claim {
    /// The claim of the process that accepted a request, or recorded a message already
    /// claimed: nobody has taken it over yet.
    pub fn first(owner: &str) -> Claim {
        Claim {
            owner: owner.to_string(),
            epoch: 0,
        }
    }
}

/// An accepted request with the claim under which its answer is queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRequest {
    pub key: InboundKey,
    pub claim: Claim,
}

/// A request accepted for processing, recorded before its ACK.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub key: InboundKey,
    pub transaction_id: String,
    /// The counterpart (`bap_id`) and our role, for the transaction record.
    pub counterpart: String,
    pub role: String,
    /// The raw body as received.
    pub body: Bytes,
    /// Headers as JSON, signatures and secrets already redacted.
    pub headers: String,
    /// Where the answer goes (registered URL of the BAP, or the gateway).
    pub callback_base: String,
    /// The process running it, and until when (Unix ms) the others leave it alone.
    pub owner: String,
    pub lease_until: i64,
}

/// Whether a received callback is new or a repeat of one already filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
}

/// What [`Store::accept`] made of an inbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Recorded: run it.
    New,
    /// The same message again (same key, same bytes): acknowledged again, not run again.
    Duplicate,
    /// The message id was used before for a different message (other body, transaction or
    /// sender); nothing recorded.
    Reused { transaction_id: String },
    /// The transaction is another counterpart's; nothing recorded.
    Foreign,
}

/// A message to deliver through the outbox.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    pub flow: String,
    /// `callback`, `forward`, `ultra`…: what kind of delivery this is.
    pub kind: String,
    pub url: String,
    pub action: String,
    pub transaction_id: String,
    pub message_id: String,
    pub body: Bytes,
    /// Give up (dead letter) after this instant, Unix ms.
    pub deadline: Option<i64>,
    /// The accepted request this message answers; it is marked done in the same commit, if
    /// the claim still holds it (else nothing is recorded: [`StoreError::ClaimLost`]).
    pub completes: Option<HeldRequest>,
    /// Order facts to note on the transaction (`order.id`, `order.status` of a callback).
    pub order: Option<(String, Option<String>)>,
    /// Not sent before this instant, Unix ms (None: at once).
    pub not_before: Option<i64>,
    /// Messages with the same key are sent one at a time, oldest first: a message waits while
    /// an older one with its key is pending.
    pub sequence: Option<String>,
    /// Recorded as already claimed by this owner until this instant (Unix ms): the outbox
    /// hands the message straight to its worker instead of finding it again with a claim.
    pub claimed_by: Option<(String, i64)>,
}

/// An outbox message claimed for a delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub flow: String,
    pub kind: String,
    pub url: String,
    pub action: String,
    pub transaction_id: String,
    pub message_id: String,
    pub body: Bytes,
    pub attempts: u32,
    pub deadline: Option<i64>,
    /// The epoch of this attempt's claim (its owner is the claiming outbox).
    pub epoch: i64,
    /// When the claim's lease ends (Unix ms), unless renewed.
    pub claimed_until: i64,
}

/// A message that ran out of time or was refused for good.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub flow: String,
    pub kind: String,
    pub url: String,
    pub action: String,
    pub transaction_id: String,
    pub message_id: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// A request accepted but not yet answered, found again after a restart.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub key: InboundKey,
    pub transaction_id: String,
    pub body: Bytes,
    pub callback_base: String,
    /// When it was accepted (Unix ms).
    pub received_at: i64,
    /// The take-over's claim.
    pub claim: Claim,
}

/// Where a flow's poll of its backend's events stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollPosition {
    /// The backend's cursor for the next poll, as JSON text; None before the first page.
    pub cursor: Option<String>,
}

/// Outbox figures for status pages and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
}

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

/// The adapter's durable state.
pub trait Store: Send + Sync {
    /// Records an accepted request (and its transaction and log entry) durably. A repeat of
    /// the same key is reported, not recorded again: as a duplicate when its bytes are the
    /// same, as a reuse of the message id otherwise. A transaction belongs to the counterpart
    /// that opened it: a request of another counterpart in it is refused, nothing recorded.
    fn accept(&self, inbound: Inbound) -> BoxFuture<'_, StoreResult<Admission>>;
    /// Whether `counterpart` placed the order `order_id` of `flow`: a transaction of theirs
    /// carries that order id (the id noted from the callbacks that carried the order).
    fn placed_order(
        &self,
        flow: &str,
        order_id: &str,
        counterpart: &str,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Takes over up to `limit` requests accepted but not answered whose lease has ended
    /// (their process died), oldest first; `take_all` ignores leases (a single-process store
    /// at start, where no other process can hold one).
    fn claim_unfinished(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: usize,
        take_all: bool,
    ) -> BoxFuture<'_, StoreResult<Vec<Unfinished>>>;
    /// Extends the claim on an accepted request until `until`, while `claim` still holds it
    /// unanswered; false once it was taken over or finished.
    fn renew_request(
        &self,
        key: &InboundKey,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Whether several adapter processes may share this store.
    fn shared(&self) -> bool;
    /// The body and answer address of the latest request of a transaction (for unsolicited
    /// callbacks, which answer in its context).
    fn last_request(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<(Bytes, String)>>>;
    /// Queues a message; marks the request it answers as done in the same commit
    /// ([`StoreError::ClaimLost`], nothing queued, if its claim no longer holds it).
    fn enqueue(&self, item: NewOutbox) -> BoxFuture<'_, StoreResult<i64>>;
    /// Records a message as a dead letter at once, with `error` (an answer that may no longer
    /// be sent), fenced like [`Store::enqueue`].
    fn enqueue_dead(&self, item: NewOutbox, error: String) -> BoxFuture<'_, StoreResult<i64>>;
    /// Takes up to `limit` due messages for `lease_ms`; an unfinished lease returns them.
    fn claim(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxItem>>>;
    /// Extends the claim on a message being sent until `until`, while `claim` still holds it;
    /// false once another worker took it over or its outcome was recorded.
    fn renew_delivery(
        &self,
        id: i64,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Marks a message delivered; false (nothing changed) if `claim` no longer holds it.
    fn delivered(&self, id: i64, claim: &Claim, now: i64) -> BoxFuture<'_, StoreResult<bool>>;
    /// Frees the claims on pending messages held by any owner but `owner`; returns how many.
    /// Only for a store no other process uses, at start: the other owners are earlier runs
    /// of this process, and what they held would otherwise wait for their leases to end.
    fn release_claims(&self, owner: &str) -> BoxFuture<'_, StoreResult<u64>>;
    /// Another attempt at `next`, after `error`; false (nothing changed) if `claim` no longer
    /// holds the message.
    fn retry_later(
        &self,
        id: i64,
        claim: &Claim,
        next: i64,
        error: String,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// Moves a message to the dead letters with its last error; false (nothing changed) if
    /// `claim` no longer holds it.
    fn bury(
        &self,
        id: i64,
        claim: &Claim,
        now: i64,
        error: String,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>>;
    /// Puts a dead letter back in the queue, due now, with a fresh deadline.
    fn revive(&self, id: i64, now: i64, deadline: i64) -> BoxFuture<'_, StoreResult<bool>>;
    fn discard(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>>;
    fn counts(&self) -> BoxFuture<'_, StoreResult<OutboxCounts>>;
    /// When the earliest pending message falls due: its `next_attempt_at`, or the end of its
    /// claim if a worker holds it.
    fn next_due(&self) -> BoxFuture<'_, StoreResult<Option<i64>>>;
    /// Deletes log entries, delivered messages, finished inbox records, buyer-app requests
    /// and callbacks, and Ultra users signed in, older than `before`.
    fn purge(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>>;

    // Buyer apps (`role: bap`).

    /// Records a request a buyer app is about to send, with its transaction (noting
    /// `counterpart`, the BPP the transaction is with, when it is known) and its log entry, in
    /// one commit. Recorded before sending, so that the fastest callback finds it.
    fn record_request(
        &self,
        request: SentRequest,
        counterpart: Option<Counterpart>,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// Notes the recipient's synchronous answer to a sent request (JSON text).
    fn note_ack(&self, flow: &str, message_id: &str, ack: String)
    -> BoxFuture<'_, StoreResult<()>>;
    fn sent_request(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<SentRequest>>>;
    /// Notes a callback refused before filing that names the request `message_id` (JSON of a
    /// [`RefusedCallback`]); past [`buyer::MAX_REFUSED_NOTED`] for a request, nothing more.
    fn note_refused_callback(
        &self,
        flow: &str,
        message_id: &str,
        refused: String,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The transaction if the buyer app `flow` took part in it.
    fn buyer_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<BuyerTransaction>>>;
    /// Files a received callback (and its log entry) and queues `forward`, its delivery to the
    /// app, in the same commit. A repeat (same action, message id, sender and body) is
    /// reported, not filed or forwarded again.
    fn file_callback(
        &self,
        callback: NewCallback,
        forward: Option<NewOutbox>,
    ) -> BoxFuture<'_, StoreResult<Accepted>>;
    /// The callbacks filed with `message_id` (answers to that request, or kept ones), oldest
    /// first.
    fn callbacks_for_message(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>>;
    /// The callbacks filed under a transaction, oldest first.
    fn callbacks_for_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>>;
    // Polled order events (`events.poll`).

    /// Takes or renews the lease on polling `flow` until `now + lease_ms` when it is free,
    /// ended, or `owner`'s already, and says where the poll stands; None while another
    /// process holds it.
    fn claim_poll(
        &self,
        flow: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<PollPosition>>>;
    /// Saves the cursor of `flow`'s next poll (JSON text) and renews the lease, if `owner`
    /// still holds it; false (nothing saved) if another process took the poll over.
    fn advance_poll(
        &self,
        flow: &str,
        owner: &str,
        cursor: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<bool>>;

    /// Announcements of callbacks filed by any process sharing the store
    /// ([`buyer::signal_payload`]); None where only this process writes (it knows already).
    fn callback_signals(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    // Flipkart Ultra.

    /// Keeps a signed-in user under their session.
    fn save_ultra_user(&self, user: UltraUser) -> BoxFuture<'_, StoreResult<()>>;
    fn ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<UltraUser>>>;
    /// Forgets a signed-in user (signing out); false if the session was unknown.
    fn forget_ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>>;
    /// Notes the Ultra identity token of a transaction's user.
    fn note_identity(
        &self,
        flow: &str,
        transaction_id: &str,
        identity_token: &str,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The Ultra identity token noted for a transaction.
    fn identity_token(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>>;
    /// Queues an OMS update unless its order reported this state already (a repeat) or the
    /// state may not follow the ones reported ([`crate::ultra::oms::refusal`]); the
    /// check and the queueing are one commit.
    fn queue_oms(
        &self,
        record: OmsRecord,
        item: NewOutbox,
    ) -> BoxFuture<'_, StoreResult<OmsQueued>>;
    /// Records an order event that gives no OMS update (its mapping failed, or the update broke
    /// Ultra's rules) as the dead letter `item` with `reason`, keeping the event: `outbox list`
    /// shows it, and `outbox retry` maps the event again.
    fn bury_oms_event(
        &self,
        event: OmsEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>>;
    /// The order event kept for the OMS outbox message `outbox_id`, if any.
    fn oms_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOmsEvent>>>;
}

/// Opens the store named by `url` (`sqlite://path/to/file.db` or `postgres://…`), creating
/// and migrating it.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(sqlite::SqliteStore::open(path).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PgStore::open(url).await?));
    }
    Err(StoreError::BadUrl(url.to_string()))
}

/// The digest an inbound request is known by: a message id used again is a repeat only if
/// the bytes are the same. BLAKE2b-512 cut to 128 bits, hex.
pub fn body_digest(body: &[u8]) -> String {
    use blake2::{Blake2b512, Digest};
    hex::encode(&Blake2b512::digest(body)[..16])
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
