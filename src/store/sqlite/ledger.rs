//! The ledger on SQLite: an order's states are decided in the writer, so the check and the
//! queueing share the batch's transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::enqueue;
use super::writer::numbered;
use crate::store::ledger::{OmsState, refusal, replaces_a_held_fulfilment};
use crate::store::{NewOutbox, OmsEvent, OmsQueued, OmsRecord, StoreError, StoreResult, sql};

/// Queues an OMS update unless its order reported this state, or the state may not follow
/// the ones reported; the check and the insert share the batch's transaction.
pub(super) fn queue_oms(
    tx: &Connection,
    record: &OmsRecord,
    item: &NewOutbox,
    now: i64,
) -> StoreResult<OmsQueued> {
    let r = record;
    let order = params![r.connection, r.provider, r.transaction_id, r.order_id];
    let mut reported = tx
        .prepare_cached(&numbered(sql::REPORTED_STATES))?
        .query_map(order, |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let fulfilled = OmsState::Fulfilled.as_str();
    if replaces_a_held_fulfilment(&r.state) && reported.iter().any(|s| s == fulfilled) {
        let held: Option<i64> = tx
            .prepare_cached(&numbered(sql::HELD_UPDATE.sqlite))?
            .query_row(
                params![
                    r.connection,
                    r.provider,
                    r.transaction_id,
                    r.order_id,
                    fulfilled,
                    now
                ],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = held {
            for statement in sql::DROP_UPDATE {
                tx.prepare_cached(&numbered(statement))?
                    .execute(params![id])?;
            }
            reported.retain(|s| s != fulfilled);
        }
    }
    if let Some(refused) = refusal(&reported, &r.state) {
        return Ok(refused);
    }
    let id = enqueue(tx, item, None, None, now)?.ok_or(StoreError::ClaimLost)?;
    tx.prepare_cached(&numbered(sql::INSERT_UPDATE))?
        .execute(params![
            r.connection,
            r.provider,
            r.transaction_id,
            r.order_id,
            r.state,
            r.event.flow,
            id,
            now
        ])?;
    keep_oms_event(tx, id, &r.event, now)?;
    Ok(OmsQueued::Queued(id))
}

/// Records an order event that gave no OMS update as a dead letter (nothing to send yet, so
/// nothing in the message log) with the event kept for a retry.
pub(super) fn bury_oms_event(
    tx: &Connection,
    event: &OmsEvent,
    item: &NewOutbox,
    reason: &str,
    now: i64,
) -> StoreResult<i64> {
    let id: i64 = tx
        .prepare_cached(&numbered(sql::INSERT_BURIED_EVENT))?
        .query_row(
            params![
                item.flow,
                item.kind,
                item.url,
                item.action,
                item.transaction_id,
                item.message_id,
                &item.body[..],
                now,
                item.deadline,
                item.sequence,
                reason,
            ],
            |row| row.get(0),
        )?;
    keep_oms_event(tx, id, event, now)?;
    Ok(id)
}

fn keep_oms_event(tx: &Connection, outbox_id: i64, event: &OmsEvent, now: i64) -> StoreResult<()> {
    tx.prepare_cached(&numbered(sql::INSERT_OMS_EVENT))?
        .execute(params![
            outbox_id,
            event.flow,
            event.callback,
            &event.body[..],
            now
        ])?;
    Ok(())
}
