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

pub mod api;
pub mod oms;
pub mod report;
pub mod sign_in;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::beckn::schema::JsonValidator;
use crate::config::Secret;
use crate::config::ultra::TimestampUnit;
use token::TokenMinter;

/// The outbox `kind` of OMS updates.
pub const OUTBOX_KIND: &str = "ultra";

/// A compiled Ultra connection (`flows/ultra.yaml`).
pub struct UltraConnection {
    pub name: String,
    pub file: PathBuf,
    /// Without a trailing slash.
    pub api_url: String,
    pub oms_url: String,
    pub client_id: String,
    pub merchant_id: String,
    pub client_secret: Secret,
    pub tokens: TokenMinter,
    pub unit: TimestampUnit,
    /// Calls in flight at once.
    pub limiter: Arc<Semaphore>,
    pub timeout: Duration,
    /// How long an OMS update is retried.
    pub retry_for: Duration,
    /// `schemas/ultra/oms-order.json`.
    pub order_schema: Arc<JsonValidator>,
}

impl UltraConnection {
    /// `POST /3/oms`.
    pub fn oms_endpoint(&self) -> String {
        format!("{}/3/oms", self.oms_url)
    }

    /// A secureToken for a call now.
    pub fn secure_token(&self) -> Result<String, token::TokenError> {
        self.tokens.token(jiff::Timestamp::now().as_second())
    }
}

/// What a Beckn flow's `ultra:` block compiles to.
pub struct FlowUltra {
    pub connection: Arc<UltraConnection>,
    /// Template name under `mappings/`.
    pub order_template: String,
    pub script: Option<String>,
    /// Callback names (`on_confirm`...) whose orders are reported.
    pub on: Vec<String>,
    /// Expression template giving the user's identity token from a message (providers).
    pub identity_token: Option<String>,
    pub hold_fulfilled: bool,
}

/// Callbacks whose orders are reported when a flow names none.
pub const DEFAULT_ON: [&str; 4] = ["on_confirm", "on_status", "on_cancel", "on_update"];
