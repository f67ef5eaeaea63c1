//! Nothing ACKed is lost: requests are recorded before their ACK, duplicates do not run twice,
//! callbacks wait out a buyer app that is down, and a killed adapter finishes its work after a
//! restart.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};

use beckn_adapter::clock::{Clock, ManualClock};

use crate::common::{
    BAP_ID, GFSL_ID, Inbox, Network, TestApp, advance_outbox, bap_signature, bind, on_clock,
    record, repo,
};

/// A loopback port nothing listens on yet.
pub async fn free_port() -> SocketAddr {
    let (listener, addr) = bind().await;
    drop(listener);
    addr
}

/// Starts the BAP stand-in on `addr` and returns its inbox.
pub async fn stand_in_at(addr: SocketAddr) -> Arc<Inbox> {
    let inbox = Arc::new(Inbox::default());
    let router = Router::new()
        .route("/{action}", post(record))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("rebind the stand-in port");
    tokio::spawn(async move { axum::serve(listener, router).await });
    inbox
}

pub async fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like `wait_until`, for a check that must itself await (a store query): blocking on it
/// inside the test's runtime could starve the very tasks that answer it.
pub async fn wait_until_async<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, check()).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_repeated_message_id_is_acknowledged_but_not_run_again() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let order = json!({"order": {"provider": {"id": "GFSL"},
        "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
            "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}});
    let body = serde_json::to_vec(&net.request("confirm", &txn, order)).unwrap();
    for _ in 0..3 {
        let (status, ack) = net
            .post_raw("confirm", "application/json", body.clone())
            .await;
        assert_eq!(
            (status, ack["message"]["ack"]["status"].as_str()),
            (200, Some("ACK"))
        );
    }
    let message_id = serde_json::from_slice::<Value>(&body).unwrap()["context"]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    net.bap
        .wait("on_confirm", &message_id, Duration::from_secs(10))
        .await;
    // settle: any further (wrong) runs would have produced callbacks by now
    let outbox = &net.services.outbox.store;
    wait_until_async("the outbox to drain", Duration::from_secs(10), || async {
        outbox.counts().await.is_ok_and(|c| c.pending == 0)
    })
    .await;
    assert_eq!(
        net.erp.orders().len(),
        1,
        "one ERP order for three deliveries of one message"
    );
    assert_eq!(net.bap.count(), 1, "one callback");
}

#[tokio::test]
async fn callbacks_wait_out_a_buyer_app_that_is_down() {
    let bap_addr = free_port().await;
    let bap_url = format!("http://{bap_addr}");
    // The adapter runs on a clock the test moves: 30 s of the app being down pass at once.
    let clock = ManualClock::starting_now();
    let building = Instant::now();
    let net = Network::start_app(
        &repo().join("flows"),
        None,
        HashMap::from([("FARMER_APP_URL".to_string(), bap_url.clone())]),
        Vec::new(),
        on_clock(&clock),
    )
    .await;
    // The requests are signed by the real clock: the adapter's catches up with the time its
    // flows took to compile (on a busy machine, longer than the signature skew).
    clock.advance(building.elapsed());
    let send = |ttl: &str| {
        let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
        body["context"]["bap_uri"] = json!(bap_url);
        body["context"]["ttl"] = json!(ttl);
        let id = body["context"]["message_id"].as_str().unwrap().to_string();
        (id, serde_json::to_vec(&body).unwrap())
    };
    let (patient, patient_body) = send("PT2M");
    let (hasty, hasty_body) = send("PT5S");
    for body in [patient_body, hasty_body] {
        let (status, ack) = net.post_raw("search", "application/json", body).await;
        assert_eq!(status, 200, "{ack}");
    }
    // Both callbacks are in the outbox before the clock moves.
    let store = &net.services.outbox.store;
    let queued = tokio::time::timeout(Duration::from_secs(20), async {
        while store.counts().await.unwrap().pending < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(queued.is_ok(), "both callbacks were queued");
    // The buyer app is down for 30 s: nothing listens on its registered address.
    let down_since = clock.now();
    advance_outbox(
        &net.services,
        &clock,
        Duration::from_secs(30),
        Duration::from_millis(250),
    )
    .await;
    let inbox = stand_in_at(bap_addr).await;
    // The clock moves on, a little at a time, until the next retry reaches the app.
    let step = Duration::from_millis(100);
    let arrived = tokio::time::timeout(Duration::from_secs(20), async {
        while inbox.count() == 0 {
            advance_outbox(&net.services, &clock, step, step).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(arrived.is_ok(), "a callback reached the app once it was up");
    let on_search = inbox
        .wait("on_search", &patient, Duration::from_secs(20))
        .await;
    assert!(on_search["message"]["catalog"]["providers"][0]["items"].is_array());
    assert!(clock.now().duration_since(down_since) >= jiff::SignedDuration::from_secs(30));
    // the one whose ttl ran out while the app was down is a dead letter with its last error
    let dead = store.dead_letters(10).await.unwrap();
    let buried = dead
        .iter()
        .find(|d| d.message_id == hasty)
        .expect("dead letter");
    assert!(buried.attempts > 1, "{buried:?}");
    let err = buried.last_error.as_deref().unwrap_or_default();
    assert!(err.contains("deadline passed"), "{err}");
    assert!(inbox.count() == 1, "the expired callback was not sent late");
}

/// A child adapter process serving the shipped flows, on ports chosen by the test.
pub struct Adapter {
    pub env: HashMap<String, String>,
    pub store: String,
    pub child: Option<Child>,
}

impl Adapter {
    pub fn spawn(&mut self) {
        // A 2 s lease unless the test chose one (BECKN_WORK_LEASE).
        let lease = self
            .env
            .get("BECKN_WORK_LEASE")
            .map_or("2s", String::as_str);
        let child = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
            .args([
                "serve",
                "flows",
                "--store",
                &self.store,
                "--work-lease",
                lease,
            ])
            .current_dir(repo())
            .env_clear()
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("adapter starts");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_killed_adapter_delivers_every_acknowledged_callback_after_restart() {
    let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
    let (erp_listener, erp_addr) = bind().await;
    tokio::spawn(erp.clone().serve(erp_listener, std::future::pending()));
    let bap_addr = free_port().await;
    let bap = stand_in_at(bap_addr).await;
    let gfsl = free_port().await;
    let dir = tempfile::tempdir().unwrap();
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
                format!("http://{erp_addr}/api/v1/labs/GFSL"),
            ),
            (
                "KTH_ERP_URL".into(),
                format!("http://{erp_addr}/api/v1/labs/KTH"),
            ),
            ("BECKN_LOG".into(), "warn".into()),
            ("BECKN_ADMIN".into(), free_port().await.to_string()),
        ]),
        store: format!("sqlite://{}", dir.path().join("store.db").display()),
        child: None,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let health = format!("http://{gfsl}/health");
    let up = || {
        let http = http.clone();
        let health = health.clone();
        async move {
            let start = Instant::now();
            while http.get(&health).send().await.is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "adapter did not start"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    adapter.spawn();
    up().await;

    let search = |http: reqwest::Client| async move {
        let body = json!({
            "context": {"domain": "agri.soil", "action": "search", "version": "1.1.0",
                "bap_id": BAP_ID, "bap_uri": format!("http://{bap_addr}"),
                "transaction_id": uuid::Uuid::new_v4().to_string(),
                "message_id": uuid::Uuid::new_v4().to_string(),
                "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT1M"},
            "message": {}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let id = body["context"]["message_id"].as_str().unwrap().to_string();
        let acked = http
            .post(format!("http://{gfsl}/search"))
            .header("content-type", "application/json")
            .header("authorization", bap_signature(&bytes))
            .body(bytes)
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .is_some();
        (id, acked)
    };
    // Steady load: batches of concurrent signed searches; the kill lands mid-batch.
    let mut acked: HashSet<String> = HashSet::new();
    let mut refused = 0;
    let mut in_flight_at_kill = 0;
    for round in 0..30 {
        if round == 10 {
            // A slow ERP keeps acknowledged searches in the middle of their flows...
            erp.set_fault(Some(sample_erp::Fault::Slow(Duration::from_millis(400))));
        }
        if round == 16 {
            erp.set_fault(None);
            adapter.spawn();
            up().await;
        }
        let batch: Vec<_> = (0..10)
            .map(|_| tokio::spawn(search(http.clone())))
            .collect();
        if round == 12 {
            // ...when the adapter is killed, while this batch is being received.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let answered: HashSet<String> = bap
                .raw
                .lock()
                .unwrap()
                .iter()
                .filter_map(|r| r.body["context"]["message_id"].as_str().map(str::to_string))
                .collect();
            in_flight_at_kill = acked.iter().filter(|id| !answered.contains(*id)).count();
            adapter.kill();
        }
        for t in batch {
            let (id, ok) = t.await.unwrap();
            if ok {
                acked.insert(id);
            } else {
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(acked.len() >= 200, "load was served: {} acked", acked.len());
    assert!(refused > 0, "some requests met the dead adapter");
    assert!(
        in_flight_at_kill > 0,
        "the kill caught acknowledged work unanswered"
    );
    let delivered = || -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for r in bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.action == "on_search")
        {
            let id = r.body["context"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            *seen.entry(id).or_insert(0) += 1;
        }
        seen
    };
    wait_until(
        "every acknowledged search to be answered",
        Duration::from_secs(60),
        || {
            let seen = delivered();
            acked.iter().all(|id| seen.contains_key(id))
        },
    )
    .await;
    let seen = delivered();
    let repeats: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    // Only what was being sent at the moment of the kill may arrive twice.
    assert!(repeats.len() <= 64, "{} repeated callbacks", repeats.len());
    assert!(
        seen.keys().all(|id| acked.contains(id)),
        "no callback for a request that was not acknowledged"
    );
    for r in bap.raw.lock().unwrap().iter() {
        assert_eq!(r.body["context"]["bpp_id"], GFSL_ID);
        assert!(r.authorization.is_some(), "callbacks are signed");
    }
    eprintln!(
        "crash test: {} acknowledged, {} unanswered at the kill, {} refused while down, {} delivered, {} repeated",
        acked.len(),
        in_flight_at_kill,
        refused,
        seen.len(),
        repeats.len()
    );
}

/// A callback handed straight to the worker is recorded as taken by its process; if that
/// process stops before sending it, the next run on the same store frees the claim at start
/// and sends it, without waiting for the lease to end.
#[tokio::test]
async fn a_callback_handed_to_a_worker_that_never_ran_is_sent_by_the_next_run() {
    use beckn_adapter::app::{App, Served, Settings};
    use beckn_adapter::compile::Layout;
    use beckn_adapter::store::NewOutbox;

    const LEASE: Duration = Duration::from_secs(600);
    let bap_addr = free_port().await;
    let bap = stand_in_at(bap_addr).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let body = json!({"context": {"action": "on_search", "message_id": "m-handed"}, "message": {}});
    let item = NewOutbox {
        flow: "greenfield-lab".into(),
        kind: "callback".into(),
        url: format!("http://{bap_addr}/on_search"),
        action: "on_search".into(),
        transaction_id: "t-handed".into(),
        message_id: "m-handed".into(),
        body: bytes::Bytes::from(body.to_string()),
        deadline: None,
        completes: None,
        order: None,
        not_before: None,
        sequence: None,
        claimed_by: None,
        steps: None,
    };
    {
        // The first run is built but never runs: its outbox worker never starts.
        let env: HashMap<String, String> = HashMap::new();
        let mut settings = Settings::new(
            Layout::from_flows_dir(repo().join("flows")),
            Arc::new(env),
            &url,
        );
        settings.delivery.lease = LEASE;
        let first = App::build(settings).await.expect("the first run builds");
        let store = first.services().outbox.store.clone();
        first.services().outbox.submit(item).await.unwrap();
        // taken by the first run: no other worker can claim it while its lease lasts
        let now = beckn_adapter::store::now_ms();
        let taken = store.claim("someone-else", now, 10, 1000).await.unwrap();
        assert!(taken.is_empty(), "{taken:?}");
        assert_eq!(store.counts().await.unwrap().pending, 1);
        drop(first);
    }
    // The next run on the same store, as `serve` runs it; the flows' own listeners and
    // backends are not part of this test.
    let second = TestApp::start(
        &repo().join("flows"),
        HashMap::new(),
        Vec::new(),
        |settings| {
            settings.store_url = url.clone();
            settings.delivery.lease = LEASE;
            settings.served = Served::Only(Vec::new());
            settings.pollers = false;
        },
    )
    .await;
    let store = second.services.outbox.store.clone();
    let got = bap
        .wait("on_search", "m-handed", Duration::from_secs(10))
        .await;
    assert_eq!(got["context"]["message_id"], "m-handed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.counts().await.unwrap().pending != 0 {
        assert!(Instant::now() < deadline, "the message stayed pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request accepted by an earlier run and found again after its ttl is not run: within the
/// flow's `callback_deadline` (counted from its arrival) it is answered with a stale-request
/// error, and the ERP never hears of it.
#[tokio::test]
async fn a_request_recovered_after_its_ttl_is_answered_with_an_error_and_not_run() {
    let tree = crate::common::temp_tree(&["greenfield-lab.yaml"]);
    let path = tree.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).expect("flow file");
    std::fs::write(
        &path,
        format!("{flow}\nlimits:\n  callback_deadline: 10m\n"),
    )
    .expect("write flow file");
    // Recovery is started below, once the earlier run's request is in the store.
    let net = Network::start_app(
        &tree.path().join("flows"),
        None,
        HashMap::new(),
        Vec::new(),
        |settings| settings.recovery = false,
    )
    .await;
    let txn = uuid::Uuid::new_v4().to_string();
    let mut body = net.request(
        "confirm",
        &txn,
        json!({"order": {"provider": {"id": "GFSL"},
            "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
            "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
                "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}}),
    );
    let sent_at = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(10))
        .expect("a time ten seconds ago");
    body["context"]["timestamp"] = json!(sent_at.to_string());
    body["context"]["ttl"] = json!("PT1S");
    let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
    let store = &net.services.outbox.store;
    let accepted = store
        .accept(beckn_adapter::store::Inbound {
            key: beckn_adapter::store::InboundKey {
                flow: "greenfield-lab".into(),
                action: "confirm".into(),
                message_id: message_id.clone(),
            },
            transaction_id: txn,
            counterpart: BAP_ID.into(),
            role: "bpp".into(),
            body: serde_json::to_vec(&body).unwrap().into(),
            headers: "{}".into(),
            callback_base: net.bap_url.clone(),
            owner: "an-earlier-run".into(),
            lease_until: beckn_adapter::store::now_ms() + 60_000,
        })
        .await
        .unwrap();
    assert_eq!(accepted, beckn_adapter::store::Admission::New);
    // What the next run's recovery does at start.
    tokio::spawn(beckn_adapter::roles::rescue_unfinished(
        net.flows.clone(),
        net.services.clone(),
        std::future::pending(),
    ));
    let on_confirm = net
        .bap
        .wait("on_confirm", &message_id, Duration::from_secs(10))
        .await;
    assert_eq!(on_confirm["error"]["code"], "30022", "{on_confirm}");
    assert!(net.erp.orders().is_empty(), "the ERP never heard of it");
}
