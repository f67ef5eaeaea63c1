//! The ledger on PostgreSQL: an order's states are decided one at a time under an advisory
//! lock of its sequence key, whichever process reports them.

use futures::future::BoxFuture;
use sqlx::{PgConnection, Row};

use super::PgStore;
use super::outbox::enqueue_in;
use crate::store::ledger::{self, OmsState, refusal, replaces_a_held_fulfilment};
use crate::store::{
    LedgerStore, NewOutbox, OmsEvent, OmsQueued, OmsRecord, StoreResult, StoredOmsEvent, UltraUser,
    now_ms, reads, sql,
};

/// Keeps the order event of the OMS outbox message `outbox_id` (see `oms_events`).
async fn keep_oms_event(
    tx: &mut PgConnection,
    outbox_id: i64,
    event: &OmsEvent,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(sql::INSERT_OMS_EVENT)
        .bind(outbox_id)
        .bind(&event.flow)
        .bind(&event.callback)
        .bind(event.body.as_ref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl LedgerStore for PgStore {
    fn save_ultra_user(&self, user: UltraUser) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(sql::INSERT_ULTRA_USER)
                .bind(&user.session)
                .bind(&user.connection)
                .bind(&user.identity_token)
                .bind(&user.mobile)
                .bind(&user.email)
                .bind(user.created_at)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<UltraUser>>> {
        Box::pin(reads::ultra_user(&self.pool, session.into()))
    }

    fn forget_ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let session = session.to_string();
        Box::pin(async move {
            let n = sqlx::query(sql::FORGET_ULTRA_USER)
                .bind(&session)
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(n > 0)
        })
    }

    fn note_identity(
        &self,
        flow: &str,
        transaction_id: &str,
        identity_token: &str,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let query = sqlx::query(sql::NOTE_IDENTITY)
            .bind(identity_token.to_string())
            .bind(now_ms())
            .bind(flow.to_string())
            .bind(transaction_id.to_string());
        Box::pin(async move {
            query.execute(&self.pool).await?;
            Ok(())
        })
    }

    fn identity_token(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>> {
        Box::pin(reads::identity_token(
            &self.pool,
            flow.into(),
            transaction_id.into(),
        ))
    }

    fn queue_oms(
        &self,
        record: OmsRecord,
        item: NewOutbox,
    ) -> BoxFuture<'_, StoreResult<OmsQueued>> {
        Box::pin(async move {
            let r = &record;
            let mut tx = self.pool.begin().await?;
            // One order's states are decided one at a time, whichever process reports them.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(ledger::sequence_key(
                    &r.connection,
                    &r.provider,
                    &r.transaction_id,
                    &r.order_id,
                ))
                .execute(&mut *tx)
                .await?;
            let mut reported: Vec<String> = sqlx::query_scalar(sql::REPORTED_STATES)
                .bind(&r.connection)
                .bind(&r.provider)
                .bind(&r.transaction_id)
                .bind(&r.order_id)
                .fetch_all(&mut *tx)
                .await?;
            let fulfilled = OmsState::Fulfilled.as_str();
            if replaces_a_held_fulfilment(&r.state) && reported.iter().any(|s| s == fulfilled) {
                // Locked, so no worker can claim it between this look and the delete.
                let held: Option<i64> =
                    sqlx::query_scalar(&format!("{} FOR UPDATE OF o", sql::HELD_UPDATE))
                        .bind(&r.connection)
                        .bind(&r.provider)
                        .bind(&r.transaction_id)
                        .bind(&r.order_id)
                        .bind(fulfilled)
                        .bind(now_ms())
                        .fetch_optional(&mut *tx)
                        .await?;
                if let Some(id) = held {
                    for statement in sql::DROP_UPDATE {
                        sqlx::query(statement).bind(id).execute(&mut *tx).await?;
                    }
                    reported.retain(|s| s != fulfilled);
                }
            }
            if let Some(refused) = refusal(&reported, &r.state) {
                return Ok(refused);
            }
            let now = now_ms();
            let id = enqueue_in(&mut tx, &item, now, None).await?;
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
            keep_oms_event(&mut tx, id, &r.event, now).await?;
            tx.commit().await?;
            Ok(OmsQueued::Queued(id))
        })
    }

    fn bury_oms_event(
        &self,
        event: OmsEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let now = now_ms();
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
                .bind(&reason)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
            keep_oms_event(&mut tx, id, &event, now).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn oms_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOmsEvent>>> {
        Box::pin(reads::oms_event(&self.pool, outbox_id))
    }
}
