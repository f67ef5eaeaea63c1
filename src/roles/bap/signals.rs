//! Waking the callers that wait for a request's callbacks.
//!
//! Every callback filed in this process is announced here by message id. On a store shared by
//! several processes (PostgreSQL) the callback may land in another process: the store's own
//! announcements (`LISTEN`/`NOTIFY`) are relayed here too, once anyone waits. A woken caller
//! re-reads the store, which stays the only source of truth; an announcement only says when.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use crate::store::Store;
use crate::store::buyer::parse_signal;

/// Announcements of filed callbacks of one buyer-app flow, by message id.
pub struct Signals {
    flow: String,
    sender: broadcast::Sender<Arc<str>>,
    /// Set once the store's announcements are relayed (or known not to exist).
    relaying: OnceLock<()>,
}

impl Signals {
    pub fn new(flow: &str) -> Self {
        let (sender, _) = broadcast::channel(1024);
        Signals {
            flow: flow.to_string(),
            sender,
            relaying: OnceLock::new(),
        }
    }

    /// Says that a callback with `message_id` was filed.
    pub fn announce(&self, message_id: &str) {
        let _ = self.sender.send(Arc::from(message_id));
    }

    /// Announcements from now on, including those of other processes sharing `store`.
    pub fn subscribe(&self, store: &Arc<dyn Store>) -> broadcast::Receiver<Arc<str>> {
        self.relay(store);
        self.sender.subscribe()
    }

    /// Starts relaying the announcements of other processes sharing `store` (once), so that
    /// the store's listener is up before the first caller waits.
    pub fn relay(&self, store: &Arc<dyn Store>) {
        self.relaying.get_or_init(|| {
            if let Some(mut from_store) = store.callback_signals() {
                let sender = self.sender.clone();
                let flow = self.flow.clone();
                tokio::spawn(async move {
                    loop {
                        match from_store.recv().await {
                            Ok(payload) => {
                                if let Some((f, message_id)) = parse_signal(&payload)
                                    && f == flow
                                {
                                    let _ = sender.send(Arc::from(message_id));
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                });
            }
        });
    }
}

/// Resolves when `message_id` is announced on `rx`, or when announcements were missed (the
/// caller then re-reads the store anyway).
pub async fn announced(rx: &mut broadcast::Receiver<Arc<str>>, message_id: &str) {
    loop {
        match rx.recv().await {
            Ok(id) if &*id == message_id => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // The sender lives as long as the endpoint: nothing more will come.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
