//! The outbox: messages to deliver (callbacks, forwards, sink updates), claimed one attempt at
//! a time, retried, and buried as dead letters when they run out of time or are refused.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::backend::{Backend, Outcome, Work, changed, masked, written};
use super::rows::{self, Arg, Reader};
use super::{Claim, HeldRequest, StoreResult, sql};

/// A message to deliver through the outbox.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    pub flow: String,
    /// `callback`, `unsolicited`, `app_webhook`, a sink's kind…: what kind of delivery this is,
    /// which decides how it is sent (`delivery::kinds`).
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
    /// The backend calls made while answering `completes` (a JSON array, see
    /// `engine::call_log`), kept with it in the same commit for the console's timeline.
    pub steps: Option<String>,
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

/// The statement `statement` on a claimed message: `head` (what it sets), then the message id
/// and its claim.
fn on_claimed(statement: &'static str, head: Vec<Arg>, id: i64, claim: &Claim) -> Work {
    let mut args = head;
    args.extend([id.into(), claim.owner.as_str().into(), claim.epoch.into()]);
    Work::Execute(vec![(statement, args)])
}

impl<B: Backend> OutboxStore for B {
    fn enqueue(&self, item: NewOutbox) -> BoxFuture<'_, StoreResult<i64>> {
        // Masked for the log here, on the caller's task, rather than in a writer.
        let logged = masked(&item.body);
        Box::pin(written!(self, Work::Enqueue(item, logged), Outcome::Id))
    }

    fn enqueue_dead(&self, item: NewOutbox, error: String) -> BoxFuture<'_, StoreResult<i64>> {
        let work = Work::EnqueueDead(Box::new((item, error)));
        Box::pin(written!(self, work, Outcome::Id))
    }

    fn claim(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxItem>>> {
        let args = vec![
            owner.into(),
            (now + lease_ms).into(),
            now.into(),
            (limit as i64).into(),
        ];
        Box::pin(written!(self, Work::Claim(args), Outcome::Items))
    }

    fn renew_delivery(
        &self,
        id: i64,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let work = on_claimed(
            sql::RENEW_DELIVERY.of(B::DIALECT),
            vec![until.into()],
            id,
            claim,
        );
        Box::pin(changed(self, work))
    }

    fn delivered(&self, id: i64, claim: &Claim, now: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let work = on_claimed(sql::DELIVERED, vec![now.into()], id, claim);
        Box::pin(changed(self, work))
    }

    fn release_claims(&self, owner: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let work = Work::Execute(vec![(sql::RELEASE_CLAIMS, vec![owner.into()])]);
        Box::pin(written!(self, work, Outcome::Count))
    }

    fn retry_later(
        &self,
        id: i64,
        claim: &Claim,
        next: i64,
        error: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let head = vec![next.into(), error.into()];
        Box::pin(changed(self, on_claimed(sql::RETRY_LATER, head, id, claim)))
    }

    fn bury(
        &self,
        id: i64,
        claim: &Claim,
        now: i64,
        error: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let head = vec![error.into(), now.into()];
        Box::pin(changed(self, on_claimed(sql::BURY, head, id, claim)))
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        let args = vec![(limit as i64).into()];
        Box::pin(
            self.reader()
                .rows(sql::DEAD_LETTERS, args, rows::dead_letter),
        )
    }

    fn revive(&self, id: i64, now: i64, deadline: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let args = vec![now.into(), deadline.into(), id.into()];
        Box::pin(changed(self, Work::Execute(vec![(sql::REVIVE, args)])))
    }

    fn discard(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let args = vec![id.into()];
        Box::pin(changed(self, Work::Execute(vec![(sql::DISCARD, args)])))
    }

    fn counts(&self) -> BoxFuture<'_, StoreResult<OutboxCounts>> {
        Box::pin(async move {
            let counts = self
                .reader()
                .row(sql::COUNTS.of(B::DIALECT), vec![], rows::outbox_counts);
            Ok(counts.await?.unwrap_or_default())
        })
    }

    fn next_due(&self) -> BoxFuture<'_, StoreResult<Option<i64>>> {
        Box::pin(async move {
            let due = self
                .reader()
                .row(sql::NEXT_DUE.of(B::DIALECT), vec![], rows::due);
            Ok(due.await?.flatten())
        })
    }
}
