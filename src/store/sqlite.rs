//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one writer task that commits the operations that arrived together in
//! one transaction (group commit): under load, one fsync serves many requests, yet no caller
//! hears back before its write is committed. Reads use a small pool beside it.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteExecutor};
use tokio::sync::{mpsc, oneshot};

use super::{
    Accepted, BuyerTransaction, Counterpart, DeadLetter, Disposition, FiledCallback, Inbound,
    NewCallback, NewOutbox, OutboxCounts, OutboxItem, PollPosition, SentRequest, Store, StoreError,
    StoreResult, Unfinished, now_ms,
};
use super::{OmsQueued, OmsRecord, UltraUser};

/// Operations committed together at most.
const MAX_BATCH: usize = 512;

pub struct SqliteStore {
    writer: mpsc::Sender<Op>,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &str) -> StoreResult<Self> {
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(run_writer(conn, rx));
        Ok(SqliteStore { writer: tx, read })
    }

    async fn write(&self, work: Work) -> StoreResult<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Op { work, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// One write operation and where its result goes.
struct Op {
    work: Work,
    reply: oneshot::Sender<StoreResult<Outcome>>,
}

#[derive(Clone)]
enum Work {
    Accept(Inbound),
    ClaimUnfinished {
        owner: String,
        now: i64,
        lease_ms: i64,
        limit: usize,
        take_all: bool,
    },
    Enqueue(NewOutbox),
    Claim {
        owner: String,
        now: i64,
        limit: usize,
        lease_ms: i64,
    },
    Delivered {
        id: i64,
        now: i64,
    },
    Retry {
        id: i64,
        next: i64,
        error: String,
    },
    Bury {
        id: i64,
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
    FileCallback(Box<(NewCallback, Option<NewOutbox>)>),
    SaveUltraUser(UltraUser),
    NoteIdentity {
        flow: String,
        transaction_id: String,
        identity_token: String,
    },
    QueueOms(Box<(OmsRecord, NewOutbox)>),
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
}

enum Outcome {
    Accepted(Accepted),
    Unfinished(Vec<Unfinished>),
    Id(i64),
    Items(Vec<OutboxItem>),
    Done,
    Changed(bool),
    Count(u64),
    Oms(OmsQueued),
    Poll(Option<PollPosition>),
}

/// Commits the operations that are waiting, in one transaction; if that fails, each alone.
async fn run_writer(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Op>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch).await {
            Ok(outcomes) => {
                for (op, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = op.reply.send(Ok(outcome));
                }
            }
            Err(e) if batch.len() == 1 => {
                let op = batch.remove(0);
                let _ = op.reply.send(Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, size = batch.len(), "store batch failed; committing its operations one by one");
                for op in batch {
                    let result = commit(&mut conn, std::slice::from_ref(&op))
                        .await
                        .map(|mut o| o.remove(0));
                    let _ = op.reply.send(result);
                }
            }
        }
    }
}

