//! The SQLite store's writer: one thread that owns the only writing connection (rusqlite,
//! statements prepared once and cached) and commits the operations that arrived together in
//! one transaction (group commit). Under load one fsync serves many requests, yet no caller
//! hears back before its write is durable. A thread rather than an async task because every
//! statement is a synchronous call into SQLite: one hop per commit instead of one per statement.
//!
//! The writer does not wait for the disk. It applies operations as they arrive in an open
//! transaction and commits it whenever the previous commit is durable. With
//! `synchronous=FULL` a second thread, the syncer, makes the WAL durable (one `fdatasync` for
//! every commit handed over since its last, what SQLite does at a `FULL` commit) before it
//! answers; meanwhile the writer applies the next operations. SQLite's own sync at commit is
//! off (`synchronous=NORMAL` on the connection), which changes nothing on disk but who waits.
//! Checkpoints (copying the WAL into the database, with their two fsyncs) run on a third
//! thread with its own connection, not inside a commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as sync_mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, params, params_from_iter};
use tokio::sync::{mpsc, oneshot};

use super::{Durability, buyer, inbox, ledger, outbox};
use crate::clock::SharedClock;
use crate::store::backend::{LogEntry, Outcome, Work};
use crate::store::rows::{self, Arg, Columns};
use crate::store::{StoreError, StoreResult, sql};

/// Prepared statements kept per connection (all the writer's fit).
const STATEMENT_CACHE: usize = 64;

/// How a write waits for a lock held by another connection (a migration, a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Checkpoints run at most this often, so that a page written by many commits in between is
/// copied into the database once.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(200);

/// WAL frames (pages) past which the writer checkpoints the rest itself before its next
/// commit: a WAL starts over only when a checkpoint caught up with it before a write began,
/// which a checkpoint on another thread may never do under steady load.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// What the writer hears: an operation to commit, or that the last commit is on disk.
// Nearly every message is an operation: boxing it would cost each an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Op(Op),
    Synced,
}

/// One write operation and where its result goes.
pub struct Op {
    pub work: Work,
    pub reply: oneshot::Sender<StoreResult<Outcome>>,
}

/// The answers of one commit, owed once it is durable.
type Answers = Vec<(oneshot::Sender<StoreResult<Outcome>>, StoreResult<Outcome>)>;

/// Opens a connection to an already migrated database: WAL, SQLite's sync at commit off (the
/// syncer makes commits durable, see the module's documentation), no automatic checkpoints
/// (the checkpointer runs them).
pub fn connect(path: &str) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Starts the writer thread, the syncer (with [`Durability::Full`]) and the checkpointer over
/// the database at `path`; they end when every sender but `weak` is dropped (`weak` is the
/// syncer's way back to the writer). The times the writer records are `clock`'s.
pub fn spawn(
    path: &str,
    durability: Durability,
    (rx, weak): (mpsc::Receiver<Message>, mpsc::WeakSender<Message>),
    clock: SharedClock,
) -> StoreResult<()> {
    let (conn, checkpointing) = (connect(path)?, connect(path)?);
    let restart = Arc::new(AtomicBool::new(false));
    let (nudge, nudged) = sync_mpsc::sync_channel(1);
    let flagged = restart.clone();
    thread("sqlite-checkpoint", move || {
        checkpoints(checkpointing, nudged, flagged)
    })?;
    let durable = match durability {
        Durability::Full => {
            let (answers, committed) = sync_mpsc::channel();
            let wal = wal_of(Path::new(path));
            thread("sqlite-sync", move || sync(wal, committed, weak))?;
            Some(answers)
        }
        Durability::Normal => None,
    };
    let writer = Writer {
        conn,
        clock,
        durable,
        nudge,
        restart,
        open: Vec::new(),
        syncing: false,
    };
    thread("sqlite-writer", move || writer.run(rx))
}

fn thread(name: &str, run: impl FnOnce() + Send + 'static) -> StoreResult<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map(|_| ())
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))
}

/// The WAL file of the database at `path`.
fn wal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

struct Writer {
    conn: Connection,
    clock: SharedClock,
    /// Where committed answers wait for the syncer; None: answered at once (`NORMAL`).
    durable: Option<sync_mpsc::Sender<Answers>>,
    /// Tells the checkpointer there is something to copy (never blocks: one nudge is enough).
    nudge: sync_mpsc::SyncSender<()>,
    /// Set by the checkpointer when the WAL keeps growing: the writer checkpoints the rest.
    restart: Arc<AtomicBool>,
    /// The operations applied in the open transaction, with what each gave (none: no
    /// transaction open).
    open: Vec<(Op, Outcome)>,
    /// Whether the syncer is making the last commit durable.
    syncing: bool,
}

