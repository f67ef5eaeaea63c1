//! A buyer app's records on SQLite, written in the writer (bodies masked for the log on the
//! caller's task).

use rusqlite::{Connection, params};

use super::outbox::enqueue;
use super::writer::{log_entry, log_message, numbered};
use crate::store::backend::{Logged, Requested, filed, requested};
use crate::store::{Accepted, NewCallback, NewOutbox, StoreError, StoreResult, sql};

pub(super) fn record_request(tx: &Connection, request: &Requested, now: i64) -> StoreResult<()> {
    let (r, counterpart, expected) = request;
    tx.prepare_cached(numbered(sql::INSERT_BAP_REQUEST))?
        .execute(params![
            r.flow,
            r.message_id,
            r.transaction_id,
            r.action,
            r.mode,
            r.recipient,
            r.url,
            expected,
            &r.body[..],
            r.ack,
            r.expires_at,
            now,
        ])?;
    tx.prepare_cached(numbered(sql::OPEN_BAP_TRANSACTION))?
        .execute(params![
            r.flow,
            r.transaction_id,
            counterpart.as_ref().map(|c| &c.bpp_id),
            counterpart.as_ref().map(|c| &c.bpp_uri),
            now,
        ])?;
    log_message(tx, requested(r), &r.body, now)
}

pub(super) fn file_callback(
    tx: &Connection,
    c: &NewCallback,
    forward: Option<&NewOutbox>,
    logged: &Logged,
    now: i64,
) -> StoreResult<Accepted> {
    let inserted = tx
        .prepare_cached(numbered(sql::INSERT_CALLBACK))?
        .execute(params![
            c.flow,
            c.action,
            c.message_id,
            c.transaction_id,
            c.bpp_id,
            c.via,
            c.digest(),
            c.disposition.as_str(),
            &c.body[..],
            now,
        ])?;
    if inserted == 0 {
        return Ok(Accepted::Duplicate);
    }
    log_entry(tx, filed(c), &logged.callback, now)?;
    if let Some(item) = forward {
        enqueue(tx, item, logged.forward.as_ref(), None, now)?.ok_or(StoreError::ClaimLost)?;
    }
    Ok(Accepted::New)
}
