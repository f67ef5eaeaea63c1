//! The outbox: messages to deliver (callbacks, forwards, sink updates), claimed one attempt at
//! a time, retried, and buried as dead letters when they run out of time or are refused.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{Claim, HeldRequest, StoreResult};

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
    /// the claim still holds it (else nothing is recorded:
    /// [`StoreError::ClaimLost`](super::StoreError::ClaimLost)).
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

/// Outbox figures for status pages and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
}

/// Queueing, claiming and settling outbox messages, and the dead letters.
pub trait OutboxStore: Send + Sync {
    /// Queues a message; marks the request it answers as done in the same commit
    /// ([`StoreError::ClaimLost`](super::StoreError::ClaimLost), nothing queued, if its claim
    /// no longer holds it).
    fn enqueue(&self, item: NewOutbox) -> BoxFuture<'_, StoreResult<i64>>;
    /// Records a message as a dead letter at once, with `error` (an answer that may no longer
    /// be sent), fenced like [`OutboxStore::enqueue`].
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
}
