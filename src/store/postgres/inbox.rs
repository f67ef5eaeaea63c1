//! The inbox on PostgreSQL: accepting a request takes the transaction's row lock, so two first
//! requests of different counterparts cannot both pass; take-overs skip what another process
//! is claiming.

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::log_entry;
use crate::store::backend::received;
use crate::store::{Admission, Inbound, StoreResult, body_digest, sql};

pub(super) async fn accept(pool: &PgPool, inbound: &Inbound, now: i64) -> StoreResult<Admission> {
    let key = &inbound.key;
    let digest = body_digest(&inbound.body);
    let mut tx = pool.begin().await?;
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
    // The conflicting row is locked, so two first requests of different counterparts cannot
    // both pass.
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
    let logged = crate::beckn::redact::for_the_log(&inbound.body);
    log_entry(&mut tx, received(inbound), &logged, now).await?;
    tx.commit().await?;
    Ok(Admission::New)
}
