//! Listeners bound before the application runs (ephemeral ports in tests and the demo), used
//! for the addresses they are bound to; every other address the flows name is bound at start.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Pre-bound listeners, by the address each is bound to.
#[derive(Default)]
pub struct Listeners {
    bound: HashMap<SocketAddr, TcpListener>,
}

impl Listeners {
    pub fn new() -> Self {
        Listeners::default()
    }

    /// Serves whatever the settings put at this listener's address on it.
    pub fn add(&mut self, listener: TcpListener) -> std::io::Result<()> {
        self.bound.insert(listener.local_addr()?, listener);
        Ok(())
    }

    /// The listener bound to `addr`, or a new one bound there.
    pub(super) async fn take_or_bind(&mut self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        match self.bound.remove(&addr) {
            Some(listener) => Ok(listener),
            None => TcpListener::bind(addr).await,
        }
    }
}
