//! What the application is built from: where the flows and the store are, and which of the
//! parts `serve` runs are on. [`Settings::new`] gives `serve`'s defaults; a test or the demo
//! turns a part off by changing a field.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{SharedClock, SystemClock};
use crate::compile::{CompiledSet, Layout};
use crate::config::{EnvLookup, Secret};
use crate::delivery::DeliverySettings;
use crate::server::ListenerLimits;
use crate::telemetry::traces::TraceSettings;

/// How the application is assembled.
pub struct Settings {
    /// Where the flow, mapping, schema and registry files are.
    pub layout: Layout,
    /// The variables the flow files are interpolated with (the process environment in
    /// `serve`); reloads use the same.
    pub env: Arc<dyn EnvLookup>,
    /// `sqlite://PATH` or `postgres://…`.
    pub store_url: String,
    pub delivery: DeliverySettings,
    /// How long the message log and finished work are kept.
    pub retention: Duration,
    /// The admin listener; None: none is started.
    pub admin: Option<AdminSettings>,
    /// Time limits and connection bound of every listener.
    pub limits: ListenerLimits,
    /// Reload when the files change, this long after the last change; None: no watcher.
    pub watch: Option<Duration>,
    /// Reload on SIGHUP.
    pub sighup: bool,
    /// Run again the requests accepted but never answered (at start, and those of stopped
    /// processes on a shared store).
    pub recovery: bool,
    /// Poll the backends of flows with `events.poll`.
    pub pollers: bool,
    /// Which flows get their listeners.
    pub served: Served,
    /// The time of day of every decision (the system's; a test's it can move).
    pub clock: SharedClock,
    /// Where traces are exported (OTLP/HTTP); none by default.
    pub traces: TraceSettings,
}

/// The admin listener: health, readiness, metrics, status, reload, outbox.
#[derive(Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Required as `Authorization: Bearer …` on `/admin/*` when set.
    pub token: Option<Secret>,
}

/// Which flows are served. A flow not served is still compiled (and, as a registry entry,
/// known to the others): a participant that is down, or one a test does not need.
#[derive(Debug, Clone, Default)]
pub enum Served {
    #[default]
    All,
    /// Only these flows, by name.
    Only(Vec<String>),
    /// Every flow but these, by name.
    Except(Vec<String>),
}

impl Served {
    /// Whether the flow `name` is served.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Served::All => true,
            Served::Only(names) => names.iter().any(|n| n == name),
            Served::Except(names) => !names.iter().any(|n| n == name),
        }
    }

    /// The addresses that carry a served flow: its listener, and a buyer app's client API.
    pub(super) fn addresses(&self, set: &CompiledSet) -> BTreeSet<SocketAddr> {
        let mut out = BTreeSet::new();
        for f in set.flows.iter().filter(|f| self.includes(&f.name)) {
            out.insert(f.listen);
            if let Some(bap) = f.bap() {
                out.insert(bap.client_listen);
            }
        }
        out
    }
}

impl Settings {
    /// `serve`'s defaults: every part on, the admin listener on 127.0.0.1:7190.
    pub fn new(layout: Layout, env: Arc<dyn EnvLookup>, store_url: impl Into<String>) -> Self {
        Settings {
            layout,
            env,
            store_url: store_url.into(),
            delivery: DeliverySettings::default(),
            retention: Duration::from_secs(7 * 24 * 3600),
            admin: Some(AdminSettings {
                listen: SocketAddr::from(([127, 0, 0, 1], 7190)),
                token: None,
            }),
            limits: ListenerLimits::default(),
            watch: Some(Duration::from_millis(300)),
            sighup: true,
            recovery: true,
            pollers: true,
            served: Served::All,
            clock: SystemClock::shared(),
            traces: TraceSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Served;

    #[test]
    fn served_names_the_flows_that_get_listeners() {
        assert!(Served::All.includes("greenfield-lab"));
        let only = Served::Only(vec!["greenfield-lab".into()]);
        assert!(only.includes("greenfield-lab"));
        assert!(!only.includes("krishi-lab"));
        let except = Served::Except(vec!["krishi-lab".into()]);
        assert!(except.includes("greenfield-lab"));
        assert!(!except.includes("krishi-lab"));
    }
}
