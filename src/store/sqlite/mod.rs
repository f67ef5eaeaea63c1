//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread ([`writer`]) that commits the operations that
//! arrived together in one transaction (group commit): under load, one fsync serves many
//! requests, yet no caller hears back before its write is committed. Reads use a small pool
//! beside it. Migrations run at open, before the writer starts.

mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use super::{
    Accepted, Admission, BuyerTransaction, Claim, Counterpart, DeadLetter, Disposition,
    FiledCallback, Inbound, InboundKey, NewCallback, NewOutbox, OutboxCounts, OutboxItem,
    PollPosition, SentRequest, Store, StoreError, StoreResult, Unfinished,
};
use super::{OmsEvent, OmsQueued, OmsRecord, StoredOmsEvent, UltraUser};
use writer::{Op, Outcome, Work};

pub struct SqliteStore {
    writer: mpsc::Sender<Op>,
    read: SqlitePool,
}

/// When a commit counts as done (`?synchronous=` of the store URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL` (the default): every commit is synced to disk (fsync of the WAL)
    /// before anyone hears of it. Nothing acknowledged is lost, even on power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit is written to the WAL file but synced only at
    /// checkpoints. Nothing acknowledged is lost when the process dies (killed, crashed: the
    /// operating system still writes what it was handed); the last commits before a power
    /// loss or kernel crash can be. The database itself is never corrupted either way.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Splits `path?synchronous=full|normal` into the path and its durability.
pub fn parse_location(location: &str) -> StoreResult<(&str, Durability)> {
    let bad = || StoreError::BadUrl(format!("sqlite://{location}"));
    let Some((path, query)) = location.split_once('?') else {
        return Ok((location, Durability::Full));
    };
    let mut durability = Durability::Full;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        durability = match pair.split_once('=').ok_or_else(bad)? {
            ("synchronous", v) if v.eq_ignore_ascii_case("full") => Durability::Full,
            ("synchronous", v) if v.eq_ignore_ascii_case("normal") => Durability::Normal,
            _ => return Err(bad()),
        };
    }
    Ok((path, durability))
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `location`: a path, optionally
    /// followed by `?synchronous=normal` (see [`Durability`]).
    pub async fn open(location: &str) -> StoreResult<Self> {
        let (path, durability) = parse_location(location)?;
        private_files(Path::new(path)).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        conn.close().await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let path = path.to_string();
        let conn = tokio::task::spawn_blocking(move || writer::connect(&path, durability.pragma()))
            .await
            .map_err(|_| StoreError::Closed)??;
        let (tx, rx) = mpsc::channel(8192);
        writer::spawn(conn, rx).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(SqliteStore { writer: tx, read })
    }

    async fn write(&self, work: Work) -> StoreResult<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Op { work, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        match rx.await.map_err(|_| StoreError::Closed)?? {
            Outcome::ClaimLost => Err(StoreError::ClaimLost),
            outcome => Ok(outcome),
        }
    }

    async fn changed(&self, work: Work) -> StoreResult<bool> {
        match self.write(work).await? {
            Outcome::Changed(c) => Ok(c),
            _ => Err(StoreError::Closed),
        }
    }
}

/// The store holds personal data until its work is done: its directory, when the adapter
/// creates it, is the owner's alone (0700), and so are the database file and its `-wal` and
/// `-shm` companions (0600), created that way and narrowed if they were not.
fn private_files(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(parent) = parent {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
                tracing::warn!(file = %file.display(), "store file was readable by others; now 0600");
            }
        }
    }
    #[cfg(not(unix))]
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    Ok(())
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
        refused: r.try_get("refused")?,
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

