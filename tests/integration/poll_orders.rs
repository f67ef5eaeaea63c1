//! Order states polled from an ERP that announces nothing (`events.poll_orders`): the
//! GreenField flow confirms through a real Beckn journey with the sample ERP, and a small
//! booking service stand-in, which has no webhook and no feed, answers the state of each
//! booking; the test changes those states. Each change reaches the farmer app's stand-in
//! once as an unsolicited `on_status`, whatever the booking service or the adapter does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use beckn_adapter::app::Settings;
use beckn_adapter::roles::events::order_poller::change_id;
use beckn_adapter::roles::events::{EventSource, IncomingEvent, KnownEvent, accept_event};
use beckn_adapter::store::{OpenOrder, OrderState};
use serde_json::{Value, json};

use crate::common::{Network, bind, temp_tree};

const FLOW: &str = "greenfield-lab";
const DEADLINE: Duration = Duration::from_secs(15);

/// How the booking service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mood {
    Fine,
    /// 503 to every call.
    Down,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with JSON that has no state.
    NoState,
    /// Answers as `Fine`, after this many milliseconds.
    Slow(u64),
}

/// The booking service stand-in: a state per booking (the ERP's order number), changed by the
/// test; every call counted.
struct Bookings {
    answers: Mutex<HashMap<String, Value>>,
    calls: Mutex<HashMap<String, usize>>,
    mood: Mutex<Mood>,
    /// With OAuth2: the bearer tokens it handed out, and the authorizations it saw.
    oauth: bool,
    tokens: AtomicUsize,
    authorizations: Mutex<Vec<String>>,
    /// Calls under way, and the most there ever were at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Bookings {
    fn new(oauth: bool) -> Arc<Bookings> {
        Arc::new(Bookings {
            answers: Mutex::default(),
            calls: Mutex::default(),
            mood: Mutex::new(Mood::Fine),
            oauth,
            tokens: AtomicUsize::new(0),
            authorizations: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        })
    }

    /// Puts the booking `order` (the sample ERP's order) in `state`.
    fn set(&self, order: &Value, state: &str) {
        let mut order = order.clone();
        order["status"] = json!(state);
        let id = order["order_no"].as_str().unwrap().to_string();
        let answer = json!({"booking": id, "state": state, "order": order});
        self.answers.lock().unwrap().insert(id, answer);
    }

    fn calls(&self, id: &str) -> usize {
        self.calls.lock().unwrap().get(id).copied().unwrap_or(0)
    }

    fn set_mood(&self, mood: Mood) {
        *self.mood.lock().unwrap() = mood;
    }
}

async fn booking(
    State(b): State<Arc<Bookings>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    *b.calls.lock().unwrap().entry(id.clone()).or_default() += 1;
    if b.oauth {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        b.authorizations.lock().unwrap().push(auth.clone());
        let issued = b.tokens.load(Ordering::SeqCst);
        let valid = auth
            .strip_prefix("Bearer tok-")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= 1 && n <= issued);
        if !valid {
            return (StatusCode::UNAUTHORIZED, "no valid token").into_response();
        }
    }
    let mut mood = *b.mood.lock().unwrap();
    if let Mood::Slow(ms) = mood {
        let now = b.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        b.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        b.in_flight.fetch_sub(1, Ordering::SeqCst);
        mood = Mood::Fine;
    }
    match mood {
        Mood::Down => (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response(),
        Mood::Garbage => (StatusCode::OK, "<html>maintenance</html>").into_response(),
        Mood::NoState => axum::Json(json!({"booking": id, "status_text": "?"})).into_response(),
        Mood::Fine | Mood::Slow(_) => match b.answers.lock().unwrap().get(&id) {
            Some(answer) => axum::Json(answer.clone()).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": "NOT_FOUND"})),
            )
                .into_response(),
        },
    }
}

async fn token(State(b): State<Arc<Bookings>>, body: String) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (StatusCode::BAD_REQUEST, "grant_type").into_response();
    }
    let n = b.tokens.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(
        json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 300}),
    )
    .into_response()
}

async fn start_bookings(oauth: bool) -> (Arc<Bookings>, SocketAddr) {
    let b = Bookings::new(oauth);
    let app = Router::new()
        .route("/bookings/{id}", get(booking))
        .route("/oauth/token", post(token))
        .with_state(b.clone());
    let (listener, addr) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (b, addr)
}

