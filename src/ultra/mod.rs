//! Flipkart Ultra: a Beckn flow's orders shown in the user's "My Orders" on Flipkart.
//!
//! - `token.rs`: the RS256 `secureToken` every call carries, minted and reused;
//! - `api.rs`: the token and user APIs (`/1/dummy`, the grant exchange, the user's contact);
//! - `sign_in.rs`: a user's sign-in (the grant exchanged for their identity token and
//!   contact), offered by the buyer app's client API (`roles::bap::ultra`);
//! - `oms.rs`: what an OMS order must look like, which states may follow which, and what
//!   Ultra's answers mean;
//! - `report.rs`: order events (callbacks sent or received) mapped into OMS updates and
//!   queued in the outbox, which sends them (`delivery`) one order at a time, in order.
//!
//! A connection and a flow's `ultra:` settings are compiled data (`compile::sinks`, re-exported
//! here); this module is what runs with them.

pub mod api;
pub mod oms;
pub mod report;
pub mod sign_in;
pub mod token;

pub use crate::compile::sinks::{FlowUltra, UltraConnection};

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
