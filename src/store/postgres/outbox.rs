//! The outbox on PostgreSQL: claims skip what another process is claiming, and a message
//! waits while an older one of its sequence is not delivered.

use futures::future::BoxFuture;
use sqlx::{PgConnection, Row};

use super::{PgStore, log_message};
use crate::store::rows::{self, Columns};
use crate::store::{
    Claim, DeadLetter, NewOutbox, OutboxCounts, OutboxItem, OutboxStore, StoreError, StoreResult,
    now_ms, reads, sql,
};

/// Queues `item` in the outbox inside `tx` (see [`OutboxStore::enqueue`]); with `dead`,
/// straight into the dead letters with that error (see [`OutboxStore::enqueue_dead`]).
pub(super) async fn enqueue_in(
    tx: &mut PgConnection,
    item: &NewOutbox,
    now: i64,
    dead: Option<&str>,
) -> StoreResult<i64> {
    if let Some(held) = &item.completes {
        let done = sqlx::query(sql::COMPLETE_REQUEST)
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
    let id: i64 = sqlx::query(sql::INSERT_OUTBOX)
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
        sqlx::query(sql::NOTE_ORDER)
            .bind(order_id)
            .bind(state)
            .bind(now)
            .bind(&item.flow)
            .bind(&item.transaction_id)
            .execute(&mut *tx)
            .await?;
    }
    let entry = (
        &item.flow[..],
        "out",
        &item.action[..],
        &item.transaction_id[..],
        &item.message_id[..],
        "{}",
    );
    log_message(tx, entry, &item.body, now).await?;
    Ok(id)
}

type Statement = sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments>;

impl PgStore {
    /// Runs `statement` on a message with `bind` applied; whether it changed a row.
    async fn settle(
        &self,
        statement: &'static str,
        bind: impl FnOnce(Statement) -> Statement,
    ) -> StoreResult<bool> {
        let r = bind(sqlx::query(statement)).execute(&self.pool).await?;
        Ok(r.rows_affected() > 0)
    }
}

impl OutboxStore for PgStore {
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
            rows.iter()
                .map(|r| rows::outbox_item(r as &dyn Columns))
                .collect()
        })
    }

    fn renew_delivery(
        &self,
        id: i64,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(self.settle(
            "UPDATE outbox SET claimed_until = GREATEST(claimed_until, $1) \
             WHERE id = $2 AND state = 'pending' AND claimed_by = $3 AND claim_epoch = $4",
            move |q| q.bind(until).bind(id).bind(claim.owner).bind(claim.epoch),
        ))
    }

    fn delivered(&self, id: i64, claim: &Claim, now: i64) -> BoxFuture<'_, StoreResult<bool>> {
        let claim = claim.clone();
        Box::pin(self.settle(sql::DELIVERED, move |q| {
            q.bind(now).bind(id).bind(claim.owner).bind(claim.epoch)
        }))
    }

    fn release_claims(&self, owner: &str) -> BoxFuture<'_, StoreResult<u64>> {
        let owner = owner.to_string();
        Box::pin(async move {
            let r = sqlx::query(sql::RELEASE_CLAIMS)
                .bind(owner)
                .execute(&self.pool)
                .await?;
            Ok(r.rows_affected())
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
        Box::pin(self.settle(sql::RETRY_LATER, move |q| {
            q.bind(next)
                .bind(error)
                .bind(id)
                .bind(claim.owner)
                .bind(claim.epoch)
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
        Box::pin(self.settle(sql::BURY, move |q| {
            q.bind(error)
                .bind(now)
                .bind(id)
                .bind(claim.owner)
                .bind(claim.epoch)
        }))
    }

    fn dead_letters(&self, limit: usize) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        Box::pin(reads::dead_letters(&self.pool, limit))
    }

    fn revive(&self, id: i64, now: i64, deadline: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.settle(sql::REVIVE, move |q| q.bind(now).bind(deadline).bind(id)))
    }

    fn discard(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.settle(sql::DISCARD, move |q| q.bind(id)))
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
}
