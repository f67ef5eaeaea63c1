//! Where callbacks may go and how they are sent: never to the adapter's own admin listener nor
//! to anything but http(s); a slow receiver and the callback timeout; the bounds of an error a
//! flow puts in a callback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use beckn_adapter::app::AdminSettings;
use beckn_adapter::store::DeadLetter;
use serde_json::{Value, json};

use crate::common::{Network, bind, temp_tree};

/// Sends a search whose callback goes to `bap_uri` (the farmer app's registered URL in `net`);
/// returns its message id.
async fn search_answered_at(net: &Network, bap_uri: &str) -> String {
    let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
    body["context"]["bap_uri"] = json!(bap_uri);
    let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
    let (status, ack) = net
        .post_raw(
            "search",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    message_id
}

/// Waits (up to 15 s) until the callback answering `message_id` is a dead letter.
async fn dead_letter(net: &Network, message_id: &str) -> DeadLetter {
    let store = &net.services.outbox.store;
    let started = Instant::now();
    loop {
        let dead = store.dead_letters(100).await.expect("dead letters");
        if let Some(d) = dead.into_iter().find(|d| d.message_id == message_id) {
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the callback of {message_id} never became a dead letter"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to `deadline`) until nothing is pending in the outbox.
async fn outbox_settled(net: &Network, deadline: Duration) {
    let started = Instant::now();
    while net
        .services
        .outbox
        .store
        .counts()
        .await
        .expect("counts")
        .pending
        > 0
    {
        assert!(started.elapsed() < deadline, "the outbox never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn callbacks_never_reach_the_admin_listener() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let (admin_listener, admin_addr) = bind().await;
    // a BAP registered at the admin listener's reload endpoint, under the name `localhost`
    let bap_uri = format!("http://localhost:{}/admin/reload?", admin_addr.port());
    // The adapter's own admin listener, as `serve` runs it: nothing tells the outbox about it
    // but the application's wiring.
    let net = Network::start_app(
        &tree.path().join("flows"),
        None,
        HashMap::from([("FARMER_APP_URL".to_string(), bap_uri.clone())]),
        vec![admin_listener],
        |settings| {
            settings.admin = Some(AdminSettings {
                listen: admin_addr,
                token: None,
            })
        },
    )
    .await;
    assert_eq!(net.admin_addr, admin_addr);

    let message_id = search_answered_at(&net, &bap_uri).await;
    let dead = dead_letter(&net, &message_id).await;
    assert_eq!(dead.attempts, 1, "refused at once, not retried: {dead:?}");
    let why = dead.last_error.unwrap_or_default();
    assert!(why.contains("admin listener"), "{why}");
    // What reaching it would have done: `POST /admin/reload` runs a reload.
    assert_eq!(net.reloader.runs(), 0, "nothing reached the admin listener");
}

#[tokio::test]
async fn callbacks_to_non_http_urls_are_dead_letters_without_retries() {
    for bap_uri in ["gopher://127.0.0.1:70/_beckn", "file://localhost/tmp/beckn"] {
        let tree = temp_tree(&["greenfield-lab.yaml"]);
        // a network whose domain rules say nothing about subscriber URLs
        let rules = tree.path().join("schemas/domains/agri.soil.yaml");
        let text = std::fs::read_to_string(&rules).unwrap().replace(
            "require_https: true\n  same_domain_as_id: true",
            "require_https: false\n  same_domain_as_id: false",
        );
        std::fs::write(&rules, text).unwrap();
        let net = Network::start_env(
            &tree.path().join("flows"),
            None,
            HashMap::from([("FARMER_APP_URL".to_string(), bap_uri.to_string())]),
        )
        .await;
        let message_id = search_answered_at(&net, bap_uri).await;
        let dead = dead_letter(&net, &message_id).await;
        assert_eq!(dead.attempts, 1, "{bap_uri}: not retried: {dead:?}");
        let why = dead.last_error.unwrap_or_default();
        assert!(why.contains("is not http or https"), "{bap_uri}: {why}");
    }
}

/// A BAP stand-in that takes `delays[n]` to answer its n-th request (the last delay for the
/// rest), counting requests as they arrive.
async fn slow_receiver(delays: Vec<Duration>) -> (SocketAddr, Arc<AtomicUsize>) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let state = (arrived.clone(), Arc::new(delays));
    let router = Router::new()
        .route(
            "/{action}",
            post(
                |State((arrived, delays)): State<(Arc<AtomicUsize>, Arc<Vec<Duration>>)>| async move {
                    let n = arrived.fetch_add(1, Ordering::SeqCst);
                    let delay = delays.get(n).or(delays.last()).copied().unwrap_or_default();
                    tokio::time::sleep(delay).await;
                    axum::Json(json!({"message": {"ack": {"status": "ACK"}}}))
                },
            ),
        )
        .with_state(state);
    let (listener, addr) = bind().await;
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, arrived)
}

/// A copy of the sample tree whose greenfield-lab flow has `limits.callback_timeout`.
fn tree_with_callback_timeout(timeout: &str) -> tempfile::TempDir {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let path = tree.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).unwrap();
    let flow = flow.replacen(
        "domain: agri.soil\n",
        &format!("domain: agri.soil\nlimits:\n  callback_timeout: {timeout}\n"),
        1,
    );
    std::fs::write(&path, flow).unwrap();
    tree
}

#[tokio::test]
async fn a_receiver_slower_than_the_default_timeout_but_within_the_flows_gets_one_callback() {
    // 5.5 s: slower than the default callback timeout (5 s), within the flow's (10 s)
    let (addr, arrived) = slow_receiver(vec![Duration::from_millis(5500)]).await;
    let tree = tree_with_callback_timeout("10s");
    let bap_uri = format!("http://{addr}");
    let net = Network::start_env(
        &tree.path().join("flows"),
        None,
        HashMap::from([("FARMER_APP_URL".to_string(), bap_uri.clone())]),
    )
    .await;
    search_answered_at(&net, &bap_uri).await;
    let started = Instant::now();
    while arrived.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no callback");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outbox_settled(&net, Duration::from_secs(15)).await;
    let counts = net.services.outbox.store.counts().await.unwrap();
    assert_eq!(counts.dead, 0);
    assert_eq!(arrived.load(Ordering::SeqCst), 1, "received exactly once");
}

#[tokio::test]
async fn a_receiver_slower_than_the_callback_timeout_sees_a_repeat_of_the_same_message() {
    // the flow waits 1 s; the receiver takes 1.5 s the first time, then answers at once
    let (addr, arrived) = slow_receiver(vec![Duration::from_millis(1500), Duration::ZERO]).await;
    let tree = tree_with_callback_timeout("1s");
    let bap_uri = format!("http://{addr}");
    let net = Network::start_env(
        &tree.path().join("flows"),
        None,
        HashMap::from([("FARMER_APP_URL".to_string(), bap_uri.clone())]),
    )
    .await;
    search_answered_at(&net, &bap_uri).await;
    let started = Instant::now();
    while arrived.load(Ordering::SeqCst) < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "no repeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outbox_settled(&net, Duration::from_secs(10)).await;
    assert_eq!(net.services.outbox.store.counts().await.unwrap().dead, 0);
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "one repeat, then delivered"
    );
}

#[tokio::test]
async fn script_error_codes_outside_the_beckn_table_are_replaced_and_messages_bounded() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    // 15 bytes doubled 16 times: a 960 KiB message with a two-byte character in it
    std::fs::write(
        tree.path().join("mappings/soil/search_filters.rhai"),
        "let m = \"slot is full é\";\nfor i in 0..16 { m += m; }\nthrow #{ code: \"99999\", message: m };\n",
    )
    .unwrap();
    let net = Network::start_tree(&tree.path().join("flows"), None).await;
    let txn = uuid::Uuid::new_v4().to_string();
    let on_search = net.call("search", &txn, json!({})).await;
    let error: &Value = &on_search["error"];
    assert_eq!(error["code"], "31001", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.len() <= 1024, "{} bytes", message.len());
    assert!(message.starts_with("slot is full é"), "{message}");
    assert!(message.ends_with('…'), "{message}");
}

#[tokio::test]
async fn template_error_codes_outside_the_beckn_table_are_replaced_and_messages_bounded() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    // 600 two-byte characters: 1200 bytes
    std::fs::write(
        tree.path().join("mappings/soil/on_search.j2"),
        "{{ fail(\"99999\", \"é\" * 600) }}\n",
    )
    .unwrap();
    let net = Network::start_tree(&tree.path().join("flows"), None).await;
    let txn = uuid::Uuid::new_v4().to_string();
    let on_search = net.call("search", &txn, json!({})).await;
    let error: &Value = &on_search["error"];
    assert_eq!(error["code"], "31001", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.len() <= 1024, "{} bytes", message.len());
    assert!(
        message.starts_with("éé") && message.ends_with('…'),
        "{message}"
    );
}
