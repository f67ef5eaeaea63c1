//! The ledger an order sink keeps: the states reported per order, each once and in an order
//! they may follow each other (the sink's [`StateRule`], asked inside the commit that queues
//! the update), the order event each pending or dead update was made from (so that sending it
//! again rebuilds it with the current mapping), and the users signed in to a sink through a
//! buyer app's client API with the identity token of each of their transactions. The store
//! knows no sink: each brings its rule and names its entries by its connection.

use bytes::Bytes;
use futures::future::BoxFuture;

use super::backend::{Backend, Outcome, Work, changed, done, written};
use super::rows::{self, Reader};
use super::{NewOutbox, StoreResult, sql};

/// A user signed in to a sink (Ultra: with a Flipkart grant token); the app names them by
/// `session` in later calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkUser {
    pub session: String,
    /// The sink connection the user signed in through.
    pub connection: String,
    pub identity_token: String,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub created_at: i64,
}

/// One state of one order at a sink, about to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub connection: String,
    /// The lab the order is with (`bpp_id/provider id`): with the transaction, it tells apart
    /// orders of different labs that carry the same order id.
    pub provider: String,
    pub transaction_id: String,
    pub order_id: String,
    /// The sink's name of the state (Ultra: `ORDER_CONFIRMED`...).
    pub state: String,
    /// The order event the update was made from (its flow is the flow whose order it is).
    pub event: OrderEvent,
}

/// An order event: a Beckn callback carrying an order, of a flow that reports to a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvent {
    pub flow: String,
    /// `on_confirm`, `on_status`...
    pub callback: String,
    /// The callback as sent or received.
    pub body: Bytes,
}

/// The order event kept for a sink's outbox message, and the update it was queued as (None:
/// its mapping failed, the message is the dead letter that says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrderEvent {
    pub event: OrderEvent,
    pub update: Option<QueuedState>,
}

/// The state a sink's outbox message reports, of which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedState {
    pub order_id: String,
    pub state: String,
}

/// What became of a sink's update handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerQueued {
    /// Queued in the outbox with this id.
    Queued(i64),
    /// This state of this order was queued before: nothing more to send.
    Repeat,
    /// It may not follow the states reported before (why): not queued.
    OutOfOrder(String),
}

/// How the states of one key may follow each other: the sink's rule, which the store asks
/// inside the commit that queues an entry.
pub trait StateRule: Send + Sync {
    /// Whether `state` may be queued for a key that reported `reported` (oldest first, as
    /// stored): None if so, else why not (a repeat, or a state that may not follow).
    fn refusal(&self, reported: &[String], state: &str) -> Option<LedgerQueued>;

    /// The state whose update, while still held back (`not_before` ahead), an entry in
    /// `state` replaces: the held update is dropped and the new one goes in its place.
    fn replaces_held(&self, state: &str) -> Option<&'static str>;
}

/// The ledger of an order sink: once per key, in order, with its users and their tokens.
pub trait LedgerStore: Send + Sync {
    /// Keeps a signed-in user under their session.
    fn save_sink_user(&self, user: SinkUser) -> BoxFuture<'_, StoreResult<()>>;
    fn sink_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<SinkUser>>>;
    /// Forgets a signed-in user (signing out); false if the session was unknown.
    fn forget_sink_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>>;
    /// Notes the sink identity token of a transaction's user.
    fn note_identity(
        &self,
        flow: &str,
        transaction_id: &str,
        identity_token: &str,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// The sink identity token noted for a transaction.
    fn identity_token(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>>;
    /// Queues a sink's update unless its key reported this state already (a repeat) or
    /// `rule` says the state may not follow the ones reported; the check and the queueing are
    /// one commit.
    fn queue_entry(
        &self,
        rule: &'static dyn StateRule,
        record: LedgerEntry,
        item: NewOutbox,
    ) -> BoxFuture<'_, StoreResult<LedgerQueued>>;
    /// Records an order event that gives no update (its mapping failed, or the update broke
    /// the sink's rules) as the dead letter `item` with `reason`, keeping the event: `outbox list`
    /// shows it, and `outbox retry` maps the event again.
    fn bury_order_event(
        &self,
        event: OrderEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>>;
    /// The order event kept for the sink's outbox message `outbox_id`, if any.
    fn order_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOrderEvent>>>;
}

impl<B: Backend> LedgerStore for B {
    fn save_sink_user(&self, user: SinkUser) -> BoxFuture<'_, StoreResult<()>> {
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
            Work::Execute(vec![(sql::INSERT_SINK_USER, args)]),
        ))
    }

    fn sink_user(&self, session: &str) -> BoxFuture<'_, StoreResult<Option<SinkUser>>> {
        let args = vec![session.into()];
        Box::pin(self.reader().row(sql::SINK_USER, args, rows::sink_user))
    }

    fn forget_sink_user(&self, session: &str) -> BoxFuture<'_, StoreResult<bool>> {
        let args = vec![session.into()];
        Box::pin(changed(
            self,
            Work::Execute(vec![(sql::FORGET_SINK_USER, args)]),
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

    fn queue_entry(
        &self,
        rule: &'static dyn StateRule,
        record: LedgerEntry,
        item: NewOutbox,
    ) -> BoxFuture<'_, StoreResult<LedgerQueued>> {
        let work = Work::QueueEntry(Box::new((rule, record, item)));
        Box::pin(written!(self, work, Outcome::Ledger))
    }

    fn bury_order_event(
        &self,
        event: OrderEvent,
        item: NewOutbox,
        reason: String,
    ) -> BoxFuture<'_, StoreResult<i64>> {
        let work = Work::BuryOrderEvent(Box::new((event, item, reason)));
        Box::pin(written!(self, work, Outcome::Id))
    }

    fn order_event(&self, outbox_id: i64) -> BoxFuture<'_, StoreResult<Option<StoredOrderEvent>>> {
        let args = vec![outbox_id.into()];
        Box::pin(
            self.reader()
                .row(sql::ORDER_EVENT, args, rows::stored_order_event),
        )
    }
}
