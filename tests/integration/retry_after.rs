//! `Retry-After` on 429 and 503: the next attempt waits at least as long as the receiver asked
//! (the lab's ERP, a Beckn receiver of callbacks, Flipkart Ultra's OMS), and a wait past the
//! deadline of what is being sent is not waited for: the call fails, the message is a dead
//! letter saying why.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beckn_adapter::clock::{Clock, ManualClock, SystemClock};
use beckn_adapter::compile::Layout;
use beckn_adapter::demo::{NetworkOptions, SampleNetwork};
use serde_json::{Value, json};

use crate::common::{Network, advance_outbox, bind, on_clock, repo};
use crate::durability::{wait_until, wait_until_async};

/// A receiver on loopback that notes when each request arrived (by `clock`, the adapter's) and
/// answers from a queue (status, `Retry-After`, body); once the queue is empty, 200 with an
/// ACK.
struct StandIn {
    clock: Arc<dyn Clock>,
    arrivals: Mutex<Vec<jiff::Timestamp>>,
    answers: Mutex<VecDeque<(u16, String, Value)>>,
}

impl StandIn {
    async fn start() -> (Arc<StandIn>, String) {
        StandIn::start_on(Arc::new(SystemClock)).await
    }

    async fn start_on(clock: Arc<dyn Clock>) -> (Arc<StandIn>, String) {
        let stand_in = Arc::new(StandIn {
            clock,
            arrivals: Mutex::default(),
            answers: Mutex::default(),
        });
        let (listener, addr) = bind().await;
        let router = Router::new().fallback(answer).with_state(stand_in.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (stand_in, format!("http://{addr}"))
    }

    fn queue(&self, status: u16, retry_after: &str, body: Value, times: usize) {
        let mut answers = self.answers.lock().unwrap();
        for _ in 0..times {
            answers.push_back((status, retry_after.to_string(), body.clone()));
        }
    }

    fn arrivals(&self) -> Vec<jiff::Timestamp> {
        self.arrivals.lock().unwrap().clone()
    }

    /// The pauses between consecutive arrivals from the `from`-th one on.
    fn gaps(&self, from: usize) -> Vec<Duration> {
        let a = self.arrivals();
        a[from..]
            .windows(2)
            .map(|w| Duration::try_from(w[1].duration_since(w[0])).unwrap_or_default())
            .collect()
    }
}

async fn answer(State(s): State<Arc<StandIn>>) -> Response {
    let now = s.clock.now();
    s.arrivals.lock().unwrap().push(now);
    let next = s.answers.lock().unwrap().pop_front();
    match next {
        Some((status, retry_after, body)) => {
            let status = StatusCode::from_u16(status).unwrap();
            let mut resp = (status, axum::Json(body)).into_response();
            if !retry_after.is_empty() {
                resp.headers_mut()
                    .insert("retry-after", retry_after.parse().unwrap());
            }
            resp
        }
        None => axum::Json(json!({"message": {"ack": {"status": "ACK"}}})).into_response(),
    }
}

#[tokio::test]
async fn erp_calls_wait_for_retry_after_and_not_past_the_callbacks_deadline() {
    let (erp, erp_url) = StandIn::start().await;
    let net = Network::start_env(&repo().join("flows"), Some(erp_url), HashMap::new()).await;
    // a search is retried (attempts: 2, backoff: 200ms): each 429 asks for a second
    erp.queue(429, "1", json!({"error": "slow down"}), 3);
    let on_search = net
        .call("search", &uuid::Uuid::new_v4().to_string(), json!({}))
        .await;
    assert!(on_search.get("error").is_some(), "{on_search}");
    assert_eq!(erp.arrivals().len(), 3, "the first call and two retries");
    for gap in erp.gaps(0) {
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    }

    // a Retry-After past the request's timestamp + ttl: no retry, the error callback at once
    erp.queue(503, "30", json!({"error": "maintenance"}), 3);
    let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
    body["context"]["ttl"] = json!("PT5S");
    let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let (status, ack) = net
        .post_raw(
            "search",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    let on_search = net
        .bap
        .wait("on_search", &message_id, Duration::from_secs(10))
        .await;
    assert!(on_search.get("error").is_some(), "{on_search}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(erp.arrivals().len(), 4, "not retried");
}

#[tokio::test]
async fn callbacks_wait_for_the_receivers_retry_after_within_their_deadline() {
    // The adapter and the receiver on a clock the test moves: the asked wait passes at once.
    let clock = ManualClock::starting_now();
    let building = std::time::Instant::now();
    let (bap, bap_url) = StandIn::start_on(clock.clone()).await;
    let net = Network::start_app(
        &repo().join("flows"),
        None,
        HashMap::from([("FARMER_APP_URL".to_string(), bap_url.clone())]),
        Vec::new(),
        on_clock(&clock),
    )
    .await;
    // Requests are signed by the real clock: the adapter's catches up with the build.
    clock.advance(building.elapsed());
    // an HTTP date two seconds ahead: a wait of more than one second
    let at = clock.now() + jiff::SignedDuration::from_secs(2);
    let date = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&at)
        .unwrap();
    bap.queue(429, &date, json!({"error": "busy"}), 1);
    let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
    body["context"]["bap_uri"] = json!(bap_url);
    let (status, ack) = net
        .post_raw(
            "search",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    wait_until("the first attempt", Duration::from_secs(10), || {
        !bap.arrivals().is_empty()
    })
    .await;
    advance_outbox(
        &net.services,
        &clock,
        Duration::from_secs(3),
        Duration::from_millis(100),
    )
    .await;
    wait_until("the retried callback", Duration::from_secs(10), || {
        bap.arrivals().len() >= 2
    })
    .await;
    let gap = bap.gaps(0)[0];
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    let store = net.services.outbox.store.clone();
    wait_until_async("the outbox to drain", Duration::from_secs(10), || async {
        store.counts().await.is_ok_and(|c| c.pending == 0)
    })
    .await;
    assert!(store.dead_letters(10).await.unwrap().is_empty());

    // asked to wait an hour, with 30 s to deliver: a dead letter at once, saying why
    bap.queue(503, "3600", json!({"error": "maintenance"}), 1);
    let before = bap.arrivals().len();
    let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
    body["context"]["bap_uri"] = json!(bap_url);
    let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
    let (status, _) = net
        .post_raw(
            "search",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    wait_until_async("the dead letter", Duration::from_secs(10), || async {
        let letters = store.dead_letters(10).await.unwrap_or_default();
        letters.iter().any(|d| d.message_id == message_id)
    })
    .await;
    let dead = store.dead_letters(10).await.unwrap();
    let d = dead.iter().find(|d| d.message_id == message_id).unwrap();
    assert_eq!(d.attempts, 1, "{d:?}");
    let why = d.last_error.clone().unwrap_or_default();
    assert!(
        why.contains("3600s (Retry-After)") && why.contains("deadline"),
        "{why}"
    );
    assert_eq!(bap.arrivals().len(), before + 1);
}

#[tokio::test]
async fn oms_updates_wait_for_ultras_retry_after_within_retry_for() {
    let (oms, oms_url) = StandIn::start().await;
    let net = SampleNetwork::start(
        &Layout::from_flows_dir(repo().join("flows")),
        NetworkOptions {
            env: HashMap::from([("ULTRA_OMS_URL".to_string(), oms_url)]),
            ..Default::default()
        },
    )
    .await
    .expect("the sample network starts");
    let call = |path: &'static str, session: Option<String>, body: Value| {
        let url = format!("{}/{path}", net.client_api);
        async move {
            let mut req = reqwest::Client::new().post(url).json(&body);
            if let Some(s) = session {
                req = req.header("X-Ultra-Session", s);
            }
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (grant, _) = net.ultra.grant("+91-98100-77777", "asha@example.org");
    let (status, doc) = call("ultra/sign-in", None, json!({"grantToken": grant})).await;
    assert_eq!(status, 200, "{doc}");
    let session = doc["session"].as_str().unwrap().to_string();

    oms.queue(
        429,
        "1",
        json!({"status": 31, "message": "too many requests"}),
        1,
    );
    let txn = uuid::Uuid::new_v4().to_string();
    let (status, doc) = call(
        "confirm",
        Some(session.clone()),
        json!({"context": {"transaction_id": txn, "bpp_id": "soil.greenfield-labs.example"},
            "message": {"order": {"provider": {"id": "GFSL"},
            "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
            "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
                "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}}}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let order_id = doc["responses"][0]["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("ORDER_CONFIRMED retried", Duration::from_secs(10), || {
        oms.arrivals().len() >= 2
    })
    .await;
    let gap = oms.gaps(0)[0];
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");

    // asked to wait three days, with two days (retry_for) to deliver: a dead letter at once
    oms.queue(503, "259200", json!({"status": 500, "message": "down"}), 1);
    let (status, doc) = call(
        "cancel",
        Some(session),
        json!({"context": {"transaction_id": txn},
            "message": {"order_id": order_id, "cancellation_reason_id": "001"}}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let store = net.services.outbox.store.clone();
    wait_until_async("the dead letter", Duration::from_secs(10), || async {
        !store.dead_letters(10).await.unwrap_or_default().is_empty()
    })
    .await;
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead[0].message_id, format!("{order_id}/ORDER_CANCELLED"));
    assert_eq!(dead[0].attempts, 1);
    let why = dead[0].last_error.clone().unwrap_or_default();
    assert!(why.contains("259200s (Retry-After)"), "{why}");
    assert_eq!(oms.arrivals().len(), 3);
}
