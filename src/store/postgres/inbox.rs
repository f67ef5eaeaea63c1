//! The inbox on PostgreSQL: accepting a request takes the transaction's row lock, so two first
//! requests of different counterparts cannot both pass; take-overs skip what another process
//! is claiming.

use bytes::Bytes;
use futures::future::BoxFuture;
use sqlx::Row;

use super::{PgStore, log_message};
use crate::store::rows::{self, Columns};
use crate::store::{
    Admission, Claim, Inbound, InboundKey, InboxStore, StoreResult, Unfinished, body_digest,
    now_ms, reads, sql,
};

impl InboxStore for PgStore {
    fn accept(&self, inbound: Inbound) -> BoxFuture<'_, StoreResult<Admission>> {
        Box::pin(async move {
            let now = now_ms();
            let key = &inbound.key;
            let digest = body_digest(&inbound.body);
            let mut tx = self.pool.begin().await?;
            let inserted = sqlx::query(sql::INSERT_INBOX)
                .bind(&key.flow)
                .bind(&key.action)
                .bind(&key.message_id)
                .bind(&inbound.transaction_id)
                .bind(inbound.body.as_ref())
                .bind(&inbound.callback_base)
                .bind(now)
                .bind(&inbound.owner)
                .bind(inbound.lease_until)
                .bind(&digest)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 0 {
                let row = sqlx::query(sql::INBOX_DIGEST)
                    .bind(&key.flow)
                    .bind(&key.action)
                    .bind(&key.message_id)
                    .fetch_one(&mut *tx)
                    .await?;
                let earlier: Option<String> = row.try_get("digest")?;
                // Requests recorded before digests were kept count as repeats.
                return Ok(match earlier {
                    Some(d) if d != digest => Admission::Reused {
                        transaction_id: row.try_get("transaction_id")?,
                    },
                    _ => Admission::Duplicate,
                });
            }
            // The conflicting row is locked, so two first requests of different counterparts
            // cannot both pass.
            let ours = sqlx::query(sql::OPEN_TRANSACTION)
                .bind(&key.flow)
                .bind(&inbound.transaction_id)
                .bind(&inbound.role)
                .bind(&inbound.counterpart)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if ours == 0 {
                // Dropping the transaction undoes the inbox row.
                return Ok(Admission::Foreign);
            }
            let entry = (
                &key.flow[..],
                "in",
                &key.action[..],
                &inbound.transaction_id[..],
                &key.message_id[..],
                &inbound.headers[..],
            );
            log_message(&mut tx, entry, &inbound.body, now).await?;
            tx.commit().await?;
            Ok(Admission::New)
        })
    }

    fn placed_order(
        &self,
        flow: &str,
        order_id: &str,
        counterpart: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (flow, order_id, counterpart) = (flow.into(), order_id.into(), counterpart.into());
        Box::pin(reads::placed_order(&self.pool, flow, order_id, counterpart))
    }

    fn claim_unfinished(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: usize,
        take_all: bool,
    ) -> BoxFuture<'_, StoreResult<Vec<Unfinished>>> {
        let owner = owner.to_string();
        Box::pin(async move {
            let rows = sqlx::query(
                "UPDATE inbox SET claimed_by = $1, claimed_until = $2, claim_epoch = claim_epoch + 1 \
                 WHERE (flow, action, message_id) IN ( \
                   SELECT flow, action, message_id FROM inbox WHERE state = 'accepted' \
                   AND ($3 OR claimed_until IS NULL OR claimed_until < $4) \
                   ORDER BY received_at LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 RETURNING flow, action, message_id, transaction_id, body, callback_base, \
                 received_at, claimed_by, claim_epoch",
            )
            .bind(&owner)
            .bind(now + lease_ms)
            .bind(take_all)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| rows::unfinished(r as &dyn Columns))
                .collect()
        })
    }

    fn renew_request(
        &self,
        key: &InboundKey,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (key, claim) = (key.clone(), claim.clone());
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE inbox SET claimed_until = GREATEST(claimed_until, $1) \
                 WHERE flow = $2 AND action = $3 AND message_id = $4 AND state = 'accepted' \
                 AND claimed_by = $5 AND claim_epoch = $6",
            )
            .bind(until)
            .bind(&key.flow)
            .bind(&key.action)
            .bind(&key.message_id)
            .bind(&claim.owner)
            .bind(claim.epoch)
            .execute(&self.pool)
            .await?;
            Ok(r.rows_affected() > 0)
        })
    }

    fn last_request(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<(Bytes, String)>>> {
        Box::pin(reads::last_request(
            &self.pool,
            flow.into(),
            transaction_id.into(),
        ))
    }
}
