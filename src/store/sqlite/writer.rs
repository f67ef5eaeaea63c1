//! The SQLite store's writer: one thread that owns the only writing connection (rusqlite,
//! statements prepared once and cached) and commits the operations that arrived together in
//! one transaction (group commit). Under load one fsync serves many requests, yet no caller
//! hears back before its write is committed. A thread rather than an async task because every
//! statement is a synchronous call into SQLite: one hop per batch instead of one per statement.

use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::ultra::oms::{self, OmsState};
use tokio::sync::{mpsc, oneshot};

use crate::store::{
    Accepted, Admission, Claim, Counterpart, Inbound, InboundKey, NewCallback, NewOutbox, OmsEvent,
    OmsQueued, OmsRecord, OutboxItem, PollPosition, SentRequest, StoreError, StoreResult,
    UltraUser, Unfinished, body_digest, now_ms,
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
        Work::Accept(inbound) => Outcome::Admission(accept(tx, inbound)?),
        Work::ClaimUnfinished {
            owner,
            now,
            lease_ms,
            limit,
            take_all,
        } => {
            let mut stmt = tx.prepare_cached(
                "UPDATE inbox SET claimed_by = ?1, claimed_until = ?2, claim_epoch = claim_epoch + 1 \
                 WHERE rowid IN ( \
                   SELECT rowid FROM inbox WHERE state = 'accepted' \
                   AND (?3 OR claimed_until IS NULL OR claimed_until < ?4) \
                   ORDER BY received_at LIMIT ?5) \
                 RETURNING flow, action, message_id, transaction_id, body, callback_base, \
                 received_at, claimed_by, claim_epoch",
            )?;
            let rows = stmt.query_map(
                params![owner, now + lease_ms, take_all, now, *limit as i64],
                |r| {
                    Ok(Unfinished {
                        key: crate::store::InboundKey {
                            flow: r.get(0)?,
                            action: r.get(1)?,
                            message_id: r.get(2)?,
                        },
                        transaction_id: r.get(3)?,
                        body: Bytes::from(r.get::<_, Vec<u8>>(4)?),
                        callback_base: r.get(5)?,
                        received_at: r.get(6)?,
                        claim: Claim {
                            owner: r.get(7)?,
                            epoch: r.get(8)?,
                        },
                    })
                },
            )?;
            Outcome::Unfinished(rows.collect::<Result<_, _>>()?)
        }
        Work::Enqueue(item, logged) => match enqueue(tx, item, Some(logged), None)? {
            Some(id) => Outcome::Id(id),
            None => Outcome::ClaimLost,
        },
        Work::EnqueueDead(work) => {
            let (item, error) = &**work;
            match enqueue(tx, item, None, Some(error))? {
                Some(id) => Outcome::Id(id),
                None => Outcome::ClaimLost,
            }
        }
        Work::RenewRequest { key, claim, until } => {
            let n = tx
                .prepare_cached(
                    "UPDATE inbox SET claimed_until = max(coalesce(claimed_until, 0), ?1) \
                     WHERE flow = ?2 AND action = ?3 AND message_id = ?4 AND state = 'accepted' \
                     AND claimed_by = ?5 AND claim_epoch = ?6",
                )?
                .execute(params![
                    until,
                    key.flow,
                    key.action,
                    key.message_id,
                    claim.owner,
                    claim.epoch
                ])?;
            Outcome::Changed(n > 0)
        }
        Work::RenewDelivery { id, claim, until } => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET claimed_until = max(coalesce(claimed_until, 0), ?1) \
                     WHERE id = ?2 AND state = 'pending' AND claimed_by = ?3 AND claim_epoch = ?4",
                )?
                .execute(params![until, id, claim.owner, claim.epoch])?;
            Outcome::Changed(n > 0)
        }
        Work::Claim {
            owner,
            now,
            limit,
            lease_ms,
        } => Outcome::Items(claim(tx, owner, *now, *limit, *lease_ms)?),
        Work::Delivered { id, claim, now } => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, finished_at = ?1, \
                     claimed_by = NULL, claimed_until = NULL, last_error = NULL \
                     WHERE id = ?2 AND state = 'pending' AND claimed_by = ?3 AND claim_epoch = ?4",
                )?
                .execute(params![now, id, claim.owner, claim.epoch])?;
            Outcome::Changed(n > 0)
        }
        Work::Retry {
            id,
            claim,
            next,
            error,
        } => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?1, last_error = ?2, \
                     claimed_by = NULL, claimed_until = NULL \
                     WHERE id = ?3 AND state = 'pending' AND claimed_by = ?4 AND claim_epoch = ?5",
                )?
                .execute(params![next, error, id, claim.owner, claim.epoch])?;
            Outcome::Changed(n > 0)
        }
        Work::Bury {
            id,
            claim,
            now,
            error,
        } => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?1, \
                     finished_at = ?2, claimed_by = NULL, claimed_until = NULL \
                     WHERE id = ?3 AND state = 'pending' AND claimed_by = ?4 AND claim_epoch = ?5",
                )?
                .execute(params![error, now, id, claim.owner, claim.epoch])?;
            Outcome::Changed(n > 0)
        }
        Work::Revive { id, now, deadline } => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'pending', next_attempt_at = ?1, deadline = ?2, \
                     finished_at = NULL WHERE id = ?3 AND state = 'dead'",
                )?
                .execute(params![now, deadline, id])?;
            Outcome::Changed(n > 0)
        }
        Work::ReleaseClaims(owner) => {
            let n = tx
                .prepare_cached(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, \
                     claim_epoch = claim_epoch + 1 \
                     WHERE state = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> ?1",
                )?
                .execute(params![owner])?;
            Outcome::Count(n as u64)
        }
        Work::Discard(id) => {
            let n = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ?1 AND state = 'dead'")?
                .execute(params![id])?;
            Outcome::Changed(n > 0)
        }
        Work::Purge(before) => {
            let mut n = 0;
            for sql in [
                "DELETE FROM messages WHERE created_at < ?1",
                "DELETE FROM outbox WHERE state = 'delivered' AND finished_at < ?1",
                "DELETE FROM inbox WHERE state = 'done' AND done_at < ?1",
                "DELETE FROM bap_requests WHERE created_at < ?1",
                "DELETE FROM bap_callbacks WHERE received_at < ?1",
                "DELETE FROM ultra_users WHERE created_at < ?1",
            ] {
                n += tx.prepare_cached(sql)?.execute(params![before])? as u64;
            }
            Outcome::Count(n)
        }
        Work::RecordRequest(work) => {
            let (request, counterpart) = &**work;
            record_request(tx, request, counterpart.as_ref())?;
            Outcome::Done
        }
        Work::NoteAck {
            flow,
            message_id,
            ack,
        } => {
            tx.prepare_cached(
                "UPDATE bap_requests SET ack = ?1 WHERE flow = ?2 AND message_id = ?3",
            )?
            .execute(params![ack, flow, message_id])?;
            Outcome::Done
        }
        Work::NoteRefused {
            flow,
            message_id,
            refused,
        } => {
            tx.prepare_cached(
                "UPDATE bap_requests SET refused = json_insert(coalesce(refused, '[]'), '$[#]', json(?1)) \
                 WHERE flow = ?2 AND message_id = ?3 \
                 AND json_array_length(coalesce(refused, '[]')) < ?4",
            )?
            .execute(params![
                refused,
                flow,
                message_id,
                crate::store::buyer::MAX_REFUSED_NOTED
            ])?;
            Outcome::Done
        }
        Work::FileCallback(work) => {
            let (callback, forward, logged) = &**work;
            Outcome::Accepted(file_callback(tx, callback, forward.as_ref(), logged)?)
        }
        Work::ClaimPoll {
            flow,
            owner,
            now,
            lease_ms,
        } => {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO poll_cursors (flow, cursor, owner, lease_until, updated_at) \
                 VALUES (?1, NULL, ?2, ?3, ?4) ON CONFLICT (flow) DO UPDATE SET \
                 owner = excluded.owner, lease_until = excluded.lease_until \
                 WHERE poll_cursors.owner = excluded.owner OR poll_cursors.lease_until < ?4 \
                 RETURNING cursor",
            )?;
            let mut rows = stmt.query(params![flow, owner, now + lease_ms, now])?;
            Outcome::Poll(match rows.next()? {
                Some(r) => Some(PollPosition { cursor: r.get(0)? }),
                None => None,
            })
        }
        Work::AdvancePoll {
            flow,
            owner,
            cursor,
            now,
            lease_ms,
        } => {
            let changed = tx
                .prepare_cached(
                    "UPDATE poll_cursors SET cursor = ?1, lease_until = ?2, updated_at = ?3 \
                     WHERE flow = ?4 AND owner = ?5",
                )?
                .execute(params![cursor, now + lease_ms, now, flow, owner])?;
            Outcome::Changed(changed > 0)
        }
        Work::ForgetUltraUser(session) => {
            let n = tx
                .prepare_cached("DELETE FROM ultra_users WHERE session = ?1")?
                .execute(params![session])?;
            Outcome::Changed(n > 0)
        }
        Work::SaveUltraUser(u) => {
            tx.prepare_cached(
                "INSERT INTO ultra_users (session, connection, identity_token, mobile, email, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![u.session, u.connection, u.identity_token, u.mobile, u.email, u.created_at])?;
            Outcome::Done
        }
        Work::NoteIdentity {
            flow,
            transaction_id,
            identity_token,
        } => {
            tx.prepare_cached(
                "UPDATE transactions SET identity_token = ?1, updated_at = ?2 \
                 WHERE flow = ?3 AND transaction_id = ?4",
            )?
            .execute(params![identity_token, now_ms(), flow, transaction_id])?;
            Outcome::Done
        }
        Work::QueueOms(work) => {
            let (record, item) = &**work;
            Outcome::Oms(queue_oms(tx, record, item)?)
        }
        Work::BuryOmsEvent(work) => {
            let (event, item, reason) = &**work;
            Outcome::Id(bury_oms_event(tx, event, item, reason)?)
        }
    })
}

