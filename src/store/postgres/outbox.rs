//! The outbox on PostgreSQL: claims skip what another process is claiming, and a message
//! waits while an older one of its sequence is not delivered.

use bytes::Bytes;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

use super::log_entry;
use crate::store::backend::{masked, sent};
use crate::store::{NewOutbox, StoreError, StoreResult, sql};

pub(super) async fn enqueue(
    pool: &PgPool,
    item: &NewOutbox,
    logged: Bytes,
    now: i64,
) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
    let id = enqueue_in(&mut tx, item, now, None, &logged).await?;
    tx.commit().await?;
    Ok(id)
}

pub(super) async fn enqueue_dead(
    pool: &PgPool,
    item: &NewOutbox,
    error: &str,
    now: i64,
) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
    let id = enqueue_in(&mut tx, item, now, Some(error), &masked(&item.body)).await?;
    tx.commit().await?;
    Ok(id)
}

/// Queues `item` in the outbox inside `tx`, its body logged as `logged` (masked); with `dead`,
/// straight into the dead letters with that error. Only the claim that holds the request it
/// answers may ([`StoreError::ClaimLost`] otherwise).
pub(super) async fn enqueue_in(
    tx: &mut PgConnection,
    item: &NewOutbox,
    now: i64,
    dead: Option<&str>,
    logged: &Bytes,
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
        if let Some(steps) = &item.steps {
            sqlx::query(sql::INSERT_ACTION_STEPS)
                .bind(&held.key.flow)
                .bind(&item.transaction_id)
                .bind(&held.key.action)
                .bind(&held.key.message_id)
                .bind(steps)
                .bind(now)
                .execute(&mut *tx)
                .await?;
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
    log_entry(tx, sent(item), logged, now).await?;
    Ok(id)
}
