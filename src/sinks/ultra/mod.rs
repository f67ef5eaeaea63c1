//! Flipkart Ultra: a Beckn flow's orders shown in the user's "My Orders" on Flipkart.
//!
//! - `token.rs`: the RS256 `secureToken` every call carries, minted and reused;
//! - `api.rs`: the token and user APIs (`/1/dummy`, the grant exchange, the user's contact);
//! - `sign_in.rs`: a user's sign-in (the grant exchanged for their identity token and
//!   contact), offered by the buyer app's client API (`roles::bap::ultra`);
//! - `oms.rs`: what an OMS order must look like, which states may follow which, and what
//!   Ultra's answers mean;
//! - `report.rs`: order events (callbacks sent or received) mapped into OMS updates and
//!   queued in the outbox, which sends them (`delivery`) one order at a time, in order;
//! - `destination.rs`: how the outbox sends an OMS update and reads Ultra's answer.
//!
//! [`Ultra`] is the order sink (`crate::sinks::OrderSink`) these make.
//!
//! A connection and a flow's `ultra:` settings are compiled data (`compile::sinks`, re-exported
//! here); this module is what runs with them.

pub mod api;
pub mod destination;
pub mod oms;
pub mod report;
pub mod sign_in;
pub mod states;
pub mod token;

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::compile::CompiledFlow;
pub use crate::compile::sinks::{FlowUltra, UltraConnection};
use crate::delivery::Outbox;
use crate::delivery::kinds::Destination;
use crate::sinks::{OrderSink, Reported};
use crate::store::StoreError;

/// The sink's name in metrics and logs.
pub const SINK: &str = "ultra";

/// The outbox `kind` of OMS updates.
pub const OUTBOX_KIND: &str = "ultra";

/// A secureToken for a call to `conn` now, by the system clock: for the calls made on a
/// user's behalf while they wait (sign-in, contact, ping), which Ultra judges by its own clock.
pub fn secure_token(conn: &UltraConnection) -> Result<String, token::TokenError> {
    secure_token_at(conn, jiff::Timestamp::now().as_second())
}

/// A secureToken for a call to `conn` at `now` (unix seconds, by the outbox's clock).
pub fn secure_token_at(conn: &UltraConnection, now: i64) -> Result<String, token::TokenError> {
    token::token_at(&conn.tokens, now)
}

/// Flipkart Ultra as an order sink.
pub struct Ultra;

impl OrderSink for Ultra {
    fn name(&self) -> &'static str {
        SINK
    }

    fn reports(&self, flow: &CompiledFlow) -> bool {
        flow.sinks.ultra.is_some()
    }

    fn order_event<'a>(
        &'a self,
        outbox: &'a Outbox,
        flow: &'a CompiledFlow,
        callback: &'a str,
        body: &'a Value,
    ) -> BoxFuture<'a, Result<Reported, StoreError>> {
        Box::pin(report::order_event(outbox, flow, callback, body))
    }

    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(destination::OmsDestination)
    }
}
