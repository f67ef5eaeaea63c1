//! The distributed store: PostgreSQL, shared by several adapter processes behind a load
//! balancer. Work is claimed with `FOR UPDATE SKIP LOCKED` and leases, so each message is sent
//! by one process at a time and a dead process's work passes to the others when its lease ends.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Row};
use tokio::sync::broadcast;

use super::buyer::{CALLBACK_CHANNEL, signal_payload};
use super::{
    Accepted, Admission, BuyerTransaction, Claim, Counterpart, DeadLetter, Disposition,
    FiledCallback, Inbound, InboundKey, NewCallback, NewOutbox, OutboxCounts, OutboxItem,
    PollPosition, SentRequest, Store, StoreError, StoreResult, Unfinished, body_digest, now_ms,
};
use super::{OmsEvent, OmsQueued, OmsRecord, StoredOmsEvent, UltraUser};
use crate::ultra::oms::{self, OmsState};

pub struct PgStore {
    pool: PgPool,
    /// Filed-callback announcements of every process, relayed from one `LISTEN` connection
    /// started on first use.
    signals: OnceLock<broadcast::Sender<String>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and runs the shipped migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            pool,
            signals: OnceLock::new(),
        })
    }

    /// The pool, for tests that need to reset state.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Relays `NOTIFY`s on [`CALLBACK_CHANNEL`] to `signals` for as long as anyone may listen.
