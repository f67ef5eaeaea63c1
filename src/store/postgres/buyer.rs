//! A buyer app's records on PostgreSQL; a filed callback is announced (`NOTIFY`) at commit to
//! every process sharing the store.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;

use super::outbox::enqueue_in;
use super::{PgStore, log_message};
use crate::store::buyer::{CALLBACK_CHANNEL, MAX_REFUSED_NOTED, signal_payload};
use crate::store::{
    Accepted, BuyerStore, BuyerTransaction, Counterpart, FiledCallback, NewCallback, NewOutbox,
    SentRequest, StoreResult, now_ms, reads, sql,
};

/// Relays `NOTIFY`s on [`CALLBACK_CHANNEL`] to `signals` for as long as anyone may listen.
/// sqlx's listener reconnects by itself; when even connecting fails, it tries again a second
/// later (waiting callers also re-read the store now and then, so nothing hangs meanwhile).
async fn relay_notifications(pool: PgPool, signals: broadcast::Sender<String>) {
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

impl BuyerStore for PgStore {
    fn record_request(
        &self,
        request: SentRequest,
        counterpart: Option<Counterpart>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let now = now_ms();
            let r = &request;
            let expected = serde_json::to_string(&r.expected).unwrap_or_else(|_| "[]".into());
            let mut tx = self.pool.begin().await?;
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
            let entry = (
                &r.flow[..],
                "out",
                &r.action[..],
                &r.transaction_id[..],
                &r.message_id[..],
                "{}",
            );
            log_message(&mut tx, entry, &r.body, now).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn note_ack(
        &self,
        flow: &str,
        message_id: &str,
        ack: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (flow, message_id) = (flow.to_string(), message_id.to_string());
        Box::pin(async move {
            sqlx::query(sql::NOTE_ACK)
                .bind(ack)
                .bind(flow)
                .bind(message_id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn sent_request(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<SentRequest>>> {
        Box::pin(reads::sent_request(
            &self.pool,
            flow.into(),
            message_id.into(),
        ))
    }

    fn note_refused_callback(
        &self,
        flow: &str,
        message_id: &str,
        refused: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let (flow, message_id) = (flow.to_string(), message_id.to_string());
        Box::pin(async move {
            sqlx::query(
                "UPDATE bap_requests \
                 SET refused = (coalesce(refused, '[]')::jsonb || jsonb_build_array($1::jsonb))::text \
                 WHERE flow = $2 AND message_id = $3 \
                 AND jsonb_array_length(coalesce(refused, '[]')::jsonb) < $4",
            )
            .bind(refused)
            .bind(flow)
            .bind(message_id)
            .bind(MAX_REFUSED_NOTED)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn buyer_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<BuyerTransaction>>> {
        Box::pin(reads::buyer_transaction(
            &self.pool,
            flow.into(),
            transaction_id.into(),
        ))
    }

    fn file_callback(
        &self,
        callback: NewCallback,
        forward: Option<NewOutbox>,
    ) -> BoxFuture<'_, StoreResult<Accepted>> {
        Box::pin(async move {
            let now = now_ms();
            let c = &callback;
            let mut tx = self.pool.begin().await?;
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
            let entry = (
                &c.flow[..],
                "in",
                &c.action[..],
                &c.transaction_id[..],
                &c.message_id[..],
                &c.headers[..],
            );
            log_message(&mut tx, entry, &c.body, now).await?;
            if let Some(item) = &forward {
                enqueue_in(&mut tx, item, now, None).await?;
            }
            // Delivered at commit, to every process listening: a caller waiting for this
            // answer in another process wakes.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CALLBACK_CHANNEL)
                .bind(signal_payload(&c.flow, &c.message_id))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Accepted::New)
        })
    }

    fn callbacks_for_message(
        &self,
        flow: &str,
        message_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        Box::pin(reads::callbacks(
            &self.pool,
            flow.into(),
            message_id.into(),
            false,
        ))
    }

    fn callbacks_for_transaction(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Vec<FiledCallback>>> {
        Box::pin(reads::callbacks(
            &self.pool,
            flow.into(),
            transaction_id.into(),
            true,
        ))
    }

    fn callback_signals(&self) -> Option<broadcast::Receiver<String>> {
        // The relay is a task: without a runtime there is nothing to relay to.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let sender = self.signals.get_or_init(|| {
            let (sender, _) = broadcast::channel(1024);
            runtime.spawn(relay_notifications(self.pool.clone(), sender.clone()));
            sender
        });
        Some(sender.subscribe())
    }
}