fn accept(tx: &Connection, inbound: &Inbound) -> StoreResult<Admission> {
    let now = now_ms();
    let key = &inbound.key;
    let digest = body_digest(&inbound.body);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO inbox (flow, action, message_id, transaction_id, body, callback_base, \
             state, received_at, claimed_by, claimed_until, digest) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'accepted', ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            key.flow,
            key.action,
            key.message_id,
            inbound.transaction_id,
            &inbound.body[..],
            inbound.callback_base,
            now,
            inbound.owner,
            inbound.lease_until,
            digest,
        ])?;
    if inserted == 0 {
        let (earlier_digest, transaction_id): (Option<String>, String) = tx
            .prepare_cached(
                "SELECT digest, transaction_id FROM inbox \
                 WHERE flow = ?1 AND action = ?2 AND message_id = ?3",
            )?
            .query_row(params![key.flow, key.action, key.message_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        // Requests recorded before digests were kept count as repeats.
        return Ok(match earlier_digest {
            Some(d) if d != digest => Admission::Reused { transaction_id },
            _ => Admission::Duplicate,
        });
    }
    // The transaction is opened by its first request; it stays its counterpart's.
    let ours = tx
        .prepare_cached(
            "INSERT INTO transactions (flow, transaction_id, role, counterpart, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
             ON CONFLICT (flow, transaction_id) DO UPDATE SET updated_at = excluded.updated_at \
             WHERE transactions.counterpart IS NULL OR transactions.counterpart = excluded.counterpart",
        )?
        .execute(params![
            key.flow,
            inbound.transaction_id,
            inbound.role,
            inbound.counterpart,
            now,
        ])?;
    if ours == 0 {
        tx.prepare_cached("DELETE FROM inbox WHERE flow = ?1 AND action = ?2 AND message_id = ?3")?
            .execute(params![key.flow, key.action, key.message_id])?;
        return Ok(Admission::Foreign);
    }
    log_message(
        tx,
        &key.flow,
        "in",
        &key.action,
        &inbound.transaction_id,
        &key.message_id,
        &inbound.headers,
        &inbound.body,
        now,
    )?;
    Ok(Admission::New)
}

/// Queues an OMS update unless its order reported this state, or the state may not follow
/// the ones reported; the check and the insert share the batch's transaction.
fn queue_oms(tx: &Connection, record: &OmsRecord, item: &NewOutbox) -> StoreResult<OmsQueued> {
    let mut reported = tx
        .prepare_cached(
            "SELECT state FROM oms_updates WHERE connection = ?1 AND provider = ?2 \
             AND transaction_id = ?3 AND order_id = ?4 ORDER BY created_at",
        )?
        .query_map(
            params![
                record.connection,
                record.provider,
                record.transaction_id,
                record.order_id
            ],
            |r| r.get(0),
        )?
        .collect::<Result<Vec<String>, _>>()?;
    let fulfilled = OmsState::Fulfilled.as_str();
    if oms::replaces_a_held_fulfilment(&record.state) && reported.iter().any(|s| s == fulfilled) {
        let held: Option<i64> = tx
            .prepare_cached(
                "SELECT o.id FROM oms_updates AS u JOIN outbox AS o ON o.id = u.outbox_id \
                 WHERE u.connection = ?1 AND u.provider = ?2 AND u.transaction_id = ?3 \
                 AND u.order_id = ?4 AND u.state = ?5 AND o.state = 'pending' \
                 AND o.attempts = 0 AND o.claimed_by IS NULL AND o.next_attempt_at > ?6",
            )?
            .query_row(
                params![
                    record.connection,
                    record.provider,
                    record.transaction_id,
                    record.order_id,
                    fulfilled,
                    now_ms()
                ],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(id) = held {
            tx.prepare_cached("DELETE FROM oms_events WHERE outbox_id = ?1")?
                .execute(params![id])?;
            tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute(params![id])?;
            tx.prepare_cached("DELETE FROM oms_updates WHERE outbox_id = ?1")?
                .execute(params![id])?;
            reported.retain(|s| s != fulfilled);
        }
    }
    if let Some(refused) = oms::refusal(&reported, &record.state) {
        return Ok(refused);
    }
    let id = enqueue(tx, item, None, None)?.ok_or(StoreError::ClaimLost)?;
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO oms_updates (connection, provider, transaction_id, order_id, state, flow, \
         outbox_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        record.connection,
        record.provider,
        record.transaction_id,
        record.order_id,
        record.state,
        record.event.flow,
        id,
        now
    ])?;
    keep_oms_event(tx, id, &record.event, now)?;
    Ok(OmsQueued::Queued(id))
}

/// Records an order event that gave no OMS update as a dead letter (nothing to send yet, so
/// nothing in the message log) with the event kept for a retry.
fn bury_oms_event(
    tx: &Connection,
    event: &OmsEvent,
    item: &NewOutbox,
    reason: &str,
) -> StoreResult<i64> {
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO outbox (flow, kind, url, action, transaction_id, message_id, body, state, \
         attempts, next_attempt_at, deadline, created_at, sequence_key, last_error, finished_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'dead', 0, ?8, ?9, ?8, ?10, ?11, ?8)",
    )?
    .execute(params![
        item.flow,
        item.kind,
        item.url,
        item.action,
        item.transaction_id,
        item.message_id,
        &item.body[..],
        now,
        item.deadline,
        item.sequence,
        reason,
    ])?;
    let id = tx.last_insert_rowid();
    keep_oms_event(tx, id, event, now)?;
    Ok(id)
}