/// sqlx's listener reconnects by itself; when even connecting fails, it tries again a second
/// later (waiting callers also re-read the store now and then, so nothing hangs meanwhile).
async fn relay_notifications(pool: PgPool, signals: broadcast::Sender<String>) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CALLBACK_CHANNEL).await {
                Ok(()) => loop {
                    match listener.recv().await {
                        Ok(n) => {
                            let _ = signals.send(n.payload().to_string());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "store: callback notifications interrupted");
                            break;
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "store: cannot LISTEN for callback notifications")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "store: cannot connect to listen for callback notifications")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn sent_request_from_row(r: &PgRow) -> StoreResult<SentRequest> {
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

fn callback_from_row(r: &PgRow) -> StoreResult<FiledCallback> {
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

/// Queues `item` in the outbox inside `tx` (see [`Store::enqueue`]); with `dead`, straight
/// into the dead letters with that error (see [`Store::enqueue_dead`]).
async fn enqueue_in(
    tx: &mut PgConnection,
    item: &NewOutbox,
    now: i64,
    dead: Option<&str>,
) -> StoreResult<i64> {
    if let Some(held) = &item.completes {
        // Fenced: only the claim that holds the request may answer it.
        let done = sqlx::query(
            "UPDATE inbox SET state = 'done', done_at = $1 \
             WHERE flow = $2 AND action = $3 AND message_id = $4 AND state = 'accepted' \
             AND claimed_by = $5 AND claim_epoch = $6",
        )
        .bind(now)
        .bind(&held.key.flow)
        .bind(&held.key.action)
        .bind(&held.key.message_id)
        .bind(&held.claim.owner)
        .bind(held.claim.epoch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::ClaimLost);
        }
    }
    let id: i64 = sqlx::query(
        "INSERT INTO outbox (flow, kind, url, action, transaction_id, message_id, body, state, \
         attempts, next_attempt_at, deadline, created_at, sequence_key, claimed_by, claimed_until, \
         last_error, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $14, 0, $8, $9, $10, $11, $12, $13, $15, $16) RETURNING id",
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
    .bind(item.claimed_by.as_ref().map(|c| &c.0))
    .bind(item.claimed_by.as_ref().map(|c| c.1))
    .bind(if dead.is_some() { "dead" } else { "pending" })
    .bind(dead)
    .bind(dead.map(|_| now))
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    if let Some((order_id, state)) = &item.order {
        sqlx::query(
            "UPDATE transactions SET erp_order_id = $1, state = coalesce($2, state), updated_at = $3 \
             WHERE flow = $4 AND transaction_id = $5",
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
        tx,
        (
            &item.flow,
            "out",
            &item.action,
            &item.transaction_id,
            &item.message_id,
            "{}",
            &item.body,
        ),
        now,
    )
    .await?;
    Ok(id)
}

async fn log_message(
    tx: &mut PgConnection,
    m: (&str, &str, &str, &str, &str, &str, &Bytes),
    now: i64,
) -> StoreResult<()> {
    let (flow, direction, action, transaction_id, message_id, headers, body) = m;
    // Personal fields masked: the log outlives the work that needs them.
    let body = crate::beckn::redact::for_the_log(body);
    sqlx::query(
        "INSERT INTO messages (flow, direction, action, transaction_id, message_id, headers, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(flow)
    .bind(direction)
    .bind(action)
    .bind(transaction_id)
    .bind(message_id)
    .bind(headers)
    .bind(body.as_ref())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Keeps the order event of the OMS outbox message `outbox_id` (see `oms_events`).
async fn keep_oms_event(
    tx: &mut PgConnection,
    outbox_id: i64,
    event: &OmsEvent,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO oms_events (outbox_id, flow, callback, body, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(outbox_id)
    .bind(&event.flow)
    .bind(&event.callback)
    .bind(event.body.as_ref())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn unfinished_from_row(r: &PgRow) -> StoreResult<Unfinished> {
    Ok(Unfinished {
        key: InboundKey {
            flow: r.try_get("flow")?,
            action: r.try_get("action")?,
            message_id: r.try_get("message_id")?,
        },
        transaction_id: r.try_get("transaction_id")?,
        body: Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
        callback_base: r.try_get("callback_base")?,
        received_at: r.try_get("received_at")?,
        claim: Claim {
            owner: r.try_get("claimed_by")?,
            epoch: r.try_get("claim_epoch")?,
        },
    })
}

fn item_from_row(r: &PgRow) -> StoreResult<OutboxItem> {
    Ok(OutboxItem {
        id: r.try_get("id")?,
        flow: r.try_get("flow")?,
        kind: r.try_get("kind")?,
        url: r.try_get("url")?,
        action: r.try_get("action")?,
        transaction_id: r.try_get("transaction_id")?,
        message_id: r.try_get("message_id")?,
        body: Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
        attempts: r.try_get::<i32, _>("attempts")? as u32,
        deadline: r.try_get("deadline")?,
        epoch: r.try_get("claim_epoch")?,
        claimed_until: r.try_get("claimed_until")?,
    })
}

impl Store for PgStore {
    fn accept(&self, inbound: Inbound) -> BoxFuture<'_, StoreResult<Admission>> {
        Box::pin(async move {
            let now = now_ms();
            let key = &inbound.key;
            let digest = body_digest(&inbound.body);
            let mut tx = self.pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO inbox (flow, action, message_id, transaction_id, body, callback_base, state, \
                 received_at, claimed_by, claimed_until, digest) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'accepted', $7, $8, $9, $10) ON CONFLICT DO NOTHING",
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
            .bind(&digest)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                let row = sqlx::query(
                    "SELECT digest, transaction_id FROM inbox \
                     WHERE flow = $1 AND action = $2 AND message_id = $3",
                )
                .bind(&key.flow)
                .bind(&key.action)
                .bind(&key.message_id)
                .fetch_one(&mut *tx)
                .await?;
                let earlier: Option<String> = row.try_get("digest")?;
                // Requests recorded before digests were kept count as repeats.
                return Ok(match earlier {
                    Some(d) if d != digest => Admission::Reused {
                        transaction_id: row.try_get("transaction_id")?,
                    },
                    _ => Admission::Duplicate,
                });
            }
            // The transaction is opened by its first request and stays its counterpart's; the
            // conflicting row is locked, so two first requests of different counterparts
            // cannot both pass.
            let ours = sqlx::query(
                "INSERT INTO transactions (flow, transaction_id, role, counterpart, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) \
                 ON CONFLICT (flow, transaction_id) DO UPDATE SET updated_at = excluded.updated_at \
                 WHERE transactions.counterpart IS NULL OR transactions.counterpart = excluded.counterpart",
            )
            .bind(&key.flow)
            .bind(&inbound.transaction_id)
            .bind(&inbound.role)
            .bind(&inbound.counterpart)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if ours == 0 {
                // Dropping the transaction undoes the inbox row.
                return Ok(Admission::Foreign);
            }
            log_message(
                &mut tx,
                (
                    &key.flow,
                    "in",
                    &key.action,
                    &inbound.transaction_id,
                    &key.message_id,
                    &inbound.headers,
                    &inbound.body,
                ),
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(Admission::New)
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
                "SELECT 1 FROM transactions WHERE flow = $1 AND erp_order_id = $2 \
                 AND counterpart = $3 LIMIT 1",
            )
            .bind(flow)
            .bind(order_id)
            .bind(counterpart)
            .fetch_optional(&self.pool)
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
            let rows = sqlx::query(
                "UPDATE inbox SET claimed_by = $1, claimed_until = $2, claim_epoch = claim_epoch + 1 \
                 WHERE (flow, action, message_id) IN ( \
                   SELECT flow, action, message_id FROM inbox WHERE state = 'accepted' \
                   AND ($3 OR claimed_until IS NULL OR claimed_until < $4) \
                   ORDER BY received_at LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 RETURNING flow, action, message_id, transaction_id, body, callback_base, \
                 received_at, claimed_by, claim_epoch",
            )
            .bind(&owner)
            .bind(now + lease_ms)
            .bind(take_all)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(unfinished_from_row).collect()
        })
    }

    fn renew_request(
        &self,
        key: &InboundKey,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (key, claim) = (key.clone(), claim.clone());
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE inbox SET claimed_until = GREATEST(claimed_until, $1) \
                 WHERE flow = $2 AND action = $3 AND message_id = $4 AND state = 'accepted' \
                 AND claimed_by = $5 AND claim_epoch = $6",
            )
            .bind(until)
            .bind(&key.flow)
            .bind(&key.action)
            .bind(&key.message_id)
            .bind(&claim.owner)
            .bind(claim.epoch)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn last_request(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<(Bytes, String)>>> {
        let (flow, transaction_id) = (flow.to_string(), transaction_id.to_string());
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT body, callback_base FROM inbox WHERE flow = $1 AND transaction_id = $2 \
                 AND action <> 'event' ORDER BY received_at DESC LIMIT 1",
            )
            .bind(flow)
            .bind(transaction_id)
            .fetch_optional(&self.pool)
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
            let mut tx = self.pool.begin().await?;
            let id = enqueue_in(&mut tx, &item, now_ms(), None).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn enqueue_dead(&self, item: NewOutbox, error: String) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let id = enqueue_in(&mut tx, &item, now_ms(), Some(&error)).await?;
            tx.commit().await?;
            Ok(id)
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
            let rows = sqlx::query(
                "UPDATE outbox SET claimed_by = $1, claimed_until = $2, claim_epoch = claim_epoch + 1 \
                 WHERE id IN ( \
                   SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $3 \
                   AND (claimed_until IS NULL OR claimed_until < $3) \
                   AND (sequence_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS earlier \
                        WHERE earlier.sequence_key = outbox.sequence_key \
                        AND earlier.state <> 'delivered' AND earlier.id < outbox.id)) \
                   ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, flow, kind, url, action, transaction_id, message_id, body, attempts, \
                 deadline, claim_epoch, claimed_until",
            )
            .bind(&owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(item_from_row).collect()
        })
    }

    fn renew_delivery(
        &self,
        id: i64,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE outbox SET claimed_until = GREATEST(claimed_until, $1) \
                 WHERE id = $2 AND state = 'pending' AND claimed_by = $3 AND claim_epoch = $4",
            )
            .bind(until)
            .bind(id)
            .bind(&claim.owner)
            .bind(claim.epoch)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn delivered(&self, id: i64, claim: &Claim, now: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, finished_at = $1, \
                 claimed_by = NULL, claimed_until = NULL, last_error = NULL \
                 WHERE id = $2 AND state = 'pending' AND claimed_by = $3 AND claim_epoch = $4",
            )
            .bind(now)
            .bind(id)
            .bind(&claim.owner)
            .bind(claim.epoch)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
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
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2, \
                 claimed_by = NULL, claimed_until = NULL \
                 WHERE id = $3 AND state = 'pending' AND claimed_by = $4 AND claim_epoch = $5",
            )
            .bind(next)
            .bind(error)
            .bind(id)
            .bind(&claim.owner)
            .bind(claim.epoch)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn bury(
        &self,
        id: i64,
        claim: &Claim,
        now: i64,
        error: String,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = $1, \
                 finished_at = $2, claimed_by = NULL, claimed_until = NULL \
                 WHERE id = $3 AND state = 'pending' AND claimed_by = $4 AND claim_epoch = $5",
            )
            .bind(error)
            .bind(now)
            .bind(id)
            .bind(&claim.owner)
            .bind(claim.epoch)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, flow, kind, url, action, transaction_id, message_id, attempts, last_error, created_at \
                 FROM outbox WHERE state = 'dead' ORDER BY id LIMIT $1",
            )
            .bind(limit as i64)
            .fetch_all(&self.pool)
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
                        attempts: r.try_get::<i32, _>("attempts")? as u32,
                        last_error: r.try_get("last_error")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect()
        })
    }

    fn revive(&self, id: i64, now: i64, deadline: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE outbox SET state = 'pending', next_attempt_at = $1, deadline = $2, \
                 finished_at = NULL WHERE id = $3 AND state = 'dead'",
            )
            .bind(now)
            .bind(deadline)
            .bind(id)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn release_claims(&self, owner: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let owner = owner.to_string();
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL, claim_epoch = claim_epoch + 1 \
                 WHERE state = 'pending' AND claimed_by IS NOT NULL AND claimed_by <> $1",
            )
            .bind(owner)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected())
        })
    }

    fn discard(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let r = sqlx::query("DELETE FROM outbox WHERE id = $1 AND state = 'dead'")
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn counts(&self) -> BoxFuture<'_, StoreResult<OutboxCounts>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, \
                 count(*) FILTER (WHERE state = 'dead') AS dead FROM outbox",
            )
            .fetch_one(&self.pool)
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
                // A message waiting behind an older one of its sequence is not due on its own.
                "SELECT min(GREATEST(next_attempt_at, COALESCE(claimed_until, 0))) AS due FROM outbox \
                 WHERE state = 'pending' \
                 AND (sequence_key IS NULL OR NOT EXISTS (SELECT 1 FROM outbox AS earlier \
                      WHERE earlier.sequence_key = outbox.sequence_key \
                      AND earlier.state <> 'delivered' AND earlier.id < outbox.id))",
            )
            .fetch_one(&self.pool)
            .await?;
            Ok(row.try_get("due")?)
        })
    }

    fn purge(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut n = 0;
            for sql in [
                "DELETE FROM messages WHERE created_at < $1",
                "DELETE FROM outbox WHERE state = 'delivered' AND finished_at < $1",
                "DELETE FROM inbox WHERE state = 'done' AND done_at < $1",
                "DELETE FROM bap_requests WHERE created_at < $1",
                "DELETE FROM bap_callbacks WHERE received_at < $1",
                "DELETE FROM ultra_users WHERE created_at < $1",
            ] {
                n += sqlx::query(sql)
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            }
            Ok(n)
        })
    }

    fn record_request(
        &self,
        request: SentRequest,
        counterpart: Option<Counterpart>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let now = now_ms();
            let r = &request;
            let expected = serde_json::to_string(&r.expected).unwrap_or_else(|_| "[]".into());
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO bap_requests (flow, message_id, transaction_id, action, mode, recipient, \
                 url, expected, body, ack, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
                 created_at, updated_at) VALUES ($1, $2, 'bap', $3, $4, $5, $5) \
                 ON CONFLICT (flow, transaction_id) DO UPDATE SET \
                 counterpart = coalesce(excluded.counterpart, transactions.counterpart), \
                 counterpart_uri = coalesce(excluded.counterpart_uri, transactions.counterpart_uri), \
                 updated_at = excluded.updated_at",
            )
            .bind(&r.flow)
            .bind(&r.transaction_id)
            .bind(counterpart.as_ref().map(|c| &c.bpp_id))
            .bind(counterpart.as_ref().map(|c| &c.bpp_uri))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            log_message(
                &mut tx,
                (
                    &r.flow,
                    "out",
                    &r.action,
                    &r.transaction_id,
                    &r.message_id,
                    "{}",
                    &r.body,
                ),
                now,
            )
            .await?;
            tx.commit().await?;
            Ok(())
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
            sqlx::query("UPDATE bap_requests SET ack = $1 WHERE flow = $2 AND message_id = $3")
                .bind(ack)
                .bind(flow)
                .bind(message_id)
                .execute(&self.pool)
                .await?;
            Ok(())
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
            sqlx::query(
                "UPDATE bap_requests \
                 SET refused = (coalesce(refused, '[]')::jsonb || jsonb_build_array($1::jsonb))::text \
                 WHERE flow = $2 AND message_id = $3 \
                 AND jsonb_array_length(coalesce(refused, '[]')::jsonb) < $4",
            )
            .bind(refused)
            .bind(flow)
            .bind(message_id)
            .bind(crate::store::buyer::MAX_REFUSED_NOTED)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn sent_request(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<SentRequest>>> {
        let (flow, message_id) = (flow.to_string(), message_id.to_string());
        Box::pin(async move {
            sqlx::query("SELECT * FROM bap_requests WHERE flow = $1 AND message_id = $2")
                .bind(flow)
                .bind(message_id)
                .fetch_optional(&self.pool)
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
                 WHERE flow = $1 AND transaction_id = $2 AND role = 'bap'",
            )
            .bind(&flow)
            .bind(&transaction_id)
            .fetch_optional(&self.pool)
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
            let now = now_ms();
            let c = &callback;
            let mut tx = self.pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO bap_callbacks (flow, action, message_id, transaction_id, bpp_id, via, \
                 digest, disposition, body, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
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
                &mut tx,
                (
                    &c.flow,
                    "in",
                    &c.action,
                    &c.transaction_id,
                    &c.message_id,
                    &c.headers,
                    &c.body,
                ),
                now,
            )
            .await?;
            if let Some(item) = &forward {
                enqueue_in(&mut tx, item, now, None).await?;
            }
            // Delivered at commit, to every process listening: a caller waiting for this
            // answer in another process wakes.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CALLBACK_CHANNEL)
                .bind(signal_payload(&c.flow, &c.message_id))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Accepted::New)
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
                "SELECT {CALLBACK_COLUMNS} FROM bap_callbacks WHERE flow = $1 AND message_id = $2 ORDER BY id"
            ))
            .bind(flow)
            .bind(message_id)
            .fetch_all(&self.pool)
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
                "SELECT {CALLBACK_COLUMNS} FROM bap_callbacks WHERE flow = $1 AND transaction_id = $2 ORDER BY id"
            ))
            .bind(flow)
            .bind(transaction_id)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(callback_from_row).collect()
        })
    }

    fn save_ultra_user(&self, user: UltraUser) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO ultra_users (session, connection, identity_token, mobile, email, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&user.session)
            .bind(&user.connection)
            .bind(&user.identity_token)
            .bind(&user.mobile)
            .bind(&user.email)
            .bind(user.created_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn forget_ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let session = session.to_string();
        Box::pin(async move {
            let n = sqlx::query("DELETE FROM ultra_users WHERE session = $1")
                .bind(&session)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }

    fn ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<UltraUser>>> {
        let session = session.to_string();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT session, connection, identity_token, mobile, email, created_at \
                 FROM ultra_users WHERE session = $1",
            )
            .bind(&session)
            .fetch_optional(&self.pool)
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
        let (flow, transaction_id, identity_token) = (
            flow.to_string(),
            transaction_id.to_string(),
            identity_token.to_string(),
        );
        Box::pin(async move {
            sqlx::query(
                "UPDATE transactions SET identity_token = $1, updated_at = $2 \
                 WHERE flow = $3 AND transaction_id = $4",
            )
            .bind(&identity_token)
            .bind(now_ms())
            .bind(&flow)
            .bind(&transaction_id)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn identity_token(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let (flow, transaction_id) = (flow.to_string(), transaction_id.to_string());
        Box::pin(async move {
            Ok(sqlx::query_scalar::<_, Option<String>>(
                "SELECT identity_token FROM transactions WHERE flow = $1 AND transaction_id = $2",
            )
            .bind(&flow)
            .bind(&transaction_id)
            .fetch_optional(&self.pool)
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
            let mut tx = self.pool.begin().await?;
            // One order's states are decided one at a time, whichever process reports them.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(super::ultra::sequence_key(
                    &record.connection,
                    &record.provider,
                    &record.transaction_id,
                    &record.order_id,
                ))
                .execute(&mut *tx)
                .await?;
            let mut reported: Vec<String> = sqlx::query_scalar(
                "SELECT state FROM oms_updates WHERE connection = $1 AND provider = $2 \
                 AND transaction_id = $3 AND order_id = $4 ORDER BY created_at",
            )
            .bind(&record.connection)
            .bind(&record.provider)
            .bind(&record.transaction_id)
            .bind(&record.order_id)
            .fetch_all(&mut *tx)
            .await?;
            let fulfilled = OmsState::Fulfilled.as_str();
            if oms::replaces_a_held_fulfilment(&record.state)
                && reported.iter().any(|s| s == fulfilled)
            {
                // Locked, so no worker can claim it between this look and the delete.
                let held: Option<i64> = sqlx::query_scalar(
                    "SELECT o.id FROM oms_updates AS u JOIN outbox AS o ON o.id = u.outbox_id \
                     WHERE u.connection = $1 AND u.provider = $2 AND u.transaction_id = $3 \
                     AND u.order_id = $4 AND u.state = $5 AND o.state = 'pending' \
                     AND o.attempts = 0 AND o.claimed_by IS NULL AND o.next_attempt_at > $6 \
                     FOR UPDATE OF o",
                )
                .bind(&record.connection)
                .bind(&record.provider)
                .bind(&record.transaction_id)
                .bind(&record.order_id)
                .bind(fulfilled)
                .bind(now_ms())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = held {
                    for statement in [
                        "DELETE FROM oms_events WHERE outbox_id = $1",
                        "DELETE FROM outbox WHERE id = $1",
                        "DELETE FROM oms_updates WHERE outbox_id = $1",
                    ] {
                        sqlx::query(statement).bind(id).execute(&mut *tx).await?;
                    }
                    reported.retain(|s| s != fulfilled);
                }
            }
            if let Some(refused) = oms::refusal(&reported, &record.state) {
                return Ok(refused);
            }
            let now = now_ms();
            let id = enqueue_in(&mut tx, &item, now, None).await?;
            sqlx::query(
                "INSERT INTO oms_updates (connection, provider, transaction_id, order_id, state, \
                 flow, outbox_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&record.connection)
            .bind(&record.provider)
            .bind(&record.transaction_id)
            .bind(&record.order_id)
            .bind(&record.state)
            .bind(&record.event.flow)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            keep_oms_event(&mut tx, id, &record.event, now).await?;
            tx.commit().await?;
            Ok(OmsQueued::Queued(id))
        })
    }

    fn bury_oms_event(
        &self,
        event: OmsEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let now = now_ms();
            // Nothing to send yet, so nothing in the message log.
            let id: i64 = sqlx::query(
                "INSERT INTO outbox (flow, kind, url, action, transaction_id, message_id, body, \
                 state, attempts, next_attempt_at, deadline, created_at, sequence_key, last_error, \
                 finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'dead', 0, $8, $9, $8, $10, $11, $8) \
                 RETURNING id",
            )
            .bind(&item.flow)
            .bind(&item.kind)
            .bind(&item.url)
            .bind(&item.action)
            .bind(&item.transaction_id)
            .bind(&item.message_id)
            .bind(item.body.as_ref())
            .bind(now)
            .bind(item.deadline)
            .bind(&item.sequence)
            .bind(&reason)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            keep_oms_event(&mut tx, id, &event, now).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn oms_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOmsEvent>>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT e.flow, e.callback, e.body, u.order_id, u.state FROM oms_events AS e \
                 LEFT JOIN oms_updates AS u ON u.outbox_id = e.outbox_id WHERE e.outbox_id = $1",
            )
            .bind(outbox_id)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.as_ref().map(StoredOmsEvent::from_row).transpose()?)
        })
    }

    fn callback_signals(&self) -> Option<broadcast::Receiver<String>> {
        // The relay is a task: without a runtime there is nothing to relay to.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let sender = self.signals.get_or_init(|| {
            let (sender, _) = broadcast::channel(1024);
            runtime.spawn(relay_notifications(self.pool.clone(), sender.clone()));
            sender
        });
        Some(sender.subscribe())
    }

    fn claim_poll(
        &self,
        flow: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<PollPosition>>> {
        let (flow, owner) = (flow.to_string(), owner.to_string());
        Box::pin(async move {
            // One statement: of processes claiming at once, the row lock lets one through.
            let row = sqlx::query(
                "INSERT INTO poll_cursors (flow, cursor, owner, lease_until, updated_at) \
                 VALUES ($1, NULL, $2, $3, $4) ON CONFLICT (flow) DO UPDATE SET \
                 owner = excluded.owner, lease_until = excluded.lease_until \
                 WHERE poll_cursors.owner = excluded.owner OR poll_cursors.lease_until < $4 \
                 RETURNING cursor",
            )
            .bind(flow)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
            Ok(row
                .map(|r| r.try_get("cursor").map(|cursor| PollPosition { cursor }))
                .transpose()?)
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
        let (flow, owner, cursor) = (flow.to_string(), owner.to_string(), cursor.to_string());
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE poll_cursors SET cursor = $1, lease_until = $2, updated_at = $3 \
                 WHERE flow = $4 AND owner = $5",
            )
            .bind(cursor)
            .bind(now + lease_ms)
            .bind(now)
            .bind(flow)
            .bind(owner)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }
}
