//! Test harness: start the sample ERP, the adapter on the shipped flows, and a BAP stand-in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use beckn_adapter::app::{AdminSettings, App, Listeners, Served, Settings};
use beckn_adapter::beckn::signing::PrivateKey;
use beckn_adapter::clock::{Clock, ManualClock};
use beckn_adapter::compile::{self, CompiledSet, Layout};
use beckn_adapter::delivery::DeliverySettings;
use beckn_adapter::reload::Reloader;
use beckn_adapter::roles::Services;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const BAP_ID: &str = "farmer-app.example";
pub const GFSL_ID: &str = "soil.greenfield-labs.example";
/// TEST-ONLY private key of the sample network's farmer app (registry/local.yaml).
pub const BAP_TEST_KEY: &str =
    "aBifWLXHoxVC0WeJuJQmRJhX+Fpx+ohWEDiRPAbQ65FoHiMBd69dUJq/Uo9mPcpwbi+ZfqbLiDkEOiP2Pwy/rg==";
pub const BAP_KEY_ID: &str = "farmer-app.example|farmer-app-key-1";

/// The `Authorization` header the farmer app sends with `body`.
pub fn bap_signature(body: &[u8]) -> String {
    let key = PrivateKey::from_base64(BAP_TEST_KEY).expect("test key");
    let now = jiff::Timestamp::now().as_second();
    key.sign(body, BAP_KEY_ID, now, now + 60)
}

/// The repository root, where `flows/`, `mappings/` and `schemas/` live.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let a = l.local_addr().expect("local addr");
    (l, a)
}

/// One callback as the BAP stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub action: String,
    pub body: Value,
    pub raw: axum::body::Bytes,
    pub authorization: Option<String>,
    pub gateway_authorization: Option<String>,
}

/// Callbacks received by the BAP stand-in.
#[derive(Default)]
pub struct Inbox {
    received: Mutex<Vec<(String, Value)>>,
    /// The same callbacks with their raw bytes and signature headers.
    pub raw: Mutex<Vec<Received>>,
    notify: Notify,
}

impl Inbox {
    /// Waits (up to `deadline`) until `n` callbacks `action` answering `message_id` arrived.
    pub async fn wait_n(
        &self,
        action: &str,
        message_id: &str,
        n: usize,
        deadline: Duration,
    ) -> Vec<Received> {
        let matching = || -> Vec<Received> {
            self.raw
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.action == action && r.body["context"]["message_id"] == message_id)
                .cloned()
                .collect()
        };
        let got = tokio::time::timeout(deadline, async {
            loop {
                let notified = self.notify.notified();
                let found = matching();
                if found.len() >= n {
                    return found;
                }
                notified.await;
            }
        })
        .await;
        got.unwrap_or_else(|_| {
            panic!(
                "{} of {n} {action} for {message_id} within {deadline:?}",
                matching().len()
            )
        })
    }

    /// Waits (up to `deadline`) for the callback `action` answering `message_id`.
    pub async fn wait(&self, action: &str, message_id: &str, deadline: Duration) -> Value {
        let found = tokio::time::timeout(deadline, async {
            loop {
                let notified = self.notify.notified();
                if let Some(v) = self.find(action, message_id) {
                    return v;
                }
                notified.await;
            }
        })
        .await;
        match found {
            Ok(v) => v,
            Err(_) => panic!(
                "no {action} for message {message_id} within {deadline:?}; received: {:?}",
                self.received
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(a, v)| (a.clone(), v["context"]["message_id"].clone()))
                    .collect::<Vec<_>>()
            ),
        }
    }

    fn find(&self, action: &str, message_id: &str) -> Option<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .find(|(a, v)| a == action && v["context"]["message_id"] == message_id)
            .map(|(_, v)| v.clone())
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

