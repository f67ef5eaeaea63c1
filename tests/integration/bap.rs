//! The buyer-app role on the whole sample network (lab ERP, two labs, the gateway with the
//! registry, the farmer app's BAP, the app's webhook stand-in), all on loopback: the three
//! answer modes, a ttl that ends with answers missing, webhook HMACs, late, unknown and
//! repeated callbacks, and how requests are routed within a transaction.

use std::time::{Duration, Instant};

use beckn_adapter::beckn::trust;
use beckn_adapter::compile::Layout;
use beckn_adapter::demo::{NetworkOptions, SampleNetwork};
use beckn_adapter::store::Disposition;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::repo;
use crate::durability::wait_until_async;

const BAP: &str = "farmer-app";
const GFSL: &str = "soil.greenfield-labs.example";
const KTH: &str = "soil.krishitesthouse.example";
/// The lab on the sample LIMS.
const BHOOMI: &str = "soil.bhoomi-labs.example";

async fn network(down: &[&str]) -> SampleNetwork {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BECKN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    SampleNetwork::start(
        &Layout::from_flows_dir(repo().join("flows")),
        NetworkOptions {
            down: down.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
    .await
    .expect("the sample network starts")
}

/// Calls the farmer app's client API; returns status and JSON body.
async fn call(net: &SampleNetwork, action: &str, mode: Option<&str>, body: Value) -> (u16, Value) {
    let mut url = format!("{}/{action}", net.client_api);
    if let Some(mode) = mode {
        url.push_str(&format!("?mode={mode}"));
    }
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("client API reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn wheat_search() -> Value {
    json!({"message": {"intent": {"tags": [{"descriptor": {"code": "crop"},
        "list": [{"descriptor": {"code": "name"}, "value": "wheat"}]}]}}})
}

fn providers(on_search: &Value) -> Vec<String> {
    on_search["message"]["catalog"]["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// POSTs `body` to the farmer app's Beckn endpoint `path`, signed by the flow `signer`.
pub(crate) async fn post_signed(
    net: &SampleNetwork,
    signer: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let set = net.flows.load();
    let flow = set.flow(signer).expect("signer flow");
    let mut req = reqwest::Client::new()
        .post(format!("{}/{path}", net.urls[BAP]))
        .header("content-type", "application/json");
    for (k, v) in trust::sign_outbound(
        &flow.participant,
        &bytes,
        jiff::Timestamp::now().as_second(),
    ) {
        req = req.header(k, v);
    }
    let resp = req.body(bytes).send().await.expect("BAP reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A valid callback `action` from the lab flow `lab` in `transaction_id`.
pub(crate) fn callback(
    net: &SampleNetwork,
    lab: &str,
    action: &str,
    transaction_id: &str,
    message_id: &str,
    message: Value,
) -> Value {
    let set = net.flows.load();
    let lab = set.flow(lab).expect("lab flow");
    json!({
        "context": {
            "domain": "agri.soil", "action": action, "version": "1.1.0",
            "bap_id": "farmer-app.example", "bap_uri": net.urls[BAP],
            "bpp_id": lab.participant.subscriber_id, "bpp_uri": lab.participant.subscriber_uri,
            "transaction_id": transaction_id, "message_id": message_id,
            "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT30S"
        },
        "message": message
    })
}

#[tokio::test]
async fn a_sync_search_through_the_gateway_returns_every_labs_catalog() {
    let net = network(&[]).await;
    let (status, doc) = call(&net, "search", Some("sync"), wheat_search()).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["status"], "complete", "{doc}");
    assert_eq!(doc["ack"]["status"], "ACK");
    assert_eq!(doc["sent"]["to"], "gateway.soil.example");
    let mut expected: Vec<&str> = doc["expected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    expected.sort();
    assert_eq!(expected, [BHOOMI, GFSL, KTH]);
    assert_eq!(doc["missing"], json!([]));
    // the context the adapter built
    let ctx = &doc["request"]["context"];
    assert_eq!(ctx["bap_id"], "farmer-app.example");
    assert_eq!(ctx["bap_uri"], net.urls[BAP]);
    assert_eq!(ctx["ttl"], "PT30S");
    assert_eq!(ctx["location"], json!({"country": {"code": "IND"}}));
    assert!(
        ctx["timestamp"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert!(uuid::Uuid::parse_str(ctx["transaction_id"].as_str().unwrap()).is_ok());
    assert_eq!(doc["transaction_id"], ctx["transaction_id"]);
    assert_eq!(doc["message_id"], ctx["message_id"]);
    let mut labs: Vec<(String, Vec<String>)> = doc["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["context"]["message_id"], doc["message_id"]);
            (
                r["context"]["bpp_id"].as_str().unwrap().to_string(),
                providers(r),
            )
        })
        .collect();
    labs.sort();
    assert_eq!(
        labs,
        [
            (BHOOMI.to_string(), vec!["bhoomi-blr".to_string()]),
            (GFSL.to_string(), vec!["GFSL".to_string()]),
            (KTH.to_string(), vec!["KTH".to_string()])
        ]
    );
    // the app-shaped result of the flow's response template
    let names: Vec<&str> = doc["result"]["labs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    assert!(names.contains(&"GreenField Soil Labs") && names.contains(&"Krishi Test House"));
    assert!(names.contains(&"Bhoomi Soil Labs"));
}

#[tokio::test]
async fn an_app_shaped_search_goes_through_the_request_template() {
    let net = network(&[]).await;
    let (status, doc) = call(
        &net,
        "search",
        None,
        json!({"crop": "wheat", "pincode": "110081", "collection": "home"}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let intent = &doc["request"]["message"]["intent"];
    assert_eq!(intent["fulfillment"]["type"], "home");
    assert_eq!(
        intent["fulfillment"]["stops"][0]["location"]["area_code"],
        "110081"
    );
    assert_eq!(intent["tags"][0]["list"][0]["value"], "wheat");
    // GreenField serves Delhi; Krishi Test House (Pune) answers with an empty catalog
    let lab = |id: &str| {
        doc["result"]["labs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["bpp_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(!lab(GFSL)["tests"].as_array().unwrap().is_empty());
    assert_eq!(lab(KTH)["tests"], json!([]));
}

#[tokio::test]
async fn a_sync_call_returns_at_the_ttl_with_what_arrived_and_what_did_not() {
    // Krishi Test House is registered but down: the gateway cannot reach it.
    let net = network(&["krishi-lab"]).await;
    let mut body = wheat_search();
    body["context"] = json!({"ttl": "PT2S"});
    let started = Instant::now();
    let (status, doc) = call(&net, "search", Some("sync"), body).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["status"], "timed_out", "{doc}");
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    let mut answered: Vec<&str> = doc["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["context"]["bpp_id"].as_str().unwrap())
        .collect();
    answered.sort();
    assert_eq!(answered, [BHOOMI, GFSL], "what arrived is returned");
    assert_eq!(doc["missing"][0]["bpp_id"], KTH);
    let reason = doc["missing"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("no on_search before the ttl ended"),
        "{reason}"
    );
    let summary = doc["summary"].as_str().unwrap();
    assert!(
        summary.contains("2 of 3") && summary.contains(KTH),
        "{summary}"
    );
}

#[tokio::test]
async fn async_mode_answers_at_once_and_collects_the_callbacks_later() {
    let net = network(&[]).await;
    let (status, doc) = call(&net, "search", Some("async"), wheat_search()).await;
    assert_eq!(status, 202, "{doc}");
    assert_eq!(doc["mode"], "async");
    assert_eq!(doc["ack"]["status"], "ACK");
    let message_id = doc["message_id"].as_str().unwrap().to_string();
    let url = format!("{}/responses/{message_id}", net.client_api);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let collected = loop {
        let got: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        if got["status"] == "complete" {
            break got;
        }
        assert_eq!(got["status"], "waiting", "{got}");
        assert!(Instant::now() < deadline, "never complete: {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(collected["responses"].as_array().unwrap().len(), 3);
    assert_eq!(collected["message_id"], message_id.as_str());
    let unknown = http
        .get(format!(
            "{}/responses/{}",
            net.client_api,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn webhook_deliveries_carry_a_verifiable_hmac() {
    let net = network(&[]).await;
    let (status, doc) = call(&net, "search", Some("webhook"), wheat_search()).await;
    assert_eq!(status, 202, "{doc}");
    let message_id = doc["message_id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let got = net
            .app
            .wait_for(Duration::from_secs(10), |d| {
                d.envelope["message_id"] == message_id.as_str()
                    && !seen.contains(&d.envelope["bpp_id"])
            })
            .await
            .expect("a delivery per lab");
        seen.push(got.envelope["bpp_id"].clone());
    }
    let secret = {
        let set = net.flows.load();
        let flow = set.flow(BAP).unwrap();
        let webhook = flow.bap().unwrap().webhook.as_ref().unwrap();
        webhook.secret.expose().to_string()
    };
    for d in net
        .app
        .deliveries()
        .iter()
        .filter(|d| d.envelope["message_id"] == message_id.as_str())
    {
        assert_eq!(d.envelope["event"], "answer");
        assert_eq!(d.envelope["action"], "on_search");
        assert_eq!(
            d.envelope["callback"]["context"]["message_id"],
            message_id.as_str()
        );
        assert_eq!(d.envelope["via"], "gateway.soil.example");
        assert!(d.envelope["result"]["labs"].is_array(), "{}", d.envelope);
        // checked here independently of the adapter's code: t=<secs>,sha256=HMAC("<t>.<body>")
        let header = d.signature.as_deref().expect("X-Adapter-Signature");
        let (t, tag) = header.split_once(",sha256=").expect("t=..,sha256=..");
        let t = t.strip_prefix("t=").expect("t=");
        let at: i64 = t.parse().unwrap();
        assert!((jiff::Timestamp::now().as_second() - at).abs() < 60);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(&d.raw);
        assert_eq!(hex::encode(mac.finalize().into_bytes()), tag);
        let mut forged = <Hmac<Sha256> as KeyInit>::new_from_slice(b"not the secret").unwrap();
        forged.update(format!("{t}.").as_bytes());
        forged.update(&d.raw);
        assert_ne!(hex::encode(forged.finalize().into_bytes()), tag);
        assert!(d.verified.is_ok());
    }
}

#[tokio::test]
async fn late_and_unknown_callbacks_are_nacked_and_kept() {
    let net = network(&["krishi-lab"]).await;
    let store = net.services.outbox.store.clone();
    // a search whose ttl ends while Krishi Test House is down
    let mut body = wheat_search();
    body["context"] = json!({"ttl": "PT1S"});
    let (_, doc) = call(&net, "search", Some("sync"), body).await;
    assert_eq!(doc["status"], "timed_out", "{doc}");
    let (txn, mid) = (
        doc["transaction_id"].as_str().unwrap().to_string(),
        doc["message_id"].as_str().unwrap().to_string(),
    );

    // Krishi Test House answers after the ttl: NACK 30022, kept as late
    let late = callback(
        &net,
        "krishi-lab",
        "on_search",
        &txn,
        &mid,
        json!({"catalog": {"descriptor": {"name": "Krishi Test House"}, "providers": []}}),
    );
    let (status, nack) = post_signed(&net, "krishi-lab", "on_search", &late).await;
    assert_eq!(status, 400, "{nack}");
    assert_eq!(nack["message"]["ack"]["status"], "NACK");
    assert_eq!(nack["error"]["code"], "30022", "{nack}");
    assert_eq!(nack["error"]["paths"], "context.message_id");
    let kept = store.callbacks_for_message(BAP, &mid).await.unwrap();
    let late_kept: Vec<_> = kept.iter().filter(|c| c.bpp_id == KTH).collect();
    assert_eq!(late_kept.len(), 1);
    assert_eq!(late_kept[0].disposition, Disposition::Late);
    // it does not count as an answer afterwards either
    let again: Value = reqwest::get(format!("{}/responses/{mid}", net.client_api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // (what GreenField and Bhoomi answered in time is there, Krishi's late answer is not)
    assert!(
        again["responses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["context"]["bpp_id"] != KTH),
        "{again}"
    );

    // an on_select answering nothing we sent: NACK 30000, kept as unknown
    let stray_id = uuid::Uuid::new_v4().to_string();
    let stray = callback(
        &net,
        "greenfield-lab",
        "on_select",
        &txn,
        &stray_id,
        json!({"order": {"items": []}}),
    );
    let (status, nack) = post_signed(&net, "greenfield-lab", "on_select", &stray).await;
    assert_eq!(status, 400, "{nack}");
    assert_eq!(nack["error"]["code"], "30000", "{nack}");
    assert_eq!(nack["error"]["paths"], "context.message_id");
    let kept = store.callbacks_for_message(BAP, &stray_id).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].disposition, Disposition::Unknown);
    assert_eq!(kept[0].bpp_id, GFSL);

    // an unsolicited on_status of a transaction that is not ours: refused too
    let foreign = callback(
        &net,
        "greenfield-lab",
        "on_status",
        &uuid::Uuid::new_v4().to_string(),
        &uuid::Uuid::new_v4().to_string(),
        json!({"order": {"id": "GFSL-000042", "status": "ACTIVE"}}),
    );
    let (status, nack) = post_signed(&net, "greenfield-lab", "on_status", &foreign).await;
    assert_eq!(
        (status, nack["error"]["code"].as_str()),
        (400, Some("30000"))
    );

    // signed by one lab, claiming to be the other: 401
    let (status, nack) = post_signed(&net, "greenfield-lab", "on_search", &late).await;
    assert_eq!(status, 401, "{nack}");
    assert_eq!(nack["error"]["code"], "30016");
}

#[tokio::test]
async fn a_repeated_callback_is_filed_once_and_forwarded_once() {
    let net = network(&[]).await;
    let store = net.services.outbox.store.clone();
    let order = json!({"order": {"provider": {"id": "GFSL"},
        "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
            "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}});
    let (status, doc) = call(
        &net,
        "confirm",
        None,
        json!({"context": {"bpp_id": GFSL}, "message": order}),
    )
    .await;
    assert_eq!(
        (status, doc["status"].as_str()),
        (200, Some("complete")),
        "{doc}"
    );
    let txn = doc["transaction_id"].as_str().unwrap().to_string();
    let order_id = doc["responses"][0]["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let update_id = uuid::Uuid::new_v4().to_string();
    let update = callback(
        &net,
        "greenfield-lab",
        "on_status",
        &txn,
        &update_id,
        json!({"order": {"id": order_id, "status": "ACTIVE"}}),
    );
    for _ in 0..2 {
        let (status, ack) = post_signed(&net, "greenfield-lab", "on_status", &update).await;
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["message"]["ack"]["status"], "ACK");
    }
    let filed: Vec<_> = store
        .callbacks_for_transaction(BAP, &txn)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.message_id == update_id)
        .collect();
    assert_eq!(filed.len(), 1, "filed once");
    assert_eq!(filed[0].disposition, Disposition::Unsolicited);
    net.app
        .wait_for(Duration::from_secs(10), |d| {
            d.envelope["message_id"] == update_id.as_str()
        })
        .await
        .expect("the unsolicited update reaches the app");
    let outbox = store.clone();
    wait_until_async("the outbox to drain", Duration::from_secs(10), || async {
        outbox.counts().await.is_ok_and(|c| c.pending == 0)
    })
    .await;
    let forwarded = net
        .app
        .deliveries()
        .iter()
        .filter(|d| d.envelope["message_id"] == update_id.as_str())
        .count();
    assert_eq!(forwarded, 1, "forwarded once");
    // the transaction view shows it with how it was filed
    let view: Value = reqwest::get(format!("{}/transactions/{txn}", net.client_api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["counterpart"]["bpp_id"], GFSL);
    assert_eq!(view["unsolicited"], 1, "{view}");
}

#[tokio::test]
async fn later_requests_follow_the_bpp_of_the_transaction() {
    let net = network(&[]).await;
    let (_, found) = call(&net, "search", None, wheat_search()).await;
    let txn = found["transaction_id"].as_str().unwrap().to_string();
    let select = |provider: &str, item: &str| {
        json!({"context": {"transaction_id": txn},
               "message": {"order": {"provider": {"id": provider},
                   "items": [{"id": item, "quantity": {"selected": {"count": 1}}}],
                   "fulfillments": [{"type": "lab"}]}}})
    };
    // both labs answered the search: the order's provider says which one
    let (status, doc) = call(&net, "select", None, select("KTH", "soil-npk-package")).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["sent"]["to"], KTH);
    assert_eq!(doc["request"]["context"]["bpp_id"], KTH);
    assert_eq!(doc["request"]["context"]["bpp_uri"], net.urls["krishi-lab"]);
    assert_eq!(doc["responses"][0]["context"]["bpp_id"], KTH);
    // from now on the transaction is with Krishi Test House
    let (status, doc) = call(&net, "select", None, select("GFSL", "soil-npk-package")).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["sent"]["to"], KTH);
    let (status, doc) = call(
        &net,
        "status",
        None,
        json!({"context": {"transaction_id": txn, "bpp_id": GFSL}, "message": {"order_id": "X"}}),
    )
    .await;
    assert_eq!(status, 409, "{doc}");
    assert_eq!(doc["error"]["code"], "other_counterpart");

    // a new transaction after a search both labs answered, with a provider neither offers
    let (_, found) = call(&net, "search", None, wheat_search()).await;
    let other = found["transaction_id"].as_str().unwrap().to_string();
    let (status, doc) = call(
        &net,
        "select",
        None,
        json!({"context": {"transaction_id": other},
               "message": {"order": {"provider": {"id": "NOPE"}, "items": [{"id": "x"}]}}}),
    )
    .await;
    assert_eq!(status, 409, "{doc}");
    assert_eq!(doc["error"]["code"], "ambiguous_counterpart");

    // what the adapter owns cannot be set; what breaks the rules is not sent
    let (status, doc) = call(
        &net,
        "status",
        None,
        json!({"context": {"message_id": uuid::Uuid::new_v4().to_string(), "bpp_id": GFSL},
               "message": {"order_id": "X"}}),
    )
    .await;
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{doc}"
    );
    let (status, doc) = call(
        &net,
        "select",
        None,
        json!({"context": {"bpp_id": GFSL},
               "message": {"order": {"items": [{"id": "soil-npk-package"}], "fulfillments": [{"type": "drone"}]}}}),
    )
    .await;
    assert_eq!(status, 422, "{doc}");
    assert_eq!(doc["error"]["code"], "invalid_request");
    assert!(
        doc["error"]["violations"][0]["path"]
            .as_str()
            .unwrap()
            .contains("fulfillments")
    );
    let (status, doc) = call(&net, "teleport", None, json!({})).await;
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (404, Some("unknown_action"))
    );
    let (status, doc) = call(&net, "search", Some("later"), wheat_search()).await;
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (400, Some("bad_mode"))
    );
}

#[tokio::test]
async fn the_client_api_can_require_a_token() {
    let net = SampleNetwork::start(
        &Layout::from_flows_dir(repo().join("flows")),
        NetworkOptions {
            env: [(
                "FARMER_APP_API_TOKEN".to_string(),
                "s3cret-token".to_string(),
            )]
            .into(),
            ..Default::default()
        },
    )
    .await
    .expect("the sample network starts");
    let http = reqwest::Client::new();
    let url = format!("{}/search", net.client_api);
    for auth in [None, Some("Bearer wrong-token"), Some("s3cret-token")] {
        let mut req = http.post(&url).json(&wheat_search());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let resp = http
        .post(&url)
        .header("authorization", "Bearer s3cret-token")
        .json(&wheat_search())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let unauthorised = http
        .get(format!(
            "{}/responses/{}",
            net.client_api,
            uuid::Uuid::new_v4()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
}

#[test]
fn buyer_app_flows_are_checked() {
    let tree = crate::common::temp_tree(&[]);
    let flow = r#"name: broken-app
role: bap
listen: 127.0.0.1:7198
network:
  subscriber_id: broken-app.example
  subscriber_uri: http://127.0.0.1:7198
  verify_signatures: false
domain: agri.soil
gateway: { url: "http://127.0.0.1:7103", subscriber_id: gateway.soil.example }
client:
  base_path: /
  mode: webhook
  actions:
    serch: { request_template: farmer/search_request.j2 }
    select: { response_template: farmer/missing.j2 }
actions:
  search: { reply: { message: {} } }
"#;
    std::fs::write(tree.path().join("flows/broken-app.yaml"), flow).unwrap();
    let problems = match beckn_adapter::compile::load(
        &Layout::from_flows_dir(tree.path().join("flows")),
        &std::collections::HashMap::new(),
    ) {
        Ok(_) => panic!("a broken buyer-app flow compiled"),
        Err(d) => beckn_adapter::config::diagnostic::render_all(&d),
    };
    for expected in [
        "a buyer app (`role: bap`) has no `actions:`",
        "give the gateway's `url` or its `subscriber_id`, not both",
        "the client API needs a path prefix",
        "webhook mode needs `client.webhook`",
        "did you mean `search`?",
        "cannot read template",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
}

#[tokio::test]
async fn an_error_callback_is_reported_at_the_top_of_the_answer_document() {
    let net = network(&[]).await;
    // GreenField's ERP knows no such order: its on_status carries error 30010
    let (status, doc) = call(
        &net,
        "status",
        Some("sync"),
        json!({"context": {"bpp_id": GFSL}, "message": {"order_id": "GFSL-NO-SUCH-ORDER"}}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["status"], "error", "{doc}");
    assert_eq!(doc["errors"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc["errors"][0]["bpp_id"], GFSL);
    assert_eq!(doc["errors"][0]["code"], "30010", "{doc}");
    assert_eq!(
        doc["errors"][0]["message"],
        doc["responses"][0]["error"]["message"]
    );
    let summary = doc["summary"].as_str().unwrap();
    assert!(
        summary.contains("1 with an error") && summary.contains("30010"),
        "{summary}"
    );
    // an answer without an error stays `complete`, with no errors
    let (_, found) = call(&net, "search", Some("sync"), wheat_search()).await;
    assert_eq!(found["status"], "complete", "{found}");
    assert_eq!(found["errors"], json!([]));
}

#[tokio::test]
async fn callbacks_of_an_unknown_transaction_are_listed_by_the_transactions_api() {
    let net = network(&[]).await;
    let foreign_txn = uuid::Uuid::new_v4().to_string();
    let stray_id = uuid::Uuid::new_v4().to_string();
    let stray = callback(
        &net,
        "greenfield-lab",
        "on_status",
        &foreign_txn,
        &stray_id,
        json!({"order": {"id": "GFSL-000042", "status": "ACTIVE"}}),
    );
    let (status, nack) = post_signed(&net, "greenfield-lab", "on_status", &stray).await;
    assert_eq!(
        (status, nack["error"]["code"].as_str()),
        (400, Some("30000"))
    );
    let resp = reqwest::get(format!("{}/transactions/{foreign_txn}", net.client_api))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a transaction with kept callbacks is found"
    );
    let listed: Value = resp.json().await.unwrap();
    assert_eq!(listed["ours"], false, "{listed}");
    assert_eq!(listed["counterpart"], Value::Null);
    let callbacks = listed["callbacks"].as_array().unwrap();
    assert_eq!(callbacks.len(), 1, "{listed}");
    assert_eq!(callbacks[0]["filed_as"], "unknown");
    assert_eq!(callbacks[0]["message_id"], stray_id.as_str());
    assert_eq!(
        callbacks[0]["body"]["context"]["transaction_id"],
        foreign_txn.as_str()
    );
    // a transaction nothing was ever filed under is still not found
    let nothing = reqwest::get(format!(
        "{}/transactions/{}",
        net.client_api,
        uuid::Uuid::new_v4()
    ))
    .await
    .unwrap();
    assert_eq!(nothing.status(), 404);
}

#[tokio::test]
async fn log_payloads_logs_a_buyer_apps_requests_and_callbacks() {
    use crate::common::bind;
    use crate::durability::free_port;
    use std::process::{Command, Stdio};

    let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
    let (erp_listener, erp_addr) = bind().await;
    tokio::spawn(erp.serve(erp_listener, std::future::pending()));
    let (_lims, lims_url) = crate::common::start_lims(Default::default()).await;
    let (gfsl, kth, bhoomi, gateway, app) = (
        free_port().await,
        free_port().await,
        free_port().await,
        free_port().await,
        free_port().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("adapter.log");
    let env: Vec<(&str, String)> = vec![
        ("GFSL_LISTEN", gfsl.to_string()),
        ("GFSL_PUBLIC_URL", format!("http://{gfsl}")),
        ("KTH_LISTEN", kth.to_string()),
        ("KTH_PUBLIC_URL", format!("http://{kth}")),
        ("BHOOMI_LISTEN", bhoomi.to_string()),
        ("BHOOMI_PUBLIC_URL", format!("http://{bhoomi}")),
        ("BHOOMI_LIMS_URL", lims_url),
        ("GATEWAY_LISTEN", gateway.to_string()),
        ("GATEWAY_URL", format!("http://{gateway}")),
        ("FARMER_APP_LISTEN", app.to_string()),
        ("FARMER_APP_URL", format!("http://{app}")),
        (
            "FARMER_APP_WEBHOOK_URL",
            format!("http://{}/hook", free_port().await),
        ),
        ("BECKN_ADMIN", free_port().await.to_string()),
        (
            "GFSL_ERP_URL",
            format!("http://{erp_addr}/api/v1/labs/GFSL"),
        ),
        ("KTH_ERP_URL", format!("http://{erp_addr}/api/v1/labs/KTH")),
        ("BECKN_LOG", "info".into()),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .args([
            "--log-format",
            "json",
            "serve",
            "flows",
            "--log-payloads",
            "--no-watch",
        ])
        .arg("--store")
        .arg(format!("sqlite://{}", dir.path().join("s.db").display()))
        .current_dir(repo())
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let doc: Value = loop {
        let sent = http
            .post(format!("http://{app}/api/search?mode=sync"))
            .json(&wheat_search())
            .send()
            .await;
        if let Ok(resp) = sent {
            break resp.json().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the adapter did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(doc["status"], "complete", "{doc}");
    let message_id = doc["message_id"].as_str().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let payloads: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "payload" && l["flow"] == BAP)
        .collect();
    let about = |direction: &str, action: &str| -> Vec<&Value> {
        payloads
            .iter()
            .filter(|p| p["direction"] == direction && p["action"] == action)
            .filter(|p| {
                p["body"]
                    .as_str()
                    .and_then(|b| serde_json::from_str::<Value>(b).ok())
                    .is_some_and(|b| b["context"]["message_id"] == message_id)
            })
            .collect()
    };
    let sent = about("out", "search");
    assert_eq!(
        sent.len(),
        1,
        "the search sent is logged once: {payloads:?}"
    );
    assert!(
        sent[0]["url"].as_str().unwrap().ends_with("/search"),
        "{:?}",
        sent[0]
    );
    let headers: Value = serde_json::from_str(sent[0]["headers"].as_str().unwrap()).unwrap();
    assert!(
        headers["authorization"].as_str().is_some_and(
            |a| a.contains("farmer-app.example") && a.ends_with("(signature redacted)")
        ),
        "{headers}"
    );
    assert_eq!(
        about("in", "on_search").len(),
        3,
        "every lab's on_search is logged: {payloads:?}"
    );
}

#[tokio::test]
async fn client_api_answers_an_unregistered_bpp_id_with_409() {
    let net = network(&[]).await;
    let mut search = wheat_search();
    search["context"] = json!({"bpp_id": "soil.not-registered.example"});
    let (status, doc) = call(&net, "search", Some("async"), search).await;
    assert_eq!(status, 409, "{doc}");
    assert_eq!(doc["error"]["code"], "unknown_bpp", "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("soil.not-registered.example")),
        "{doc}"
    );
}

#[tokio::test]
async fn an_answer_document_says_when_the_only_callback_was_refused_and_why() {
    let net = network(&["krishi-lab"]).await;
    let mut body = wheat_search();
    body["context"] = json!({"ttl": "PT2S"});
    let (status, doc) = call(&net, "search", Some("async"), body).await;
    assert_eq!(status, 202, "{doc}");
    let (txn, mid) = (
        doc["transaction_id"].as_str().unwrap().to_string(),
        doc["message_id"].as_str().unwrap().to_string(),
    );
    // Krishi Test House's answers arrive, and are refused: signed by another subscriber, and
    // (signed right) breaking the core schema
    let answer = callback(
        &net,
        "krishi-lab",
        "on_search",
        &txn,
        &mid,
        json!({"catalog": {"descriptor": {"name": "Krishi Test House"}, "providers": []}}),
    );
    let (status, nack) = post_signed(&net, "greenfield-lab", "on_search", &answer).await;
    assert_eq!(status, 401, "{nack}");
    let mut broken = answer.clone();
    broken["message"] = json!({"catalog": "none"});
    let (status, nack) = post_signed(&net, "krishi-lab", "on_search", &broken).await;
    assert_eq!(status, 400, "{nack}");

    let url = format!("{}/responses/{mid}", net.client_api);
    let mut doc = Value::Null;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        doc = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if doc["status"] == "timed_out" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(doc["status"], "timed_out", "{doc}");
    let refused = doc["refused"].as_array().expect("a refused list");
    assert_eq!(refused.len(), 2, "{doc}");
    assert!(
        refused
            .iter()
            .all(|r| r["bpp_id"] == KTH && r["action"] == "on_search")
    );
    assert_eq!(refused[0]["code"], "30016", "{doc}");
    assert!(refused[0]["received_at"].as_str().is_some());
    assert!(
        refused[1]["reason"].as_str().unwrap().contains("catalog"),
        "{doc}"
    );
    // (on a busy machine another lab may miss the short ttl too)
    let kth = doc["missing"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["bpp_id"] == KTH)
        .expect("Krishi Test House is missing");
    let reason = kth["reason"].as_str().unwrap();
    assert!(reason.contains("was refused"), "{reason}");
    let summary = doc["summary"].as_str().unwrap();
    assert!(
        summary.contains("no answer from soil.krishitesthouse.example")
            && summary.contains("2 on_search refused"),
        "{summary}"
    );
}
