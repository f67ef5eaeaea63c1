//! The ledger an order sink keeps: the states reported per order, each once and in an order
//! they may follow each other (the rule is here, decided inside the commit that queues the
//! update), the order event each pending or dead update was made from (so that sending it
//! again rebuilds it with the current mapping), and the users signed in through a buyer app's
//! client API with the identity token of each of their transactions. Flipkart Ultra's OMS is
//! the sink that keeps one today.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::backend::{Backend, Outcome, Work, changed, done, written};
use super::rows::{self, Reader};
use super::{NewOutbox, StoreResult, sql};

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

/// The states of an order at Ultra's OMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OmsState {
    Confirmed,
    Fulfilled,
    Cancelled,
}

impl OmsState {
    pub fn as_str(self) -> &'static str {
        match self {
            OmsState::Confirmed => "ORDER_CONFIRMED",
            OmsState::Fulfilled => "ORDER_FULFILLED",
            OmsState::Cancelled => "ORDER_CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<OmsState> {
        match s {
            "ORDER_CONFIRMED" => Some(OmsState::Confirmed),
            "ORDER_FULFILLED" => Some(OmsState::Fulfilled),
            "ORDER_CANCELLED" => Some(OmsState::Cancelled),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        self != OmsState::Confirmed
    }
}

/// Whether an update in `state` replaces the order's ORDER_FULFILLED while that is still held
/// back for its `lastFulfillmentDate` (Ultra has not heard of it): a cancellation or return
/// during the hold drops the held update and goes out in its place.
pub fn replaces_a_held_fulfilment(state: &str) -> bool {
    OmsState::parse(state) == Some(OmsState::Cancelled)
}

/// Why `next` may not follow the states an order already reported, if it may not: the first
/// update is `ORDER_CONFIRMED`, and nothing follows a terminal state.
pub fn sequence_problem(reported: &[OmsState], next: OmsState) -> Option<String> {
    if let Some(terminal) = reported.iter().find(|s| s.is_terminal()) {
        return Some(format!(
            "the order is already {}; nothing may follow it",
            terminal.as_str()
        ));
    }
    if next.is_terminal() && !reported.contains(&OmsState::Confirmed) {
        return Some(format!(
            "{} before ORDER_CONFIRMED: Ultra takes the confirmation first",
            next.as_str()
        ));
    }
    None
}

/// Whether `state` may be queued for an order that reported `reported` (oldest first, as
/// stored): None if so, else why not (a repeat, or a state that may not follow). The stores
/// ask this inside the transaction that queues the update.
pub fn refusal(reported: &[String], state: &str) -> Option<OmsQueued> {
    let Some(next) = OmsState::parse(state) else {
        return Some(OmsQueued::OutOfOrder(format!(
            "`{state}` is not an OMS state"
        )));
    };
    if reported.iter().any(|s| s == state) {
        return Some(OmsQueued::Repeat);
    }
    let states: Vec<_> = reported.iter().filter_map(|s| OmsState::parse(s)).collect();
    sequence_problem(&states, next).map(OmsQueued::OutOfOrder)
}

/// The ledger of an order sink: once per key, in order, with its users and their tokens.
pub trait LedgerStore: Send + Sync {
    /// Keeps a signed-in user under their session.
    fn save_ultra_user(&self, user: UltraUser) -> BoxFuture<'_, StoreResult<()>>;
    fn ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<UltraUser>>>;
    /// Forgets a signed-in user (signing out); false if the session was unknown.
    fn forget_ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>>;
    /// Notes the Ultra identity token of a transaction's user.
    fn note_identity(
        &self,
        flow: &str,
        transaction_id: &str,
        identity_token: &str,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The Ultra identity token noted for a transaction.
    fn identity_token(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>>;
    /// Queues an OMS update unless its order reported this state already (a repeat) or the
    /// state may not follow the ones reported ([`refusal`]); the
    /// check and the queueing are one commit.
    fn queue_oms(
        &self,
        record: OmsRecord,
        item: NewOutbox,
    ) -> BoxFuture<'_, StoreResult<OmsQueued>>;
    /// Records an order event that gives no OMS update (its mapping failed, or the update broke
    /// Ultra's rules) as the dead letter `item` with `reason`, keeping the event: `outbox list`
    /// shows it, and `outbox retry` maps the event again.
    fn bury_oms_event(
        &self,
        event: OmsEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>>;
    /// The order event kept for the OMS outbox message `outbox_id`, if any.
    fn oms_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOmsEvent>>>;
}

impl<B: Backend> LedgerStore for B {
    fn save_ultra_user(&self, user: UltraUser) -> BoxFuture<'_, StoreResult<()>> {
        let args = vec![
            user.session.into(),
            user.connection.into(),
            user.identity_token.into(),
            user.mobile.into(),
            user.email.into(),
            user.created_at.into(),
        ];
        Box::pin(done(
            self,
            Work::Execute(vec![(sql::INSERT_ULTRA_USER, args)]),
        ))
    }

    fn ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<UltraUser>>> {
        let args = vec![session.into()];
        Box::pin(self.reader().row(sql::ULTRA_USER, args, rows::ultra_user))
    }

    fn forget_ultra_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let args = vec![session.into()];
        Box::pin(changed(
            self,
            Work::Execute(vec![(sql::FORGET_ULTRA_USER, args)]),
        ))
    }

    fn note_identity(
        &self,
        flow: &str,
        transaction_id: &str,
        identity_token: &str,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let args = vec![
            identity_token.into(),
            self.clock().now_ms().into(),
            flow.into(),
            transaction_id.into(),
        ];
        Box::pin(done(self, Work::Execute(vec![(sql::NOTE_IDENTITY, args)])))
    }

    fn identity_token(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let args = vec![flow.into(), transaction_id.into()];
        Box::pin(async move {
            let token = self
                .reader()
                .row(sql::IDENTITY_TOKEN, args, rows::maybe_text);
            Ok(token.await?.flatten())
        })
    }

    fn queue_oms(
        &self,
        record: OmsRecord,
        item: NewOutbox,
    ) -> BoxFuture<'_, StoreResult<OmsQueued>> {
        let work = Work::QueueOms(Box::new((record, item)));
        Box::pin(written!(self, work, Outcome::Oms))
    }

