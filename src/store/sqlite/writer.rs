//! The SQLite store's writer: one thread that owns the only writing connection (rusqlite,
//! statements prepared once and cached) and commits the operations that arrived together in
//! one transaction (group commit). Under load one fsync serves many requests, yet no caller
//! hears back before its write is committed. A thread rather than an async task because every
//! statement is a synchronous call into SQLite: one hop per batch instead of one per statement.

use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{buyer, inbox, ledger, outbox, polling};
use crate::store::{
    Accepted, Admission, Claim, Counterpart, Inbound, InboundKey, NewCallback, NewOutbox, OmsEvent,
    OmsQueued, OmsRecord, OutboxItem, PollPosition, SentRequest, StoreResult, UltraUser,
    Unfinished, sql,
};

/// Operations committed together at most.
pub const MAX_BATCH: usize = 512;

/// Prepared statements kept per connection (all the writer's fit).
const STATEMENT_CACHE: usize = 64;

/// How long a write waits for a lock held by another connection (a migration, a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One write operation and where its result goes.
pub struct Op {
    pub work: Work,
    pub reply: oneshot::Sender<StoreResult<Outcome>>,
}

pub enum Work {
    Accept(Inbound),
    ClaimUnfinished {
        owner: String,
        now: i64,
        lease_ms: i64,
        limit: usize,
        take_all: bool,
    },
    /// A message, and its body as the message log keeps it (masked by the caller, so that
    /// the one writer thread does not read every catalog it logs).
    Enqueue(NewOutbox, Bytes),
    EnqueueDead(Box<(NewOutbox, String)>),
    RenewRequest {
        key: InboundKey,
        claim: Claim,
        until: i64,
    },
    RenewDelivery {
        id: i64,
        claim: Claim,
        until: i64,
    },
    Claim {
        owner: String,
        now: i64,
        limit: usize,
        lease_ms: i64,
    },
    Delivered {
        id: i64,
        claim: Claim,
        now: i64,
    },
    ReleaseClaims(String),
    Retry {
        id: i64,
        claim: Claim,
        next: i64,
        error: String,
    },
    Bury {
        id: i64,
        claim: Claim,
        now: i64,
        error: String,
    },
    Revive {
        id: i64,
        now: i64,
        deadline: i64,
    },
    Discard(i64),
    Purge(i64),
    RecordRequest(Box<(SentRequest, Option<Counterpart>)>),
    NoteAck {
        flow: String,
        message_id: String,
        ack: String,
    },
    /// A callback and its forward, with each body as the message log keeps it (masked by the
    /// caller).
    FileCallback(Box<(NewCallback, Option<NewOutbox>, Logged)>),
    NoteRefused {
        flow: String,
        message_id: String,
        refused: String,
    },
    ClaimPoll {
        flow: String,
        owner: String,
        now: i64,
        lease_ms: i64,
    },
    AdvancePoll {
        flow: String,
        owner: String,
        cursor: String,
        now: i64,
        lease_ms: i64,
    },
    SaveUltraUser(UltraUser),
    ForgetUltraUser(String),
    NoteIdentity {
        flow: String,
        transaction_id: String,
        identity_token: String,
    },
    QueueOms(Box<(OmsRecord, NewOutbox)>),
    BuryOmsEvent(Box<(OmsEvent, NewOutbox, String)>),
}

/// Bodies masked for the message log before they reach the writer: a callback's, and its
/// forward's when it has one.
pub struct Logged {
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
pub fn masked(body: &Bytes) -> Bytes {
    match crate::beckn::redact::for_the_log(body) {
        std::borrow::Cow::Borrowed(_) => body.clone(),
        std::borrow::Cow::Owned(m) => Bytes::from(m),
    }
}

pub enum Outcome {
    Accepted(Accepted),
    Admission(Admission),
    Unfinished(Vec<Unfinished>),
    Id(i64),
    Items(Vec<OutboxItem>),
    Done,
    Changed(bool),
    Count(u64),
    Poll(Option<PollPosition>),
    Oms(OmsQueued),
    /// The operation's claim no longer holds its work; it wrote nothing (the fence is its
    /// first statement), so the rest of the batch commits.
    ClaimLost,
}

/// Opens the writing connection of an already migrated database: WAL, with `synchronous`
/// (`FULL` or `NORMAL`, see [`super::Durability`]).
pub fn connect(path: &str, synchronous: &str) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Starts the writer thread; it ends when every sender is dropped.
pub fn spawn(conn: Connection, rx: mpsc::Receiver<Op>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, rx))
        .map(|_| ())
}

