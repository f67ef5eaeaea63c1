//! The backend's orders as the store knows them: which transaction an ERP order id belongs to
//! (events naming the order, not the transaction), the flow's open orders, and the last state
//! the order poller saw of each, saved only once its change is recorded as an event.

use futures::future::BoxFuture;

use super::backend::{Backend, Work, changed};
use super::rows::{self, Reader};
use super::{StoreResult, sql};

/// An order of a flow still asked for its state: confirmed (its ERP id known), not settled in
/// a final state, not cancelled through Beckn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrder {
    pub transaction_id: String,
    pub erp_order_id: String,
    /// The last state seen and how many changes were saved before it; None before the first
    /// sighting.
    pub seen: Option<SeenState>,
}

/// The state last seen of an order, and the count of changes saved up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenState {
    pub state: String,
    pub changes: i64,
}

/// What the store knows of a polled order (for operators and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    pub erp_order_id: String,
    pub state: String,
    pub changes: i64,
    /// A final state: the order is no longer asked.
    pub settled: bool,
}

/// ERP orders: by id, open ones, and their last seen states.
pub trait ErpOrderStore: Send + Sync {
    /// The transaction of `flow` whose order the backend numbered `erp_order_id` (the latest,
    /// should two carry it).
    fn transaction_of_order(
        &self,
        flow: &str,
        erp_order_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>>;
    /// Up to `limit` open orders of `flow`, oldest transactions first.
    fn open_orders(&self, flow: &str, limit: usize) -> BoxFuture<'_, StoreResult<Vec<OpenOrder>>>;
    /// Saves `state` as the order's last seen state: a first sighting (`after` None) unless
    /// one was saved meanwhile; a change only while the order is still at `after`'s count of
    /// changes (so two pollers save one change once). `settled`: no longer asked. False when
    /// nothing was saved.
    fn save_order_state(
        &self,
        flow: &str,
        order: &OpenOrder,
        state: &str,
        settled: bool,
    ) -> BoxFuture<'_, StoreResult<bool>>;
    /// The saved state of a transaction's order, if the poller saw it.
    fn order_state(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<OrderState>>>;
}

impl<B: Backend> ErpOrderStore for B {
    fn transaction_of_order(
        &self,
        flow: &str,
        erp_order_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let args = vec![flow.into(), erp_order_id.into()];
        Box::pin(async move {
            let found = self
                .reader()
                .row(sql::TRANSACTION_OF_ORDER, args, rows::maybe_text);
            Ok(found.await?.flatten())
        })
    }

    fn open_orders(&self, flow: &str, limit: usize) -> BoxFuture<'_, StoreResult<Vec<OpenOrder>>> {
        let args = vec![flow.into(), (limit as i64).into()];
        Box::pin(self.reader().rows(sql::OPEN_ORDERS, args, rows::open_order))
    }

    fn save_order_state(
        &self,
        flow: &str,
        order: &OpenOrder,
        state: &str,
        settled: bool,
    ) -> BoxFuture<'_, StoreResult<bool>> {
        let now = self.clock().now_ms();
        let statement = match &order.seen {
            None => (
                sql::FIRST_ORDER_STATE,
                vec![
                    flow.into(),
                    order.transaction_id.as_str().into(),
                    order.erp_order_id.as_str().into(),
                    state.into(),
                    settled.into(),
                    now.into(),
                ],
            ),
            Some(seen) => (
                sql::NEXT_ORDER_STATE,
                vec![
                    state.into(),
                    settled.into(),
                    now.into(),
                    flow.into(),
                    order.transaction_id.as_str().into(),
                    seen.changes.into(),
                ],
            ),
        };
        Box::pin(changed(self, Work::Execute(vec![statement])))
    }

    fn order_state(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Option<OrderState>>> {
        let args = vec![flow.into(), transaction_id.into()];
        Box::pin(self.reader().row(sql::ORDER_STATE, args, rows::order_state))
    }
}
