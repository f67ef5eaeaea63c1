//! Two adapter processes on one PostgreSQL store, one of them paused (SIGSTOP), killed or
//! slow: claims are renewed while their work runs and fenced when lost, and a request taken
//! over after its ttl is not run. The ERP sits behind a gate the test controls (it counts the
//! calls, and holds or slows order creation). Like the other PostgreSQL tests these are
//! `#[ignore]`d without `--ignored`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use beckn_adapter::store::OutboxStore;
use beckn_adapter::store::postgres::PgStore;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::common::{BAP_ID, GFSL_ID, Inbox, bap_signature, bind, record};
use crate::durability::{Adapter, free_port, stand_in_at, wait_until};
use crate::postgres::TestDb;

/// In front of the sample ERP: records every call, and can hold the next order creations
/// until released (in arrival order), or slow every order creation down.
struct Gate {
    erp: SocketAddr,
    http: reqwest::Client,
    /// (method, path, idempotency key) of each call, in arrival order.
    calls: Mutex<Vec<(String, String, Option<String>)>>,
    /// How many of the next order creations to hold.
    holds: AtomicUsize,
    /// Order creations held so far (each one's place in line).
    held: AtomicUsize,
    /// How many held order creations may go on.
    released: watch::Sender<usize>,
    order_delay: Mutex<Option<Duration>>,
}

impl Gate {
    async fn start(erp: SocketAddr) -> (Arc<Gate>, SocketAddr) {
        let gate = Arc::new(Gate {
            erp,
            http: reqwest::Client::new(),
            calls: Mutex::new(Vec::new()),
            holds: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            released: watch::channel(0).0,
            order_delay: Mutex::new(None),
        });
        let (listener, addr) = bind().await;
        let router = Router::new().fallback(forward).with_state(gate.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (gate, addr)
    }

    /// Order creations (`POST …/orders`) that reached the gate.
    fn orders_placed(&self) -> usize {
        self.order_keys().len()
    }

    /// The idempotency key of each order creation that reached the gate.
    fn order_keys(&self) -> Vec<Option<String>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == "POST" && p.ends_with("/orders"))
            .map(|(_, _, key)| key.clone())
            .collect()
    }
}

