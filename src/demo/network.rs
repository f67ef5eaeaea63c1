//! The whole sample network in one process on loopback: the sample lab ERP (two labs) and the
//! sample LIMS (a third lab, a system of another shape), a BPP flow for each lab, the gateway (which also serves the registry at `/lookup`), the farmer
//! app's BAP flow, and a stand-in for the farmer app's own server receiving webhook deliveries.
//!
//! Everything comes from the flow files as `serve` loads them; only addresses are chosen here:
//! every listener is bound on a free loopback port first and the flows' variables
//! (`GFSL_LISTEN`, `FARMER_APP_URL`...) are set to match, so the registry, the flows and the
//! ERP's webhooks agree and nothing collides with a running `serve`. The process environment
//! is not read: the flows' defaults (the sample network's test-only values) apply, plus the
//! caller's `env`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::DemoError;
use super::app::AppStandIn;
use super::subscriptions;
use crate::app::{AdminSettings, App, AppError, Listeners, Served, Settings};
use crate::beckn::subscribe::Outcome;
use crate::compile::{CompiledSet, Layout};
use crate::config::diagnostic::render_all;
use crate::delivery::DeliverySettings;
use crate::reload::{ReloadOutcome, Reloader};
use crate::roles::Services;

/// The sample flows, by name, and the variables that place each.
const BAP: &str = "farmer-app";
const GATEWAY: &str = "soil-gateway";
const LABS: [(&str, &str, &str); 2] = [
    ("greenfield-lab", "GFSL", "GFSL"),
    ("krishi-lab", "KTH", "KTH"),
];
/// The lab on the sample LIMS, and the prefix of its flow's variables. Served when the flow
/// is there (a trimmed tree may leave it out).
pub const LIMS_FLOW: &str = "bhoomi-lab";
const LIMS_LAB: (&str, &str) = (LIMS_FLOW, "BHOOMI");
/// The public half of the sample Ultra connection's TEST-ONLY key, under the project root.
const ULTRA_PUBLIC_KEY: &str = "registry/ultra/partner.pub.pem";
/// The ERP's webhook secret the sample lab flows expect (a TEST-ONLY default of theirs).
const ERP_WEBHOOK_SECRET: &str = "test-only-webhook-secret";

/// How to start the network.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// Flow variables on top of the addresses chosen here (they win).
    pub env: HashMap<String, String>,
    /// Flows that are registered but not served (a participant that is down), by name.
    pub down: Vec<String>,
    /// The store; default: SQLite in a temporary directory removed with the network.
    pub store_url: Option<String>,
    /// Join the network through a stand-in registry started here, as `demo` does: every
    /// participant subscribes at start instead of trusting the registry file.
    pub subscribe: bool,
}

/// A running sample network. Dropping it stops every server it started.
pub struct SampleNetwork {
    pub erp: sample_erp::SampleErp,
    /// The LIMS behind the bhoomi-lab flow.
    pub lims: sample_lims::SampleLims,
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub services: Arc<Services>,
    /// Base URL of each flow (by name), of the ERP (`sample-erp`), the LIMS (`sample-lims`) and
    /// the stand-in registry (`registry`, when subscribing).
    pub urls: BTreeMap<String, String>,
    /// The farmer app's client API, e.g. `http://127.0.0.1:41234/api`.
    pub client_api: String,
    /// The farmer app's own server: what reached its webhook.
    pub app: Arc<AppStandIn>,
    /// Flipkart Ultra, as the farmer app's Ultra connection sees it.
    pub ultra: ultra_standin::UltraStandIn,
    pub store_url: String,
    /// The admin listener's base URL.
    pub admin_url: String,
    /// Reloads the flows from their files, as `POST /admin/reload` does.
    pub reloader: Arc<Reloader>,
    /// The variables the flows were compiled with (addresses chosen here, the caller's `env`).
    pub env: HashMap<String, String>,
    /// The stand-in registry the participants subscribed with ([`NetworkOptions::subscribe`]).
    pub registry: Option<registry_standin::RegistryStandin>,
    /// Each subscribed flow's accepted subscription, in the order they subscribed.
    pub subscriptions: Vec<(String, Outcome)>,
    _stop: watch::Sender<bool>,
    _temp: Option<TempDir>,
    _flows_copy: Option<TempDir>,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn bind() -> Result<(TcpListener, SocketAddr), DemoError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Bind)?;
    let addr = listener.local_addr().map_err(DemoError::Bind)?;
    Ok((listener, addr))
}

