//! Transaction memory: values an action remembers (`remember:`) under its transaction, read
//! back by later actions and backend events as `transaction.*`, with the ERP's order id the
//! transaction record already keeps.

use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::backend::{Backend, Work, done};
use super::rows::{self, Reader};
use super::{StoreResult, sql};

/// What a flow remembers of its transactions.
pub trait MemoryStore: Send + Sync {
    /// Remembers `values` under `(flow, transaction_id)`, each by its name: a name remembered
    /// again is replaced, the others are kept. Committed together, before this returns.
    fn remember(
        &self,
        flow: &str,
        transaction_id: &str,
        values: &Map<String, Value>,
    ) -> BoxFuture<'_, StoreResult<()>>;
    /// Everything remembered of the transaction, and `erp_order_id` when the transaction
    /// record carries one (a remembered `erp_order_id` comes second to it); empty for a
    /// transaction nothing is known of.
    fn recall(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Map<String, Value>>>;
}

impl<B: Backend> MemoryStore for B {
    fn remember(
        &self,
        flow: &str,
        transaction_id: &str,
        values: &Map<String, Value>,
    ) -> BoxFuture<'_, StoreResult<()>> {
        let now = self.clock().now_ms();
        let statements = values
            .iter()
            .map(|(name, value)| {
                let args = vec![
                    flow.into(),
                    transaction_id.into(),
                    name.as_str().into(),
                    value.to_string().into(),
                    now.into(),
                ];
                (sql::REMEMBER, args)
            })
            .collect::<Vec<_>>();
        Box::pin(async move {
            if statements.is_empty() {
                return Ok(());
            }
            done(self, Work::Execute(statements)).await
        })
    }

    fn recall(
        &self,
        flow: &str,
        transaction_id: &str,
    ) -> BoxFuture<'_, StoreResult<Map<String, Value>>> {
        let args = || vec![flow.into(), transaction_id.into()];
        let (remembered, order) = (args(), args());
        Box::pin(async move {
            let entries = self
                .reader()
                .rows(sql::RECALL, remembered, rows::remembered)
                .await?;
            let mut values: Map<String, Value> = entries
                .into_iter()
                .map(|(name, text)| {
                    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                    (name, value)
                })
                .collect();
            let order_id = self
                .reader()
                .row(sql::ERP_ORDER_ID, order, rows::maybe_text)
                .await?
                .flatten();
            if let Some(id) = order_id {
                values.insert("erp_order_id".into(), Value::String(id));
            }
            Ok(values)
        })
    }
}
