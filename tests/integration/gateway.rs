//! The gateway role on the sample network: one gateway, two labs on the sample ERP, a farmer
//! app stand-in. Everything is signed and verified; the labs look keys up in the registry the
//! gateway serves, through the lookup cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use beckn_adapter::app::{Served, Settings};
use beckn_adapter::beckn::registry::LookupQuery;
use beckn_adapter::beckn::signing::{PrivateKey, PublicKey, SignatureHeader};
use beckn_adapter::clock::{Clock, ManualClock};
use beckn_adapter::compile::RegistrySource;
use beckn_adapter::roles::Services;
use serde_json::{Value, json};

use crate::common::{
    BAP_ID, BAP_KEY_ID, BAP_TEST_KEY, GFSL_ID, Inbox, TestApp, bap_signature, bind, on_clock,
    record, repo,
};

/// TEST-ONLY key of the sample network's GreenField lab (flows/greenfield-lab.yaml).
const GFSL_TEST_KEY: &str =
    "LCSMSdByg8/1LSAVrJ4aRhqCB928+yEI+5cDhdtjbSZ9K8ZJmBf5KZ2rCUKq7ORjFyEzLpsbs5GoVpUh5oFUxg==";
const GFSL_KEY_ID: &str = "soil.greenfield-labs.example|gfsl-key-1";

struct SoilNetwork {
    gateway_url: String,
    bap_url: String,
    bap: Arc<Inbox>,
    services: Arc<Services>,
    registry_keys: HashMap<String, String>,
    /// Where Krishi Test House listens.
    kth_addr: std::net::SocketAddr,
    http: reqwest::Client,
    _store_dir: tempfile::TempDir,
}

impl SoilNetwork {
    async fn start() -> SoilNetwork {
        SoilNetwork::start_app(|_| {}).await
    }

    /// Like [`SoilNetwork::start`], with the adapter's settings changed by `configure`.
    async fn start_app(configure: impl FnOnce(&mut Settings)) -> SoilNetwork {
        let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
        let (erp_listener, erp_addr) = bind().await;
        tokio::spawn(erp.serve(erp_listener, std::future::pending()));
        let (_lims, lims_url) = crate::common::start_lims(Default::default()).await;
        let (bap_listener, bap_addr) = bind().await;
        let bap = Arc::new(Inbox::default());
        let bap_router = Router::new()
            .route("/{action}", post(record))
            .with_state(bap.clone());
        tokio::spawn(async move { axum::serve(bap_listener, bap_router).await });

        let (gw_listener, gw_addr) = bind().await;
        let (gfsl_listener, gfsl_addr) = bind().await;
        let (kth_listener, kth_addr) = bind().await;
        let (bhoomi_listener, bhoomi_addr) = bind().await;
        let gateway_url = format!("http://{gw_addr}");
        let env: HashMap<String, String> = HashMap::from([
            ("GATEWAY_LISTEN".into(), gw_addr.to_string()),
            ("GFSL_LISTEN".into(), gfsl_addr.to_string()),
            ("KTH_LISTEN".into(), kth_addr.to_string()),
            ("GATEWAY_URL".into(), gateway_url.clone()),
            ("GFSL_PUBLIC_URL".into(), format!("http://{gfsl_addr}")),
            ("KTH_PUBLIC_URL".into(), format!("http://{kth_addr}")),
            ("BHOOMI_LISTEN".into(), bhoomi_addr.to_string()),
            ("BHOOMI_PUBLIC_URL".into(), format!("http://{bhoomi_addr}")),
            ("BHOOMI_LIMS_URL".into(), lims_url),
            ("FARMER_APP_URL".into(), format!("http://{bap_addr}")),
            (
                "GFSL_ERP_URL".into(),
                format!("http://{erp_addr}/api/v1/labs/GFSL"),
            ),
            (
                "KTH_ERP_URL".into(),
                format!("http://{erp_addr}/api/v1/labs/KTH"),
            ),
            // The labs use the registry the gateway serves, as a remote registry.
            ("BECKN_REGISTRY".into(), gateway_url.clone()),
        ]);
        // Every flow but the farmer app's (a stand-in plays it) on the listeners bound above.
        let app = TestApp::start(
            &repo().join("flows"),
            env,
            vec![gw_listener, gfsl_listener, kth_listener, bhoomi_listener],
            |settings| {
                settings.served = Served::Except(vec!["farmer-app".into()]);
                configure(settings);
            },
        )
        .await;
        let registry_keys = match app
            .flows
            .load()
            .flow("soil-gateway")
            .and_then(|f| f.participant.registry.clone())
        {
            Some(RegistrySource::Embedded(reg)) => reg
                .find(&LookupQuery::default())
                .into_iter()
                .map(|s| (s.subscriber_id, s.signing_public_key))
                .collect(),
            _ => panic!("the gateway serves an embedded registry"),
        };
        let services = app.services.clone();
        let store_dir = app.store_dir;
        SoilNetwork {
            gateway_url,
            bap_url: format!("http://{bap_addr}"),
            bap,
            services,
            registry_keys,
            kth_addr,
            http: reqwest::Client::new(),
            _store_dir: store_dir,
        }
    }

