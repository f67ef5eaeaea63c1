//! The ledger on PostgreSQL: an order's states are decided one at a time under an advisory
//! lock of its sequence key, whichever process reports them.

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::outbox::enqueue_in;
use crate::store::backend::masked;
use crate::store::ledger::StateRule;
use crate::store::{LedgerEntry, LedgerQueued, NewOutbox, OrderEvent, StoreResult, sql};

/// Records a queued update (`$1`-`$5` connection, provider, transaction, order, state; `$6`
/// flow; `$7` its outbox message; `$8` now) and keeps the order event it came of (`$9`
/// callback, `$10` body): one statement.
const RECORD_UPDATE: &str = "WITH recorded AS (INSERT INTO oms_updates (connection, provider, \
     transaction_id, order_id, state, flow, outbox_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)) \
     INSERT INTO oms_events (outbox_id, flow, callback, body, created_at) \
     VALUES ($7, $6, $9, $10, $8)";

/// A dead letter of an order event that gave no update (`$1`-`$11` as
/// `sql::INSERT_BURIED_EVENT`) with the event kept (`$12` its flow, `$13` callback, `$14`
/// body): one statement.
const BURY_EVENT: &str = "WITH buried AS (INSERT INTO outbox (flow, kind, url, action, \
     transaction_id, message_id, body, state, attempts, next_attempt_at, deadline, created_at, \
     sequence_key, last_error, finished_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'dead', 0, $8, $9, $8, $10, $11, $8) RETURNING id), \
     kept AS (INSERT INTO oms_events (outbox_id, flow, callback, body, created_at) \
     SELECT id, $12, $13, $14, $8 FROM buried) \
     SELECT id FROM buried";

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
    sqlx::query(RECORD_UPDATE)
        .bind(&r.connection)
        .bind(&r.provider)
        .bind(&r.transaction_id)
        .bind(&r.order_id)
        .bind(&r.state)
        .bind(&r.event.flow)
        .bind(id)
        .bind(now)
        .bind(&r.event.callback)
        .bind(r.event.body.as_ref())
        .execute(&mut *tx)
        .await?;
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
    // Nothing to send yet, so nothing in the message log.
    let id: i64 = sqlx::query(BURY_EVENT)
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
        .bind(&event.flow)
        .bind(&event.callback)
        .bind(event.body.as_ref())
        .fetch_one(pool)
        .await?
        .try_get(0)?;
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
