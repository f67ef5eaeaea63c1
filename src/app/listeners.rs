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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pre_bound_listener_serves_its_address_and_others_are_bound() {
        let ephemeral = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = ephemeral.local_addr().unwrap();
        let mut listeners = Listeners::new();
        listeners.add(ephemeral).unwrap();
        let taken = listeners.take_or_bind(addr).await.unwrap();
        assert_eq!(taken.local_addr().unwrap(), addr);
        // Taken once: the address is now held by `taken`, so binding it again fails.
        assert!(listeners.take_or_bind(addr).await.is_err());
        let other = listeners
            .take_or_bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        assert_ne!(other.local_addr().unwrap(), addr);
    }
}
