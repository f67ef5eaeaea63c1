//! The distributed store: PostgreSQL, shared by several adapter processes behind a load
//! balancer. Work is claimed with `FOR UPDATE SKIP LOCKED` and leases, so each message is sent
//! by one process at a time and a dead process's work passes to the others when its lease ends.
//! Each concern of the store is implemented in the file of its name.

mod buyer;
mod inbox;
mod ledger;
mod outbox;
mod polling;

use std::sync::OnceLock;

use bytes::Bytes;
use futures::future::BoxFuture;
use sqlx::PgConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::{Store, StoreResult, sql};

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

/// One entry of the message log: flow, direction, action, transaction id, message id, headers.
type LogEntry<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

/// Adds `entry` with `body` to the message log inside `tx`.
async fn log_message(
    tx: &mut PgConnection,
    entry: LogEntry<'_>,
    body: &Bytes,
    now: i64,
) -> StoreResult<()> {
    let (flow, direction, action, transaction_id, message_id, headers) = entry;
    // Personal fields masked: the log outlives the work that needs them.
    let body = crate::beckn::redact::for_the_log(body);
    sqlx::query(sql::INSERT_MESSAGE)
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

impl Store for PgStore {
    fn shared(&self) -> bool {
        true
    }

    fn purge(&self, before: i64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let mut n = 0;
            for statement in sql::PURGE {
                n += sqlx::query(statement)
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            }
            Ok(n)
        })
    }
}
