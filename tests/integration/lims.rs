//! Bhoomi Soil Labs on the sample LIMS: the shipped bhoomi-lab flow, built as `serve` builds
//! it, against a real LIMS on a loopback port (OAuth2 with short-lived tokens, a paged
//! catalog, bookings that answer little, its own fault shape) and a buyer-app stand-in.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use beckn_adapter::app::Served;
use beckn_adapter::backend::HttpTransport;
use beckn_adapter::compile::Layout;
use beckn_adapter::dry_run::{RenderArgs, render};
use sample_lims::{LimsConfig, SampleLims};
use serde_json::{Value, json};

use crate::common::{
    BAP_ID, Inbox, TestApp, bap_signature, bind, load_flows, record, repo, start_lims,
};
use crate::durability::wait_until;

const BHOOMI_ID: &str = "soil.bhoomi-labs.example";
const SECRET: &str = "lims-client-s3cret-of-this-test";

/// Log lines, captured for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The LIMS, the adapter serving the bhoomi-lab flow, and the buyer app's stand-in.
struct Bhoomi {
    lims: SampleLims,
    lims_url: String,
    bpp_url: String,
    bap_url: String,
    bap: Arc<Inbox>,
    app: TestApp,
    http: reqwest::Client,
}

impl Bhoomi {
    /// A LIMS run with `config` (its client secret: [`SECRET`]) and the flow given
    /// `flow_secret` as its client secret.
    async fn start(config: LimsConfig, flow_secret: &str) -> Bhoomi {
        Bhoomi::start_with(config, flow_secret, &[]).await
    }

    /// As [`Bhoomi::start`], with more of the flow's environment (`BHOOMI_POLL_EVERY`...).
    async fn start_with(config: LimsConfig, flow_secret: &str, more: &[(&str, &str)]) -> Bhoomi {
        let (lims, lims_url) = start_lims(LimsConfig {
            client_secret: SECRET.into(),
            ..config
        })
        .await;
        let (bap_listener, bap_addr) = bind().await;
        let bap = Arc::new(Inbox::default());
        let bap_router = Router::new()
            .route("/{action}", post(record))
            .with_state(bap.clone());
        tokio::spawn(async move { axum::serve(bap_listener, bap_router).await });
        let (listener, addr) = bind().await;
        let bpp_url = format!("http://{addr}");
        let mut env: HashMap<String, String> = HashMap::from([
            ("BHOOMI_LISTEN".into(), addr.to_string()),
            ("BHOOMI_PUBLIC_URL".into(), bpp_url.clone()),
            ("BHOOMI_LIMS_URL".into(), lims_url.clone()),
            ("BHOOMI_LIMS_CLIENT_SECRET".into(), flow_secret.into()),
            ("FARMER_APP_URL".into(), format!("http://{bap_addr}")),
        ]);
        env.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let app = TestApp::start(&repo().join("flows"), env, vec![listener], |settings| {
            settings.served = Served::Only(vec!["bhoomi-lab".into()]);
        })
        .await;
        Bhoomi {
            lims,
            lims_url,
            bpp_url,
            bap_url: format!("http://{bap_addr}"),
            bap,
            app,
            http: reqwest::Client::new(),
        }
    }

    /// Sends `action` in `transaction_id`, signed by the farmer app; asserts the ACK and
    /// returns the callback.
    async fn call(&self, action: &str, transaction_id: &str, message: Value) -> Value {
        let message_id = uuid::Uuid::new_v4().to_string();
        let mut context = json!({
            "domain": "agri.soil", "action": action, "version": "1.1.0",
            "bap_id": BAP_ID, "bap_uri": self.bap_url,
            "transaction_id": transaction_id, "message_id": message_id,
            "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT30S",
            "location": {"country": {"code": "IND"}}
        });
        if action != "search" {
            context["bpp_id"] = json!(BHOOMI_ID);
            context["bpp_uri"] = json!(self.bpp_url);
        }
        let bytes = serde_json::to_vec(&json!({"context": context, "message": message})).unwrap();
        let resp = self
            .http
            .post(format!("{}/{action}", self.bpp_url))
            .header("content-type", "application/json")
            .header("authorization", bap_signature(&bytes))
            .body(bytes)
            .send()
            .await
            .expect("the adapter answers");
        let ack: Value = resp.json().await.unwrap();
        assert_eq!(ack["message"]["ack"]["status"], "ACK", "{action}: {ack}");
        self.bap
            .wait(
                &format!("on_{action}"),
                &message_id,
                Duration::from_secs(10),
            )
            .await
    }

