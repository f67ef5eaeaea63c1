//! The outbox on PostgreSQL: a message is queued in one statement with what it settles;
//! claims skip what another process is claiming, and a message waits while an older one of
//! its sequence is not delivered.

use bytes::Bytes;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};

use crate::store::backend::masked;
use crate::store::{NewOutbox, StoreError, StoreResult};

pub(super) async fn enqueue(
    pool: &PgPool,
    item: &NewOutbox,
    logged: Bytes,
    now: i64,
) -> StoreResult<i64> {
    // One statement commits on its own.
    let mut conn = pool.acquire().await?;
    enqueue_in(&mut conn, item, now, None, &logged).await
}

pub(super) async fn enqueue_dead(
    pool: &PgPool,
    item: &NewOutbox,
    error: &str,
    now: i64,
) -> StoreResult<i64> {
    let mut conn = pool.acquire().await?;
    enqueue_in(&mut conn, item, now, Some(error), &masked(&item.body)).await
}

/// Queues a message in one statement (one round trip): it marks the request it answers done,
/// fenced by the claim (`$17` whether it answers one; `$18`-`$20` the request's key, `$21`/`$22`
/// the claim), keeps that request's backend calls (`$23`), queues the message (`$1`-`$16` as
/// `sql::INSERT_OUTBOX`), notes its order on the transaction (`$24` order id, `$25` state)
/// and logs it (`$26` the body as the log keeps it). Everything depends on the claim holding,
/// so a lost claim writes nothing and returns no row.
const ENQUEUE: &str = "WITH done AS (UPDATE inbox SET state = 'done', done_at = $10 \
     WHERE $17 AND flow = $18 AND action = $19 AND message_id = $20 AND state = 'accepted' \
     AND claimed_by = $21 AND claim_epoch = $22 RETURNING 1), \
     held AS (SELECT 1 WHERE NOT $17 OR EXISTS (SELECT 1 FROM done)), \
     steps AS (INSERT INTO action_steps (flow, transaction_id, action, message_id, steps, \
     created_at) SELECT $18, $5, $19, $20, $23, $10 \
     WHERE $23 IS NOT NULL AND EXISTS (SELECT 1 FROM done)), \
     queued AS (INSERT INTO outbox (flow, kind, url, action, transaction_id, message_id, body, \
     state, attempts, next_attempt_at, deadline, created_at, sequence_key, claimed_by, \
     claimed_until, last_error, finished_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7, $14, 0, $8, $9, $10, $11, $12, $13, $15, $16 \
     WHERE EXISTS (SELECT 1 FROM held) RETURNING id), \
     noted AS (UPDATE transactions SET erp_order_id = $24, state = coalesce($25, state), \
     updated_at = $10 WHERE $24 IS NOT NULL AND flow = $1 AND transaction_id = $5 \
     AND EXISTS (SELECT 1 FROM queued)), \
     logged AS (INSERT INTO messages (flow, direction, action, transaction_id, message_id, \
     headers, body, created_at) SELECT $1, 'out', $4, $5, $6, '{}', $26, $10 \
     WHERE EXISTS (SELECT 1 FROM queued)) \
     SELECT id FROM queued";

/// Queues `item` in the outbox on `conn` (inside a transaction, or on its own), its body
/// logged as `logged` (masked); with `dead`, straight into the dead letters with that error.
/// Only the claim that holds the request it answers may ([`StoreError::ClaimLost`]
/// otherwise).
pub(super) async fn enqueue_in(
    conn: &mut PgConnection,
    item: &NewOutbox,
    now: i64,
    dead: Option<&str>,
    logged: &Bytes,
) -> StoreResult<i64> {
    let held = item.completes.as_ref();
    let (order_id, order_state) = match &item.order {
        Some((id, state)) => (Some(id), state.as_ref()),
        None => (None, None),
    };
    let row = sqlx::query(ENQUEUE)
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
        .bind(held.is_some())
        .bind(held.map(|h| &h.key.flow))
        .bind(held.map(|h| &h.key.action))
        .bind(held.map(|h| &h.key.message_id))
        .bind(held.map(|h| &h.claim.owner))
        .bind(held.map(|h| h.claim.epoch))
        .bind(held.and(item.steps.as_ref()))
        .bind(order_id)
        .bind(order_state)
        .bind(logged.as_ref())
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(StoreError::ClaimLost),
    }
}