/// Commits the operations that are waiting, in one transaction; if that fails, each alone.
fn run(mut conn: Connection, mut rx: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch) {
            Ok(outcomes) => {
                for (op, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = op.reply.send(Ok(outcome));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(op) = batch.pop() {
                    let _ = op.reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "store batch failed; committing its operations one by one");
                for op in batch.drain(..) {
                    let result =
                        commit(&mut conn, std::slice::from_ref(&op)).map(|mut o| o.remove(0));
                    let _ = op.reply.send(result);
                }
            }
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Op]) -> StoreResult<Vec<Outcome>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for op in batch {
        outcomes.push(apply(&tx, &op.work)?);
    }
    tx.commit()?;
    Ok(outcomes)
}

fn apply(tx: &Connection, work: &Work) -> StoreResult<Outcome> {
    Ok(match work {
        Work::Accept(inbound) => Outcome::Admission(inbox::accept(tx, inbound)?),
        Work::ClaimUnfinished {
            owner,
            now,
            lease_ms,
            limit,
            take_all,
        } => Outcome::Unfinished(inbox::claim_unfinished(
            tx, owner, *now, *lease_ms, *limit, *take_all,
        )?),
        Work::RenewRequest { key, claim, until } => {
            Outcome::Changed(inbox::renew_request(tx, key, claim, *until)?)
        }
        Work::Enqueue(item, logged) => match outbox::enqueue(tx, item, Some(logged), None)? {
            Some(id) => Outcome::Id(id),
            None => Outcome::ClaimLost,
        },
        Work::EnqueueDead(work) => {
            let (item, error) = &**work;
            match outbox::enqueue(tx, item, None, Some(error))? {
                Some(id) => Outcome::Id(id),
                None => Outcome::ClaimLost,
            }
        }
        Work::Claim {
            owner,
            now,
            limit,
            lease_ms,
        } => Outcome::Items(outbox::claim(tx, owner, *now, *limit, *lease_ms)?),
        Work::RenewDelivery { id, claim, until } => {
            Outcome::Changed(outbox::renew_delivery(tx, *id, claim, *until)?)
        }
        Work::Delivered { id, claim, now } => Outcome::Changed(changed(
            tx,
            sql::DELIVERED,
            params![now, id, claim.owner, claim.epoch],
        )?),
        Work::Retry {
            id,
            claim,
            next,
            error,
        } => Outcome::Changed(changed(
            tx,
            sql::RETRY_LATER,
            params![next, error, id, claim.owner, claim.epoch],
        )?),
        Work::Bury {
            id,
            claim,
            now,
            error,
        } => Outcome::Changed(changed(
            tx,
            sql::BURY,
            params![error, now, id, claim.owner, claim.epoch],
        )?),
        Work::Revive { id, now, deadline } => {
            Outcome::Changed(changed(tx, sql::REVIVE, params![now, deadline, id])?)
        }
        Work::ReleaseClaims(owner) => Outcome::Count(
            tx.prepare_cached(&numbered(sql::RELEASE_CLAIMS))?
                .execute(params![owner])? as u64,
        ),
        Work::Discard(id) => Outcome::Changed(changed(tx, sql::DISCARD, params![id])?),
        Work::Purge(before) => {
            let mut n = 0;
            for statement in sql::PURGE {
                n += tx
                    .prepare_cached(&numbered(statement))?
                    .execute(params![before])? as u64;
            }
            Outcome::Count(n)
        }
        Work::RecordRequest(work) => {
            let (request, counterpart) = &**work;
            buyer::record_request(tx, request, counterpart.as_ref())?;
            Outcome::Done
        }
        Work::NoteAck {
            flow,
            message_id,
            ack,
        } => {
            changed(tx, sql::NOTE_ACK, params![ack, flow, message_id])?;
            Outcome::Done
        }
        Work::NoteRefused {
            flow,
            message_id,
            refused,
        } => {
            buyer::note_refused(tx, flow, message_id, refused)?;
            Outcome::Done
        }
        Work::FileCallback(work) => {
            let (callback, forward, logged) = &**work;
            Outcome::Accepted(buyer::file_callback(
                tx,
                callback,
                forward.as_ref(),
                logged,
            )?)
        }
        Work::ClaimPoll {
            flow,
            owner,
            now,
            lease_ms,
        } => Outcome::Poll(polling::claim_poll(tx, flow, owner, *now, *lease_ms)?),
        Work::AdvancePoll {
            flow,
            owner,
            cursor,
            now,
            lease_ms,
        } => Outcome::Changed(changed(
            tx,
            sql::ADVANCE_POLL,
            params![cursor, now + lease_ms, now, flow, owner],
        )?),
        Work::SaveUltraUser(u) => {
            ledger::save_ultra_user(tx, u)?;
            Outcome::Done
        }
        Work::ForgetUltraUser(session) => {
            Outcome::Changed(changed(tx, sql::FORGET_ULTRA_USER, params![session])?)
        }
        Work::NoteIdentity {
            flow,
            transaction_id,
            identity_token,
        } => {
            ledger::note_identity(tx, flow, transaction_id, identity_token)?;
            Outcome::Done
        }
        Work::QueueOms(work) => {
            let (record, item) = &**work;
            Outcome::Oms(ledger::queue_oms(tx, record, item)?)
        }
        Work::BuryOmsEvent(work) => {
            let (event, item, reason) = &**work;
            Outcome::Id(ledger::bury_oms_event(tx, event, item, reason)?)
        }
    })
}

