//! A buyer app's records on PostgreSQL; a filed callback is announced (`NOTIFY`) at commit to
//! every process sharing the store.

use std::time::Duration;

use bytes::Bytes;
use sqlx::postgres::{PgArguments, PgListener, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row};
use tokio::sync::broadcast;

use super::outbox::enqueue_in;
use crate::store::backend::{Logged, Requested};
use crate::store::buyer::{CALLBACK_CHANNEL, signal_payload};
use crate::store::{Accepted, NewCallback, NewOutbox, StoreResult};

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

/// Records a buyer app's request (`$1`-`$12` as `sql::INSERT_BAP_REQUEST`), opens or joins
/// its transaction (`$13`/`$14` the counterpart) and logs it (`$15` the body as the log keeps
/// it): one statement, so one round trip and its own commit.
const RECORD_REQUEST: &str = "WITH requested AS (INSERT INTO bap_requests (flow, message_id, \
     transaction_id, action, mode, recipient, url, expected, body, ack, expires_at, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)), \
     opened AS (INSERT INTO transactions (flow, transaction_id, role, counterpart, \
     counterpart_uri, created_at, updated_at) VALUES ($1, $3, 'bap', $13, $14, $12, $12) \
     ON CONFLICT (flow, transaction_id) DO UPDATE SET \
     counterpart = coalesce(excluded.counterpart, transactions.counterpart), \
     counterpart_uri = coalesce(excluded.counterpart_uri, transactions.counterpart_uri), \
     updated_at = excluded.updated_at) \
     INSERT INTO messages (flow, direction, action, transaction_id, message_id, headers, body, \
     created_at) VALUES ($1, 'out', $4, $3, $2, '{}', $15, $12)";

/// Files a callback (`$1`-`$10` as `sql::INSERT_CALLBACK`), logs it (`$11` headers, `$12` the
/// body as the log keeps it) and announces it (`$13` channel, `$14` payload), all only if it
/// is new: one statement. The announcement is delivered at commit.
const FILE_CALLBACK: &str = "WITH filed AS (INSERT INTO bap_callbacks (flow, action, message_id, \
     transaction_id, bpp_id, via, digest, disposition, body, received_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING RETURNING 1), \
     logged AS (INSERT INTO messages (flow, direction, action, transaction_id, message_id, \
     headers, body, created_at) SELECT $1, 'in', $2, $4, $3, $11, $12, $10 \
     WHERE EXISTS (SELECT 1 FROM filed)), \
     announced AS (SELECT pg_notify($13, $14) FROM filed) \
     SELECT EXISTS (SELECT 1 FROM filed) AS filed, (SELECT count(*) FROM announced) AS announced";

/// Records a request with its counterpart and expected answers (JSON), its transaction and its
/// log entry.
pub(super) async fn record_request(
    pool: &PgPool,
    request: &Requested,
    now: i64,
) -> StoreResult<()> {
    let (r, counterpart, expected) = request;
    let logged = crate::beckn::redact::for_the_log(&r.body);
    sqlx::query(RECORD_REQUEST)
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
        .bind(counterpart.as_ref().map(|c| &c.bpp_id))
        .bind(counterpart.as_ref().map(|c| &c.bpp_uri))
        .bind(logged.as_ref())
        .execute(pool)
        .await?;
    Ok(())
}

/// Files a callback and queues its forward; announced (`NOTIFY`) at commit. Without a forward
/// it is one statement; with one, that and the forward's, in one transaction.
pub(super) async fn file_callback(
    pool: &PgPool,
    (c, forward, logged): (NewCallback, Option<NewOutbox>, Logged),
    now: i64,
) -> StoreResult<Accepted> {
    let filed = |row: PgRow| -> StoreResult<Accepted> {
        Ok(match row.try_get("filed")? {
            true => Accepted::New,
            false => Accepted::Duplicate,
        })
    };
    let Some((item, body)) = forward.zip(logged.forward) else {
        return filed(file(&c, &logged.callback, now).fetch_one(pool).await?);
    };
    let mut tx = pool.begin().await?;
    let accepted = filed(file(&c, &logged.callback, now).fetch_one(&mut *tx).await?)?;
    if accepted == Accepted::New {
        enqueue_in(&mut tx, &item, now, None, &body).await?;
        tx.commit().await?;
    }
    Ok(accepted)
}

/// [`FILE_CALLBACK`] for `c`, its body logged as `logged`. Its announcement is delivered at
/// commit, to every process listening: a caller waiting for this answer in another process
/// wakes.
fn file<'q>(c: &'q NewCallback, logged: &'q Bytes, now: i64) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(FILE_CALLBACK)
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
        .bind(&c.headers)
        .bind(logged.as_ref())
        .bind(CALLBACK_CHANNEL)
        .bind(signal_payload(&c.flow, &c.message_id))
}