/// The GreenField flow whose events come only from asking the booking service (at
/// `${BOOKINGS_URL}`) the state of each open order; `auth` is the bookings backend's auth
/// block (or nothing).
fn polling_tree(auth: &str) -> tempfile::TempDir {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let path = tree.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).unwrap();
    let events_at = flow.find("\nevents:\n").expect("the flow's events");
    let backends = "backends:\n";
    assert!(flow.contains(backends));
    let bookings =
        format!("backends:\n  bookings:\n    base_url: ${{BOOKINGS_URL}}\n    timeout: 1s\n{auth}");
    let flow = flow[..events_at].replacen(backends, &bookings, 1)
        + r#"
events:
  poll_orders:
    backend: bookings
    path: "/bookings/{{ order_id | segment }}"
    headers: { X-Booking-Ref: "{{ transaction.erp_order_id }}" }
    every: 100ms
    concurrency: 2
    state: /state
    final: [REPORT_READY, CANCELLED]
  callback: on_status
  steps:
    - name: order
      script: soil/event_order.rhai
    - name: state
      script: soil/order_state.rhai
  reply: { template: soil/on_status.j2 }
"#;
    std::fs::write(&path, flow).unwrap();
    tree
}

fn lab_order() -> Value {
    json!({"order": {"provider": {"id": "GFSL"},
        "items": [{"id": "soil-micronutrient-panel", "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
            "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}})
}

/// An adapter on the polling tree, its booking service and the tree itself.
struct Polled {
    net: Network,
    bookings: Arc<Bookings>,
    tree: tempfile::TempDir,
    env: HashMap<String, String>,
}

async fn start(oauth: bool, configure: impl FnOnce(&mut Settings)) -> Polled {
    start_until(oauth, configure, std::future::pending()).await
}

async fn start_until(
    oauth: bool,
    configure: impl FnOnce(&mut Settings),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Polled {
    let (bookings, addr) = start_bookings(oauth).await;
    let auth = if oauth {
        "    auth:\n      oauth2_client_credentials:\n        token_url: \"${BOOKINGS_URL}/oauth/token\"\n        client_id: adapter\n        client_secret: TEST-ONLY-secret\n"
    } else {
        ""
    };
    let tree = polling_tree(auth);
    let env = HashMap::from([("BOOKINGS_URL".to_string(), format!("http://{addr}"))]);
    let net = Network::start_app_until(
        &tree.path().join("flows"),
        None,
        env.clone(),
        Vec::new(),
        configure,
        shutdown,
    )
    .await;
    Polled {
        net,
        bookings,
        tree,
        env,
    }
}

impl Polled {
    /// Confirms an order through Beckn; puts its booking in `BOOKED` and waits until the
    /// adapter saw that state as the order's baseline. Returns the transaction id and the
    /// sample ERP's order.
    async fn confirmed(&self) -> (String, Value) {
        let txn = uuid::Uuid::new_v4().to_string();
        let on_confirm = self.net.call("confirm", &txn, lab_order()).await;
        assert!(on_confirm.get("error").is_none(), "{on_confirm}");
        let id = on_confirm["message"]["order"]["id"].as_str().unwrap();
        let order = self
            .net
            .erp
            .orders()
            .into_iter()
            .find(|o| o.order_no == id)
            .expect("the sample ERP's order");
        let order = serde_json::to_value(order).unwrap();
        self.bookings.set(&order, "BOOKED");
        self.wait_state(&txn, |s| s.state == "BOOKED").await;
        (txn, order)
    }

    async fn order_state(&self, txn: &str) -> Option<OrderState> {
        let store = &self.net.services.outbox.store;
        store.order_state(FLOW, txn).await.expect("store readable")
    }

    /// Waits until the saved state of `txn`'s order satisfies `ok`.
    async fn wait_state(&self, txn: &str, ok: impl Fn(&OrderState) -> bool) -> OrderState {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.order_state(txn).await.filter(|s| ok(s)) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order state of {txn}: {:?}",
                self.order_state(txn).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The unsolicited on_status callbacks of `txn` (the test sends no status request).
    fn on_status(&self, txn: &str) -> Vec<Value> {
        self.net
            .bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.action == "on_status" && r.body["context"]["transaction_id"] == txn)
            .map(|r| r.body.clone())
            .collect()
    }

    /// Waits until `txn` has `n` unsolicited on_status callbacks; returns them.
    async fn wait_on_status(&self, txn: &str, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let got = self.on_status(txn);
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} on_status for {txn}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the booking service was asked about `order` `more` times more.
    async fn wait_asked(&self, order: &Value, more: usize) {
        let id = order["order_no"].as_str().unwrap();
        let target = self.bookings.calls(id) + more;
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.bookings.calls(id) < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} asked {} times, not {target}",
                self.bookings.calls(id)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn code(on_status: &Value) -> &str {
    on_status["message"]["order"]["fulfillments"][0]["state"]["descriptor"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn state_change_arrives_unsolicited_once() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    // the baseline is no news: nothing was sent for it
    p.wait_asked(&order, 2).await;
    assert!(p.on_status(&txn).is_empty(), "{:?}", p.on_status(&txn));

    p.bookings.set(&order, "RECEIVED_AT_LAB");
    let got = p.wait_on_status(&txn, 1).await;
    let pushed = &got[0];
    assert_eq!(pushed["context"]["action"], "on_status");
    assert_eq!(pushed["context"]["transaction_id"], txn.as_str());
    assert_eq!(pushed["message"]["order"]["id"], order["order_no"]);
    assert_eq!(code(pushed), "SAMPLE-RECEIVED", "{pushed}");
    // more rounds, the same state: nothing more
    p.wait_asked(&order, 4).await;
    assert_eq!(p.on_status(&txn).len(), 1);
    let saved = p.wait_state(&txn, |s| s.state == "RECEIVED_AT_LAB").await;
    assert_eq!(saved.changes, 1);
    assert!(!saved.settled);
}

#[tokio::test]
async fn final_state_stops_polling() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    let (_witness_txn, witness) = p.confirmed().await;
    p.bookings.set(&order, "REPORT_READY");
    let got = p.wait_on_status(&txn, 1).await;
    assert_eq!(code(&got[0]), "REPORT-READY");
    p.wait_state(&txn, |s| s.settled).await;
    // the other order is still asked, round after round; the settled one no more
    let id = order["order_no"].as_str().unwrap();
    p.wait_asked(&witness, 1).await;
    let calls = p.bookings.calls(id);
    p.wait_asked(&witness, 3).await;
    assert_eq!(
        p.bookings.calls(id),
        calls,
        "a settled order is asked again"
    );
    assert_eq!(p.on_status(&txn).len(), 1);
}

#[tokio::test]
async fn erp_down_then_up_delivers_the_change_once() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    p.bookings.set_mood(Mood::Down);
    p.bookings.set(&order, "TESTING");
    p.wait_asked(&order, 3).await;
    assert!(p.on_status(&txn).is_empty());
    assert_eq!(p.order_state(&txn).await.unwrap().state, "BOOKED");
    p.bookings.set_mood(Mood::Fine);
    let got = p.wait_on_status(&txn, 1).await;
    assert_eq!(code(&got[0]), "TESTING");
    p.wait_asked(&order, 3).await;
    assert_eq!(p.on_status(&txn).len(), 1, "{:?}", p.on_status(&txn));
}

#[tokio::test]
async fn erp_garbage_or_no_state_is_no_event_and_no_crash() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    p.bookings.set(&order, "TESTING");
    p.bookings.set_mood(Mood::Garbage);
    p.wait_asked(&order, 2).await;
    p.bookings.set_mood(Mood::NoState);
    p.wait_asked(&order, 2).await;
    assert!(p.on_status(&txn).is_empty(), "{:?}", p.on_status(&txn));
    assert_eq!(p.order_state(&txn).await.unwrap().state, "BOOKED");
    // still polling, and the change is not lost
    p.bookings.set_mood(Mood::Fine);
    let got = p.wait_on_status(&txn, 1).await;
    assert_eq!(code(&got[0]), "TESTING");
}

/// An ERP that never answers in time: the call times out (the backend's 1s), the order is
/// asked again, and the change arrives once the ERP answers.
#[tokio::test]
async fn erp_answering_too_late_times_out_and_loses_nothing() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    p.bookings.set(&order, "TESTING");
    p.bookings.set_mood(Mood::Slow(3_000));
    p.wait_asked(&order, 2).await;
    assert!(p.on_status(&txn).is_empty());
    assert_eq!(p.order_state(&txn).await.unwrap().state, "BOOKED");
    p.bookings.set_mood(Mood::Fine);
    let got = p.wait_on_status(&txn, 1).await;
    assert_eq!(code(&got[0]), "TESTING");
}

/// Three open orders, `concurrency: 2`: never more than two status calls at once.
#[tokio::test]
async fn concurrency_bounds_the_status_calls_in_flight() {
    let p = start(false, |_| {}).await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(p.confirmed().await);
    }
    p.bookings.set_mood(Mood::Slow(300));
    for (_, order) in &orders {
        p.wait_asked(order, 3).await;
    }
    assert_eq!(p.bookings.max_in_flight.load(Ordering::SeqCst), 2);
}

/// A process that recorded a change's event and stopped before saving the new state: the
/// next round sees the change again, and it is acted on once.
#[tokio::test]
async fn crash_between_record_and_save_acts_once() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    let id = order["order_no"].as_str().unwrap();
    let open = OpenOrder {
        transaction_id: txn.clone(),
        erp_order_id: id.to_string(),
        seen: None,
    };
    // what the poller records for the change BOOKED -> TESTING, then "crashes"
    let mut booked = p.bookings.answers.lock().unwrap().get(id).cloned().unwrap();
    booked["state"] = json!("TESTING");
    booked["order"]["status"] = json!("TESTING");
    let set = p.net.flows.load_full();
    let flow = set.flow(FLOW).cloned().unwrap();
    let incoming = IncomingEvent {
        body: bytes::Bytes::from(booked.to_string()),
        event: booked,
        headers: "{}".into(),
        source: EventSource::OrderPoll,
        known: Some(KnownEvent {
            transaction_id: txn.clone(),
            event_id: change_id(&open, 0, "TESTING"),
        }),
    };
    let outcome = accept_event(set.clone(), flow, &p.net.services, incoming)
        .await
        .unwrap();
    assert_eq!(outcome.as_str(), "accepted");
    p.wait_on_status(&txn, 1).await;
    assert_eq!(p.order_state(&txn).await.unwrap().state, "BOOKED");

    // the ERP's booking moved; the adapter sees the change it already acted on
    p.bookings.set(&order, "TESTING");
    let saved = p.wait_state(&txn, |s| s.state == "TESTING").await;
    assert_eq!(saved.changes, 1);
    p.wait_asked(&order, 3).await;
    assert_eq!(p.on_status(&txn).len(), 1, "{:?}", p.on_status(&txn));
}

/// A reload that changes `final:` applies from the next round, without a restart.
#[tokio::test]
async fn reload_applies_changed_settings_at_the_next_round() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    let file = p.tree.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&file).unwrap();
    let finals = "final: [REPORT_READY, CANCELLED]";
    assert!(flow.contains(finals));
    std::fs::write(
        &file,
        flow.replace(finals, "final: [TESTING, REPORT_READY]"),
    )
    .unwrap();
    let outcome = p.net.reloader.reload("test");
    assert!(
        matches!(
            outcome,
            beckn_adapter::reload::ReloadOutcome::Applied { .. }
        ),
        "{outcome:?}"
    );
    // A round under way read the flow before the reload; the second call from now on is
    // made by a round that read it after.
    p.wait_asked(&order, 2).await;
    p.bookings.set(&order, "TESTING");
    p.wait_on_status(&txn, 1).await;
    let saved = p.wait_state(&txn, |s| s.state == "TESTING").await;
    assert!(saved.settled, "TESTING is final since the reload");
}