    fn search_body(&self) -> Value {
        json!({
            "context": {
                "domain": "agri.soil", "action": "search", "version": "1.1.0",
                "bap_id": BAP_ID, "bap_uri": self.bap_url,
                "transaction_id": uuid::Uuid::new_v4().to_string(),
                "message_id": uuid::Uuid::new_v4().to_string(),
                "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT30S",
                "location": {"country": {"code": "IND"}}
            },
            "message": {"intent": {"tags": [{"descriptor": {"code": "crop"},
                "list": [{"descriptor": {"code": "name"}, "value": "wheat"}]}]}}
        })
    }

    /// Signs and sends a search to the gateway; returns its message id.
    async fn search(&self) -> String {
        self.search_edited(|_| {}).await.0
    }

    /// Like [`SoilNetwork::search`], with the body edited first; returns the message id and
    /// the body sent.
    async fn search_edited(&self, edit: impl FnOnce(&mut Value)) -> (String, Value) {
        let mut body = self.search_body();
        edit(&mut body);
        let bytes = serde_json::to_vec(&body).unwrap();
        let resp = self
            .http
            .post(format!("{}/search", self.gateway_url))
            .header("content-type", "application/json")
            .header("authorization", bap_signature(&bytes))
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let ack: Value = resp.json().await.unwrap();
        assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
        let id = body["context"]["message_id"].as_str().unwrap().to_string();
        (id, body)
    }

