//! What the console's transactions list, timeline and overview show beyond the messages
//! accepted: requests refused with a NACK (kept masked, small and bounded in number), a buyer
//! app's sends and a gateway's relays with status and duration, and the headline counters of
//! the last minutes.

use std::time::Instant;

use beckn_adapter::compile::Layout;
use beckn_adapter::demo::{NetworkOptions, SampleNetwork};
use beckn_adapter::store::nacks::{MAX_BODY, MAX_KEPT, NackBudget, NackRecord};

use serde_json::{Value, json};

use crate::common::{Network, repo};
use crate::console::poll;

async fn get(net: &Network, path: &str) -> Value {
    net.http
        .get(format!("http://{}{path}", net.admin_addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An `init` whose order breaks the core schema, with personal data in it.
fn broken_init(net: &Network, txn: &str) -> Vec<u8> {
    let body = net.request(
        "init",
        txn,
        json!({"order": {"items": "not a list",
            "billing": {"name": "Asha Devi", "phone": "+91-98100-33333"}}}),
    );
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn nacked_request_is_listed_and_on_its_timeline_masked() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let (status, nack) = net
        .post_raw("init", "application/json", broken_init(&net, &txn))
        .await;
    assert_eq!(status, 400, "{nack}");
    assert_eq!(nack["message"]["ack"]["status"], "NACK");
    let code = nack["error"]["code"].as_str().unwrap().to_string();

    let listed = poll("the NACKed transaction listed", || async {
        let list = get(
            &net,
            &format!("/console/api/transactions?transaction_id={txn}"),
        )
        .await;
        let t = list["transactions"][0].clone();
        (t["outcome"] == "nack").then_some(t)
    })
    .await;
    assert_eq!(listed["nack_code"], code.as_str());
    assert_eq!(listed["nacks"], 1);
    assert_eq!(listed["last_action"], "init");
    assert_eq!(listed["counterpart"], "farmer-app.example");
    let by_outcome = get(&net, "/console/api/transactions?outcome=nack&action=init").await;
    assert!(
        by_outcome["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["transaction_id"] == txn.as_str()),
        "{by_outcome}"
    );

    let timeline = get(
        &net,
        &format!("/console/api/transactions/greenfield-lab/{txn}"),
    )
    .await;
    let text = timeline.to_string();
    assert!(
        !text.contains("98100-33333") && !text.contains("Asha"),
        "{text}"
    );
    let entry = &timeline["entries"][0];
    assert_eq!(entry["kind"], "received");
    assert_eq!(entry["ack"], "NACK");
    assert_eq!(entry["code"], code.as_str());
    assert_eq!(entry["status"], 400);
    assert!(
        entry["error"].as_str().unwrap().contains("items"),
        "{entry}"
    );
    assert_eq!(entry["body"]["message"]["order"]["billing"]["phone"], "***");
    let auth = entry["headers"]["authorization"].as_str().unwrap();
    assert!(auth.contains("(signature redacted)"), "{auth}");

    // the headline counters of the last minutes count it too
    let overview = get(&net, "/console/api/overview").await;
    assert_eq!(overview["recent"]["minutes"], 15);
    let recent = overview["recent"]["counters"]["requests"][format!("nack {code}")]
        .as_u64()
        .unwrap_or(0);
    assert!(recent >= 1, "{overview}");
}

#[tokio::test]
async fn nacked_flood_does_not_grow_store_unbounded() {
    let net = Network::start().await;
    let started = Instant::now();
    let flood = 300;
    for _ in 0..flood {
        let txn = uuid::Uuid::new_v4().to_string();
        // unsigned: refused before anything is checked
        let (status, _) = net
            .post_with("init", "application/json", broken_init(&net, &txn), &[])
            .await;
        assert_eq!(status, 401);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = (NackBudget::BURST + NackBudget::PER_SECOND * elapsed).ceil() as usize + 1;
    let list = || async {
        let list = get(&net, "/console/api/transactions?outcome=nack&limit=1000").await;
        list["transactions"].as_array().map(Vec::len)
    };
    let kept = poll("the first NACKs kept", || async {
        list().await.filter(|n| *n >= NackBudget::BURST as usize)
    })
    .await;
    // A machine slow enough to refill the budget for every request would keep them all.
    assert!(
        kept <= bound.min(flood),
        "{kept} NACKs kept of {flood} in {elapsed:.1} s (bound {bound})"
    );

    // and however long a flood lasts, the newest MAX_KEPT only
    let store = &net.services.outbox.store;
    let record = |i: usize| {
        NackRecord::new(
            "greenfield-lab",
            "bpp",
            "init",
            ("flooded", &format!("m{i}"), "someone"),
            ("10001", 401, "no signature", None),
            "{}".into(),
            "x".repeat(MAX_BODY * 2).as_bytes(),
        )
    };
    let writes = (0..MAX_KEPT as usize + 20).map(|i| store.record_nack(record(i)));
    for w in futures::future::join_all(writes).await {
        w.expect("kept");
    }
    let nacks = store
        .transaction_record("greenfield-lab", "flooded")
        .await
        .unwrap()
        .nacks;
    assert_eq!(nacks.len(), MAX_KEPT as usize);
    assert!(nacks.iter().all(|n| n.body.len() <= MAX_BODY));
}

#[tokio::test]
async fn buyer_app_sends_and_gateway_relays_are_on_the_timeline() {
    let net = SampleNetwork::start(
        &Layout::from_flows_dir(repo().join("flows")),
        NetworkOptions::default(),
    )
    .await
    .expect("the sample network starts");
    let search = json!({"message": {"intent": {"tags": [{"descriptor": {"code": "crop"},
        "list": [{"descriptor": {"code": "name"}, "value": "wheat"}]}]}}});
    let resp = reqwest::Client::new()
        .post(format!("{}/search?mode=sync", net.client_api))
        .json(&search)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    let txn = doc["transaction_id"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let timeline = |flow: &'static str| {
        let url = format!("{}/console/api/transactions/{flow}/{txn}", net.admin_url);
        let http = http.clone();
        async move {
            let t: Value = http.get(url).send().await.ok()?.json().await.ok()?;
            t["entries"].as_array().cloned()
        }
    };

    // the buyer app's send: to the gateway, its status and how long it took
    let sent = poll("the buyer app's send noted", || async {
        let entries = timeline("farmer-app").await?;
        entries
            .into_iter()
            .find(|e| e["kind"] == "sent" && e["action"] == "search" && e["calls"].is_array())
    })
    .await;
    let call = &sent["calls"][0];
    assert_eq!(call["step"], "send");
    assert_eq!(call["backend"], "gateway.soil.example");
    assert_eq!(call["status"], 200);
    assert!(call["failure"].is_null(), "{call}");
    assert!(call["took_ms"].is_u64());

    // the gateway's relays: the search to each lab, each lab's on_search back
    let entries = poll("the gateway's relays noted", || async {
        let entries = timeline("soil-gateway").await?;
        let relays = |action: &str| {
            entries
                .iter()
                .filter(|e| e["action"] == action)
                .filter_map(|e| e["calls"].as_array())
                .flatten()
                .count()
        };
        (relays("search") == 3 && relays("on_search") == 3).then_some(entries)
    })
    .await;
    let search = entries
        .iter()
        .find(|e| e["action"] == "search" && e["kind"] == "sent")
        .expect("the search, with its relays");
    let mut to: Vec<&str> = search["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["step"], "relay");
            assert_eq!(c["status"], 200, "{c}");
            assert!(c["path"].as_str().unwrap().ends_with("/search"), "{c}");
            c["backend"].as_str().unwrap()
        })
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            "soil.bhoomi-labs.example",
            "soil.greenfield-labs.example",
            "soil.krishitesthouse.example"
        ]
    );
    let back: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "on_search")
        .collect();
    assert!(back.iter().all(|e| e["kind"] == "calls"), "{back:?}");
    assert!(
        back.iter()
            .all(|e| e["calls"][0]["backend"] == "farmer-app.example"
                && e["calls"][0]["status"] == 200),
        "{back:?}"
    );
}