    fn bury_oms_event(
        &self,
        event: OmsEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>> {
        let work = Work::BuryOmsEvent(Box::new((event, item, reason)));
        Box::pin(written!(self, work, Outcome::Id))
    }

    fn oms_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOmsEvent>>> {
        let args = vec![outbox_id.into()];
        Box::pin(
            self.reader()
                .row(sql::OMS_EVENT, args, rows::stored_oms_event),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_comes_first_and_terminal_states_end_the_order() {
        use OmsState::*;
        assert_eq!(sequence_problem(&[], Confirmed), None);
        assert_eq!(sequence_problem(&[Confirmed], Cancelled), None);
        assert!(
            sequence_problem(&[], Fulfilled)
                .unwrap()
                .contains("before ORDER_CONFIRMED")
        );
        assert!(
            sequence_problem(&[Confirmed, Cancelled], Fulfilled)
                .unwrap()
                .contains("already ORDER_CANCELLED")
        );
        let reported = ["ORDER_CONFIRMED".to_string()];
        assert_eq!(
            refusal(&reported, "ORDER_CONFIRMED"),
            Some(OmsQueued::Repeat)
        );
        assert_eq!(refusal(&reported, "ORDER_CANCELLED"), None);
        assert!(matches!(
            refusal(&[], "ORDER_FULFILLED"),
            Some(OmsQueued::OutOfOrder(_))
        ));
        assert!(matches!(
            refusal(&[], "ORDER_SHIPPED"),
            Some(OmsQueued::OutOfOrder(_))
        ));
    }
}
