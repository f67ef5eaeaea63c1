//! What a database gives the store: a pool to read from, and a way to commit the store's
//! writes ([`Work`]). The concern traits are implemented once, over any [`Backend`] (each in
//! its `store/<concern>.rs`), so SQLite and PostgreSQL differ only where they really do: how a
//! write is committed (a writer thread with group commit, or a transaction on a shared
//! database) and the few statements their dialects say differently
//! ([`super::sql::ByDialect`]).

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::broadcast;

use super::ledger::StateRule;
use super::rows::{Arg, Reader};
use super::sql::Dialect;
use super::{
    Accepted, Admission, Counterpart, Inbound, LedgerEntry, LedgerQueued, NewCallback, NewOutbox,
    OrderEvent, OutboxItem, PollPosition, SentRequest, StoreResult, Unfinished,
};
use crate::clock::Clock;

/// A database the store runs on.
pub(crate) trait Backend: Send + Sync {
    type Reader: Reader;

    /// Its SQL dialect.
    const DIALECT: Dialect;

    /// Where reads go.
    fn reader(&self) -> &Self::Reader;

    /// Commits `work`; its outcome once it is committed.
    fn write(&self, work: Work) -> BoxFuture<'_, StoreResult<Outcome>>;

    /// Whether several adapter processes may share this database.
    fn shared(&self) -> bool;

    /// The clock whose times the writes record.
    fn clock(&self) -> &dyn Clock;

    /// Announcements of callbacks filed by any process sharing the database.
    fn callback_signals(&self) -> Option<broadcast::Receiver<String>> {
        None
    }
}

/// A write of the store, committed whole.
// `Enqueue` (a message with its answer's call notes) is the largest, and the most frequent:
// boxing it would cost every message an allocation to save a few bytes of stack per write.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Work {
    Accept(Inbound),
    /// Takes over unfinished requests: owner, lease end, take all, now, limit.
    TakeOver(Vec<Arg>),
    /// A message, and its body as the message log keeps it (masked by the caller, so that a
    /// single writer does not read every catalog it logs).
    Enqueue(NewOutbox, Bytes),
    EnqueueDead(Box<(NewOutbox, String)>),
    /// Claims due messages: owner, lease end, now, limit.
    Claim(Vec<Arg>),
    /// Statements run one after the other; how many rows they changed in all.
    Execute(Vec<(&'static str, Vec<Arg>)>),
    /// A buyer app's request, its counterpart if known, and the BPPs expected to answer as
    /// JSON.
    RecordRequest(Box<Requested>),
    /// A callback and its forward, with each body as the message log keeps it (masked by the
    /// caller).
    FileCallback(Box<(NewCallback, Option<NewOutbox>, Logged)>),
    /// Claims a flow's poll: flow, owner, lease end, now.
    ClaimPoll(Vec<Arg>),
    /// A sink's update, queued under its state rule.
    QueueEntry(Box<(&'static dyn StateRule, LedgerEntry, NewOutbox)>),
    BuryOrderEvent(Box<(OrderEvent, NewOutbox, String)>),
}

/// A buyer app's request, its counterpart if known, and the BPPs expected to answer (JSON).
pub(crate) type Requested = (SentRequest, Option<Counterpart>, String);

/// What a committed [`Work`] gave.
pub(crate) enum Outcome {
    Accepted(Accepted),
    Admission(Admission),
    Unfinished(Vec<Unfinished>),
    Id(i64),
    Items(Vec<OutboxItem>),
    Done,
    Count(u64),
    Poll(Option<PollPosition>),
    Ledger(LedgerQueued),
    /// The work's claim no longer holds it; nothing was written.
    ClaimLost,
}

/// One entry of the message log: flow, direction, action, transaction id, message id, headers.
pub(crate) type LogEntry<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

/// The message log's entry of a message queued to be sent.
pub(crate) fn sent(item: &NewOutbox) -> LogEntry<'_> {
    let (flow, action) = (&item.flow[..], &item.action[..]);
    (
        flow,
        "out",
        action,
        &item.transaction_id,
        &item.message_id,
        "{}",
    )
}

/// The message log's entry of a buyer app's request.
pub(crate) fn requested(r: &SentRequest) -> LogEntry<'_> {
    let (flow, action) = (&r.flow[..], &r.action[..]);
    (flow, "out", action, &r.transaction_id, &r.message_id, "{}")
}

/// The message log's entry of an accepted request.
pub(crate) fn received(inbound: &Inbound) -> LogEntry<'_> {
    let (key, transaction_id) = (&inbound.key, &inbound.transaction_id[..]);
    let (flow, action, message_id) = (&key.flow[..], &key.action[..], &key.message_id[..]);
    (
        flow,
        "in",
        action,
        transaction_id,
        message_id,
        &inbound.headers,
    )
}

/// The message log's entry of a filed callback.
pub(crate) fn filed(c: &NewCallback) -> LogEntry<'_> {
    let (flow, action) = (&c.flow[..], &c.action[..]);
    (
        flow,
        "in",
        action,
        &c.transaction_id,
        &c.message_id,
        &c.headers,
    )
}

/// Bodies masked for the message log before they reach the writer: a callback's, and its
/// forward's when it has one.
pub(crate) struct Logged {
    pub callback: Bytes,
    pub forward: Option<Bytes>,
}

impl Logged {
    pub fn of(callback: &NewCallback, forward: Option<&NewOutbox>) -> Self {
        Logged {
            callback: masked(&callback.body),
            forward: forward.map(|f| masked(&f.body)),
        }
    }
}

/// `body` as the message log keeps it (the same bytes when nothing in it is personal).
pub(crate) fn masked(body: &Bytes) -> Bytes {
    match crate::beckn::redact::for_the_log(body) {
        std::borrow::Cow::Borrowed(_) => body.clone(),
        std::borrow::Cow::Owned(m) => Bytes::from(m),
    }
}

/// Commits `work` on `$store` and takes the outcome `$kind` out of it (anything else: the
/// backend is closing).
macro_rules! written {
    ($store:expr, $work:expr, $kind:path) => {
        async move {
            match $store.write($work).await? {
                $kind(value) => Ok(value),
                _ => Err($crate::store::StoreError::Closed),
            }
        }
    };
}

pub(crate) use written;

/// Commits `work` on `store`; whether it changed a row.
pub(crate) async fn changed<B: Backend>(store: &B, work: Work) -> StoreResult<bool> {
    Ok(written!(store, work, Outcome::Count).await? > 0)
}

/// Commits `work`, which answers nothing but whether it was committed.
pub(crate) async fn done<B: Backend>(store: &B, work: Work) -> StoreResult<()> {
    store.write(work).await.map(|_| ())
}
