//! The ledger on PostgreSQL: an order's states are decided one at a time under an advisory
//! lock of its sequence key, whichever process reports them.

use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

use super::outbox::enqueue_in;
use crate::store::backend::masked;
use crate::store::ledger::StateRule;
use crate::store::{LedgerEntry, LedgerQueued, NewOutbox, OrderEvent, StoreResult, sql};

/// Keeps the order event of the sink's outbox message `outbox_id` (see `oms_events`).
async fn keep_order_event(
    tx: &mut PgConnection,
    outbox_id: i64,
    event: &OrderEvent,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(sql::INSERT_ORDER_EVENT)
        .bind(outbox_id)
        .bind(&event.flow)
        .bind(&event.callback)
        .bind(event.body.as_ref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Queues a sink's update unless its order reported this state already or `rule` says it may
/// not follow the ones reported; the check and the queueing are one transaction.
pub(super) async fn queue_entry(
    pool: &PgPool,
    rule: &dyn StateRule,
    r: &LedgerEntry,
    item: &NewOutbox,
    now: i64,
) -> StoreResult<LedgerQueued> {
    let mut tx = pool.begin().await?;
    // One order's states are decided one at a time, whichever process reports them.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(lock_key(r, item))
        .execute(&mut *tx)
        .await?;
    let mut reported: Vec<String> = sqlx::query_scalar(sql::REPORTED_STATES)
        .bind(&r.connection)
        .bind(&r.provider)
        .bind(&r.transaction_id)
        .bind(&r.order_id)
        .fetch_all(&mut *tx)
        .await?;
    let held_state = rule
        .replaces_held(&r.state)
        .filter(|held| reported.iter().any(|s| s == held));
    if let Some(fulfilled) = held_state {
        // Locked, so no worker can claim it between this look and the delete.
        let held: Option<i64> = sqlx::query_scalar(sql::HELD_UPDATE.postgres)
            .bind(&r.connection)
            .bind(&r.provider)
            .bind(&r.transaction_id)
            .bind(&r.order_id)
            .bind(fulfilled)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(id) = held {
            for statement in sql::DROP_UPDATE {
                sqlx::query(statement).bind(id).execute(&mut *tx).await?;
            }
            reported.retain(|s| s != fulfilled);
        }
    }
    if let Some(refused) = rule.refusal(&reported, &r.state) {
        return Ok(refused);
    }
    let id = enqueue_in(&mut tx, item, now, None, &masked(&item.body)).await?;
    sqlx::query(sql::INSERT_UPDATE)
        .bind(&r.connection)
        .bind(&r.provider)
        .bind(&r.transaction_id)
        .bind(&r.order_id)
        .bind(&r.state)
        .bind(&r.event.flow)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    keep_order_event(&mut tx, id, &r.event, now).await?;
    tx.commit().await?;
    Ok(LedgerQueued::Queued(id))
}

/// Records an order event that gave no update as a dead letter, the event kept.
pub(super) async fn bury_order_event(
    pool: &PgPool,
    event: &OrderEvent,
    item: &NewOutbox,
    reason: &str,
    now: i64,
) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
    // Nothing to send yet, so nothing in the message log.
    let id: i64 = sqlx::query(sql::INSERT_BURIED_EVENT)
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
        .bind(reason)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    keep_order_event(&mut tx, id, event, now).await?;
    tx.commit().await?;
    Ok(id)
}

/// What one order's advisory lock is taken on: its updates' sequence key (so each sink names
/// its orders its own way), else the order as the ledger names it.
fn lock_key(r: &LedgerEntry, item: &NewOutbox) -> String {
    item.sequence.clone().unwrap_or_else(|| {
        format!(
            "{}:{}:{}:{}",
            r.connection, r.provider, r.transaction_id, r.order_id
        )
    })
}