impl Store for SqliteStore {
    fn accept(&self, inbound: Inbound) -> BoxFuture<'_, StoreResult<Admission>> {
        Box::pin(async move {
            match self.write(Work::Accept(inbound)).await? {
                Outcome::Admission(a) => Ok(a),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn placed_order(
        &self,
        flow: &str,
        order_id: &str,
        counterpart: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (flow, order_id, counterpart) = (
            flow.to_string(),
            order_id.to_string(),
            counterpart.to_string(),
        );
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT 1 FROM transactions WHERE flow = ? AND erp_order_id = ? \
                 AND counterpart = ? LIMIT 1",
            )
            .bind(flow)
            .bind(order_id)
            .bind(counterpart)
            .fetch_optional(&self.read)
            .await?;
            Ok(row.is_some())
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

    fn renew_request(
        &self,
        key: &InboundKey,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let work = Work::RenewRequest {
            key: key.clone(),
            claim: claim.clone(),
            until,
        };
        Box::pin(self.changed(work))
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
            // Masked for the log here, on the caller's task, rather than in the writer.
            let logged = writer::masked(&item.body);
            match self.write(Work::Enqueue(item, logged)).await? {
                Outcome::Id(id) => Ok(id),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn enqueue_dead(&self, item: NewOutbox, error: String) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            match self
                .write(Work::EnqueueDead(Box::new((item, error))))
                .await?
            {
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

    fn renew_delivery(
        &self,
        id: i64,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(self.changed(Work::RenewDelivery { id, claim, until }))
    }

    fn delivered(&self, id: i64, claim: &Claim, now: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(self.changed(Work::Delivered { id, claim, now }))
    }

    fn release_claims(&self, owner: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let owner = owner.to_string();
        Box::pin(async move {
            match self.write(Work::ReleaseClaims(owner)).await? {
                Outcome::Count(n) => Ok(n),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn retry_later(
        &self,
        id: i64,
        claim: &Claim,
        next: i64,
        error: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(self.changed(Work::Retry {
            id,
            claim,
            next,
            error,
        }))
    }

    fn bury(
        &self,
        id: i64,
        claim: &Claim,
        now: i64,
        error: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(self.changed(Work::Bury {
            id,
            claim,
            now,
            error,
        }))
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
                // A message waiting behind an older one of its sequence (pending or dead) is
                // not due on its own.
                "SELECT min(max(next_attempt_at, coalesce(claimed_until, 0))) AS due FROM outbox \
                 WHERE state = 'pending' \
                 AND (sequence_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS earlier \
                      WHERE earlier.sequence_key = outbox.sequence_key \
                      AND earlier.state <> 'delivered' AND earlier.id < outbox.id))",
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

    fn note_refused_callback(
        &self,
        flow: &str,
        message_id: &str,
        refused: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (flow, message_id) = (flow.to_string(), message_id.to_string());
        Box::pin(async move {
            self.write(Work::NoteRefused {
                flow,
                message_id,
                refused,
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
                .write(Work::FileCallback(Box::new({
                    // Masked for the log here, on the caller's task, rather than in the writer.
                    let logged = writer::Logged::of(&callback, forward.as_ref());
                    (callback, forward, logged)
                })))
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

    fn forget_ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let session = session.to_string();
        Box::pin(async move {
            match self.write(Work::ForgetUltraUser(session)).await? {
                Outcome::Changed(gone) => Ok(gone),
                _ => Err(StoreError::Closed),
            }
        })
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

    fn bury_oms_event(
        &self,
        event: OmsEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            match self
                .write(Work::BuryOmsEvent(Box::new((event, item, reason))))
                .await?
            {
                Outcome::Id(id) => Ok(id),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn oms_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOmsEvent>>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT e.flow, e.callback, e.body, u.order_id, u.state FROM oms_events AS e \
                 LEFT JOIN oms_updates AS u ON u.outbox_id = e.outbox_id WHERE e.outbox_id = ?",
            )
            .bind(outbox_id)
            .fetch_optional(&self.read)
            .await?;
            Ok(row.as_ref().map(StoredOmsEvent::from_row).transpose()?)
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
    use crate::store::{Admission, InboundKey, now_ms};

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

    #[test]
    fn store_locations_name_their_durability() {
        assert_eq!(
            parse_location("a/s.db").unwrap(),
            ("a/s.db", Durability::Full)
        );
        assert_eq!(
            parse_location("a/s.db?synchronous=normal").unwrap(),
            ("a/s.db", Durability::Normal)
        );
        assert_eq!(
            parse_location("s.db?synchronous=FULL").unwrap(),
            ("s.db", Durability::Full)
        );
        assert!(parse_location("s.db?synchronous=off").is_err());
        assert!(parse_location("s.db?cache=shared").is_err());
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
            assert_eq!(t.await.unwrap().unwrap(), Admission::New);
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
}