impl Writer {
    /// Applies operations as they arrive, in one open transaction, and commits it whenever
    /// the syncer is free: what arrives while the disk syncs one commit goes into the next,
    /// so there is one commit per sync, and no operation waits for a sync to begin its work.
    fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        while let Some(first) = rx.blocking_recv() {
            self.hear(first);
            while let Ok(message) = rx.try_recv() {
                self.hear(message);
            }
            if !self.syncing && !self.open.is_empty() {
                self.commit();
            }
        }
        if !self.open.is_empty() {
            self.commit();
        }
    }

    fn hear(&mut self, message: Message) {
        match message {
            Message::Synced => self.syncing = false,
            Message::Op(op) => match self.apply(&op.work) {
                Ok(outcome) => self.open.push((op, outcome)),
                Err(e) => {
                    // Undone with the rest of the open transaction, which is applied again
                    // without it: the others are not the failed one's to lose.
                    if !self.conn.is_autocommit() {
                        let _ = self.conn.execute_batch("ROLLBACK");
                    }
                    let _ = op.reply.send(Err(e));
                    for (op, _) in std::mem::take(&mut self.open) {
                        self.hear(Message::Op(op));
                    }
                }
            },
        }
    }

    /// Applies `work` in the open transaction, opening one first.
    fn apply(&mut self, work: &Work) -> StoreResult<Outcome> {
        if self.conn.is_autocommit() {
            if self.restart.swap(false, Ordering::Relaxed) {
                // Nothing else writes now: once this catches up, the next commit starts the
                // WAL over.
                if let Err(e) = checkpoint(&self.conn) {
                    tracing::warn!(error = %e, "store checkpoint failed");
                }
            }
            self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        }
        apply(&self.conn, work, self.clock.now_ms())
    }

    /// Commits the open transaction; its answers go out once it is durable.
    fn commit(&mut self) {
        let answers: Answers = std::mem::take(&mut self.open)
            .into_iter()
            .map(|(op, outcome)| (op.reply, Ok(outcome)))
            .collect();
        if let Err(e) = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut c| c.execute([]))
        {
            tracing::error!(error = %e, size = answers.len(), "store commit failed");
            // Rolled back: nothing of it is recorded.
            if !self.conn.is_autocommit() {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            let why = e.to_string();
            for (reply, _) in answers {
                let _ = reply.send(Err(commit_failed(&why)));
            }
            return;
        }
        crate::telemetry::store_committed(answers.len());
        let _ = self.nudge.try_send(());
        match &self.durable {
            Some(syncer) => match syncer.send(answers) {
                Ok(()) => self.syncing = true,
                Err(unsent) => answer(unsent.0, Err("the syncer stopped".into())),
            },
            None => answer(answers, Ok(())),
        }
    }
}

/// Sends each answer; a failed sync turns the successes into errors (their writes are
/// committed but may not be on disk).
fn answer(answers: Answers, synced: Result<(), String>) {
    for (reply, result) in answers {
        let result = match (&synced, result) {
            (Err(why), Ok(_)) => Err(commit_failed(why)),
            (_, result) => result,
        };
        let _ = reply.send(result);
    }
}

fn commit_failed(why: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Io(std::io::Error::other(format!(
        "committing to the store: {why}"
    ))))
}

/// The syncer: makes the WAL durable for the commits handed over since its last sync, answers
/// them, and tells the writer (through `writer`, which does not keep it running) that it may
/// commit again. One `fdatasync` of the WAL is what `synchronous=FULL` does at each commit.
fn sync(wal: PathBuf, committed: sync_mpsc::Receiver<Answers>, writer: mpsc::WeakSender<Message>) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = committed.recv() {
        // Everything handed over so far was written before this sync starts.
        let waiting: Vec<Answers> = std::iter::once(first).chain(committed.try_iter()).collect();
        let synced = match &file {
            Some(f) => f.sync_data(),
            // Opened at the first commit, which has created it.
            None => std::fs::File::open(&wal).and_then(|f| {
                let synced = f.sync_data();
                file = Some(f);
                synced
            }),
        }
        .map_err(|e| e.to_string());
        if let Err(e) = &synced {
            tracing::error!(error = %e, wal = %wal.display(), "cannot sync the store's WAL");
        }
        for answers in waiting {
            answer(answers, synced.clone());
        }
        if let Some(writer) = writer.upgrade() {
            let _ = writer.blocking_send(Message::Synced);
        }
    }
}

/// The checkpointer: copies committed pages from the WAL into the database, at most every
/// [`CHECKPOINT_PAUSE`], without holding up the writer; asks the writer to finish the job when
/// the WAL does not start over by itself.
fn checkpoints(conn: Connection, nudged: sync_mpsc::Receiver<()>, restart: Arc<AtomicBool>) {
    while nudged.recv().is_ok() {
        let started = Instant::now();
        match checkpoint(&conn) {
            Ok(frames) if frames >= WAL_RESTART_FRAMES => restart.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store checkpoint failed"),
        }
        // A pause between checkpoints, not a wait for anything: the writer's nudges meanwhile
        // are one more checkpoint after it.
        std::thread::sleep(CHECKPOINT_PAUSE.saturating_sub(started.elapsed()));
    }
}

/// A passive checkpoint (it waits for no one); how many frames the WAL holds.
fn checkpoint(conn: &Connection) -> StoreResult<i64> {
    Ok(conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))?)
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