pub async fn record(
    State(inbox): State<Arc<Inbox>>,
    UrlPath(action): UrlPath<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<Value> {
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    inbox.raw.lock().unwrap().push(Received {
        action: action.clone(),
        body: value.clone(),
        raw: body.clone(),
        authorization: header("authorization"),
        gateway_authorization: header("x-gateway-authorization"),
    });
    inbox.received.lock().unwrap().push((action, value));
    inbox.notify.notify_waiters();
    axum::Json(json!({"message": {"ack": {"status": "ACK"}}}))
}

/// A running network: sample ERP, adapter serving the shipped flows, BAP stand-in.
pub struct Network {
    pub erp: sample_erp::SampleErp,
    pub erp_addr: SocketAddr,
    pub bpp_url: String,
    pub bap_url: String,
    pub bap: Arc<Inbox>,
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub services: Arc<Services>,
    /// The adapter's reloader, as its admin listener and file watcher use it.
    pub reloader: Arc<Reloader>,
    /// The adapter's admin listener.
    pub admin_addr: SocketAddr,
    pub http: reqwest::Client,
    /// Message ids of the requests sent to the BPP, to tell answers from unsolicited callbacks.
    pub sent: Mutex<std::collections::HashSet<String>>,
    /// Holds the store's temporary directory for the network's lifetime.
    _store_dir: tempfile::TempDir,
}

/// The adapter of a test network, built by [`App`] as `serve` builds it: the store in a
/// temporary SQLite file, fast retries, the admin listener on a loopback port of its own
/// (unless `configure` names one, bound among the listeners), and nothing reacting to file
/// changes or signals (a test turns the watcher on when it needs it).
pub struct TestApp {
    pub flows: Arc<ArcSwap<CompiledSet>>,
    pub services: Arc<Services>,
    pub reloader: Arc<Reloader>,
    pub admin_addr: SocketAddr,
    pub store_dir: tempfile::TempDir,
}

impl TestApp {
    /// Builds the adapter on the flows in `flows_dir` with `env`, lets `configure` change the
    /// settings, and runs it on `listeners` (bound to the addresses the flows name) until the
    /// test ends.
    pub async fn start(
        flows_dir: &Path,
        env: HashMap<String, String>,
        listeners: Vec<TcpListener>,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        Self::start_until(flows_dir, env, listeners, configure, std::future::pending()).await
    }

    /// Like [`TestApp::start`], running until `shutdown` (a process that stops).
    pub async fn start_until(
        flows_dir: &Path,
        env: HashMap<String, String>,
        listeners: Vec<TcpListener>,
        configure: impl FnOnce(&mut Settings),
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> TestApp {
        let store_dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", store_dir.path().join("store.db").display());
        let mut settings = Settings::new(Layout::from_flows_dir(flows_dir), Arc::new(env), url);
        settings.delivery = DeliverySettings {
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
            ..DeliverySettings::default()
        };
        settings.admin = None;
        settings.watch = None;
        settings.sighup = false;
        configure(&mut settings);
        let mut listeners = listeners;
        let admin_addr = match &settings.admin {
            Some(admin) => admin.listen,
            None => {
                let (admin_listener, admin_addr) = bind().await;
                listeners.push(admin_listener);
                settings.admin = Some(AdminSettings {
                    listen: admin_addr,
                    token: None,
                });
                admin_addr
            }
        };
        let app = match App::build(settings).await {
            Ok(app) => app,
            Err(beckn_adapter::app::AppError::Flows(d)) => panic!(
                "flows do not compile:\n{}",
                beckn_adapter::config::diagnostic::render_all(&d)
            ),
            Err(e) => panic!("the adapter cannot be built: {e}"),
        };
        let mut bound = Listeners::new();
        for listener in listeners {
            bound.add(listener).expect("a bound listener");
        }
        let started = TestApp {
            flows: app.flows().clone(),
            services: app.services().clone(),
            reloader: app.reloader().clone(),
            admin_addr,
            store_dir,
        };
        tokio::spawn(async move {
            if let Err(e) = app.run(bound, shutdown).await {
                panic!("the adapter stopped: {e}");
            }
        });
        started
    }
}

/// Settings that run the adapter on `clock`, a clock the test moves (for `configure`).
pub fn on_clock(clock: &Arc<ManualClock>) -> impl FnOnce(&mut Settings) + use<> {
    let clock = clock.clone();
    move |settings| settings.clock = clock
}

/// Moves `clock` on by `by` in steps of `step`, letting the outbox act at every step: after
/// each, waits until every message due at the clock's time has been sent or given a later
/// time (none is due, none is under way), so no attempt outlives a jump. Panics if the outbox
/// does not catch up within 10 s.
pub async fn advance_outbox(
    services: &Services,
    clock: &ManualClock,
    by: Duration,
    step: Duration,
) {
    let mut moved = Duration::ZERO;
    while moved < by {
        let next = step.min(by - moved);
        clock.advance(next);
        moved += next;
        let caught_up = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let due = services.outbox.store.next_due().await.expect("next due");
                let idle = services.outbox.under_way() == 0;
                if idle && due.is_none_or(|at| at > clock.now_ms()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        assert!(caught_up.is_ok(), "the outbox did not take up what was due");
    }
}

impl Network {
    /// Starts everything on ephemeral loopback ports. `erp_url` overrides where the flow's
    /// ERP backend points (to test an ERP that is down, say).
    pub async fn start_with(erp_url: Option<String>) -> Network {
        Self::start_tree(&repo().join("flows"), erp_url).await
    }

    /// Like [`Network::start_with`], serving the flows in `flows_dir` (with its sibling
    /// `mappings/` and `schemas/`), for trees a test has modified. It must hold the
    /// greenfield-lab flow.
    pub async fn start_tree(flows_dir: &Path, erp_url: Option<String>) -> Network {
        Self::start_env(flows_dir, erp_url, HashMap::new()).await
    }

    /// Like [`Network::start_tree`], with extra environment variables for the flows.
    pub async fn start_env(
        flows_dir: &Path,
        erp_url: Option<String>,
        extra_env: HashMap<String, String>,
    ) -> Network {
        Self::start_app(flows_dir, erp_url, extra_env, Vec::new(), |_| {}).await
    }

    /// Like [`Network::start_env`], with the adapter's settings changed by `configure` and
    /// `listeners` bound to addresses it names. Only the greenfield-lab flow is served (on the
    /// network's BPP address); the others are compiled but have no listener.
    pub async fn start_app(
        flows_dir: &Path,
        erp_url: Option<String>,
        extra_env: HashMap<String, String>,
        listeners: Vec<TcpListener>,
        configure: impl FnOnce(&mut Settings),
    ) -> Network {
        Self::start_app_until(
            flows_dir,
            erp_url,
            extra_env,
            listeners,
            configure,
            std::future::pending(),
        )
        .await
    }

    /// Like [`Network::start_app`], with the adapter running until `shutdown`.
    pub async fn start_app_until(
        flows_dir: &Path,
        erp_url: Option<String>,
        extra_env: HashMap<String, String>,
        listeners: Vec<TcpListener>,
        configure: impl FnOnce(&mut Settings),
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Network {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("BECKN_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .try_init();

        let (bap_listener, bap_addr) = bind().await;
        let bap = Arc::new(Inbox::default());
        let bap_router = Router::new()
            .route("/{action}", post(record))
            .with_state(bap.clone());
        tokio::spawn(async move { axum::serve(bap_listener, bap_router).await });

        let (bpp_listener, bpp_addr) = bind().await;
        let bpp_url = format!("http://{bpp_addr}");
        let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig {
            // status changes of GFSL orders go to the flow's events webhook
            webhook: Some(sample_erp::WebhookConfig {
                secret: "test-only-webhook-secret".into(),
                lab_urls: [("GFSL".to_string(), format!("{bpp_url}/erp/events"))].into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let (erp_listener, erp_addr) = bind().await;
        tokio::spawn(erp.clone().serve(erp_listener, std::future::pending()));
        let env: HashMap<String, String> = HashMap::from([
            (
                "GFSL_ERP_URL".into(),
                erp_url.unwrap_or_else(|| format!("http://{erp_addr}/api/v1/labs/GFSL")),
            ),
            ("GFSL_LISTEN".into(), bpp_addr.to_string()),
            ("GFSL_PUBLIC_URL".into(), bpp_url.clone()),
            ("FARMER_APP_URL".into(), format!("http://{bap_addr}")),
            (
                "KTH_ERP_URL".into(),
                format!("http://{erp_addr}/api/v1/labs/KTH"),
            ),
        ]);
        let mut env = env;
        env.extend(extra_env);
        let listeners = std::iter::once(bpp_listener).chain(listeners).collect();
        let app = TestApp::start_until(
            flows_dir,
            env,
            listeners,
            |settings| {
                settings.served = Served::Only(vec!["greenfield-lab".into()]);
                configure(settings);
            },
            shutdown,
        )
        .await;

        Network {
            erp,
            erp_addr,
            bpp_url,
            bap_url: format!("http://{bap_addr}"),
            bap,
            flows: app.flows,
            services: app.services,
            reloader: app.reloader,
            admin_addr: app.admin_addr,
            http: reqwest::Client::new(),
            sent: Mutex::default(),
            _store_dir: app.store_dir,
        }
    }

    pub async fn start() -> Network {
        Self::start_with(None).await
    }

    /// Callbacks that answer requests this test sent (unsolicited ones left out).
    pub fn answered(&self) -> usize {
        let sent = self.sent.lock().unwrap();
        self.bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.body["context"]["message_id"]
                    .as_str()
                    .is_some_and(|id| sent.contains(id))
            })
            .count()
    }

    /// A Beckn request body for `action` with a fresh context in `transaction_id`.
    pub fn request(&self, action: &str, transaction_id: &str, message: Value) -> Value {
        let mut context = json!({
            "domain": "agri.soil",
            "action": action,
            "version": "1.1.0",
            "bap_id": BAP_ID,
            "bap_uri": self.bap_url,
            "transaction_id": transaction_id,
            "message_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": jiff::Timestamp::now().to_string(),
            "ttl": "PT30S",
            "location": {"city": {"code": "std:011"}, "country": {"code": "IND"}},
        });
        if action != "search" {
            context["bpp_id"] = json!(GFSL_ID);
            context["bpp_uri"] = json!(self.bpp_url);
        }
        json!({"context": context, "message": message})
    }

    /// POSTs raw bytes, signed by the farmer app, to an endpoint of the BPP; returns status
    /// and JSON body.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let auth = bap_signature(&body);
        self.post_with(
            path,
            content_type,
            body,
            &[("authorization", auth.as_str())],
        )
        .await
    }

    /// POSTs raw bytes with exactly the given extra headers (no signature unless given).
    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        if let Some(id) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["context"]["message_id"].as_str().map(str::to_string))
        {
            self.sent.lock().unwrap().insert(id);
        }
        let mut req = self
            .http
            .post(format!("{}/{}", self.bpp_url, path.trim_start_matches('/')))
            .header("content-type", content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.expect("adapter reachable");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Sends a request, asserts it is ACKed, and waits for its callback.
    pub async fn call(&self, action: &str, transaction_id: &str, message: Value) -> Value {
        let body = self.request(action, transaction_id, message);
        let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
        let (status, ack) = self
            .post_raw(
                action,
                "application/json",
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(status, 200, "{action} not ACKed: {ack}");
        assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
        self.bap
            .wait(
                &format!("on_{action}"),
                &message_id,
                Duration::from_secs(10),
            )
            .await
    }
}

/// Starts a sample LIMS (the lab system of the bhoomi-lab flow) on a loopback port of its
/// own; returns it and its base URL, for `BHOOMI_LIMS_URL`.
pub async fn start_lims(config: sample_lims::LimsConfig) -> (sample_lims::SampleLims, String) {
    let lims = sample_lims::SampleLims::new(config);
    let (listener, addr) = bind().await;
    tokio::spawn(lims.clone().serve(listener, std::future::pending()));
    (lims, format!("http://{addr}"))
}

/// Loads flows with an injected environment, panicking with the diagnostics on failure.
pub fn load_flows(flows_dir: &Path, env: &HashMap<String, String>) -> CompiledSet {
    match compile::load(&Layout::from_flows_dir(flows_dir), env) {
        Ok(set) => set,
        Err(d) => panic!(
            "flows do not compile:\n{}",
            beckn_adapter::config::diagnostic::render_all(&d)
        ),
    }
}

/// A scratch copy of the repository's `mappings/`, `schemas/` and `registry/` with a `flows/`
/// directory holding only the named flow files (so a test tree does not depend on other flows).
pub fn temp_tree(flow_files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["mappings", "schemas", "registry"] {
        if repo().join(sub).is_dir() {
            copy_dir(&repo().join(sub), &dir.path().join(sub));
        }
    }
    std::fs::create_dir_all(dir.path().join("flows")).expect("create flows/");
    for f in flow_files {
        std::fs::copy(
            repo().join("flows").join(f),
            dir.path().join("flows").join(f),
        )
        .unwrap_or_else(|e| panic!("copy flows/{f}: {e}"));
    }
    dir
}

/// Copies the directory `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}
