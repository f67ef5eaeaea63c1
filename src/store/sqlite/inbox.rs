//! The inbox on SQLite: accepted through the writer; a foreign request's inbox row is deleted
//! again in the batch's transaction (the batch commits the others).

use rusqlite::{Connection, params};

use super::writer::{log_message, numbered};
use crate::store::backend::received;
use crate::store::{Admission, Inbound, StoreResult, body_digest, sql};

pub(super) fn accept(tx: &Connection, inbound: &Inbound, now: i64) -> StoreResult<Admission> {
    let key = &inbound.key;
    let digest = body_digest(&inbound.body);
    let inserted = tx
        .prepare_cached(numbered(sql::INSERT_INBOX))?
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
            .prepare_cached(numbered(sql::INBOX_DIGEST))?
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
        .prepare_cached(numbered(sql::OPEN_TRANSACTION))?
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
    log_message(tx, received(inbound), &inbound.body, now)?;
    Ok(Admission::New)
}
