//! What the store keeps for Flipkart Ultra: users who signed in through a buyer app's client
//! API, the OMS states reported per order (so a repeat is sent once, and a state that may
//! not follow the ones before it is never sent), and the order event each pending or dead
//! update was made from (so that sending it again rebuilds it with the current mapping).

use bytes::Bytes;

/// A user signed in with a Flipkart grant token; the app names them by `session` in later
/// calls (header `X-Ultra-Session`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UltraUser {
    pub session: String,
    /// The Ultra connection the user signed in through.
    pub connection: String,
    pub identity_token: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub created_at: i64,
}

/// One OMS state of one order, about to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmsRecord {
    pub connection: String,
    /// The lab the order is with (`bpp_id/provider id`): with the transaction, it tells apart
    /// orders of different labs that carry the same order id.
    pub provider: String,
    pub transaction_id: String,
    pub order_id: String,
    /// `ORDER_CONFIRMED`, `ORDER_FULFILLED` or `ORDER_CANCELLED`.
    pub state: String,
    /// The order event the update was made from (its flow is the flow whose order it is).
    pub event: OmsEvent,
}

/// An order event: a Beckn callback carrying an order, of a flow with an `ultra:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmsEvent {
    pub flow: String,
    /// `on_confirm`, `on_status`...
    pub callback: String,
    /// The callback as sent or received.
    pub body: Bytes,
}

/// The order event kept for an OMS outbox message, and the update it was queued as (None: its
/// mapping failed, the message is the dead letter that says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOmsEvent {
    pub event: OmsEvent,
    pub update: Option<QueuedState>,
}

impl StoredOmsEvent {
    /// Reads the row of `oms_events` joined with `oms_updates` (columns `flow`, `callback`,
    /// `body`, `order_id`, `state`), on either store.
    pub(crate) fn from_row<R: sqlx::Row>(r: &R) -> Result<StoredOmsEvent, sqlx::Error>
    where
        for<'a> &'a str: sqlx::ColumnIndex<R>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> Vec<u8>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        let order_id: Option<String> = r.try_get("order_id")?;
        let state: Option<String> = r.try_get("state")?;
        Ok(StoredOmsEvent {
            event: OmsEvent {
                flow: r.try_get("flow")?,
                callback: r.try_get("callback")?,
                body: bytes::Bytes::from(r.try_get::<Vec<u8>, _>("body")?),
            },
            update: order_id
                .zip(state)
                .map(|(order_id, state)| QueuedState { order_id, state }),
        })
    }
}

/// The state an OMS outbox message reports, of which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedState {
    pub order_id: String,
    pub state: String,
}

/// What became of an OMS update handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OmsQueued {
    /// Queued in the outbox with this id.
    Queued(i64),
    /// This state of this order was queued before: nothing more to send.
    Repeat,
    /// It may not follow the states reported before (why): not queued.
    OutOfOrder(String),
}

/// The outbox sequence key of an order's OMS updates: they are sent one at a time, in order.
pub fn sequence_key(
    connection: &str,
    provider: &str,
    transaction_id: &str,
    order_id: &str,
) -> String {
    format!("ultra:{connection}:{provider}:{transaction_id}:{order_id}")
}