impl SampleNetwork {
    /// Starts the network from the flows under `layout`.
    pub async fn start(layout: &Layout, options: NetworkOptions) -> Result<Self, DemoError> {
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.changed().await;
            }
        };
        let mut listeners: HashMap<String, (TcpListener, SocketAddr)> = HashMap::new();
        for name in [BAP, GATEWAY, LABS[0].0, LABS[1].0, LIMS_LAB.0] {
            listeners.insert(name.to_string(), bind().await?);
        }
        let (erp_listener, erp_addr) = bind().await?;
        let (lims_listener, lims_addr) = bind().await?;
        let (app_listener, app_addr) = bind().await?;
        let (ultra_listener, ultra_addr) = bind().await?;
        let (admin_listener, admin_addr) = bind().await?;
        let url = |name: &str| format!("http://{}", listeners[name].1);
        let mut env: HashMap<String, String> = HashMap::new();
        let mut put = |k: &str, v: String| env.insert(k.to_string(), v);
        put("FARMER_APP_LISTEN", listeners[BAP].1.to_string());
        put("FARMER_APP_URL", url(BAP));
        put(
            "FARMER_APP_WEBHOOK_URL",
            format!("http://{app_addr}/beckn/callbacks"),
        );
        put("ULTRA_API_URL", format!("http://{ultra_addr}"));
        put("ULTRA_OMS_URL", format!("http://{ultra_addr}"));
        put("GATEWAY_LISTEN", listeners[GATEWAY].1.to_string());
        put("GATEWAY_URL", url(GATEWAY));
        // The labs and the farmer app look keys up in the registry the gateway serves.
        put("BECKN_REGISTRY", url(GATEWAY));
        for (flow, var, lab) in LABS {
            put(&format!("{var}_LISTEN"), listeners[flow].1.to_string());
            put(&format!("{var}_PUBLIC_URL"), url(flow));
            put(
                &format!("{var}_ERP_URL"),
                format!("http://{erp_addr}/api/v1/labs/{lab}"),
            );
        }
        let (flow, var) = LIMS_LAB;
        put(&format!("{var}_LISTEN"), listeners[flow].1.to_string());
        put(&format!("{var}_PUBLIC_URL"), url(flow));
        put(&format!("{var}_LIMS_URL"), format!("http://{lims_addr}"));
        env.extend(options.env.clone());

        // Joining through the stand-in: the flows are compiled from a copy pointing at it.
        let mut layout = layout.clone();
        let mut flows_copy = None;
        let mut registry = None;
        let mut registry_url = None;
        if options.subscribe {
            let (registry_listener, registry_addr) = bind().await?;
            let standin =
                registry_standin::RegistryStandin::new(registry_standin::Config::generate());
            tokio::spawn(standin.clone().serve(registry_listener, shutdown()));
            let dir = std::env::temp_dir()
                .join(format!("beckn-adapter-demo-flows-{}", uuid::Uuid::new_v4()));
            let copy = TempDir(dir.clone());
            subscriptions::rewrite_flows(
                &layout.flows,
                &dir,
                &format!("http://{registry_addr}"),
                &standin.encryption_public_key(),
                &mut env,
            )?;
            layout.flows = dir;
            registry_url = Some(format!("http://{registry_addr}"));
            flows_copy = Some(copy);
            registry = Some(standin);
        }
        let layout = &layout;

        let (store_url, temp) = match &options.store_url {
            Some(u) => (u.clone(), None),
            None => {
                let dir = std::env::temp_dir()
                    .join(format!("beckn-adapter-demo-{}", uuid::Uuid::new_v4()));
                let url = format!("sqlite://{}", dir.join("store.db").display());
                (url, Some(TempDir(dir)))
            }
        };
        let erp_secret = env
            .get("SAMPLE_ERP_WEBHOOK_SECRET")
            .cloned()
            .unwrap_or_else(|| ERP_WEBHOOK_SECRET.into());
        let mut settings = Settings::new(layout.clone(), Arc::new(env.clone()), store_url.clone());
        settings.delivery = DeliverySettings {
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            ..DeliverySettings::default()
        };
        settings.admin = Some(AdminSettings {
            listen: admin_addr,
            token: None,
        });
        // Reloaded when asked ([`SampleNetwork::reload`]), and nothing else in the process
        // is touched.
        settings.watch = None;
        settings.sighup = false;
        settings.served = Served::Except(options.down.clone());
        let app = App::build(settings).await.map_err(|e| match e {
            AppError::Flows(d) => DemoError::Flows(render_all(&d)),
            AppError::Store { source, .. } => DemoError::Store(source),
            other => DemoError::App(other),
        })?;
        let flows = app.flows().clone();
        let set = flows.load_full();
        for name in [BAP, GATEWAY, LABS[0].0, LABS[1].0] {
            if set.flow(name).is_none() {
                return Err(DemoError::MissingFlow {
                    flow: name.to_string(),
                    dir: layout.flows.clone(),
                });
            }
        }
        let webhook = set
            .flow(BAP)
            .and_then(|f| f.bap())
            .and_then(|b| b.webhook.as_ref())
            .map(|w| (w.secret.expose().to_string(), w.signature_header.clone()))
            .ok_or_else(|| DemoError::Flows(format!("the {BAP} flow has no client.webhook")))?;
        let client_api = set
            .flow(BAP)
            .and_then(|f| f.bap())
            .map(|b| format!("http://{}{}", b.client_listen, b.client_base_path))
            .unwrap_or_default();

        let stand_in = Arc::new(AppStandIn::new(webhook.0.into_bytes(), webhook.1));
        tokio::spawn({
            let stand_in = stand_in.clone();
            let stop = shutdown();
            async move {
                let _ = axum::serve(app_listener, stand_in.router())
                    .with_graceful_shutdown(stop)
                    .await;
            }
        });

        let public_key = layout.root.join(ULTRA_PUBLIC_KEY);
        let pem = std::fs::read_to_string(&public_key)
            .map_err(|e| DemoError::Flows(format!("cannot read {}: {e}", public_key.display())))?;
        let ultra = ultra_standin::UltraStandIn::new(ultra_standin::StandInConfig::sample(pem))
            .map_err(DemoError::Flows)?;
        tokio::spawn(ultra.clone().serve(ultra_listener, shutdown()));

        let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig {
            webhook: Some(sample_erp::WebhookConfig {
                url: String::new(),
                secret: erp_secret,
                // Labs whose flow takes a webhook get their events posted there; the others
                // (`events.poll`) ask the ERP for them.
                lab_urls: LABS
                    .iter()
                    .filter_map(|(flow, _, lab)| {
                        let f = set.flow(flow)?;
                        let webhook = f.events()?.webhook.as_ref()?;
                        Some((
                            lab.to_string(),
                            format!("{}{}{}", url(flow), f.base_path, webhook.path),
                        ))
                    })
                    .collect(),
            }),
            ..Default::default()
        });
        tokio::spawn(erp.clone().serve(erp_listener, shutdown()));
        // Its client and secret are the bhoomi-lab flow's TEST-ONLY defaults.
        let lims = sample_lims::SampleLims::new(sample_lims::LimsConfig::default());
        tokio::spawn(lims.clone().serve(lims_listener, shutdown()));

        let mut urls: BTreeMap<String, String> = BTreeMap::new();
        for name in [BAP, GATEWAY, LABS[0].0, LABS[1].0, LIMS_LAB.0] {
            if set.flow(name).is_some() {
                urls.insert(name.to_string(), url(name));
            }
        }
        urls.insert("sample-erp".into(), format!("http://{erp_addr}"));
        urls.insert("sample-lims".into(), format!("http://{lims_addr}"));
        urls.insert("ultra".into(), format!("http://{ultra_addr}"));
        if let Some(u) = registry_url {
            urls.insert("registry".into(), u);
        }

        let mut bound = Listeners::new();
        for (name, (listener, _)) in listeners {
            // A participant that is down: nothing listens at its registered address.
            if !options.down.contains(&name) && set.flow(&name).is_some() {
                bound.add(listener).map_err(DemoError::Bind)?;
            }
        }
        bound.add(admin_listener).map_err(DemoError::Bind)?;
        let services = app.services().clone();
        let reloader = app.reloader().clone();
        tokio::spawn(async move {
            if let Err(e) = app.run(bound, shutdown()).await {
                tracing::error!(error = %e, "the sample network's adapter stopped");
            }
        });
        // The flows are served now (their listeners were bound before), so each can answer
        // the registry's challenge while it subscribes.
        let subscriptions = if registry.is_some() {
            subscriptions::subscribe_all(&set, &options.down).await?
        } else {
            Vec::new()
        };

        Ok(SampleNetwork {
            erp,
            lims,
            flows,
            services,
            urls,
            client_api,
            app: stand_in,
            ultra,
            store_url,
            admin_url: format!("http://{admin_addr}"),
            reloader,
            env,
            registry,
            subscriptions,
            _stop: stop,
            _temp: temp,
            _flows_copy: flows_copy,
        })
    }

    /// Compiles the flows again from their files (as a hot reload does) and swaps them in.
    pub fn reload(&self) -> Result<(), DemoError> {
        match self.reloader.reload("demo") {
            ReloadOutcome::Rejected { diagnostics } => {
                Err(DemoError::Flows(render_all(&diagnostics)))
            }
            ReloadOutcome::Applied { .. } | ReloadOutcome::Unchanged { .. } => Ok(()),
        }
    }
}