async fn forward(
    State(gate): State<Arc<Gate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    gate.calls
        .lock()
        .unwrap()
        .push((method.to_string(), uri.path().to_string(), key));
    if method == Method::POST && uri.path().ends_with("/orders") {
        let hold = gate
            .holds
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if hold {
            let place = gate.held.fetch_add(1, Ordering::SeqCst);
            let mut released = gate.released.subscribe();
            let _ = released.wait_for(|r| *r > place).await;
        }
        let delay = *gate.order_delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = gate
        .http
        .request(method, format!("http://{}{path}", gate.erp))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            req = req.header(name, value);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let body = resp.bytes().await.unwrap_or_default();
            (status, [("content-type", "application/json")], body).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// One pair of adapter processes at a time: they start faster on a busy machine.
static ONE_PAIR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Two adapter processes serving the shipped flows on one database, with a lease of `lease`,
/// their ERP behind a gate, their callbacks to one buyer-app stand-in.
struct Pair {
    store: PgStore,
    erp: sample_erp::SampleErp,
    gate: Arc<Gate>,
    bap: Arc<Inbox>,
    bap_url: String,
    adapters: Vec<Adapter>,
    urls: Vec<String>,
    admins: Vec<String>,
    http: reqwest::Client,
    /// Dropped after the processes above are stopped.
    _db: TestDb,
    /// Last: released once the processes above are stopped.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// A buyer-app stand-in on `addr` that records each callback at once and answers it only
/// after `delay` (a slow receiver).
async fn slow_stand_in_at(addr: SocketAddr, delay: Duration) -> Arc<Inbox> {
    let inbox = Arc::new(Inbox::default());
    let router = Router::new()
        .route("/{action}", axum::routing::post(record))
        .with_state(inbox.clone())
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                let answer = next.run(req).await;
                tokio::time::sleep(delay).await;
                answer
            },
        ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the stand-in port");
    tokio::spawn(async move { axum::serve(listener, router).await });
    inbox
}

impl Pair {
    async fn start(lease: &str) -> Pair {
        Pair::start_with(lease, None).await
    }

    /// Like [`Pair::start`], with a buyer app that takes `bap_delay` to answer each callback.
    async fn start_with(lease: &str, bap_delay: Option<Duration>) -> Pair {
        let turn = ONE_PAIR.lock().await;
        let db = TestDb::create().await;
        let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
        let (erp_listener, erp_addr) = bind().await;
        tokio::spawn(erp.clone().serve(erp_listener, std::future::pending()));
        let (gate, gate_addr) = Gate::start(erp_addr).await;
        let bap_addr = free_port().await;
        let bap = match bap_delay {
            Some(delay) => slow_stand_in_at(bap_addr, delay).await,
            None => stand_in_at(bap_addr).await,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        // Migrations first, once, so that the two processes do not race to create the schema.
        let store = PgStore::open(&db.url).await.unwrap();
        let (mut adapters, mut urls, mut admins) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..2 {
            let gfsl = free_port().await;
            let admin = free_port().await;
            urls.push(format!("http://{gfsl}"));
            admins.push(format!("http://{admin}"));
            let mut adapter = Adapter {
                env: HashMap::from([
                    ("GFSL_LISTEN".into(), gfsl.to_string()),
                    ("GFSL_PUBLIC_URL".into(), format!("http://{gfsl}")),
                    ("KTH_LISTEN".into(), free_port().await.to_string()),
                    ("BHOOMI_LISTEN".into(), free_port().await.to_string()),
                    ("GATEWAY_LISTEN".into(), free_port().await.to_string()),
                    ("FARMER_APP_LISTEN".into(), free_port().await.to_string()),
                    ("FARMER_APP_URL".into(), format!("http://{bap_addr}")),
                    (
                        "GFSL_ERP_URL".into(),
                        format!("http://{gate_addr}/api/v1/labs/GFSL"),
                    ),
                    (
                        "KTH_ERP_URL".into(),
                        format!("http://{gate_addr}/api/v1/labs/KTH"),
                    ),
                    ("BECKN_LOG".into(), "warn".into()),
                    ("BECKN_ADMIN".into(), admin.to_string()),
                    ("BECKN_WORK_LEASE".into(), lease.into()),
                ]),
                store: db.url.clone(),
                child: None,
            };
            adapter.spawn();
            adapters.push(adapter);
        }
        for url in &urls {
            let start = Instant::now();
            while http.get(format!("{url}/health")).send().await.is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "adapter did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Pair {
            _turn: turn,
            _db: db,
            store,
            erp,
            gate,
            bap,
            bap_url: format!("http://{bap_addr}"),
            adapters,
            urls,
            admins,
            http,
        }
    }

    /// Sends a signed `confirm` of a new transaction with `ttl` to adapter `i`; returns its
    /// message id once it is acknowledged.
    async fn confirm(&self, i: usize, ttl: &str) -> String {
        let message_id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "context": {"domain": "agri.soil", "action": "confirm", "version": "1.1.0",
                "bap_id": BAP_ID, "bap_uri": self.bap_url,
                "bpp_id": GFSL_ID, "bpp_uri": self.urls[i],
                "transaction_id": uuid::Uuid::new_v4().to_string(),
                "message_id": message_id,
                "timestamp": jiff::Timestamp::now().to_string(), "ttl": ttl,
                "location": {"city": {"code": "std:011"}, "country": {"code": "IND"}}},
            "message": {"order": {"provider": {"id": "GFSL"},
                "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
                "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
                    "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let resp = self
            .http
            .post(format!("{}/confirm", self.urls[i]))
            .header("content-type", "application/json")
            .header("authorization", bap_signature(&bytes))
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let ack: Value = resp.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), ack["message"]["ack"]["status"].as_str()),
            (200, Some("ACK")),
            "{ack}"
        );
        message_id
    }

    /// The callbacks the buyer app received for `message_id`.
    fn callbacks(&self, message_id: &str) -> Vec<Value> {
        self.bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body["context"]["message_id"] == message_id)
            .map(|r| r.body.clone())
            .collect()
    }

    /// Adapter `i`'s `adapter_claims_lost_total{work}`.
    async fn claims_lost(&self, i: usize, work: &str) -> u64 {
        let Ok(resp) = self
            .http
            .get(format!("{}/metrics", self.admins[i]))
            .send()
            .await
        else {
            return 0;
        };
        let text = resp.text().await.unwrap_or_default();
        let prefix = format!("adapter_claims_lost_total{{work=\"{work}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.adapters[i].child.as_ref().expect("running").id();
        let ok = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pid}");
    }
}

async fn eventually(what: &str, deadline: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn a_process_paused_past_its_lease_and_resumed_changes_nothing_and_sends_nothing() {
    let pair = Pair::start("1s").await;
    // Both runs' order calls wait for the test.
    pair.gate.holds.store(2, Ordering::SeqCst);
    let message_id = pair.confirm(0, "PT1M").await;
    wait_until(
        "the first process to call the ERP",
        Duration::from_secs(10),
        || pair.gate.orders_placed() == 1,
    )
    .await;
    // The first process stands still with its order call open, past its lease.
    pair.signal(0, "-STOP");
    let paused = Instant::now();
    wait_until(
        "the other process to take the request over and call the ERP",
        Duration::from_secs(15),
        || pair.gate.orders_placed() == 2,
    )
    .await;
    let taken_over_after = paused.elapsed();
    // The ERP answers the paused process's call; it resumes and gets that answer while the
    // other process's run is still under way.
    pair.gate.released.send_replace(1);
    pair.signal(0, "-CONT");
    eventually(
        "the resumed process to find its claim lost",
        Duration::from_secs(15),
        async || pair.claims_lost(0, "request").await >= 1,
    )
    .await;
    pair.gate.released.send_replace(2);
    wait_until(
        "the other process to answer",
        Duration::from_secs(15),
        || !pair.callbacks(&message_id).is_empty(),
    )
    .await;
    eventually("the outbox to drain", Duration::from_secs(15), async || {
        pair.store.counts().await.is_ok_and(|c| c.pending == 0)
    })
    .await;
    let callbacks = pair.callbacks(&message_id);
    assert_eq!(callbacks.len(), 1, "one callback: {callbacks:?}");
    assert!(
        callbacks[0].get("error").is_none(),
        "the answer is the order: {}",
        callbacks[0]
    );
    assert_eq!(pair.store.counts().await.unwrap().dead, 0);
    let keys = pair.gate.order_keys();
    assert!(
        keys[0].is_some() && keys[0] == keys[1],
        "both runs carry one idempotency key: {keys:?}"
    );
    assert_eq!(pair.erp.orders().len(), 1, "booked once");
    eprintln!("paused process: taken over {taken_over_after:?} after the pause (lease 1 s)");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn a_flow_longer_than_the_lease_runs_once() {
    let pair = Pair::start("1s").await;
    // Order creation takes 2.6 leases (within the backend's 3 s timeout).
    *pair.gate.order_delay.lock().unwrap() = Some(Duration::from_millis(2_600));
    let message_id = pair.confirm(0, "PT1M").await;
    wait_until("the callback", Duration::from_secs(15), || {
        !pair.callbacks(&message_id).is_empty()
    })
    .await;
    eventually("the outbox to drain", Duration::from_secs(15), async || {
        pair.store.counts().await.is_ok_and(|c| c.pending == 0)
    })
    .await;
    assert_eq!(pair.gate.orders_placed(), 1, "the flow ran once");
    let callbacks = pair.callbacks(&message_id);
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert!(callbacks[0].get("error").is_none(), "{}", callbacks[0]);
    for i in 0..2 {
        assert_eq!(pair.claims_lost(i, "request").await, 0);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn a_delivery_longer_than_the_lease_is_sent_once() {
    // The buyer app takes 2.6 leases to answer each callback (within the 5 s attempt timeout).
    let pair = Pair::start_with("1s", Some(Duration::from_millis(2_600))).await;
    let message_id = pair.confirm(0, "PT1M").await;
    eventually(
        "the callback to be delivered",
        Duration::from_secs(20),
        async || {
            !pair.callbacks(&message_id).is_empty()
                && pair.store.counts().await.is_ok_and(|c| c.pending == 0)
        },
    )
    .await;
    assert_eq!(pair.callbacks(&message_id).len(), 1, "sent once");
    assert_eq!(pair.store.counts().await.unwrap().dead, 0);
    for i in 0..2 {
        assert_eq!(pair.claims_lost(i, "delivery").await, 0);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn a_request_recovered_after_its_ttl_does_not_reach_the_erp() {
    let mut pair = Pair::start("1s").await;
    pair.gate.holds.store(1, Ordering::SeqCst);
    let sent = Instant::now();
    let message_id = pair.confirm(0, "PT1S").await;
    wait_until(
        "the first process to call the ERP",
        Duration::from_secs(10),
        || pair.gate.orders_placed() == 1,
    )
    .await;
    // Killed once the ttl has passed, its order call still open.
    tokio::time::sleep(Duration::from_millis(1_200).saturating_sub(sent.elapsed())).await;
    pair.adapters[0].kill();
    let killed = Instant::now();
    let store = &pair.store;
    eventually(
        "the request to be recorded as expired",
        Duration::from_secs(15),
        async || {
            store
                .dead_letters(10)
                .await
                .unwrap_or_default()
                .iter()
                .any(|d| d.message_id == message_id)
        },
    )
    .await;
    let taken_over_after = killed.elapsed();
    let dead = store.dead_letters(10).await.unwrap();
    let expired = dead.iter().find(|d| d.message_id == message_id).unwrap();
    let reason = expired.last_error.as_deref().unwrap_or_default();
    assert!(reason.starts_with("expired: its ttl ended at"), "{reason}");
    assert_eq!(expired.action, "on_confirm");
    assert_eq!(pair.gate.orders_placed(), 1, "not run again after its ttl");
    assert!(
        pair.callbacks(&message_id).is_empty(),
        "no answer after the deadline"
    );
    eprintln!("expired request: recorded {taken_over_after:?} after the kill (lease 1 s)");
}
