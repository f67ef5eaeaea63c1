//! The SQLite store's writer: one thread that owns the only writing connection (rusqlite,
//! statements prepared once and cached) and commits the operations that arrived together in
//! one transaction (group commit). Under load one fsync serves many requests, yet no caller
//! hears back before its write is committed. A thread rather than an async task because every
//! statement is a synchronous call into SQLite: one hop per batch instead of one per statement.

use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params, params_from_iter};
use tokio::sync::{mpsc, oneshot};

use super::{buyer, inbox, ledger, outbox};
use crate::clock::SharedClock;
use crate::store::backend::{LogEntry, Outcome, Work};
use crate::store::rows::{self, Arg, Columns};
use crate::store::{StoreResult, sql};

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

/// Starts the writer thread; it ends when every sender is dropped. The times it records are
/// `clock`'s.
pub fn spawn(conn: Connection, rx: mpsc::Receiver<Op>, clock: SharedClock) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, rx, clock))
        .map(|_| ())
}

/// Commits the operations that are waiting, in one transaction; if that fails, each alone.
fn run(mut conn: Connection, mut rx: mpsc::Receiver<Op>, clock: SharedClock) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch, clock.now_ms()) {
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
                    let result = commit(&mut conn, std::slice::from_ref(&op), clock.now_ms())
                        .map(|mut o| o.remove(0));
                    let _ = op.reply.send(result);
                }
            }
        }
    }
}

/// Commits `batch` in one transaction, recording `now` as the time of its writes.
fn commit(conn: &mut Connection, batch: &[Op], now: i64) -> StoreResult<Vec<Outcome>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for op in batch {
        outcomes.push(apply(&tx, &op.work, now)?);
    }
    tx.commit()?;
    Ok(outcomes)
}

fn apply(tx: &Connection, work: &Work, now: i64) -> StoreResult<Outcome> {
    Ok(match work {
        Work::Accept(inbound) => Outcome::Admission(inbox::accept(tx, inbound, now)?),
        Work::TakeOver(args) => Outcome::Unfinished(returning(
            tx,
            sql::TAKE_OVER.sqlite,
            args,
            rows::unfinished,
        )?),
        Work::Enqueue(item, logged) => fenced(outbox::enqueue(tx, item, Some(logged), None, now)?),
        Work::EnqueueDead(dead) => fenced(outbox::enqueue(tx, &dead.0, None, Some(&dead.1), now)?),
        Work::Claim(args) => {
            Outcome::Items(returning(tx, sql::CLAIM.sqlite, args, rows::outbox_item)?)
        }
        Work::Execute(statements) => {
            let mut n = 0;
            for (statement, args) in statements {
                let mut prepared = tx.prepare_cached(numbered(statement))?;
                n += prepared.execute(params_from_iter(args))? as u64;
            }
            Outcome::Count(n)
        }
        Work::RecordRequest(request) => {
            buyer::record_request(tx, request, now)?;
            Outcome::Done
        }
        Work::FileCallback(filed) => {
            let (callback, forward, logged) = &**filed;
            Outcome::Accepted(buyer::file_callback(
                tx,
                callback,
                forward.as_ref(),
                logged,
                now,
            )?)
        }
        Work::ClaimPoll(args) => {
            Outcome::Poll(returning(tx, sql::CLAIM_POLL, args, rows::poll_position)?.pop())
        }
        Work::QueueEntry(queued) => {
            let (rule, entry, item) = &**queued;
            Outcome::Ledger(ledger::queue_entry(tx, *rule, entry, item, now)?)
        }
        Work::BuryOrderEvent(buried) => {
            let (event, item, reason) = &**buried;
            Outcome::Id(ledger::bury_order_event(tx, event, item, reason, now)?)
        }
    })
}

/// The id of a queued message, or [`Outcome::ClaimLost`] when its claim no longer held the
/// request it answers (nothing was written).
fn fenced(id: Option<i64>) -> Outcome {
    id.map_or(Outcome::ClaimLost, Outcome::Id)
}

/// The rows `statement` returns with `args`, each made a record by `map`.
fn returning<T>(
    tx: &Connection,
    statement: &'static str,
    args: &[Arg],
    map: fn(&dyn Columns) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut prepared = tx.prepare_cached(numbered(statement))?;
    let mut rows = prepared.query(params_from_iter(args))?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        records.push(map(row)?);
    }
    Ok(records)
}

/// `statement` (of [`sql`], with `$n` parameters) as rusqlite binds it: `?n`. Rewritten once
/// per statement and kept: the statements are a fixed set of constants, and the writer runs
/// several per request.
pub(super) fn numbered(statement: &'static str) -> &'static str {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        /// By the constant's address and length: no hashing of the text.
        static NUMBERED: RefCell<HashMap<(usize, usize), &'static str>> =
            RefCell::new(HashMap::new());
    }
    NUMBERED.with(|cache| {
        *cache
            .borrow_mut()
            .entry((statement.as_ptr() as usize, statement.len()))
            // Leaked once per constant statement: a fixed, small amount.
            .or_insert_with(|| Box::leak(renumbered(statement).into_boxed_str()))
    })
}

fn renumbered(statement: &str) -> String {
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

/// Adds `entry` to the message log with `body` as the log keeps it (already masked).
pub(super) fn log_entry(
    tx: &Connection,
    (flow, direction, action, transaction_id, message_id, headers): LogEntry<'_>,
    body: &[u8],
    now: i64,
) -> StoreResult<()> {
    tx.prepare_cached(numbered(sql::INSERT_MESSAGE))?
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
        let statement = "UPDATE t SET a = $2 WHERE b = $1";
        let first = super::numbered(statement);
        assert_eq!(first, "UPDATE t SET a = ?2 WHERE b = ?1");
        assert!(
            std::ptr::eq(first, super::numbered(statement)),
            "rewritten once"
        );
    }
}