async fn commit(conn: &mut SqliteConnection, batch: &[Op]) -> StoreResult<Vec<Outcome>> {
    let mut tx = conn.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for op in batch {
        outcomes.push(apply(&mut tx, &op.work).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

async fn apply(tx: &mut SqliteConnection, work: &Work) -> StoreResult<Outcome> {
    Ok(match work {
        Work::Accept(inbound) => Outcome::Accepted(accept(tx, inbound).await?),
        Work::ClaimUnfinished {
            owner,
            now,
            lease_ms,
            limit,
            take_all,
        } => {
            let rows = sqlx::query(
                "UPDATE inbox SET claimed_by = ?, claimed_until = ? WHERE rowid IN ( \
                   SELECT rowid FROM inbox WHERE state = 'accepted' \
                   AND (? OR claimed_until IS NULL OR claimed_until < ?) \
                   ORDER BY received_at LIMIT ?) \
                 RETURNING flow, action, message_id, transaction_id, body, callback_base",
            )
            .bind(owner)
            .bind(now + lease_ms)
            .bind(take_all)
            .bind(now)
            .bind(*limit as i64)
            .fetch_all(&mut *tx)
            .await?;
            Outcome::Unfinished(
                rows.iter()
                    .map(unfinished_from_row)
                    .collect::<StoreResult<_>>()?,
            )
        }
        Work::Enqueue(item) => Outcome::Id(enqueue(tx, item).await?),
        Work::Claim {
            owner,
            now,
            limit,
            lease_ms,
        } => Outcome::Items(claim(tx, owner, *now, *limit, *lease_ms).await?),
        Work::Delivered { id, now } => {
            sqlx::query(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, finished_at = ?, \
                 claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = ?",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Outcome::Done
        }
        Work::Retry { id, next, error } => {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, \
                 claimed_by = NULL, claimed_until = NULL WHERE id = ?",
            )
            .bind(next)
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Outcome::Done
        }
        Work::Bury { id, now, error } => {
            sqlx::query(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?, \
                 finished_at = ?, claimed_by = NULL, claimed_until = NULL WHERE id = ?",
            )
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Outcome::Done
        }
        Work::Revive { id, now, deadline } => {
            let r = sqlx::query(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?, deadline = ?, \
                 finished_at = NULL WHERE id = ? AND state = 'dead'",
            )
            .bind(now)
            .bind(deadline)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Outcome::Changed(r.rows_affected() > 0)
        }
        Work::Discard(id) => {
            let r = sqlx::query("DELETE FROM outbox WHERE id = ? AND state = 'dead'")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            Outcome::Changed(r.rows_affected() > 0)
        }
        Work::Purge(before) => {
            let mut n = 0;
            for sql in [
                "DELETE FROM messages WHERE created_at < ?",
                "DELETE FROM outbox WHERE state = 'delivered' AND finished_at < ?",
                "DELETE FROM inbox WHERE state = 'done' AND done_at < ?",
                "DELETE FROM bap_requests WHERE created_at < ?",
                "DELETE FROM bap_callbacks WHERE received_at < ?",
            ] {
                n += sqlx::query(sql)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            Outcome::Count(n)
        }
        Work::RecordRequest(work) => {
            let (request, counterpart) = &**work;
            record_request(tx, request, counterpart.as_ref()).await?;
            Outcome::Done
        }
        Work::NoteAck {
            flow,
            message_id,
            ack,
        } => {
            sqlx::query("UPDATE bap_requests SET ack = ? WHERE flow = ? AND message_id = ?")
                .bind(ack)
                .bind(flow)
                .bind(message_id)
                .execute(&mut *tx)
                .await?;
            Outcome::Done
        }
        Work::FileCallback(work) => {
            let (callback, forward) = &**work;
            Outcome::Accepted(file_callback(tx, callback, forward.as_ref()).await?)
        }
        Work::SaveUltraUser(u) => {
            sqlx::query(
                "INSERT INTO ultra_users (session, connection, identity_token, mobile, email, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&u.session)
            .bind(&u.connection)
            .bind(&u.identity_token)
            .bind(&u.mobile)
            .bind(&u.email)
            .bind(u.created_at)
            .execute(&mut *tx)
            .await?;
            Outcome::Done
        }
        Work::NoteIdentity {
            flow,
            transaction_id,
            identity_token,
        } => {
            sqlx::query(
                "UPDATE transactions SET identity_token = ?, updated_at = ? \
                 WHERE flow = ? AND transaction_id = ?",
            )
            .bind(identity_token)
            .bind(now_ms())
            .bind(flow)
            .bind(transaction_id)
            .execute(&mut *tx)
            .await?;
            Outcome::Done
        }
        Work::QueueOms(work) => {
            let (record, item) = &**work;
            Outcome::Oms(queue_oms(tx, record, item).await?)
        }
        Work::ClaimPoll {
            flow,
            owner,
            now,
            lease_ms,
        } => {
            let row = sqlx::query(
                "INSERT INTO poll_cursors (flow, cursor, owner, lease_until, updated_at) \
                 VALUES (?1, NULL, ?2, ?3, ?4) ON CONFLICT (flow) DO UPDATE SET \
                 owner = excluded.owner, lease_until = excluded.lease_until \
                 WHERE poll_cursors.owner = excluded.owner OR poll_cursors.lease_until < ?4 \
                 RETURNING cursor",
            )
            .bind(flow)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            Outcome::Poll(
                row.map(|r| r.try_get("cursor").map(|cursor| PollPosition { cursor }))
                    .transpose()?,
            )
        }
        Work::AdvancePoll {
            flow,
            owner,
            cursor,
            now,
            lease_ms,
        } => {
            let r = sqlx::query(
                "UPDATE poll_cursors SET cursor = ?, lease_until = ?, updated_at = ? \
                 WHERE flow = ? AND owner = ?",
            )
            .bind(cursor)
            .bind(now + lease_ms)
            .bind(now)
            .bind(flow)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
            Outcome::Changed(r.rows_affected() > 0)
        }
    })
}

async fn queue_oms(
    tx: &mut SqliteConnection,
    record: &OmsRecord,
    item: &NewOutbox,
) -> StoreResult<OmsQueued> {
    let reported: Vec<String> = sqlx::query_scalar(
        "SELECT state FROM oms_updates WHERE connection = ? AND order_id = ? ORDER BY created_at",
    )
    .bind(&record.connection)
    .bind(&record.order_id)
    .fetch_all(&mut *tx)
    .await?;
    let Some(next) = crate::ultra::oms::OmsState::parse(&record.state) else {
        return Ok(OmsQueued::OutOfOrder(format!(
            "`{}` is not an OMS state",
            record.state
        )));
    };
    if reported.contains(&record.state) {
        return Ok(OmsQueued::Repeat);
    }
    let states: Vec<_> = reported
        .iter()
        .filter_map(|s| crate::ultra::oms::OmsState::parse(s))
        .collect();
    if let Some(why) = crate::ultra::oms::sequence_problem(&states, next) {
        return Ok(OmsQueued::OutOfOrder(why));
    }
    let id = enqueue(tx, item).await?;
    sqlx::query(
        "INSERT INTO oms_updates (connection, order_id, state, flow, transaction_id, outbox_id, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&record.connection)
    .bind(&record.order_id)
    .bind(&record.state)
    .bind(&record.flow)
    .bind(&record.transaction_id)
    .bind(id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    Ok(OmsQueued::Queued(id))
}

async fn record_request(
    tx: &mut SqliteConnection,
    r: &SentRequest,
    counterpart: Option<&Counterpart>,
) -> StoreResult<()> {
    let now = now_ms();
    let expected = serde_json::to_string(&r.expected).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO bap_requests (flow, message_id, transaction_id, action, mode, recipient, url, \
         expected, body, ack, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&r.flow)
    .bind(&r.message_id)
    .bind(&r.transaction_id)
    .bind(&r.action)
    .bind(&r.mode)
    .bind(&r.recipient)
    .bind(&r.url)
    .bind(expected)
    .bind(r.body.as_ref())
    .bind(&r.ack)
    .bind(r.expires_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO transactions (flow, transaction_id, role, counterpart, counterpart_uri, \
         created_at, updated_at) VALUES (?, ?, 'bap', ?, ?, ?, ?) \
         ON CONFLICT (flow, transaction_id) DO UPDATE SET \
         counterpart = coalesce(excluded.counterpart, transactions.counterpart), \
         counterpart_uri = coalesce(excluded.counterpart_uri, transactions.counterpart_uri), \
         updated_at = excluded.updated_at",
    )
    .bind(&r.flow)
    .bind(&r.transaction_id)
    .bind(counterpart.map(|c| &c.bpp_id))
    .bind(counterpart.map(|c| &c.bpp_uri))
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    log_message(
        &mut *tx,
        &r.flow,
        "out",
        &r.action,
        &r.transaction_id,
        &r.message_id,
        "{}",
        &r.body,
        now,
    )
    .await
}

async fn file_callback(
    tx: &mut SqliteConnection,
    c: &NewCallback,
    forward: Option<&NewOutbox>,
) -> StoreResult<Accepted> {
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO bap_callbacks (flow, action, message_id, transaction_id, bpp_id, via, digest, \
         disposition, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&c.flow)
    .bind(&c.action)
    .bind(&c.message_id)
    .bind(&c.transaction_id)
    .bind(&c.bpp_id)
    .bind(&c.via)
    .bind(c.digest())
    .bind(c.disposition.as_str())
    .bind(c.body.as_ref())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Accepted::Duplicate);
    }
    log_message(
        &mut *tx,
        &c.flow,
        "in",
        &c.action,
        &c.transaction_id,
        &c.message_id,
        &c.headers,
        &c.body,
        now,
    )
    .await?;
    if let Some(item) = forward {
        enqueue(tx, item).await?;
    }
    Ok(Accepted::New)
}

fn sent_request_from_row(r: &sqlx::sqlite::SqliteRow) -> StoreResult<SentRequest> {
    let expected: String = r.try_get("expected")?;
    Ok(SentRequest {
        flow: r.try_get("flow")?,
        message_id: r.try_get("message_id")?,
        transaction_id: r.try_get("transaction_id")?,
        action: r.try_get("action")?,
        mode: r.try_get("mode")?,
        recipient: r.try_get("recipient")?,
        url: r.try_get("url")?,
        expected: serde_json::from_str(&expected).unwrap_or_default(),
        body: Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
        ack: r.try_get("ack")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
    })
}

fn callback_from_row(r: &sqlx::sqlite::SqliteRow) -> StoreResult<FiledCallback> {
    Ok(FiledCallback {
        id: r.try_get("id")?,
        action: r.try_get("action")?,
        message_id: r.try_get("message_id")?,
        transaction_id: r.try_get("transaction_id")?,
        bpp_id: r.try_get("bpp_id")?,
        via: r.try_get("via")?,
        disposition: Disposition::parse(&r.try_get::<String, _>("disposition")?),
        body: Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
        received_at: r.try_get("received_at")?,
    })
}

const CALLBACK_COLUMNS: &str =
    "id, action, message_id, transaction_id, bpp_id, via, disposition, body, received_at";

async fn accept(tx: &mut SqliteConnection, inbound: &Inbound) -> StoreResult<Accepted> {
    let now = now_ms();
    let key = &inbound.key;
    let inserted = sqlx::query(
        "INSERT INTO inbox (flow, action, message_id, transaction_id, body, callback_base, state, \
         received_at, claimed_by, claimed_until) \
         VALUES (?, ?, ?, ?, ?, ?, 'accepted', ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&key.flow)
    .bind(&key.action)
    .bind(&key.message_id)
    .bind(&inbound.transaction_id)
    .bind(inbound.body.as_ref())
    .bind(&inbound.callback_base)
    .bind(now)
    .bind(&inbound.owner)
    .bind(inbound.lease_until)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Accepted::Duplicate);
    }
    log_message(
        &mut *tx,
        &key.flow,
        "in",
        &key.action,
        &inbound.transaction_id,
        &key.message_id,
        &inbound.headers,
        &inbound.body,
        now,
    )
    .await?;
    sqlx::query(
        "INSERT INTO transactions (flow, transaction_id, role, counterpart, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (flow, transaction_id) DO UPDATE SET updated_at = excluded.updated_at",
    )
    .bind(&key.flow)
    .bind(&inbound.transaction_id)
    .bind(&inbound.role)
    .bind(&inbound.counterpart)
    .bind(now)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(Accepted::New)
}

async fn enqueue(tx: &mut SqliteConnection, item: &NewOutbox) -> StoreResult<i64> {
    let now = now_ms();
    let id: i64 = sqlx::query(
        "INSERT INTO outbox (flow, kind, url, action, transaction_id, message_id, body, state, \
         attempts, next_attempt_at, deadline, created_at, sequence_key) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&item.flow)
    .bind(&item.kind)
    .bind(&item.url)
    .bind(&item.action)
    .bind(&item.transaction_id)
    .bind(&item.message_id)
    .bind(item.body.as_ref())
    .bind(item.not_before.unwrap_or(now))
    .bind(item.deadline)
    .bind(now)
    .bind(&item.sequence)
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if let Some(key) = &item.completes {
        sqlx::query(
            "UPDATE inbox SET state = 'done', done_at = ? WHERE flow = ? AND action = ? AND message_id = ?",
        )
        .bind(now)
        .bind(&key.flow)
        .bind(&key.action)
        .bind(&key.message_id)
        .execute(&mut *tx)
        .await?;
    }
    if let Some((order_id, state)) = &item.order {
        sqlx::query(
            "UPDATE transactions SET erp_order_id = ?, state = coalesce(?, state), updated_at = ? \
             WHERE flow = ? AND transaction_id = ?",
        )
        .bind(order_id)
        .bind(state)
        .bind(now)
        .bind(&item.flow)
        .bind(&item.transaction_id)
        .execute(&mut *tx)
        .await?;
    }
    log_message(
        &mut *tx,
        &item.flow,
        "out",
        &item.action,
        &item.transaction_id,
        &item.message_id,
        "{}",
        &item.body,
        now,
    )
    .await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn log_message(
    ex: impl SqliteExecutor<'_>,
    flow: &str,
    direction: &str,
    action: &str,
    transaction_id: &str,
    message_id: &str,
    headers: &str,
    body: &Bytes,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO messages (flow, direction, action, transaction_id, message_id, headers, body, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(flow)
    .bind(direction)
    .bind(action)
    .bind(transaction_id)
    .bind(message_id)
    .bind(headers)
    .bind(body.as_ref())
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

async fn claim(
    tx: &mut SqliteConnection,
    owner: &str,
    now: i64,
    limit: usize,
    lease_ms: i64,
) -> StoreResult<Vec<OutboxItem>> {
    let rows = sqlx::query(
        "UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE id IN ( \
           SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? \
           AND (claimed_until IS NULL OR claimed_until < ?) \
           AND (sequence_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS earlier \
                WHERE earlier.sequence_key = outbox.sequence_key AND earlier.state = 'pending' \
                AND earlier.id < outbox.id)) \
           ORDER BY next_attempt_at LIMIT ?) \
         RETURNING id, flow, kind, url, action, transaction_id, message_id, body, attempts, deadline",
    )
    .bind(owner)
    .bind(now + lease_ms)
    .bind(now)
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(item_from_row).collect()
}

fn unfinished_from_row(r: &sqlx::sqlite::SqliteRow) -> StoreResult<Unfinished> {
    Ok(Unfinished {
        key: super::InboundKey {
            flow: r.try_get("flow")?,
            action: r.try_get("action")?,
            message_id: r.try_get("message_id")?,
        },
        transaction_id: r.try_get("transaction_id")?,
        body: Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
        callback_base: r.try_get("callback_base")?,
    })
}

fn item_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<OutboxItem> {
    Ok(OutboxItem {
        id: row.try_get("id")?,
        flow: row.try_get("flow")?,
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        action: row.try_get("action")?,
        transaction_id: row.try_get("transaction_id")?,
        message_id: row.try_get("message_id")?,
        body: Bytes::from(row.try_get::<Vec<u8>, _>("body")?),
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        deadline: row.try_get("deadline")?,
    })
}

impl Store for SqliteStore {
    fn accept(&self, inbound: Inbound) -> BoxFuture<'_, StoreResult<Accepted>> {
        Box::pin(async move {
            match self.write(Work::Accept(inbound)).await? {
                Outcome::Accepted(a) => Ok(a),
                _ => Err(StoreError::Closed),
            }
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
        let owner = owner.to_string();
        Box::pin(async move {
            match self
                .write(Work::ClaimUnfinished {
                    owner,
                    now,
                    lease_ms,
                    limit,
                    take_all,
                })
                .await?
            {
                Outcome::Unfinished(u) => Ok(u),
                _ => Err(StoreError::Closed),
            }
        })
    }

    /// One process per file: SQLite is the embedded, single-node store.
    fn shared(&self) -> bool {
        false
    }

    fn last_request(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<(Bytes, String)>>> {
        let (flow, transaction_id) = (flow.to_string(), transaction_id.to_string());
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT body, callback_base FROM inbox WHERE flow = ? AND transaction_id = ? \
                 AND action <> 'event' ORDER BY received_at DESC LIMIT 1",
            )
            .bind(flow)
            .bind(transaction_id)
            .fetch_optional(&self.read)
            .await?;
            row.map(|r| {
                Ok((
                    Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
                    r.try_get("callback_base")?,
                ))
            })
            .transpose()
        })
    }

    fn enqueue(&self, item: NewOutbox) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            match self.write(Work::Enqueue(item)).await? {
                Outcome::Id(id) => Ok(id),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn claim(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxItem>>> {
        let owner = owner.to_string();
        Box::pin(async move {
            match self
                .write(Work::Claim {
                    owner,
                    now,
                    limit,
                    lease_ms,
                })
                .await?
            {
                Outcome::Items(items) => Ok(items),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn delivered(&self, id: i64, now: i64) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { self.write(Work::Delivered { id, now }).await.map(|_| ()) })
    }

    fn retry_later(&self, id: i64, next: i64, error: String) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.write(Work::Retry { id, next, error })
                .await
                .map(|_| ())
        })
    }

    fn bury(&self, id: i64, now: i64, error: String) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { self.write(Work::Bury { id, now, error }).await.map(|_| ()) })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, flow, kind, url, action, transaction_id, message_id, attempts, last_error, created_at \
                 FROM outbox WHERE state = 'dead' ORDER BY id LIMIT ?",
            )
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(DeadLetter {
                        id: r.try_get("id")?,
                        flow: r.try_get("flow")?,
                        kind: r.try_get("kind")?,
                        url: r.try_get("url")?,
                        action: r.try_get("action")?,
                        transaction_id: r.try_get("transaction_id")?,
                        message_id: r.try_get("message_id")?,
                        attempts: r.try_get::<i64, _>("attempts")? as u32,
                        last_error: r.try_get("last_error")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect()
        })
    }

    fn revive(&self, id: i64, now: i64, deadline: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            match self.write(Work::Revive { id, now, deadline }).await? {
                Outcome::Changed(c) => Ok(c),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn discard(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            match self.write(Work::Discard(id)).await? {
                Outcome::Changed(c) => Ok(c),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn counts(&self) -> BoxFuture<'_, StoreResult<OutboxCounts>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT coalesce(sum(state = 'pending'), 0) AS pending, coalesce(sum(state = 'dead'), 0) AS dead FROM outbox",
            )
            .fetch_one(&self.read)
            .await?;
            Ok(OutboxCounts {
                pending: row.try_get::<i64, _>("pending")? as u64,
                dead: row.try_get::<i64, _>("dead")? as u64,
            })
        })
    }

    fn next_due(&self) -> BoxFuture<'_, StoreResult<Option<i64>>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT min(next_attempt_at) AS due FROM outbox WHERE state = 'pending'",
            )
            .fetch_one(&self.read)
            .await?;
            Ok(row.try_get("due")?)
        })
    }

    fn purge(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            match self.write(Work::Purge(before)).await? {
                Outcome::Count(n) => Ok(n),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn record_request(
        &self,
        request: SentRequest,
        counterpart: Option<Counterpart>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.write(Work::RecordRequest(Box::new((request, counterpart))))
                .await
                .map(|_| ())
        })
    }

    fn note_ack(
        &self,
        flow: &str,
        message_id: &str,
        ack: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (flow, message_id) = (flow.to_string(), message_id.to_string());
        Box::pin(async move {
            self.write(Work::NoteAck {
                flow,
                message_id,
                ack,
            })
            .await
            .map(|_| ())
        })
    }

    fn sent_request(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<SentRequest>>> {
        let (flow, message_id) = (flow.to_string(), message_id.to_string());
        Box::pin(async move {
            sqlx::query("SELECT * FROM bap_requests WHERE flow = ? AND message_id = ?")
                .bind(flow)
                .bind(message_id)
                .fetch_optional(&self.read)
                .await?
                .as_ref()
                .map(sent_request_from_row)
                .transpose()
        })
    }

    fn buyer_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<BuyerTransaction>>> {
        let (flow, transaction_id) = (flow.to_string(), transaction_id.to_string());
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT counterpart, counterpart_uri FROM transactions \
                 WHERE flow = ? AND transaction_id = ? AND role = 'bap'",
            )
            .bind(&flow)
            .bind(&transaction_id)
            .fetch_optional(&self.read)
            .await?;
            row.map(|r| {
                let id: Option<String> = r.try_get("counterpart")?;
                let uri: Option<String> = r.try_get("counterpart_uri")?;
                Ok(BuyerTransaction {
                    transaction_id: transaction_id.clone(),
                    counterpart: id
                        .zip(uri)
                        .map(|(bpp_id, bpp_uri)| Counterpart { bpp_id, bpp_uri }),
                })
            })
            .transpose()
        })
    }

    fn file_callback(
        &self,
        callback: NewCallback,
        forward: Option<NewOutbox>,
    ) -> BoxFuture<'_, StoreResult<Accepted>> {
        Box::pin(async move {
            match self
                .write(Work::FileCallback(Box::new((callback, forward))))
                .await?
            {
                Outcome::Accepted(a) => Ok(a),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn callbacks_for_message(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        let (flow, message_id) = (flow.to_string(), message_id.to_string());
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {CALLBACK_COLUMNS} FROM bap_callbacks WHERE flow = ? AND message_id = ? ORDER BY id"
            ))
            .bind(flow)
            .bind(message_id)
            .fetch_all(&self.read)
            .await?;
            rows.iter().map(callback_from_row).collect()
        })
    }

    fn callbacks_for_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        let (flow, transaction_id) = (flow.to_string(), transaction_id.to_string());
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {CALLBACK_COLUMNS} FROM bap_callbacks WHERE flow = ? AND transaction_id = ? ORDER BY id"
            ))
            .bind(flow)
            .bind(transaction_id)
            .fetch_all(&self.read)
            .await?;
            rows.iter().map(callback_from_row).collect()
        })
    }
    fn save_ultra_user(&self, user: UltraUser) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { self.write(Work::SaveUltraUser(user)).await.map(|_| ()) })
    }

    fn ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<UltraUser>>> {
        let session = session.to_string();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT session, connection, identity_token, mobile, email, created_at \
                 FROM ultra_users WHERE session = ?",
            )
            .bind(&session)
            .fetch_optional(&self.read)
            .await?;
            row.map(|r| {
                Ok(UltraUser {
                    session: r.try_get("session")?,
                    connection: r.try_get("connection")?,
                    identity_token: r.try_get("identity_token")?,
                    mobile: r.try_get("mobile")?,
                    email: r.try_get("email")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .transpose()
        })
    }

    fn note_identity(
        &self,
        flow: &str,
        transaction_id: &str,
        identity_token: &str,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let work = Work::NoteIdentity {
            flow: flow.to_string(),
            transaction_id: transaction_id.to_string(),
            identity_token: identity_token.to_string(),
        };
        Box::pin(async move { self.write(work).await.map(|_| ()) })
    }

    fn identity_token(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let (flow, transaction_id) = (flow.to_string(), transaction_id.to_string());
        Box::pin(async move {
            Ok(sqlx::query_scalar::<_, Option<String>>(
                "SELECT identity_token FROM transactions WHERE flow = ? AND transaction_id = ?",
            )
            .bind(&flow)
            .bind(&transaction_id)
            .fetch_optional(&self.read)
            .await?
            .flatten())
        })
    }

    fn queue_oms(
        &self,
        record: OmsRecord,
        item: NewOutbox,
    ) -> BoxFuture<'_, StoreResult<OmsQueued>> {
        Box::pin(async move {
            match self.write(Work::QueueOms(Box::new((record, item)))).await? {
                Outcome::Oms(q) => Ok(q),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn claim_poll(
        &self,
        flow: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<PollPosition>>> {
        let work = Work::ClaimPoll {
            flow: flow.to_string(),
            owner: owner.to_string(),
            now,
            lease_ms,
        };
        Box::pin(async move {
            match self.write(work).await? {
                Outcome::Poll(p) => Ok(p),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn advance_poll(
        &self,
        flow: &str,
        owner: &str,
        cursor: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let work = Work::AdvancePoll {
            flow: flow.to_string(),
            owner: owner.to_string(),
            cursor: cursor.to_string(),
            now,
            lease_ms,
        };
        Box::pin(async move {
            match self.write(work).await? {
                Outcome::Changed(c) => Ok(c),
                _ => Err(StoreError::Closed),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InboundKey;

    fn inbound(message_id: &str) -> Inbound {
        Inbound {
            key: InboundKey {
                flow: "lab".into(),
                action: "search".into(),
                message_id: message_id.into(),
            },
            transaction_id: "t1".into(),
            counterpart: "bap.example".into(),
            role: "bpp".into(),
            body: Bytes::from_static(b"{}"),
            headers: "{}".into(),
            callback_base: "http://127.0.0.1:9/bap".into(),
            owner: "p1".into(),
            lease_until: now_ms() + 60_000,
        }
    }

    fn outbox(completes: Option<InboundKey>) -> NewOutbox {
        NewOutbox {
            flow: "lab".into(),
            kind: "callback".into(),
            url: "http://127.0.0.1:9/bap/on_search".into(),
            action: "on_search".into(),
            transaction_id: "t1".into(),
            message_id: "m1".into(),
            body: Bytes::from_static(b"{\"x\":1}"),
            deadline: Some(now_ms() + 60_000),
            completes,
            order: Some(("ORD-1".into(), Some("ACTIVE".into()))),
            not_before: None,
            sequence: None,
        }
    }

    #[tokio::test]
    async fn accept_is_idempotent_and_unfinished_work_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let path = path.to_str().unwrap();
        {
            let store = SqliteStore::open(path).await.unwrap();
            assert_eq!(store.accept(inbound("m1")).await.unwrap(), Accepted::New);
            assert_eq!(
                store.accept(inbound("m1")).await.unwrap(),
                Accepted::Duplicate
            );
            assert_eq!(store.accept(inbound("m2")).await.unwrap(), Accepted::New);
            store
                .enqueue(outbox(Some(inbound("m1").key)))
                .await
                .unwrap();
        }
        let store = SqliteStore::open(path).await.unwrap();
        let now = now_ms();
        assert!(
            store
                .claim_unfinished("p2", now, 1000, 10, false)
                .await
                .unwrap()
                .is_empty(),
            "still leased to p1"
        );
        let left = store
            .claim_unfinished("p2", now, 1000, 10, true)
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].key.message_id, "m2");
        assert!(
            store
                .claim_unfinished("p3", now, 1000, 10, false)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .claim_unfinished("p3", now + 1001, 1000, 10, false)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            store.counts().await.unwrap(),
            OutboxCounts {
                pending: 1,
                dead: 0
            }
        );
    }

    #[tokio::test]
    async fn claims_leases_retries_and_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db").to_str().unwrap())
            .await
            .unwrap();
        let id = store.enqueue(outbox(None)).await.unwrap();
        let now = now_ms();
        let got = store.claim("w1", now, 10, 30_000).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, id);
        assert!(
            store.claim("w2", now, 10, 30_000).await.unwrap().is_empty(),
            "leased"
        );
        // an expired lease (a crashed worker) makes it claimable again
        assert_eq!(
            store
                .claim("w2", now + 31_000, 10, 30_000)
                .await
                .unwrap()
                .len(),
            1
        );
        store
            .retry_later(id, now + 1_000, "connection refused".into())
            .await
            .unwrap();
        assert!(
            store.claim("w1", now, 10, 30_000).await.unwrap().is_empty(),
            "not due yet"
        );
        assert_eq!(store.next_due().await.unwrap(), Some(now + 1_000));
        let again = store.claim("w1", now + 1_000, 10, 30_000).await.unwrap();
        assert_eq!(again[0].attempts, 1);
        store
            .bury(id, now, "deadline passed: connection refused".into())
            .await
            .unwrap();
        let dead = store.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 2);
        assert_eq!(
            dead[0].last_error.as_deref(),
            Some("deadline passed: connection refused")
        );
        assert!(store.revive(id, now, now + 60_000).await.unwrap());
        assert_eq!(
            store.counts().await.unwrap(),
            OutboxCounts {
                pending: 1,
                dead: 0
            }
        );
        let claimed = store.claim("w1", now, 10, 1).await.unwrap();
        store.delivered(claimed[0].id, now).await.unwrap();
        assert_eq!(store.counts().await.unwrap(), OutboxCounts::default());
        assert!(
            !store.discard(id).await.unwrap(),
            "only dead letters can be dropped"
        );
        assert!(store.purge(now + 1).await.unwrap() >= 1);
    }

    #[tokio::test]
    async fn concurrent_writes_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            SqliteStore::open(dir.path().join("s.db").to_str().unwrap())
                .await
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.accept(inbound(&format!("m{i}"))).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Accepted::New);
        }
        assert_eq!(
            store
                .claim_unfinished("p", now_ms(), 1, 500, true)
                .await
                .unwrap()
                .len(),
            200
        );
    }

    #[tokio::test]
    async fn one_process_polls_a_flow_and_its_cursor_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let path = path.to_str().unwrap();
        let now = now_ms();
        {
            let store = SqliteStore::open(path).await.unwrap();
            let first = store.claim_poll("lab", "p1", now, 1_000).await.unwrap();
            assert_eq!(first, Some(PollPosition { cursor: None }));
            assert_eq!(
                store
                    .claim_poll("lab", "p2", now + 10, 1_000)
                    .await
                    .unwrap(),
                None,
                "held by p1"
            );
            assert!(
                store
                    .advance_poll("lab", "p1", "42", now + 20, 1_000)
                    .await
                    .unwrap()
            );
            assert!(
                !store
                    .advance_poll("lab", "p2", "43", now + 20, 1_000)
                    .await
                    .unwrap(),
                "only the holder moves the cursor"
            );
            // another flow is polled on its own
            assert!(
                store
                    .claim_poll("other", "p2", now, 1_000)
                    .await
                    .unwrap()
                    .is_some()
            );
        }
        let store = SqliteStore::open(path).await.unwrap();
        // p1's lease (renewed at now + 20) ends at now + 1020; then p2 may take over
        assert_eq!(
            store
                .claim_poll("lab", "p2", now + 500, 1_000)
                .await
                .unwrap(),
            None
        );
        let taken = store
            .claim_poll("lab", "p2", now + 1_100, 1_000)
            .await
            .unwrap();
        assert_eq!(
            taken,
            Some(PollPosition {
                cursor: Some("42".into())
            })
        );
        assert!(
            !store
                .advance_poll("lab", "p1", "44", now + 1_200, 1_000)
                .await
                .unwrap()
        );
    }
}
