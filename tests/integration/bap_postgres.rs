//! A buyer app on a PostgreSQL store shared by several processes: a caller waiting in one
//! process wakes when its callback is filed by another (`LISTEN`/`NOTIFY`). Like the other
//! PostgreSQL tests these need a server (`BECKN_TEST_POSTGRES_URL`) and are `#[ignore]`d in the
//! plain test run; CI runs them with `--ignored`.

use std::time::{Duration, Instant};

use beckn_adapter::app::Served;
use beckn_adapter::compile::Layout;
use beckn_adapter::demo::{NetworkOptions, SampleNetwork};
use beckn_adapter::store::buyer::signal_payload;
use beckn_adapter::store::postgres::PgStore;
use beckn_adapter::store::{Accepted, BuyerStore, Disposition, NewCallback};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::{TestApp, bind, repo};
use crate::postgres::TestDb;

fn filed(message_id: &str) -> NewCallback {
    NewCallback {
        flow: "farmer-app".into(),
        action: "on_search".into(),
        message_id: message_id.into(),
        transaction_id: "t1".into(),
        bpp_id: "soil.greenfield-labs.example".into(),
        via: None,
        disposition: Disposition::Answer,
        body: Bytes::from_static(b"{}"),
        headers: "{}".into(),
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn postgres_announces_a_filed_callback_to_every_process() {
    let db = TestDb::create().await;
    let here = PgStore::open(&db.url).await.unwrap();
    let there = PgStore::open(&db.url).await.unwrap();
    let mut announced = here.callback_signals().expect("a shared store announces");
    // The listener connects in the background: file until one announcement comes through.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let message_id = uuid::Uuid::new_v4().to_string();
        assert_eq!(
            there.file_callback(filed(&message_id), None).await.unwrap(),
            Accepted::New
        );
        match tokio::time::timeout(Duration::from_millis(200), announced.recv()).await {
            Ok(Ok(payload)) => {
                assert_eq!(payload, signal_payload("farmer-app", &message_id));
                break;
            }
            _ => assert!(
                Instant::now() < deadline,
                "no announcement from the other process"
            ),
        }
    }
    // a repeat is filed once and announced no more
    let message_id = uuid::Uuid::new_v4().to_string();
    there.file_callback(filed(&message_id), None).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), announced.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(next, signal_payload("farmer-app", &message_id));
    assert_eq!(
        there.file_callback(filed(&message_id), None).await.unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(
        here.callbacks_for_message("farmer-app", &message_id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn postgres_wakes_a_sync_caller_in_one_process_when_its_callbacks_land_in_another() {
    let db = TestDb::create().await;
    // Process B: the whole sample network; the farmer app's registered URL is B's.
    let net = SampleNetwork::start(
        &Layout::from_flows_dir(repo().join("flows")),
        NetworkOptions {
            store_url: Some(db.url.clone()),
            ..Default::default()
        },
    )
    .await
    .expect("the sample network starts");
    // Process A: a second adapter on the same flows and the same store, serving only the
    // farmer-app flow, on an address of its own: the labs' answers never reach it directly
    // (the farmer app's registered URL is B's).
    let (listener, addr) = bind().await;
    let mut env = net.env.clone();
    env.insert("FARMER_APP_LISTEN".into(), addr.to_string());
    let _a = TestApp::start(&repo().join("flows"), env, vec![listener], |settings| {
        settings.store_url = db.url.clone();
        settings.served = Served::Only(vec!["farmer-app".into()]);
    })
    .await;

    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/api/search?mode=sync"))
        .json(&json!({"message": {"intent": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["status"], "complete", "{doc}");
    assert_eq!(doc["responses"].as_array().unwrap().len(), 3);
    // B filed them; A only read them
    let filed = net
        .services
        .outbox
        .store
        .callbacks_for_message("farmer-app", doc["message_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(filed.len(), 3);
}