fn keep_oms_event(tx: &Connection, outbox_id: i64, event: &OmsEvent, now: i64) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO oms_events (outbox_id, flow, callback, body, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        outbox_id,
        event.flow,
        event.callback,
        &event.body[..],
        now
    ])?;
    Ok(())
}

/// Queues `item` (as a dead letter with `dead` as its last error, when given); `logged` is its
/// body already masked for the log (None: masked here). None when `item` completes a request
/// whose claim this process no longer holds: then nothing is written.
fn enqueue(
    tx: &Connection,
    item: &NewOutbox,
    logged: Option<&Bytes>,
    dead: Option<&String>,
) -> StoreResult<Option<i64>> {
    let now = now_ms();
    if let Some(held) = &item.completes {
        // Fenced, and first: a lost claim leaves no trace in the batch's transaction.
        let done = tx
            .prepare_cached(
                "UPDATE inbox SET state = 'done', done_at = ?1 \
                 WHERE flow = ?2 AND action = ?3 AND message_id = ?4 AND state = 'accepted' \
                 AND claimed_by = ?5 AND claim_epoch = ?6",
            )?
            .execute(params![
                now,
                held.key.flow,
                held.key.action,
                held.key.message_id,
                held.claim.owner,
                held.claim.epoch
            ])?;
        if done == 0 {
            return Ok(None);
        }
    }
    tx.prepare_cached(
        "INSERT INTO outbox (flow, kind, url, action, transaction_id, message_id, body, state, \
         attempts, next_attempt_at, deadline, created_at, sequence_key, claimed_by, claimed_until, \
         last_error, finished_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?14, 0, ?8, ?9, ?10, ?11, ?12, ?13, ?15, ?16)",
    )?
    .execute(params![
        item.flow,
        item.kind,
        item.url,
        item.action,
        item.transaction_id,
        item.message_id,
        &item.body[..],
        item.not_before.unwrap_or(now),
        item.deadline,
        now,
        item.sequence,
        item.claimed_by.as_ref().map(|c| &c.0),
        item.claimed_by.as_ref().map(|c| c.1),
        if dead.is_some() { "dead" } else { "pending" },
        dead,
        dead.map(|_| now),
    ])?;
    let id = tx.last_insert_rowid();
    if let Some((order_id, state)) = &item.order {
        tx.prepare_cached(
            "UPDATE transactions SET erp_order_id = ?1, state = coalesce(?2, state), updated_at = ?3 \
             WHERE flow = ?4 AND transaction_id = ?5",
        )?
        .execute(params![order_id, state, now, item.flow, item.transaction_id])?;
    }
    let entry = (
        &item.flow[..],
        "out",
        &item.action[..],
        &item.transaction_id[..],
        &item.message_id[..],
        "{}",
    );
    match logged {
        Some(masked) => log_entry(tx, entry, masked, now)?,
        None => log_entry(
            tx,
            entry,
            &crate::beckn::redact::for_the_log(&item.body),
            now,
        )?,
    }
    Ok(Some(id))
}

