//! What the store keeps for Flipkart Ultra: users who signed in through a buyer app's client
//! API, and the OMS states reported per order (so a repeat is sent once, and a state that may
//! not follow the ones before it is never sent).

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
    pub order_id: String,
    /// `ORDER_CONFIRMED`, `ORDER_FULFILLED` or `ORDER_CANCELLED`.
    pub state: String,
    /// The flow whose order it is, and its transaction.
    pub flow: String,
    pub transaction_id: String,
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
pub fn sequence_key(connection: &str, order_id: &str) -> String {
    format!("ultra:{connection}:{order_id}")
}