    /// Sends an `on_search` answering `search` as `bpp_id`, signed with `key` (registered under
    /// `key_id`); returns the HTTP status and the answer.
    async fn on_search(
        &self,
        search: &Value,
        bpp_id: &str,
        key: &str,
        key_id: &str,
    ) -> (u16, Value) {
        let mut context = search["context"].clone();
        context["action"] = json!("on_search");
        context["bpp_id"] = json!(bpp_id);
        context["bpp_uri"] = json!(format!("https://{bpp_id}/beckn"));
        context["timestamp"] = json!(jiff::Timestamp::now().to_string());
        let body = json!({
            "context": context,
            "message": {"catalog": {"descriptor": {"name": "a catalogue"}, "providers": []}}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let auth = PrivateKey::from_base64(key)
            .unwrap()
            .sign(&bytes, key_id, now, now + 60);
        let resp = self
            .http
            .post(format!("{}/on_search", self.gateway_url))
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    fn verify(&self, header: &str, raw: &[u8]) -> String {
        let parsed = SignatureHeader::parse(header).expect("a Beckn signature header");
        let key = PublicKey::from_base64(&self.registry_keys[&parsed.subscriber_id]).unwrap();
        parsed
            .verify(raw, &key, jiff::Timestamp::now().as_second(), 5)
            .expect("signature verifies");
        parsed.subscriber_id
    }
}

#[tokio::test]
async fn gateway_forwards_no_search_to_the_adapters_own_admin_listener() {
    let net = SoilNetwork::start().await;
    // Krishi Test House's registered address stands for the admin listener here.
    net.services.outbox.destinations.protect(net.kth_addr);
    let message_id = net.search().await;
    let answers = net
        .bap
        .wait_n("on_search", &message_id, 2, Duration::from_secs(10))
        .await;
    let mut from: Vec<&str> = answers
        .iter()
        .map(|a| a.body["context"]["bpp_id"].as_str().unwrap())
        .collect();
    from.sort();
    assert_eq!(
        from,
        ["soil.bhoomi-labs.example", "soil.greenfield-labs.example"]
    );
    let answers: Vec<_> = answers
        .into_iter()
        .filter(|a| a.body["context"]["bpp_id"] == "soil.greenfield-labs.example")
        .collect();
    // Both forwards left together; GreenField's answer came back through the ERP and the
    // gateway, so Krishi's forward, had it been sent, would have been recorded long before.
    let txn = answers[0].body["context"]["transaction_id"]
        .as_str()
        .unwrap();
    let store = &net.services.outbox.store;
    assert!(
        store
            .last_request("greenfield-lab", txn)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .last_request("krishi-lab", txn)
            .await
            .unwrap()
            .is_none(),
        "the search reached the protected address"
    );
}

#[tokio::test]
async fn one_search_through_the_gateway_reaches_every_lab() {
    let net = SoilNetwork::start().await;
    let message_id = net.search().await;
    let answers = net
        .bap
        .wait_n("on_search", &message_id, 3, Duration::from_secs(10))
        .await;
    let mut labs: Vec<String> = Vec::new();
    for a in &answers {
        assert!(a.body.get("error").is_none(), "{}", a.body);
        let bpp_id = a.body["context"]["bpp_id"].as_str().unwrap();
        // the lab's own signature, and the gateway's, both over the bytes received
        let signer = net.verify(
            a.authorization.as_deref().expect("signed by the lab"),
            &a.raw,
        );
        assert_eq!(signer, bpp_id);
        let via = net.verify(
            a.gateway_authorization
                .as_deref()
                .expect("countersigned by the gateway"),
            &a.raw,
        );
        assert_eq!(via, "gateway.soil.example");
        labs.push(
            a.body["message"]["catalog"]["providers"][0]["id"]
                .as_str()
                .unwrap()
                .into(),
        );
    }
    labs.sort();
    assert_eq!(labs, ["GFSL", "KTH", "bhoomi-blr"]);
    // the two labs on the sample ERP share its sku; the LIMS lab has tests of its own
    let prices: Vec<&Value> = answers
        .iter()
        .filter_map(|a| {
            a.body["message"]["catalog"]["providers"][0]["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == "soil-npk-package")
                .map(|i| &i["price"]["value"])
        })
        .collect();
    assert_eq!(prices.len(), 2);
    assert_ne!(
        prices[0], prices[1],
        "the two labs price the NPK test differently"
    );
}

#[tokio::test]
async fn the_registry_is_asked_once_per_key_not_per_message() {
    let net = SoilNetwork::start().await;
    let first = net.search().await;
    net.bap
        .wait_n("on_search", &first, 3, Duration::from_secs(10))
        .await;
    let after_one = net.services.registries.remote_lookups(&net.gateway_url);
    assert!(after_one > 0, "the labs looked keys up remotely");
    for _ in 0..5 {
        let id = net.search().await;
        net.bap
            .wait_n("on_search", &id, 3, Duration::from_secs(10))
            .await;
    }
    assert_eq!(
        net.services.registries.remote_lookups(&net.gateway_url),
        after_one,
        "five more searches cost no further lookups"
    );
}

#[tokio::test]
async fn gateway_relays_no_on_search_signed_by_a_bap() {
    let net = SoilNetwork::start().await;
    let (message_id, search) = net.search_edited(|_| {}).await;
    net.bap
        .wait_n("on_search", &message_id, 3, Duration::from_secs(10))
        .await;
    let (status, nack) = net
        .on_search(&search, BAP_ID, BAP_TEST_KEY, BAP_KEY_ID)
        .await;
    assert_eq!(status, 401, "{nack}");
    assert_eq!(nack["error"]["code"], "30016", "{nack}");
    let message = nack["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("farmer-app.example is not subscribed as a BPP of domain `agri.soil`"),
        "{message}"
    );
    // a lab, answering the same search, is relayed
    let (status, ack) = net
        .on_search(&search, GFSL_ID, GFSL_TEST_KEY, GFSL_KEY_ID)
        .await;
    assert_eq!(status, 200, "{ack}");
    let relayed = net
        .bap
        .wait_n("on_search", &message_id, 4, Duration::from_secs(10))
        .await;
    assert!(
        relayed
            .iter()
            .all(|a| a.body["context"]["bpp_id"] != BAP_ID),
        "nothing signed by the BAP reached it"
    );
}

#[tokio::test]
async fn gateway_relays_no_on_search_for_a_search_it_never_routed() {
    let net = SoilNetwork::start().await;
    let never_sent = net.search_body();
    let (status, nack) = net
        .on_search(&never_sent, GFSL_ID, GFSL_TEST_KEY, GFSL_KEY_ID)
        .await;
    assert_eq!(net.bap.count(), 0, "nothing was relayed");
    assert_eq!(status, 400, "{nack}");
    assert_eq!(nack["error"]["code"], "30000", "{nack}");
    assert_eq!(nack["error"]["paths"], "context.message_id", "{nack}");
    let message = nack["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("answers no search this gateway forwarded"),
        "{message}"
    );
    // a routed search's id, claimed for another buyer app, is not relayed either
    let (_, search) = net.search_edited(|_| {}).await;
    let mut other_bap = search.clone();
    other_bap["context"]["bap_id"] = json!("retired-app.example");
    let (status, nack) = net
        .on_search(&other_bap, GFSL_ID, GFSL_TEST_KEY, GFSL_KEY_ID)
        .await;
    assert_eq!(status, 400, "{nack}");
    assert!(
        nack["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not come from retired-app.example")),
        "{nack}"
    );
}

#[tokio::test]
async fn gateway_relays_no_on_search_after_the_search_ttl() {
    let clock = ManualClock::starting_now();
    let building = std::time::Instant::now();
    let net = SoilNetwork::start_app(on_clock(&clock)).await;
    // Requests are signed by the real clock: the adapter's catches up with the build.
    clock.advance(building.elapsed());
    // a search sent 27s ago with ttl PT30S: valid for three more seconds
    let sent_at = clock.now() - jiff::SignedDuration::from_secs(27);
    let (_, search) = net
        .search_edited(|b| b["context"]["timestamp"] = json!(sent_at.to_string()))
        .await;
    // the clock passes the search's expiry
    clock.advance(Duration::from_secs(4));
    assert!(clock.now() > sent_at + jiff::SignedDuration::from_secs(30));
    let (status, nack) = net
        .on_search(&search, GFSL_ID, GFSL_TEST_KEY, GFSL_KEY_ID)
        .await;
    assert_eq!(status, 400, "{nack}");
    assert_eq!(nack["error"]["code"], "30022", "{nack}");
    assert!(
        nack["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("came too late")),
        "{nack}"
    );
}

#[tokio::test]
async fn a_search_through_the_gateway_is_one_trace_across_gateway_labs_and_answers() {
    use crate::traces::{Got, assert_parents_within, start_collector, trace_when};
    let (collector, endpoint) = start_collector().await;
    let net = SoilNetwork::start_app(|settings| settings.traces.endpoint = Some(endpoint)).await;
    let message_id = net.search().await;
    net.bap
        .wait_n("on_search", &message_id, 3, Duration::from_secs(10))
        .await;
    let count = |spans: &[Got], name: &str| spans.iter().filter(|s| s.name == name).count();
    // relayed to three labs, each answer relayed back to the farmer app
    let spans = trace_when(&collector, &message_id, |spans| {
        count(spans, "gateway.relay") == 6
            && count(spans, "beckn.on_search") == 3
            && count(spans, "delivery.attempt") == 3
    })
    .await;
    assert_parents_within(&spans);
    let roots: Vec<&Got> = spans.iter().filter(|s| s.parent.is_empty()).collect();
    assert_eq!(roots.len(), 1, "{roots:#?}");
    assert_eq!(roots[0].name, "beckn.search");
    assert_eq!(roots[0].attr("role"), Some("gateway"));
    let relays: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "gateway.relay")
        .map(|s| s.span_id.as_str())
        .collect();
    // each lab's message is a child of the relay that brought it
    let labs: Vec<&Got> = spans
        .iter()
        .filter(|s| s.name == "beckn.search" && s.attr("role") == Some("bpp"))
        .collect();
    assert_eq!(labs.len(), 3, "{labs:#?}");
    for lab in labs {
        assert!(relays.contains(&lab.parent.as_str()), "{lab:?}");
    }
}
