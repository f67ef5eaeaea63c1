//! The distributed store: PostgreSQL, shared by several adapter processes behind a load
//! balancer. Work is claimed with `FOR UPDATE SKIP LOCKED` and leases, so each message is sent
//! by one process at a time and a dead process's work passes to the others when its lease ends.
//! Each write is one transaction; what a concern does its own way here is in the file of its
//! name.

mod buyer;
mod inbox;
mod ledger;
mod outbox;

use std::sync::OnceLock;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::backend::{Backend, Outcome, Work};
use super::rows::{self, Arg, Reader, bind_args};
use super::sql::Dialect;
use super::{StoreResult, sql};
use crate::clock::{Clock, SharedClock, SystemClock};

/// How long a pooled connection may sit idle before it is checked on being taken.
const IDLE_CHECK: Duration = Duration::from_secs(10);

pub struct PgStore {
    pool: PgPool,
    /// Filed-callback announcements of every process, relayed from one `LISTEN` connection
    /// started on first use.
    signals: OnceLock<broadcast::Sender<String>>,
    clock: SharedClock,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and runs the shipped migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        PgStore::open_with_clock(url, SystemClock::shared()).await
    }

    /// [`PgStore::open`], recording the times of `clock`.
    pub async fn open_with_clock(url: &str, clock: SharedClock) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // sqlx would check every connection with a round trip each time it is taken from
            // the pool, as many round trips as the statements; only one idle for a while is
            // checked (one that broke sooner fails its statement, as it would had it broken
            // during it).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_CHECK {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            pool,
            signals: OnceLock::new(),
            clock,
        })
    }

    /// The pool, for tests that need to reset state.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn commit(&self, work: Work) -> StoreResult<Outcome> {
        let pool = &self.pool;
        let now = self.clock.now_ms();
        Ok(match work {
            Work::Accept(inbound) => Outcome::Admission(inbox::accept(pool, &inbound, now).await?),
            Work::TakeOver(args) => Outcome::Unfinished(
                pool.rows(sql::TAKE_OVER.postgres, args, rows::unfinished)
                    .await?,
            ),
            Work::Enqueue(item, logged) => {
                Outcome::Id(outbox::enqueue(pool, &item, logged, now).await?)
            }
            Work::EnqueueDead(dead) => {
                Outcome::Id(outbox::enqueue_dead(pool, &dead.0, &dead.1, now).await?)
            }
            Work::Claim(args) => Outcome::Items(
                pool.rows(sql::CLAIM.postgres, args, rows::outbox_item)
                    .await?,
            ),
            Work::Execute(statements) => Outcome::Count(execute(pool, statements).await?),
            Work::RecordRequest(request) => {
                buyer::record_request(pool, &request, now).await?;
                Outcome::Done
            }
            Work::FileCallback(filed) => {
                Outcome::Accepted(buyer::file_callback(pool, *filed, now).await?)
            }
            Work::ClaimPoll(args) => {
                Outcome::Poll(pool.row(sql::CLAIM_POLL, args, rows::poll_position).await?)
            }
            Work::QueueEntry(queued) => {
                let (rule, entry, item) = &*queued;
                Outcome::Ledger(ledger::queue_entry(pool, *rule, entry, item, now).await?)
            }
            Work::BuryOrderEvent(buried) => {
                let (event, item, reason) = &*buried;
                Outcome::Id(ledger::bury_order_event(pool, event, item, reason, now).await?)
            }
        })
    }
}

impl Backend for PgStore {
    type Reader = PgPool;

    const DIALECT: Dialect = Dialect::Postgres;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn write(&self, work: Work) -> BoxFuture<'_, StoreResult<Outcome>> {
        Box::pin(self.commit(work))
    }

    fn shared(&self) -> bool {
        true
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn callback_signals(&self) -> Option<broadcast::Receiver<String>> {
        // The relay is a task: without a runtime there is nothing to relay to.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let sender = self.signals.get_or_init(|| {
            let (sender, _) = broadcast::channel(1024);
            runtime.spawn(buyer::relay_notifications(
                self.pool.clone(),
                sender.clone(),
            ));
            sender
        });
        Some(sender.subscribe())
    }
}

/// Runs `statements` one after the other, each on its own; how many rows they changed.
async fn execute(pool: &PgPool, statements: Vec<(&'static str, Vec<Arg>)>) -> StoreResult<u64> {
    let mut n = 0;
    for (statement, args) in statements {
        let query = bind_args!(sqlx::query(statement), args);
        n += query.execute(pool).await?.rows_affected();
    }
    Ok(n)
}
