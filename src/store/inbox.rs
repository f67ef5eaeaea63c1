//! The inbox: requests accepted before their ACK (so an ACK is a kept promise), whose
//! transaction they belong to, and who holds each unanswered one under which claim.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::backend::{Backend, Outcome, Work, changed, written};
use super::rows::{self, Reader};
use super::{StoreResult, sql};

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

/// What [`InboxStore::accept`] made of an inbound request.
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

/// Accepting requests, keeping transactions to their counterparts, and claims on the work.
pub trait InboxStore: Send + Sync {
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
    /// The body and answer address of the latest request of a transaction (for unsolicited
    /// callbacks, which answer in its context).
    fn last_request(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<(Bytes, String)>>>;
}

impl<B: Backend> InboxStore for B {
    fn accept(&self, inbound: Inbound) -> BoxFuture<'_, StoreResult<Admission>> {
        Box::pin(written!(self, Work::Accept(inbound), Outcome::Admission))
    }

    fn placed_order(
        &self,
        flow: &str,
        order_id: &str,
        counterpart: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let args = vec![flow.into(), order_id.into(), counterpart.into()];
        Box::pin(async move {
            let found = self.reader().row(sql::PLACED_ORDER, args, rows::exists);
            Ok(found.await?.is_some())
        })
    }

    fn claim_unfinished(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: usize,
        take_all: bool,
    ) -> BoxFuture<'_, StoreResult<Vec<Unfinished>>> {
        let args = vec![
            owner.into(),
            (now + lease_ms).into(),
            take_all.into(),
            now.into(),
            (limit as i64).into(),
        ];
        Box::pin(written!(self, Work::TakeOver(args), Outcome::Unfinished))
    }

    fn renew_request(
        &self,
        key: &InboundKey,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let args = vec![
            until.into(),
            key.flow.as_str().into(),
            key.action.as_str().into(),
            key.message_id.as_str().into(),
            claim.owner.as_str().into(),
            claim.epoch.into(),
        ];
        let work = Work::Execute(vec![(sql::RENEW_REQUEST.of(B::DIALECT), args)]);
        Box::pin(changed(self, work))
    }

    fn last_request(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<(Bytes, String)>>> {
        let args = vec![flow.into(), transaction_id.into()];
        Box::pin(
            self.reader()
                .row(sql::LAST_REQUEST, args, rows::request_context),
        )
    }
}
