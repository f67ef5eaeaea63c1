//! The Beckn roles the adapter plays, on top of the engine and the protocol layer.

pub mod bap;
pub mod bpp;
pub mod events;
pub mod gateway;
pub mod poller;

use std::sync::Arc;

use crate::backend::Transport;
use crate::beckn::trust::RegistryPool;
use crate::delivery::Outbox;

/// What every role needs from the outside world; injected so tests and `render` can swap parts.
pub struct Services {
    pub transport: Arc<dyn Transport>,
    /// Durable state and delivery: requests are recorded in `outbox.store` before their ACK.
    pub outbox: Arc<Outbox>,
    pub registries: RegistryPool,
}
