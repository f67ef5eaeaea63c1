//! The outbox on SQLite: claimed in the writer, one batch at a time (no other process shares
//! the file, so there is nothing to skip).

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::writer::{log_entry, log_message, numbered};
use crate::store::backend::sent;
use crate::store::{NewOutbox, StoreResult, sql};

/// Queues `item` (as a dead letter with `dead` as its last error, when given); `logged` is its
/// body already masked for the log (None: masked here). None when `item` completes a request
/// whose claim this process no longer holds: then nothing is written.
pub(super) fn enqueue(
    tx: &Connection,
    item: &NewOutbox,
    logged: Option<&Bytes>,
    dead: Option<&String>,
    now: i64,
) -> StoreResult<Option<i64>> {
    if let Some(held) = &item.completes {
        // Fenced, and first: a lost claim leaves no trace in the batch's transaction.
        let done = tx
            .prepare_cached(numbered(sql::COMPLETE_REQUEST))?
            .execute(params![
                now,
                held.key.flow,
                held.key.action,
                held.key.message_id,
                held.claim.owner,
                held.claim.epoch
            ])?;
        if done == 0 {
            return Ok(None);
        }
        if let Some(steps) = &item.steps {
            tx.prepare_cached(numbered(sql::INSERT_ACTION_STEPS))?
                .execute(params![
                    held.key.flow,
                    item.transaction_id,
                    held.key.action,
                    held.key.message_id,
                    steps,
                    now
                ])?;
        }
    }
    let id: i64 = tx.prepare_cached(numbered(sql::INSERT_OUTBOX))?.query_row(
        params![
            item.flow,
            item.kind,
            item.url,
            item.action,
            item.transaction_id,
            item.message_id,
            &item.body[..],
            item.not_before.unwrap_or(now),
            item.deadline,
            now,
            item.sequence,
            item.claimed_by.as_ref().map(|c| &c.0),
            item.claimed_by.as_ref().map(|c| c.1),
            if dead.is_some() { "dead" } else { "pending" },
            dead,
            dead.map(|_| now),
        ],
        |r| r.get(0),
    )?;
    if let Some((order_id, state)) = &item.order {
        tx.prepare_cached(numbered(sql::NOTE_ORDER))?
            .execute(params![
                order_id,
                state,
                now,
                item.flow,
                item.transaction_id
            ])?;
    }
    match logged {
        Some(masked) => log_entry(tx, sent(item), masked, now)?,
        None => log_message(tx, sent(item), &item.body, now)?,
    }
    Ok(Some(id))
}
