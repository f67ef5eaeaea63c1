//! One task per flow that polls its backend, following reloads: shared by the feed poller
//! (`events.poll`) and the order poller (`events.poll_orders`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::compile::{CompiledFlow, CompiledSet};
use crate::roles::Services;

/// How often the set of polled flows is compared with the serving set.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

/// Runs `poll_flow(name, flows, services, reloads, stop)` for every flow for which `polls` is
/// true, starting one for a flow that gains it after a reload, until `shutdown`; then tells the
/// tasks to stop and waits for them. `reloads` carries the serving set's hash when it changes.
pub(super) async fn per_flow<P, Fut>(
    flows: Arc<ArcSwap<CompiledSet>>,
    services: Arc<Services>,
    shutdown: impl Future<Output = ()> + Send,
    polls: fn(&CompiledFlow) -> bool,
    starting: &'static str,
    poll_flow: P,
) where
    P: Fn(
        String,
        Arc<ArcSwap<CompiledSet>>,
        Arc<Services>,
        watch::Receiver<String>,
        watch::Receiver<bool>,
    ) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let (reload_tx, _) = watch::channel(String::new());
    let mut pollers: HashMap<String, JoinHandle<()>> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let set = flows.load_full();
        reload_tx.send_if_modified(|seen| {
            let changed = *seen != set.hash;
            if changed {
                seen.clone_from(&set.hash);
            }
            changed
        });
        pollers.retain(|_, task| !task.is_finished());
        for flow in &set.flows {
            if polls(flow) && !pollers.contains_key(&flow.name) {
                tracing::info!(flow = %flow.name, "{starting}");
                let task = tokio::spawn(poll_flow(
                    flow.name.clone(),
                    flows.clone(),
                    services.clone(),
                    reload_tx.subscribe(),
                    stop_rx.clone(),
                ));
                pollers.insert(flow.name.clone(), task);
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {}
        }
    }
    let _ = stop_tx.send(true);
    for (_, task) in pollers {
        let _ = task.await;
    }
}
