//! The buyer-app (BAP) role: the adapter stands between a buyer's own application and the
//! Beckn network.
//!
//! Towards the app it offers a client API, one endpoint per action (`client.rs`): the app sends
//! a Beckn `message` (or its own JSON, turned into one by a template of the flow), the adapter
//! builds the context, routes the request (a search to the gateway, everything later in a
//! transaction to the BPP that answered; `outbound.rs`), signs and sends it, and hands the
//! `on_*` callbacks back in the mode the call chose: synchronously, by message id later, or
//! posted to the app's webhook (`answers.rs`, `webhook.rs`).
//!
//! Towards the network it receives the callbacks at its subscriber URL (`inbound.rs`): checked
//! like any request (signature of the BPP, core schema, domain rules), filed under their request
//! or transaction in the store before the ACK, and late or unknown ones NACKed and kept.
//! Waiting callers are woken by `signals.rs`, across processes on a shared store.
//!
//! A Flipkart Ultra user signs in and out on the client API too (`ultra.rs`); calls naming
//! their session carry the user to the request templates and to Ultra's order reports.

pub mod answers;
pub mod client;
pub mod inbound;
pub mod outbound;
pub mod signals;
pub mod ultra;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{get, post};

use super::Services;
use crate::compile::{CompiledFlow, CompiledSet};
use crate::store::Store;
use signals::Signals;

/// One buyer-app flow's endpoints, both sides. The flow is looked up in the current set on
/// every call, so a reload takes effect for the next one.
pub struct BapEndpoint {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub flow_name: String,
    pub services: Arc<Services>,
    /// Sends the requests (with this flow's timeouts and signatures).
    pub http: reqwest::Client,
    pub signals: Signals,
}

impl BapEndpoint {
    pub fn new(
        flows: Arc<ArcSwap<CompiledSet>>,
        flow_name: String,
        services: Arc<Services>,
    ) -> Self {
        BapEndpoint {
            signals: Signals::new(&flow_name),
            flows,
            flow_name,
            services,
            http: reqwest::Client::new(),
        }
    }

    /// The current set and this flow in it, if it is still loaded.
    pub fn current(&self) -> Option<(Arc<CompiledSet>, Arc<CompiledFlow>)> {
        let set = self.flows.load_full();
        let flow = set.flow(&self.flow_name).cloned()?;
        Some((set, flow))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.services.outbox.store
    }
}

/// The routers of a buyer-app flow: its Beckn endpoints (`{base_path}/on_*`) with the client
/// API, or, when the client API has an address of its own, that address and its router apart.
pub fn routers(
    flows: &Arc<ArcSwap<CompiledSet>>,
    flow: &CompiledFlow,
    services: &Arc<Services>,
) -> (Router, Option<(SocketAddr, Router)>) {
    let ep = Arc::new(BapEndpoint::new(
        flows.clone(),
        flow.name.clone(),
        services.clone(),
    ));
    ep.signals.relay(ep.store());
    let network = Router::new()
        .route(
            &format!("{}/{{callback}}", flow.base_path),
            post(inbound::receive),
        )
        .with_state(ep.clone());
    let Some(bap) = flow.bap() else {
        return (network, None);
    };
    let base = &bap.client_base_path;
    let client = Router::new()
        .route(&format!("{base}/{{action}}"), post(client::call))
        .route(
            &format!("{base}/responses/{{message_id}}"),
            get(client::responses),
        )
        .route(
            &format!("{base}/transactions/{{transaction_id}}"),
            get(client::transaction),
        )
        .route(&format!("{base}/ultra/sign-in"), post(ultra::sign_in))
        .route(&format!("{base}/ultra/sign-out"), post(ultra::sign_out))
        .with_state(ep);
    if bap.client_listen == flow.listen {
        (network.merge(client), None)
    } else {
        (network, Some((bap.client_listen, client)))
    }
}