#[tokio::test]
async fn restart_on_the_same_store_sends_no_duplicate() {
    let store_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", store_dir.path().join("store.db").display());
    let on_store = |url: String| move |s: &mut Settings| s.store_url = url;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = start_until(false, on_store(url.clone()), async {
        let _ = stopped.await;
    })
    .await;
    let (txn, order) = first.confirmed().await;
    first.bookings.set(&order, "RECEIVED_AT_LAB");
    first.wait_on_status(&txn, 1).await;
    first
        .wait_state(&txn, |s| s.state == "RECEIVED_AT_LAB")
        .await;
    let _ = stop.send(());

    // the adapter again, on the same store and booking service
    let flows = first.tree.path().join("flows");
    let erp_url = format!("http://{}/api/v1/labs/GFSL", first.net.erp_addr);
    let again = Network::start_app(
        &flows,
        Some(erp_url),
        first.env.clone(),
        Vec::new(),
        on_store(url),
    )
    .await;
    let asked = |n| {
        let b = first.bookings.clone();
        let id = order["order_no"].as_str().unwrap().to_string();
        async move {
            let target = b.calls(&id) + n;
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while b.calls(&id) < target {
                assert!(tokio::time::Instant::now() < deadline, "not asked again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    asked(4).await;
    // answers go to the transaction's buyer app, the first network's stand-in
    assert_eq!(
        first.on_status(&txn).len(),
        1,
        "{:?}",
        first.on_status(&txn)
    );
    first.bookings.set(&order, "TESTING");
    let got = first.wait_on_status(&txn, 2).await;
    assert_eq!(code(&got[1]), "TESTING");
    asked(3).await;
    assert_eq!(first.on_status(&txn).len(), 2);
    drop(again);
}

#[tokio::test]
async fn oauth2_status_calls_carry_the_bearer_token() {
    let p = start(true, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    p.bookings.set(&order, "TESTING");
    p.wait_on_status(&txn, 1).await;
    let seen = p.bookings.authorizations.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|a| a.starts_with("Bearer tok-")),
        "{seen:?}"
    );
    assert!(p.bookings.tokens.load(Ordering::SeqCst) >= 1);
}

/// Two adapter processes on one PostgreSQL store: one asks at a time (the flow's lease), and
/// each change reaches the buyer app once.
#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn postgres_two_processes_send_each_change_once() {
    let db = crate::postgres::TestDb::create().await;
    let url = db.url.clone();
    let first = start(false, move |s| s.store_url = url).await;
    let (txn, order) = first.confirmed().await;
    let flows = first.tree.path().join("flows");
    let erp_url = format!("http://{}/api/v1/labs/GFSL", first.net.erp_addr);
    let url = db.url.clone();
    let second = Network::start_app(
        &flows,
        Some(erp_url),
        first.env.clone(),
        Vec::new(),
        move |s| s.store_url = url,
    )
    .await;
    first.bookings.set(&order, "RECEIVED_AT_LAB");
    first.wait_on_status(&txn, 1).await;
    first.wait_asked(&order, 4).await;
    assert_eq!(
        first.on_status(&txn).len(),
        1,
        "{:?}",
        first.on_status(&txn)
    );
    first.bookings.set(&order, "TESTING");
    let got = first.wait_on_status(&txn, 2).await;
    assert_eq!(code(&got[1]), "TESTING");
    first.wait_asked(&order, 4).await;
    assert_eq!(first.on_status(&txn).len(), 2);
    let saved = first.wait_state(&txn, |s| s.state == "TESTING").await;
    assert_eq!(saved.changes, 2);
    drop(second);
}

/// The shipped GreenField flow with its webhook events placed by the ERP's order number.
fn by_order_id_tree() -> tempfile::TempDir {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let path = tree.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).unwrap();
    let by_txn = "  transaction_id: event.client_ref";
    assert!(flow.contains(by_txn));
    let flow = flow.replacen(by_txn, "  erp_order_id: event.order.order_no", 1);
    std::fs::write(&path, flow).unwrap();
    tree
}

fn signed(body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"test-only-webhook-secret")
        .expect("HMAC key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn webhook_events_found_by_erp_order_id() {
    let tree = by_order_id_tree();
    let net = Network::start_tree(&tree.path().join("flows"), None).await;
    let txn = uuid::Uuid::new_v4().to_string();
    let on_confirm = net.call("confirm", &txn, lab_order()).await;
    let id = on_confirm["message"]["order"]["id"].as_str().unwrap();
    net.erp.advance("GFSL", id).expect("sample received");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let pushed = loop {
        let found = net
            .bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.action == "on_status" && r.body["context"]["transaction_id"] == txn)
            .map(|r| r.body.clone());
        if let Some(b) = found {
            break b;
        }
        assert!(tokio::time::Instant::now() < deadline, "no on_status");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(pushed["message"]["order"]["id"], id);

    // an order no transaction carries: acknowledged and ignored
    let event = json!({"event": "order.status_changed", "event_id": "evt-unknown-1",
        "client_ref": txn, "order": {"order_no": "GFSL-999999", "status": "TESTING"}});
    let body = serde_json::to_vec(&event).unwrap();
    let answer = net
        .http
        .post(format!("{}/erp/events", net.bpp_url))
        .header("content-type", "application/json")
        .header("x-erp-signature", signed(&body))
        .body(body)
        .send()
        .await
        .expect("adapter reachable");
    assert_eq!(answer.status().as_u16(), 202);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["status"], "ignored", "{answer}");
}

#[tokio::test]
async fn settled_order_states_are_purged_by_retention_and_never_asked_again() {
    let p = start(false, |_| {}).await;
    let (txn, order) = p.confirmed().await;
    let (open_txn, witness) = p.confirmed().await;
    p.bookings.set(&order, "REPORT_READY");
    p.wait_state(&txn, |s| s.settled).await;
    let store = &p.net.services.outbox.store;
    store
        .purge(beckn_adapter::store::now_ms() + 1)
        .await
        .expect("purged");
    assert_eq!(
        p.order_state(&txn).await,
        None,
        "the settled state is purged"
    );
    assert!(
        p.order_state(&open_txn).await.is_some(),
        "an open order's state is kept"
    );
    // the purged order stays settled: rounds go by, the witness is asked, it is not
    let id = order["order_no"].as_str().unwrap();
    let calls = p.bookings.calls(id);
    p.wait_asked(&witness, 3).await;
    assert_eq!(
        p.bookings.calls(id),
        calls,
        "a purged settled order is asked again"
    );
    assert_eq!(p.order_state(&txn).await, None);
}