#[allow(clippy::too_many_arguments)]
fn log_message(
    tx: &Connection,
    flow: &str,
    direction: &str,
    action: &str,
    transaction_id: &str,
    message_id: &str,
    headers: &str,
    body: &Bytes,
    now: i64,
) -> StoreResult<()> {
    // Personal fields masked: the log outlives the work that needs them.
    let body = crate::beckn::redact::for_the_log(body);
    log_entry(
        tx,
        (flow, direction, action, transaction_id, message_id, headers),
        &body,
        now,
    )
}

/// One message log entry (flow, direction, action, transaction id, message id, headers) with
/// its body as the log keeps it.
fn log_entry(
    tx: &Connection,
    (flow, direction, action, transaction_id, message_id, headers): (
        &str,
        &str,
        &str,
        &str,
        &str,
        &str,
    ),
    body: &[u8],
    now: i64,
) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO messages (flow, direction, action, transaction_id, message_id, headers, \
         body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
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

fn claim(
    tx: &Connection,
    owner: &str,
    now: i64,
    limit: usize,
    lease_ms: i64,
) -> StoreResult<Vec<OutboxItem>> {
    let mut stmt = tx.prepare_cached(
        "UPDATE outbox SET claimed_by = ?1, claimed_until = ?2, claim_epoch = claim_epoch + 1 \
         WHERE id IN ( \
           SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?3 \
           AND (claimed_until IS NULL OR claimed_until < ?3) \
           AND (sequence_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS earlier \
                WHERE earlier.sequence_key = outbox.sequence_key AND earlier.state <> 'delivered' \
                AND earlier.id < outbox.id)) \
           ORDER BY next_attempt_at LIMIT ?4) \
         RETURNING id, flow, kind, url, action, transaction_id, message_id, body, attempts, \
         deadline, claim_epoch, claimed_until",
    )?;
    let rows = stmt.query_map(params![owner, now + lease_ms, now, limit as i64], |r| {
        Ok(OutboxItem {
            id: r.get(0)?,
            flow: r.get(1)?,
            kind: r.get(2)?,
            url: r.get(3)?,
            action: r.get(4)?,
            transaction_id: r.get(5)?,
            message_id: r.get(6)?,
            body: Bytes::from(r.get::<_, Vec<u8>>(7)?),
            attempts: r.get::<_, i64>(8)? as u32,
            deadline: r.get(9)?,
            epoch: r.get(10)?,
            claimed_until: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn record_request(
    tx: &Connection,
    r: &SentRequest,
    counterpart: Option<&Counterpart>,
) -> StoreResult<()> {
    let now = now_ms();
    let expected = serde_json::to_string(&r.expected).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(
        "INSERT INTO bap_requests (flow, message_id, transaction_id, action, mode, recipient, url, \
         expected, body, ack, expires_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        r.flow,
        r.message_id,
        r.transaction_id,
        r.action,
        r.mode,
        r.recipient,
        r.url,
        expected,
        &r.body[..],
        r.ack,
        r.expires_at,
        now,
    ])?;
    tx.prepare_cached(
        "INSERT INTO transactions (flow, transaction_id, role, counterpart, counterpart_uri, \
         created_at, updated_at) VALUES (?1, ?2, 'bap', ?3, ?4, ?5, ?5) \
         ON CONFLICT (flow, transaction_id) DO UPDATE SET \
         counterpart = coalesce(excluded.counterpart, transactions.counterpart), \
         counterpart_uri = coalesce(excluded.counterpart_uri, transactions.counterpart_uri), \
         updated_at = excluded.updated_at",
    )?
    .execute(params![
        r.flow,
        r.transaction_id,
        counterpart.map(|c| &c.bpp_id),
        counterpart.map(|c| &c.bpp_uri),
        now,
    ])?;
    log_message(
        tx,
        &r.flow,
        "out",
        &r.action,
        &r.transaction_id,
        &r.message_id,
        "{}",
        &r.body,
        now,
    )
}

fn file_callback(
    tx: &Connection,
    c: &NewCallback,
    forward: Option<&NewOutbox>,
    logged: &Logged,
) -> StoreResult<Accepted> {
    let now = now_ms();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO bap_callbacks (flow, action, message_id, transaction_id, bpp_id, via, \
             digest, disposition, body, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            c.flow,
            c.action,
            c.message_id,
            c.transaction_id,
            c.bpp_id,
            c.via,
            c.digest(),
            c.disposition.as_str(),
            &c.body[..],
            now,
        ])?;
    if inserted == 0 {
        return Ok(Accepted::Duplicate);
    }
    log_entry(
        tx,
        (
            &c.flow,
            "in",
            &c.action,
            &c.transaction_id,
            &c.message_id,
            &c.headers,
        ),
        &logged.callback,
        now,
    )?;
    if let Some(item) = forward {
        enqueue(tx, item, logged.forward.as_ref(), None)?.ok_or(StoreError::ClaimLost)?;
    }
    Ok(Accepted::New)
}