/// `statement` (of [`sql`], with `$n` parameters) as rusqlite binds it: `?n`.
pub(super) fn numbered(statement: &str) -> String {
    let mut out = String::with_capacity(statement.len());
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// Runs `statement` (of [`sql`]) with `params`; whether it changed a row.
pub(super) fn changed(
    tx: &Connection,
    statement: &str,
    params: impl rusqlite::Params,
) -> StoreResult<bool> {
    Ok(tx.prepare_cached(&numbered(statement))?.execute(params)? > 0)
}

/// One entry of the message log: flow, direction, action, transaction id, message id, headers.
pub(super) type LogEntry<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

/// Adds `entry` to the message log with `body` as the log keeps it (already masked).
pub(super) fn log_entry(
    tx: &Connection,
    (flow, direction, action, transaction_id, message_id, headers): LogEntry<'_>,
    body: &[u8],
    now: i64,
) -> StoreResult<()> {
    tx.prepare_cached(&numbered(sql::INSERT_MESSAGE))?
        .execute(params![
            flow,
            direction,
            action,
            transaction_id,
            message_id,
            headers,
            body,
            now,
        ])?;
    Ok(())
}

/// Adds `entry` with `body` to the message log, masking its personal fields: the log outlives
/// the work that needs them.
pub(super) fn log_message(
    tx: &Connection,
    entry: LogEntry<'_>,
    body: &Bytes,
    now: i64,
) -> StoreResult<()> {
    log_entry(tx, entry, &crate::beckn::redact::for_the_log(body), now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parameters_are_numbered_for_rusqlite() {
        assert_eq!(
            super::numbered("SELECT '$[#]' WHERE a = $1 AND b = $12 OR c = $1"),
            "SELECT '$[#]' WHERE a = ?1 AND b = ?12 OR c = ?1"
        );
    }
}
