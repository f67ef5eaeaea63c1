//! The inbox on SQLite: accepted through the writer (a foreign request's inbox row is deleted
//! again in the batch's transaction), read through the read pool.

use bytes::Bytes;
use futures::future::BoxFuture;
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::writer::{Outcome, Work, log_message, numbered};
use crate::store::rows::{self, Columns};
use crate::store::{
    Admission, Claim, Inbound, InboundKey, InboxStore, StoreError, StoreResult, Unfinished,
    body_digest, now_ms, reads, sql,
};

impl InboxStore for SqliteStore {
    fn accept(&self, inbound: Inbound) -> BoxFuture<'_, StoreResult<Admission>> {
        Box::pin(async move {
            match self.write(Work::Accept(inbound)).await? {
                Outcome::Admission(a) => Ok(a),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn placed_order(
        &self,
        flow: &str,
        order_id: &str,
        counterpart: &str,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let (flow, order_id, counterpart) = (flow.into(), order_id.into(), counterpart.into());
        Box::pin(reads::placed_order(&self.read, flow, order_id, counterpart))
    }

    fn claim_unfinished(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: usize,
        take_all: bool,
    ) -> BoxFuture<'_, StoreResult<Vec<Unfinished>>> {
        let work = Work::ClaimUnfinished {
            owner: owner.to_string(),
            now,
            lease_ms,
            limit,
            take_all,
        };
        Box::pin(async move {
            match self.write(work).await? {
                Outcome::Unfinished(u) => Ok(u),
                _ => Err(StoreError::Closed),
            }
        })
    }

    fn renew_request(
        &self,
        key: &InboundKey,
        claim: &Claim,
        until: i64,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let work = Work::RenewRequest {
            key: key.clone(),
            claim: claim.clone(),
            until,
        };
        Box::pin(self.changed(work))
    }

    fn last_request(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<(Bytes, String)>>> {
        Box::pin(reads::last_request(
            &self.read,
            flow.into(),
            transaction_id.into(),
        ))
    }
}

pub(super) fn accept(tx: &Connection, inbound: &Inbound) -> StoreResult<Admission> {
    let now = now_ms();
    let key = &inbound.key;
    let digest = body_digest(&inbound.body);
    let inserted = tx
        .prepare_cached(&numbered(sql::INSERT_INBOX))?
        .execute(params![
            key.flow,
            key.action,
            key.message_id,
            inbound.transaction_id,
            &inbound.body[..],
            inbound.callback_base,
            now,
            inbound.owner,
            inbound.lease_until,
            digest,
        ])?;
    if inserted == 0 {
        let (earlier_digest, transaction_id): (Option<String>, String) = tx
            .prepare_cached(&numbered(sql::INBOX_DIGEST))?
            .query_row(params![key.flow, key.action, key.message_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        // Requests recorded before digests were kept count as repeats.
        return Ok(match earlier_digest {
            Some(d) if d != digest => Admission::Reused { transaction_id },
            _ => Admission::Duplicate,
        });
    }
    let ours = tx
        .prepare_cached(&numbered(sql::OPEN_TRANSACTION))?
        .execute(params![
            key.flow,
            inbound.transaction_id,
            inbound.role,
            inbound.counterpart,
            now,
        ])?;
    if ours == 0 {
        tx.prepare_cached("DELETE FROM inbox WHERE flow = ?1 AND action = ?2 AND message_id = ?3")?
            .execute(params![key.flow, key.action, key.message_id])?;
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
    log_message(tx, entry, &inbound.body, now)?;
    Ok(Admission::New)
}

pub(super) fn claim_unfinished(
    tx: &Connection,
    owner: &str,
    now: i64,
    lease_ms: i64,
    limit: usize,
    take_all: bool,
) -> StoreResult<Vec<Unfinished>> {
    let mut stmt = tx.prepare_cached(
        "UPDATE inbox SET claimed_by = ?1, claimed_until = ?2, claim_epoch = claim_epoch + 1 \
         WHERE rowid IN ( \
           SELECT rowid FROM inbox WHERE state = 'accepted' \
           AND (?3 OR claimed_until IS NULL OR claimed_until < ?4) \
           ORDER BY received_at LIMIT ?5) \
         RETURNING flow, action, message_id, transaction_id, body, callback_base, \
         received_at, claimed_by, claim_epoch",
    )?;
    let mut rows = stmt.query(params![owner, now + lease_ms, take_all, now, limit as i64])?;
    let mut taken = Vec::new();
    while let Some(r) = rows.next()? {
        taken.push(rows::unfinished(r as &dyn Columns)?);
    }
    Ok(taken)
}

pub(super) fn renew_request(
    tx: &Connection,
    key: &InboundKey,
    claim: &Claim,
    until: i64,
) -> StoreResult<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE inbox SET claimed_until = max(coalesce(claimed_until, 0), ?1) \
             WHERE flow = ?2 AND action = ?3 AND message_id = ?4 AND state = 'accepted' \
             AND claimed_by = ?5 AND claim_epoch = ?6",
        )?
        .execute(params![
            until,
            key.flow,
            key.action,
            key.message_id,
            claim.owner,
            claim.epoch
        ])?;
    Ok(n > 0)
}
