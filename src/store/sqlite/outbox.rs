//! The outbox on SQLite: queued, claimed and settled through the writer; dead letters,
//! figures and the next due time read through the read pool.

use bytes::Bytes;
use futures::future::BoxFuture;
use rusqlite::{Connection, params};
use sqlx::Row;

use super::SqliteStore;
use super::writer::{Outcome, Work, log_entry, masked, numbered};
use crate::store::rows::{self, Columns};
use crate::store::{
    Claim, DeadLetter, NewOutbox, OutboxCounts, OutboxItem, OutboxStore, StoreError, StoreResult,
    now_ms, reads, sql,
};

impl OutboxStore for SqliteStore {
    fn enqueue(&self, item: NewOutbox) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            // Masked for the log here, on the caller's task, rather than in the writer.
            let logged = masked(&item.body);
            self.id(Work::Enqueue(item, logged)).await
        })
    }

    fn enqueue_dead(&self, item: NewOutbox, error: String) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(self.id(Work::EnqueueDead(Box::new((item, error)))))
    }

    fn claim(
        &self,
        owner: &str,
        now: i64,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<OutboxItem>>> {
        let work = Work::Claim {
            owner: owner.to_string(),
            now,
            limit,
            lease_ms,
        };
        Box::pin(async move {
            match self.write(work).await? {
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
        Box::pin(self.count(Work::ReleaseClaims(owner.to_string())))
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
        Box::pin(reads::dead_letters(&self.read, limit))
    }

    fn revive(&self, id: i64, now: i64, deadline: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.changed(Work::Revive { id, now, deadline }))
    }

    fn discard(&self, id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(self.changed(Work::Discard(id)))
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
}

/// Queues `item` (as a dead letter with `dead` as its last error, when given); `logged` is its
/// body already masked for the log (None: masked here). None when `item` completes a request
/// whose claim this process no longer holds: then nothing is written.
pub(super) fn enqueue(
    tx: &Connection,
    item: &NewOutbox,
    logged: Option<&Bytes>,
    dead: Option<&String>,
) -> StoreResult<Option<i64>> {
    let now = now_ms();
    if let Some(held) = &item.completes {
        // Fenced, and first: a lost claim leaves no trace in the batch's transaction.
        let done = tx
            .prepare_cached(&numbered(sql::COMPLETE_REQUEST))?
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
    let id: i64 = tx
        .prepare_cached(&numbered(sql::INSERT_OUTBOX))?
        .query_row(
            params![
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
            ],
            |r| r.get(0),
        )?;
    if let Some((order_id, state)) = &item.order {
        tx.prepare_cached(&numbered(sql::NOTE_ORDER))?
            .execute(params![
                order_id,
                state,
                now,
                item.flow,
                item.transaction_id
            ])?;
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

pub(super) fn claim(
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
    let mut rows = stmt.query(params![owner, now + lease_ms, now, limit as i64])?;
    let mut items = Vec::new();
    while let Some(r) = rows.next()? {
        items.push(rows::outbox_item(r as &dyn Columns)?);
    }
    Ok(items)
}

pub(super) fn renew_delivery(
    tx: &Connection,
    id: i64,
    claim: &Claim,
    until: i64,
) -> StoreResult<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE outbox SET claimed_until = max(coalesce(claimed_until, 0), ?1) \
             WHERE id = ?2 AND state = 'pending' AND claimed_by = ?3 AND claim_epoch = ?4",
        )?
        .execute(params![until, id, claim.owner, claim.epoch])?;
    Ok(n > 0)
}
