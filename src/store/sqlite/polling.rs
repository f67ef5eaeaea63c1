//! Poll leases and cursors on SQLite: claimed and advanced through the writer.

use futures::future::BoxFuture;
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::writer::{Outcome, Work, numbered};
use crate::store::{PollPosition, PollStore, StoreError, StoreResult, sql};

impl PollStore for SqliteStore {
    fn claim_poll(
        &self,
        flow: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<PollPosition>>> {
        let work = Work::ClaimPoll {
            flow: flow.to_string(),
            owner: owner.to_string(),
            now,
            lease_ms,
        };
        Box::pin(async move {
            match self.write(work).await? {
                Outcome::Poll(p) => Ok(p),
                _ => Err(StoreError::Closed),
            }
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
        let work = Work::AdvancePoll {
            flow: flow.to_string(),
            owner: owner.to_string(),
            cursor: cursor.to_string(),
            now,
            lease_ms,
        };
        Box::pin(self.changed(work))
    }
}

pub(super) fn claim_poll(
    tx: &Connection,
    flow: &str,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> StoreResult<Option<PollPosition>> {
    let mut stmt = tx.prepare_cached(&numbered(sql::CLAIM_POLL))?;
    let mut rows = stmt.query(params![flow, owner, now + lease_ms, now])?;
    Ok(match rows.next()? {
        Some(r) => Some(PollPosition { cursor: r.get(0)? }),
        None => None,
    })
}
