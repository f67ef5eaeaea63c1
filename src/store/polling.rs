//! Polling a backend for events: a lease per flow (one process polls it at a time) and the
//! cursor of its next poll.

use futures::future::BoxFuture;

use super::backend::{Backend, Outcome, Work, changed, written};
use super::{StoreResult, sql};

/// Where a flow's poll of its backend's events stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollPosition {
    /// The backend's cursor for the next poll, as JSON text; None before the first page.
    pub cursor: Option<String>,
}

/// Leases on polling a flow's events, and where each poll stands.
pub trait PollStore: Send + Sync {
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
}

impl<B: Backend> PollStore for B {
    fn claim_poll(
        &self,
        flow: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<PollPosition>>> {
        let args = vec![
            flow.into(),
            owner.into(),
            (now + lease_ms).into(),
            now.into(),
        ];
        Box::pin(written!(self, Work::ClaimPoll(args), Outcome::Poll))
    }

    fn advance_poll(
        &self,
        flow: &str,
        owner: &str,
        cursor: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let args = vec![
            cursor.into(),
            (now + lease_ms).into(),
            now.into(),
            flow.into(),
            owner.into(),
        ];
        Box::pin(changed(
            self,
            Work::Execute(vec![(sql::ADVANCE_POLL, args)]),
        ))
    }
}