    /// Every callback the buyer app received, as sent.
    fn on_status_of(&self, transaction_id: &str) -> Vec<Value> {
        self.bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                r.action == "on_status" && r.body["context"]["transaction_id"] == transaction_id
            })
            .map(|r| r.body.clone())
            .collect()
    }

    fn raw_callbacks(&self) -> String {
        self.bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
            .collect()
    }

    /// Every byte of the adapter's store (the message log included).
    fn store_bytes(&self) -> String {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.app.store_dir.path()).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
        }
        String::from_utf8_lossy(&all).into_owned()
    }
}

fn txn() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn no_error(callback: &Value) -> &Value {
    assert!(callback.get("error").is_none(), "{callback}");
    &callback["message"]
}

/// An order of `test` at Bhoomi: a field visit at `visit_start` (or a walk-in without one).
fn order(test: &str, visit_start: Option<&str>) -> Value {
    let mut stop = json!({"type": "start", "person": {"name": "Lakshmi Gowda"},
        "contact": {"phone": "+91-98450-11111"},
        "location": {"address": "Survey 42, Kodihalli", "area_code": "561203"}});
    if let Some(start) = visit_start {
        stop["time"] = json!({"range": {"start": start}});
    }
    let kind = if visit_start.is_some() { "home" } else { "lab" };
    json!({"order": {
        "provider": {"id": "bhoomi-blr"},
        "items": [{"id": test, "quantity": {"selected": {"count": 1}}}],
        "billing": {"name": "Lakshmi Gowda", "phone": "+91-98450-11111"},
        "fulfillments": [{"type": kind, "stops": [stop]}],
        "payments": [{"collected_by": "BPP", "type": "ON-FULFILLMENT"}]
    }})
}

