//! The ledger on SQLite: an order's states are decided in the writer, so the check and the
//! queueing share the batch's transaction.

use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::enqueue;
use super::writer::numbered;
use crate::store::ledger::StateRule;
use crate::store::{
    LedgerEntry, LedgerQueued, NewOutbox, OrderEvent, StoreError, StoreResult, sql,
};

/// Queues a sink's update unless its order reported this state, or `rule` says the state may
/// not follow the ones reported; the check and the insert share the batch's transaction.
pub(super) fn queue_entry(
    tx: &Connection,
    rule: &dyn StateRule,
    record: &LedgerEntry,
    item: &NewOutbox,
    now: i64,
) -> StoreResult<LedgerQueued> {
    let r = record;
    let order = params![r.connection, r.provider, r.transaction_id, r.order_id];
    let mut reported = tx
        .prepare_cached(numbered(sql::REPORTED_STATES))?
        .query_map(order, |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let held_state = rule
        .replaces_held(&r.state)
        .filter(|held| reported.iter().any(|s| s == held));
    if let Some(fulfilled) = held_state {
        let held: Option<i64> = tx
            .prepare_cached(numbered(sql::HELD_UPDATE.sqlite))?
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
                tx.prepare_cached(numbered(statement))?
                    .execute(params![id])?;
            }
            reported.retain(|s| s != fulfilled);
        }
    }
    if let Some(refused) = rule.refusal(&reported, &r.state) {
        return Ok(refused);
    }
    let id = enqueue(tx, item, None, None, now)?.ok_or(StoreError::ClaimLost)?;
    tx.prepare_cached(numbered(sql::INSERT_UPDATE))?
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
    keep_order_event(tx, id, &r.event, now)?;
    Ok(LedgerQueued::Queued(id))
}

/// Records an order event that gave no update as a dead letter (nothing to send yet, so
/// nothing in the message log) with the event kept for a retry.
pub(super) fn bury_order_event(
    tx: &Connection,
    event: &OrderEvent,
    item: &NewOutbox,
    reason: &str,
    now: i64,
) -> StoreResult<i64> {
    let id: i64 = tx
        .prepare_cached(numbered(sql::INSERT_BURIED_EVENT))?
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
    keep_order_event(tx, id, event, now)?;
    Ok(id)
}

fn keep_order_event(
    tx: &Connection,
    outbox_id: i64,
    event: &OrderEvent,
    now: i64,
) -> StoreResult<()> {
    tx.prepare_cached(numbered(sql::INSERT_ORDER_EVENT))?
        .execute(params![
            outbox_id,
            event.flow,
            event.callback,
            &event.body[..],
            now
        ])?;
    Ok(())
}
