//! A buyer app's records on PostgreSQL; a filed callback is announced (`NOTIFY`) at commit to
//! every process sharing the store.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;

use super::log_entry;
use super::outbox::enqueue_in;
use crate::store::backend::{Logged, Requested, filed, requested};
use crate::store::buyer::{CALLBACK_CHANNEL, signal_payload};
use crate::store::{Accepted, NewCallback, NewOutbox, StoreResult, sql};

/// Relays `NOTIFY`s on [`CALLBACK_CHANNEL`] to `signals` for as long as anyone may listen.
/// sqlx's listener reconnects by itself; when even connecting fails, it tries again a second
/// later (waiting callers also re-read the store now and then, so nothing hangs meanwhile).
pub(super) async fn relay_notifications(pool: PgPool, signals: broadcast::Sender<String>) {
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

/// Records a request with its counterpart and expected answers (JSON), its transaction and its
/// log entry.
pub(super) async fn record_request(
    pool: &PgPool,
    request: &Requested,
    now: i64,
) -> StoreResult<()> {
    let (r, counterpart, expected) = request;
    let mut tx = pool.begin().await?;
    sqlx::query(sql::INSERT_BAP_REQUEST)
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
    sqlx::query(sql::OPEN_BAP_TRANSACTION)
        .bind(&r.flow)
        .bind(&r.transaction_id)
        .bind(counterpart.as_ref().map(|c| &c.bpp_id))
        .bind(counterpart.as_ref().map(|c| &c.bpp_uri))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let logged = crate::beckn::redact::for_the_log(&r.body);
    log_entry(&mut tx, requested(r), &logged, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Files a callback and queues its forward; announced (`NOTIFY`) at commit.
pub(super) async fn file_callback(
    pool: &PgPool,
    (c, forward, logged): (NewCallback, Option<NewOutbox>, Logged),
    now: i64,
) -> StoreResult<Accepted> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query(sql::INSERT_CALLBACK)
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
    log_entry(&mut tx, filed(&c), &logged.callback, now).await?;
    if let (Some(item), Some(body)) = (&forward, &logged.forward) {
        enqueue_in(&mut tx, item, now, None, body).await?;
    }
    // Delivered at commit, to every process listening: a caller waiting for this answer in
    // another process wakes.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CALLBACK_CHANNEL)
        .bind(signal_payload(&c.flow, &c.message_id))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Accepted::New)
}