fn item_ids(on_search: &Value) -> Vec<String> {
    on_search["catalog"]["providers"][0]["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_farmer_books_and_follows_a_field_visit_through_every_action() {
    let net = Bhoomi::start(LimsConfig::default(), SECRET).await;

    // search: both catalog pages, the field-visit tests at their decimal prices
    let found = net
        .call(
            "search",
            &txn(),
            json!({"intent": {"fulfillment": {"type": "home"}}}),
        )
        .await;
    let catalog = no_error(&found);
    assert_eq!(
        item_ids(catalog),
        [
            "BH-SOIL-NPK",
            "BH-SOIL-SHC",
            "BH-SOIL-MICRO",
            "BH-SOIL-OC",
            "BH-SOIL-HM"
        ],
        "every page, walk-in-only tests left out"
    );
    let micro = &catalog["catalog"]["providers"][0]["items"][2];
    assert_eq!(
        micro["price"],
        json!({"currency": "INR", "value": "1450.50"})
    );
    assert_eq!(micro["time"]["duration"], "PT96H");

    // select: the quotation and the open visits, local LIMS times as RFC 3339
    let t = txn();
    let selected = net.call("select", &t, order("BH-SOIL-NPK", None)).await;
    // (a walk-in has no visits; ask again for a field visit)
    assert!(no_error(&selected)["order"]["fulfillments"][0]["tags"].is_null());
    let mut field_visit = order("BH-SOIL-NPK", None);
    field_visit["order"]["fulfillments"][0]["type"] = json!("home");
    let selected = net.call("select", &t, field_visit).await;
    let o = &no_error(&selected)["order"];
    assert_eq!(
        o["quote"]["price"],
        json!({"currency": "INR", "value": "1652.00"})
    );
    let breakup: Vec<&str> = o["quote"]["breakup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["price"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(breakup, ["1250.00", "150.00", "252.00"]);
    let visits = o["fulfillments"][0]["tags"][0]["list"].as_array().unwrap();
    assert_eq!(visits.len(), 9);
    let window = visits[0]["value"].as_str().unwrap();
    let (start, end) = window.split_once('/').unwrap();
    assert!(
        start.ends_with("T09:00:00+05:30") && end.ends_with("T11:00:00+05:30"),
        "{window}"
    );
    let at: jiff::Timestamp = start.parse().expect("RFC 3339");
    assert!(at > jiff::Timestamp::now(), "visits are in the future");

    // init and confirm at the first visit
    let inited = net
        .call("init", &t, order("BH-SOIL-NPK", Some(start)))
        .await;
    let range = &no_error(&inited)["order"]["fulfillments"][0]["stops"][0]["time"]["range"];
    assert_eq!(range, &json!({"start": start, "end": end}));
    let confirmed = net
        .call("confirm", &t, order("BH-SOIL-NPK", Some(start)))
        .await;
    let on_confirm = no_error(&confirmed)["order"].clone();
    let booking = net.lims.bookings()[0].clone();
    assert_eq!(
        on_confirm["id"],
        booking.booking_no.as_str(),
        "the booking number is the order id"
    );
    assert_eq!(booking.client_reference.as_deref(), Some(t.as_str()));
    assert_eq!(booking.farmer.name.as_deref(), Some("Lakshmi Gowda"));
    assert!(booking.slot_ref.is_some());
    let fulfillment_id = format!("{}-field-visit", booking.booking_no);
    assert_eq!(on_confirm["fulfillments"][0]["id"], fulfillment_id.as_str());
    assert_eq!(on_confirm["quote"]["price"]["value"], "1652.00");

    // status: the LIMS says only the state; the order is whole, with on_confirm's ids
    net.lims.advance(&booking.booking_no).unwrap();
    net.lims.advance(&booking.booking_no).unwrap();
    let status = net
        .call("status", &t, json!({"order_id": booking.booking_no}))
        .await;
    let now = &no_error(&status)["order"];
    assert_eq!(now["id"], on_confirm["id"]);
    assert_eq!(now["status"], "ACTIVE");
    assert_eq!(now["fulfillments"][0]["id"], fulfillment_id.as_str());
    assert_eq!(
        now["fulfillments"][0]["state"]["descriptor"]["code"],
        "TESTING"
    );
    assert_eq!(now["items"], on_confirm["items"]);
    assert_eq!(now["quote"], on_confirm["quote"]);
    assert_eq!(now["billing"], on_confirm["billing"]);
    assert_eq!(
        now["fulfillments"][0]["stops"],
        on_confirm["fulfillments"][0]["stops"]
    );
    assert_eq!(now["created_at"], on_confirm["created_at"]);

    // track, rating, support
    let tracked = net
        .call("track", &t, json!({"order_id": booking.booking_no}))
        .await;
    assert_eq!(
        no_error(&tracked)["tracking"],
        json!({"id": fulfillment_id, "status": "inactive"})
    );
    let rated = net
        .call(
            "rating",
            &t,
            json!({"ratings": [{"rating_category": "Order",
            "id": booking.booking_no, "value": "5"}]}),
        )
        .await;
    assert_eq!(
        no_error(&rated)["feedback_form"]["form"]["url"],
        "https://bhoomi-labs.example/feedback/FB-0001"
    );
    let helped = net
        .call(
            "support",
            &t,
            json!({"support": {"ref_id": booking.booking_no}}),
        )
        .await;
    assert_eq!(
        no_error(&helped)["support"],
        json!({"ref_id": "ENQ-0001", "phone": sample_lims::HELPLINE, "email": sample_lims::HELPDESK_EMAIL})
    );

    // cancel: too late for this one (NOT_CANCELLABLE as 50001)...
    let refused = net
        .call(
            "cancel",
            &t,
            json!({"order_id": booking.booking_no, "cancellation_reason_id": "001"}),
        )
        .await;
    assert_eq!(refused["error"]["code"], "50001", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("IN_ANALYSIS")
    );
    // ...and a walk-in booked straight away, cancelled whole from memory
    let t2 = txn();
    let walk_in = net.call("confirm", &t2, order("BH-SOIL-PH", None)).await;
    let second = no_error(&walk_in)["order"].clone();
    assert_eq!(second["quote"]["price"]["value"], "413.00");
    let cancelled = net
        .call(
            "cancel",
            &t2,
            json!({"order_id": second["id"], "cancellation_reason_id": "002"}),
        )
        .await;
    let gone = &no_error(&cancelled)["order"];
    assert_eq!(gone["status"], "CANCELLED");
    assert_eq!(
        gone["fulfillments"][0]["id"],
        second["fulfillments"][0]["id"]
    );
    assert_eq!(gone["items"], second["items"]);
    assert_eq!(gone["cancellation"]["reason"]["id"], "002");

    assert_eq!(
        net.lims.tokens_issued(),
        1,
        "one token for the whole journey"
    );
    assert_eq!(net.lims.calls_refused(), 0);
}

#[tokio::test]
async fn an_expired_token_is_replaced_before_the_next_call() {
    let net = Bhoomi::start(
        LimsConfig {
            token_lifetime: Duration::from_secs(1),
            ..LimsConfig::default()
        },
        SECRET,
    )
    .await;
    let first = net.call("search", &txn(), json!({"intent": {}})).await;
    assert_eq!(item_ids(no_error(&first)).len(), 7);
    assert_eq!(net.lims.tokens_issued(), 1, "both pages on one token");
    let deadline = Instant::now() + Duration::from_secs(5);
    while net.lims.live_tokens() > 0 {
        assert!(
            Instant::now() < deadline,
            "the LIMS never expired its token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = net.call("search", &txn(), json!({"intent": {}})).await;
    assert_eq!(item_ids(no_error(&again)).len(), 7);
    assert_eq!(net.lims.tokens_issued(), 2, "a new token after expiry");
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_and_the_call_retried_once() {
    let net = Bhoomi::start(LimsConfig::default(), SECRET).await;
    no_error(&net.call("search", &txn(), json!({"intent": {}})).await);
    assert_eq!(net.lims.tokens_issued(), 1);
    net.lims.revoke_tokens();
    let after = net.call("search", &txn(), json!({"intent": {}})).await;
    assert_eq!(item_ids(no_error(&after)).len(), 7);
    assert_eq!(net.lims.calls_refused(), 1, "refused once, then retried");
    assert_eq!(net.lims.tokens_issued(), 2);
}

#[tokio::test]
async fn every_catalog_page_up_to_max_pages_is_collected() {
    // 37 tests: ten pages of four, the flow's max_pages
    let net = Bhoomi::start(
        LimsConfig {
            extra_tests: 30,
            ..LimsConfig::default()
        },
        SECRET,
    )
    .await;
    let found = net.call("search", &txn(), json!({"intent": {}})).await;
    let ids = item_ids(no_error(&found));
    assert_eq!(ids.len(), 37);
    assert_eq!(ids.last().map(String::as_str), Some("BH-EXTRA-0030"));
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 37, "no page read twice");
}

#[tokio::test]
async fn a_catalog_longer_than_max_pages_is_an_error_callback_not_a_cut() {
    // 41 tests: an eleventh page
    let net = Bhoomi::start(
        LimsConfig {
            extra_tests: 34,
            ..LimsConfig::default()
        },
        SECRET,
    )
    .await;
    let found = net.call("search", &txn(), json!({"intent": {}})).await;
    assert_eq!(found["error"]["code"], "40000", "{found}");
    assert_eq!(
        found["error"]["message"],
        "Bhoomi's catalog is too long to answer at once"
    );
    assert!(
        found["message"]["catalog"].is_null(),
        "no half catalog: {found}"
    );
}

#[tokio::test]
async fn a_token_endpoint_refusing_the_client_is_an_error_callback_naming_no_secret() {
    let net = Bhoomi::start(LimsConfig::default(), "a-rotated-away-secret").await;
    let found = net.call("search", &txn(), json!({"intent": {}})).await;
    assert_eq!(found["error"]["code"], "31001", "{found}");
    assert_eq!(
        found["error"]["message"],
        "Bhoomi's lab system refused the adapter's credentials"
    );
    assert_eq!(net.lims.tokens_issued(), 0);
    let sent = net.raw_callbacks();
    assert!(!sent.contains("a-rotated-away-secret") && !sent.contains("bhoomi-adapter"));
}

#[tokio::test]
async fn no_credential_reaches_logs_callbacks_the_store_or_render() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    // The test's runtime has one thread: the servers' tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let net = Bhoomi::start(LimsConfig::default(), SECRET).await;

    let t = txn();
    let confirmed = net.call("confirm", &t, order("BH-SOIL-OC", None)).await;
    let booking_no = no_error(&confirmed)["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    net.lims.revoke_tokens(); // a 401, a new token and a retry
    no_error(
        &net.call("status", &t, json!({"order_id": booking_no}))
            .await,
    );
    let unknown = net
        .call("status", &txn(), json!({"order_id": "BHM-999999"}))
        .await;
    assert_eq!(unknown["error"]["code"], "30010", "{unknown}");

    // render, offline and live
    let dir = tempfile::tempdir().unwrap();
    let request = dir.path().join("search.yaml");
    std::fs::write(&request, "message: { intent: {} }\n").unwrap();
    let env = HashMap::from([
        ("BHOOMI_LIMS_URL".to_string(), net.lims_url.clone()),
        ("BHOOMI_LIMS_CLIENT_SECRET".to_string(), SECRET.to_string()),
    ]);
    let layout = Layout::from_flows_dir(repo().join("flows"));
    let set = load_flows(&repo().join("flows"), &env);
    let args = RenderArgs {
        flow: "bhoomi-lab".into(),
        action: "search".into(),
        request,
        fixtures: None,
    };
    let offline = render(&layout, &set, &args, None)
        .await
        .expect("render runs");
    assert!(
        offline.contains("Authorization: Bearer *** (OAuth2 token from"),
        "{offline}"
    );
    let live = render(&layout, &set, &args, Some(&HttpTransport::new()))
        .await
        .expect("render runs");
    assert!(
        live.contains("BH-SOIL-HM"),
        "the live render read both pages: {live}"
    );

    let tokens = net.lims.issued_tokens();
    assert_eq!(tokens.len(), 3, "the app's two and render's one");
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logged.contains("bhoomi-lab"),
        "the logs were captured: {logged}"
    );
    for (place, text) in [
        ("the logs", &logged),
        ("the callbacks", &net.raw_callbacks()),
        ("the store and its message log", &net.store_bytes()),
        ("render", &offline),
        ("render --live", &live),
    ] {
        assert!(!text.contains(SECRET), "the client secret is in {place}");
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "an access token is in {place}"
            );
        }
    }
}

#[tokio::test]
async fn a_confirm_repeated_in_a_transaction_books_once() {
    let net = Bhoomi::start(LimsConfig::default(), SECRET).await;
    let t = txn();
    let first = net.call("confirm", &t, order("BH-SOIL-OC", None)).await;
    let again = net.call("confirm", &t, order("BH-SOIL-OC", None)).await;
    assert_eq!(
        no_error(&first)["order"]["id"],
        no_error(&again)["order"]["id"]
    );
    assert_eq!(
        net.lims.bookings().len(),
        1,
        "the LIMS books once per transaction"
    );
}

#[tokio::test]
async fn a_state_change_in_the_lims_arrives_unsolicited_at_the_buyer_app_once_with_the_on_confirm_ids()
 {
    let net = Bhoomi::start_with(
        LimsConfig::default(),
        SECRET,
        &[("BHOOMI_POLL_EVERY", "150ms")],
    )
    .await;
    let t = txn();
    let confirmed = net.call("confirm", &t, order("BH-SOIL-OC", None)).await;
    let on_confirm = no_error(&confirmed)["order"].clone();
    let booking_no = net.lims.bookings()[0].booking_no.clone();
    assert_eq!(on_confirm["id"], booking_no.as_str());

    // The poller's first answer is the baseline (BOOKED, as on_confirm said): nothing is sent.
    wait_until("the first status call", Duration::from_secs(10), || {
        net.lims.status_calls() >= 1
    })
    .await;
    net.lims.advance(&booking_no).unwrap();
    wait_until("an unsolicited on_status", Duration::from_secs(10), || {
        !net.on_status_of(&t).is_empty()
    })
    .await;
    let pushed = net.on_status_of(&t);
    assert_eq!(pushed.len(), 1, "one change, one on_status");
    let order = &no_error(&pushed[0])["order"];
    assert_eq!(order["id"], on_confirm["id"]);
    assert_eq!(
        order["fulfillments"][0]["id"],
        on_confirm["fulfillments"][0]["id"]
    );
    assert_eq!(order["status"], "ACTIVE");
    assert_eq!(
        order["fulfillments"][0]["state"]["descriptor"]["code"],
        "SAMPLE-COLLECTED"
    );
    assert_eq!(order["items"], on_confirm["items"]);
    assert_eq!(order["quote"], on_confirm["quote"]);
    assert!(order["quote"]["price"]["value"].is_string());
    assert_eq!(pushed[0]["context"]["bpp_id"], BHOOMI_ID);

    // More rounds see the same state: still one on_status.
    let calls = net.lims.status_calls();
    wait_until("two more poll rounds", Duration::from_secs(10), || {
        net.lims.status_calls() >= calls + 2
    })
    .await;
    assert_eq!(
        net.on_status_of(&t).len(),
        1,
        "an unchanged state sends nothing"
    );

    // Every status call passed the LIMS's bearer check, on the confirm's token, reused.
    assert_eq!(net.lims.calls_refused(), 0);
    assert_eq!(
        net.lims.tokens_issued(),
        1,
        "one token for confirm and every poll"
    );
}
