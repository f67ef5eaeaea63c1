//! The reads both stores make the same way: one statement of [`super::sql`] on the store's read
//! pool (PostgreSQL's pool; SQLite's read-only pool beside its writer), its rows made records
//! by [`super::rows`].

use bytes::Bytes;

use super::rows::{self, Reader};
use super::sql;
use super::{
    BuyerTransaction, DeadLetter, FiledCallback, SentRequest, StoreResult, StoredOmsEvent,
    UltraUser,
};

pub(crate) async fn placed_order(
    db: &impl Reader,
    flow: String,
    order_id: String,
    counterpart: String,
) -> StoreResult<bool> {
    let args = vec![flow.into(), order_id.into(), counterpart.into()];
    Ok(db
        .row(sql::PLACED_ORDER, args, rows::exists)
        .await?
        .is_some())
}

pub(crate) async fn last_request(
    db: &impl Reader,
    flow: String,
    transaction_id: String,
) -> StoreResult<Option<(Bytes, String)>> {
    let args = vec![flow.into(), transaction_id.into()];
    db.row(sql::LAST_REQUEST, args, rows::request_context).await
}

pub(crate) async fn dead_letters(db: &impl Reader, limit: usize) -> StoreResult<Vec<DeadLetter>> {
    let args = vec![(limit as i64).into()];
    db.rows(sql::DEAD_LETTERS, args, rows::dead_letter).await
}

pub(crate) async fn sent_request(
    db: &impl Reader,
    flow: String,
    message_id: String,
) -> StoreResult<Option<SentRequest>> {
    let args = vec![flow.into(), message_id.into()];
    db.row(sql::SENT_REQUEST, args, rows::sent_request).await
}

pub(crate) async fn buyer_transaction(
    db: &impl Reader,
    flow: String,
    transaction_id: String,
) -> StoreResult<Option<BuyerTransaction>> {
    let args = vec![flow.into(), transaction_id.into()];
    db.row(sql::BUYER_TRANSACTION, args, rows::buyer_transaction)
        .await
}

/// The callbacks filed under `message_id` (`by_transaction`: under that transaction id),
/// oldest first.
pub(crate) async fn callbacks(
    db: &impl Reader,
    flow: String,
    id: String,
    by_transaction: bool,
) -> StoreResult<Vec<FiledCallback>> {
    let statement = match by_transaction {
        true => sql::CALLBACKS_FOR_TRANSACTION,
        false => sql::CALLBACKS_FOR_MESSAGE,
    };
    let args = vec![flow.into(), id.into()];
    db.rows(statement, args, rows::filed_callback).await
}

pub(crate) async fn ultra_user(
    db: &impl Reader,
    session: String,
) -> StoreResult<Option<UltraUser>> {
    let args = vec![session.into()];
    db.row(sql::ULTRA_USER, args, rows::ultra_user).await
}

pub(crate) async fn identity_token(
    db: &impl Reader,
    flow: String,
    transaction_id: String,
) -> StoreResult<Option<String>> {
    let args = vec![flow.into(), transaction_id.into()];
    Ok(db
        .row(sql::IDENTITY_TOKEN, args, rows::maybe_text)
        .await?
        .flatten())
}

pub(crate) async fn oms_event(
    db: &impl Reader,
    outbox_id: i64,
) -> StoreResult<Option<StoredOmsEvent>> {
    db.row(
        sql::OMS_EVENT,
        vec![outbox_id.into()],
        rows::stored_oms_event,
    )
    .await
}
