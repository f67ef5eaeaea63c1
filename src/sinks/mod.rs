//! Order sinks: systems outside the Beckn network that hear of a flow's orders, such as
//! Flipkart Ultra's OMS (`ultra/`). A sink takes order events (a callback carrying an order:
//! one a provider sends, one a buyer app receives) and turns them into outbox messages, keeping
//! its own state in the store's ledger ("once per key, in order"); the outbox sends those
//! messages through the [`Destination`] the sink provides.
//!
//! Roles never name a sink: they hand each order event to [`Sinks::of_flow`], the sinks the
//! flow's compiled settings (`compile::sinks`) report to. Adding a sink: see
//! docs/ARCHITECTURE.md, "Adding an order sink".

pub mod ultra;

use std::sync::{Arc, LazyLock};

use futures::future::BoxFuture;
use serde_json::Value;

use crate::compile::{CompiledFlow, CompiledSet};
use crate::delivery::Outbox;
use crate::delivery::kinds::Destination;
use crate::store::StoreError;

/// What became of one order event at one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// The flow reports no such event, or the order's user is not known to the sink.
    NotReported(&'static str),
    /// The mapping rendered `null`: nothing to tell the sink.
    Nothing,
    Queued {
        order_id: String,
        state: String,
    },
    /// This state of the order was queued before.
    Repeat,
    /// Refused before sending: the mapping failed or the order broke the sink's rules (then
    /// the event is a dead letter, which `outbox retry` maps again), or the state may not
    /// follow the ones reported. Logged with the order id.
    Refused(String),
}

/// A system a flow's orders are reported to.
pub trait OrderSink: Send + Sync {
    /// The sink's name: its metrics label, its log field.
    fn name(&self) -> &'static str;

    /// Whether `flow` reports its orders to this sink.
    fn reports(&self, flow: &CompiledFlow) -> bool;

    /// Maps the order event `body` (a Beckn callback named `callback`) of `flow` into the
    /// sink's updates and queues them in the outbox, in the commit that notes them in the
    /// store's ledger. Only a store failure is an error: the caller makes the event come
    /// again (NACK, or leaves its request unfinished).
    fn order_event<'a>(
        &'a self,
        outbox: &'a Outbox,
        flow: &'a CompiledFlow,
        callback: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Reported, StoreError>>;

    /// How the outbox sends this sink's messages.
    fn destination(&self) -> Arc<dyn Destination>;
}

/// An order event a sink could not take (the store failed).
#[derive(Debug, thiserror::Error)]
#[error("the {sink} order update could not be queued: {source}")]
pub struct SinkError {
    pub sink: &'static str,
    #[source]
    pub source: StoreError,
}

/// Every sink the adapter can report to: a new sink is added here.
fn known() -> &'static [Arc<dyn OrderSink>] {
    static KNOWN: LazyLock<Vec<Arc<dyn OrderSink>>> =
        LazyLock::new(|| vec![Arc::new(ultra::Ultra)]);
    &KNOWN
}

/// A set of order sinks.
pub struct Sinks(Vec<Arc<dyn OrderSink>>);

impl Sinks {
    /// The sinks some flow of `set` reports to.
    pub fn loaded(set: &CompiledSet) -> Sinks {
        Sinks(
            known()
                .iter()
                .filter(|s| set.flows.iter().any(|f| s.reports(f)))
                .cloned()
                .collect(),
        )
    }

    /// The sinks `flow` reports its orders to.
    pub fn of_flow(flow: &CompiledFlow) -> Sinks {
        Sinks(
            known()
                .iter()
                .filter(|s| s.reports(flow))
                .cloned()
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hands the order event `body` of `flow` to each sink, in turn.
    pub async fn order_event(
        &self,
        outbox: &Outbox,
        flow: &CompiledFlow,
        callback: &str,
        body: &Value,
    ) -> Result<Vec<(&'static str, Reported)>, SinkError> {
        let mut reported = Vec::with_capacity(self.0.len());
        for sink in &self.0 {
            let r = sink
                .order_event(outbox, flow, callback, body)
                .await
                .map_err(|source| SinkError {
                    sink: sink.name(),
                    source,
                })?;
            reported.push((sink.name(), r));
        }
        Ok(reported)
    }
}

/// The outbox destinations of every sink the adapter knows, whether a flow uses it now or
/// not: its messages outlive a reload that drops the flow.
pub fn destinations() -> Vec<Arc<dyn Destination>> {
    known().iter().map(|s| s.destination()).collect()
}
