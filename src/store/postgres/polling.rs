//! Poll leases and cursors on PostgreSQL: the row lock of the one statement lets one of the
//! processes claiming at once through.

use futures::future::BoxFuture;
use sqlx::Row;

use super::PgStore;
use crate::store::{PollPosition, PollStore, StoreResult, sql};

impl PollStore for PgStore {
    fn claim_poll(
        &self,
        flow: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<PollPosition>>> {
        let (flow, owner) = (flow.to_string(), owner.to_string());
        Box::pin(async move {
            let row = sqlx::query(sql::CLAIM_POLL)
                .bind(flow)
                .bind(owner)
                .bind(now + lease_ms)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row
                .map(|r| r.try_get("cursor").map(|cursor| PollPosition { cursor }))
                .transpose()?)
        })
    }

    fn advance_poll(
        &self,
        flow: &str,
        owner: &str,
        cursor: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (flow, owner, cursor) = (flow.to_string(), owner.to_string(), cursor.to_string());
        Box::pin(async move {
            let r = sqlx::query(sql::ADVANCE_POLL)
                .bind(cursor)
                .bind(now + lease_ms)
                .bind(now)
                .bind(flow)
                .bind(owner)
                .execute(&self.pool)
                .await?;
            Ok(r.rows_affected() > 0)
        })
    }
}
