//! The application assembled in one place: the flows compiled, the store opened, the outbox,
//! the roles' services, the reloader, and every task `serve` runs (listeners, admin listener,
//! outbox worker, crash recovery, event pollers, file watcher, SIGHUP, retention).
//!
//! `serve`, the demo and the integration tests all build the adapter through [`App`], so what
//! the tests exercise is what `serve` runs; a test turns a part off through [`Settings`]
//! instead of wiring its own copy.

mod listeners;
mod settings;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::backend::HttpTransport;
use crate::beckn::trust::RegistryPool;
use crate::clock::SharedClock;
use crate::compile::{self, CompiledSet};
use crate::config::Diagnostic;
use crate::delivery::Outbox;
use crate::reload::Reloader;
use crate::roles::{self, Services};
use crate::server::{self, admin::Admin};
use crate::store::{self, Store, StoreError};
use crate::telemetry::traces::Traces;
pub use listeners::Listeners;
pub use settings::{AdminSettings, Served, Settings};

/// Why the application could not be built or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Every problem of the flow files, with file:line:col.
    #[error("the flows have errors")]
    Flows(Vec<Diagnostic>),
    #[error("opening the store {url}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the admin listener {addr}")]
    BindAdmin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Traces(#[from] crate::telemetry::traces::TraceError),
    #[error(transparent)]
    Serve(#[from] std::io::Error),
}

/// The adapter, built and ready to run.
pub struct App {
    settings: Settings,
    flows: Arc<ArcSwap<CompiledSet>>,
    services: Arc<Services>,
    reloader: Arc<Reloader>,
    store: Arc<dyn Store>,
}

impl App {
    /// Compiles the flows, opens the store and makes the services; starts nothing yet.
    pub async fn build(mut settings: Settings) -> Result<App, AppError> {
        let set =
            compile::load(&settings.layout, settings.env.as_ref()).map_err(AppError::Flows)?;
        let flows = Arc::new(ArcSwap::from_pointee(set));
        let reloader = Reloader::new(settings.layout.clone(), settings.env.clone(), flows.clone());
        let clock = settings.clock.clone();
        let store = store::open_with_clock(&settings.store_url, clock.clone())
            .await
            .map_err(|source| AppError::Store {
                url: settings.store_url.clone(),
                source,
            })?;
        tracing::info!(store = %settings.store_url, "store open");
        if let Some(admin) = &settings.admin {
            settings.delivery.protected.push(admin.listen);
        }
        let traces = Traces::new(&settings.traces)?;
        let outbox = Arc::new(
            Outbox::with_clock(store.clone(), settings.delivery.clone(), clock.clone())
                .with_traces(traces.clone()),
        );
        let services = Arc::new(Services {
            transport: Arc::new(HttpTransport::with_clock(clock.clone())),
            outbox,
            registries: RegistryPool::new(clock.clone()),
            clock,
            traces,
            nacks: crate::store::NackBudget::new(),
        });
        Ok(App {
            settings,
            flows,
            services,
            reloader,
            store,
        })
    }

    /// The compiled flows, swapped by every reload.
    pub fn flows(&self) -> &Arc<ArcSwap<CompiledSet>> {
        &self.flows
    }

    /// What the roles use: transport, outbox (and through it the store), registries.
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Reloads the flows as the file watcher, SIGHUP and `POST /admin/reload` do.
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Binds the listeners not given in `listeners`, starts every task and serves until
    /// `shutdown` resolves; then lets requests in progress finish.
    pub async fn run(
        self,
        mut listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let App {
            settings,
            flows,
            services,
            reloader,
            store,
        } = self;
        // Every listener is bound before anything starts: a busy address stops the start.
        let outbox = services.outbox.clone();
        let served = settings.served.addresses(&flows.load());
        let mut bound = Vec::new();
        for (addr, router) in server::routers(&flows, &services) {
            if !served.contains(&addr) {
                continue;
            }
            let listener = listeners
                .take_or_bind(addr)
                .await
                .map_err(|source| AppError::Bind { addr, source })?;
            bound.push((listener, router));
        }
        if let Some(admin) = &settings.admin {
            let addr = admin.listen;
            let listener = listeners
                .take_or_bind(addr)
                .await
                .map_err(|source| AppError::BindAdmin { addr, source })?;
            if let Ok(local) = listener.local_addr() {
                outbox.protect(local);
            }
            let state = Arc::new(Admin {
                reloader: reloader.clone(),
                store: store.clone(),
                token: admin.token.clone(),
                clock: services.clock.clone(),
            });
            bound.push((listener, server::admin::router(state)));
            tracing::info!(admin = %addr, "admin listener: /health /ready /metrics /admin/status /admin/reload /admin/outbox /admin/flows/<name>/subscribe");
        }
        let stop = stop_signal(shutdown);
        tokio::spawn(outbox.clone().run(flows.clone(), stop()));
        tokio::spawn(purge_periodically(
            store.clone(),
            services.clock.clone(),
            settings.retention,
            stop(),
        ));
        // Dropped when serving ends, which stops the watching.
        let _watcher = match settings.watch {
            None => None,
            Some(debounce) => match reloader.watch(debounce) {
                Ok(w) => {
                    tracing::info!(dirs = ?reloader.watched(), "reloading on file changes");
                    Some(w)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP or POST /admin/reload");
                    None
                }
            },
        };
        if settings.sighup {
            tokio::spawn(reloader.clone().on_sighup(stop()));
        }
        for f in &flows.load().flows {
            if !settings.served.includes(&f.name) {
                continue;
            }
            if !f.participant.verify_signatures {
                tracing::warn!(flow = %f.name, "SIGNATURE VERIFICATION IS OFF for this flow: any sender is accepted and answers go to any bap_uri. For local development only; remove `verify_signatures: false` before joining a network");
            }
            tracing::info!(flow = %f.name, role = f.role().as_str(), subscriber_id = %f.participant.subscriber_id, listen = %f.listen, base_path = %f.base_path, actions = f.actions.len(), "flow serving");
        }
        if settings.recovery {
            tokio::spawn(roles::rescue_unfinished(
                flows.clone(),
                services.clone(),
                stop(),
            ));
        }
        if settings.pollers {
            tokio::spawn(roles::events::poller::run(
                flows.clone(),
                services.clone(),
                stop(),
            ));
            tokio::spawn(roles::events::order_poller::run(
                flows.clone(),
                services.clone(),
                stop(),
            ));
        }
        let limits = settings.limits;
        tracing::info!(header_timeout = ?limits.header_timeout, body_timeout = ?limits.body_timeout, idle_timeout = ?limits.idle_timeout, write_timeout = ?limits.write_timeout, max_connections = limits.max_connections, "listener limits");
        server::serve_within(bound, limits, stop()).await?;
        // The last spans are sent before the process ends (the export runs on this runtime,
        // so the wait is on a blocking thread).
        let traces = services.traces.clone();
        if traces.is_on() {
            let _ = tokio::task::spawn_blocking(move || traces.flush()).await;
        }
        Ok(())
    }
}

/// Turns one shutdown future into as many as the tasks need: each resolves once `shutdown`
/// has.
fn stop_signal(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(true);
    });
    move || {
        let mut rx = rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        })
    }
}

/// Deletes log entries and finished work older than `retention`, hourly.
async fn purge_periodically(
    store: Arc<dyn Store>,
    clock: SharedClock,
    retention: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let before = clock.now_ms() - retention.as_millis() as i64;
        match store.purge(before).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "store purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "store purge failed"),
        }
    }
}
