//! Who may act on what, seen from outside: a second, independent buyer app holding a valid
//! key tries to read and change the farmer app's order, to join its transaction, and to reuse
//! a message id; the provider tells it nothing and changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use beckn_adapter::beckn::signing::PrivateKey;
use serde_json::{Value, json};

use crate::common::{Inbox, Network, bind, record, repo};

/// TEST-ONLY key of `other-app.example` (registry/local.yaml).
const OTHER_KEY: &str =
    "4UzVQqIjTxyIQ860F5Z85PJGoi6ra2UOCEYAol5FjYa6asprKf2JC2B76zOIMuFr5nSa9DtsxsDh9coWQnI5hQ==";
const OTHER_ID: &str = "other-app.example";

/// The shipped network plus the second buyer app's stand-in, registered at its own URL.
async fn network_with_a_second_buyer_app() -> (Network, Arc<Inbox>, String) {
    let (listener, addr) = bind().await;
    let inbox = Arc::new(Inbox::default());
    let router = Router::new()
        .route("/{action}", post(record))
        .with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let url = format!("http://{addr}");
    let env = HashMap::from([("OTHER_APP_URL".to_string(), url.clone())]);
    let net = Network::start_env(&repo().join("flows"), None, env).await;
    (net, inbox, url)
}

/// A request of the second buyer app, signed with its key; returns status and answer.
async fn send_as_other(
    net: &Network,
    other_url: &str,
    action: &str,
    transaction_id: &str,
    message: Value,
) -> (u16, Value, String) {
    let mut body = net.request(action, transaction_id, message);
    body["context"]["bap_id"] = json!(OTHER_ID);
    body["context"]["bap_uri"] = json!(other_url);
    let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
    let bytes = serde_json::to_vec(&body).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let auth = PrivateKey::from_base64(OTHER_KEY).unwrap().sign(
        &bytes,
        &format!("{OTHER_ID}|other-app-key-1"),
        now,
        now + 60,
    );
    let (status, answer) = net
        .post_with(
            action,
            "application/json",
            bytes,
            &[("authorization", auth.as_str())],
        )
        .await;
    (status, answer, message_id)
}

fn lab_drop_order() -> Value {
    json!({"order": {"provider": {"id": "GFSL"},
        "items": [{"id": "soil-micronutrient-panel", "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
            "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}})
}

#[tokio::test]
async fn second_buyer_app_can_neither_read_nor_change_another_apps_order() {
    let (net, other, other_url) = network_with_a_second_buyer_app().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let on_confirm = net.call("confirm", &txn, lab_drop_order()).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .expect("the farmer app's order")
        .to_string();

    // Every order action of the other app, in a transaction of its own, about that order and
    // about one that does not exist: the two answers are the same but for the id.
    let cases = [
        ("status", json!({"order_id": "$ID"}), "30010"),
        ("track", json!({"order_id": "$ID"}), "30010"),
        (
            "cancel",
            json!({"order_id": "$ID", "cancellation_reason_id": "FARMER-UNAVAILABLE"}),
            "30010",
        ),
        (
            "rating",
            json!({"ratings": [{"rating_category": "Order", "id": "$ID", "value": "1"}]}),
            "30014",
        ),
        (
            "support",
            json!({"support": {"ref_id": "$ID", "callback_phone": "+91-90000-00000"}}),
            "30010",
        ),
    ];
    for (action, message, code) in cases {
        let mut answers = Vec::new();
        for id in [order_id.as_str(), "GFSL-999999"] {
            let message: Value =
                serde_json::from_str(&message.to_string().replace("$ID", id)).unwrap();
            let own_txn = uuid::Uuid::new_v4().to_string();
            let (status, ack, message_id) =
                send_as_other(&net, &other_url, action, &own_txn, message).await;
            assert_eq!(status, 200, "{action} {id}: {ack}");
            let callback = other
                .wait(
                    &format!("on_{action}"),
                    &message_id,
                    Duration::from_secs(10),
                )
                .await;
            assert_eq!(callback["error"]["code"], code, "{action} {id}: {callback}");
            assert!(
                callback["message"].get("order").is_none(),
                "{action} {id}: {callback}"
            );
            let text = callback.to_string();
            for secret in ["Asha", "98100", "Pusa", "110012"] {
                assert!(!text.contains(secret), "{action} leaked {secret}: {text}");
            }
            answers.push(
                callback["error"]["message"]
                    .as_str()
                    .unwrap()
                    .replace(id, "ID"),
            );
        }
        assert_eq!(
            answers[0], answers[1],
            "{action}: the answers tell the orders apart"
        );
    }

    // The order is as it was: not cancelled at the ERP, no rating or ticket on it, and the
    // farmer app heard of nothing.
    let order = net
        .erp
        .orders()
        .into_iter()
        .find(|o| o.order_no == order_id)
        .expect("the order at the ERP");
    assert_eq!(format!("{:?}", order.status), "Booked", "{order:?}");
    let farmer_heard: Vec<String> = net
        .bap
        .raw
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.action.clone())
        .collect();
    assert_eq!(
        farmer_heard,
        ["on_confirm"],
        "the farmer app got only its answer"
    );

    // Nor can the other app act inside the farmer app's transaction.
    for (action, message) in [
        ("status", json!({"order_id": order_id})),
        ("confirm", lab_drop_order()),
    ] {
        let (status, nack, _) = send_as_other(&net, &other_url, action, &txn, message).await;
        assert_eq!(status, 409, "{action}: {nack}");
        assert_eq!(nack["message"]["ack"]["status"], "NACK");
        assert_eq!(nack["error"]["code"], "30000");
        assert_eq!(nack["error"]["paths"], "context.transaction_id");
    }

    // The farmer app still sees its order.
    let on_status = net
        .call("status", &txn, json!({"order_id": order_id}))
        .await;
    assert_eq!(on_status["message"]["order"]["id"], order_id.as_str());
}

#[tokio::test]
async fn message_id_used_again_for_a_different_message_is_refused() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let first = net.request("search", &txn, json!({}));
    let send = |body: &Value| {
        let bytes = serde_json::to_vec(body).unwrap();
        net.post_raw("search", "application/json", bytes)
    };
    let (status, ack) = send(&first).await;
    assert_eq!(
        (status, &ack["message"]["ack"]["status"]),
        (200, &json!("ACK"))
    );
    let message_id = first["context"]["message_id"].as_str().unwrap();
    net.bap
        .wait("on_search", message_id, Duration::from_secs(10))
        .await;

    // the same bytes again: ACKed again, answered once
    let (status, ack) = send(&first).await;
    assert_eq!(
        (status, &ack["message"]["ack"]["status"]),
        (200, &json!("ACK"))
    );

    // the same id for another body, another transaction: refused with the reason
    let mut other_body = first.clone();
    other_body["message"] = json!({"intent": {"fulfillment": {"type": "lab"}}});
    let mut other_txn = first.clone();
    other_txn["context"]["transaction_id"] = json!(uuid::Uuid::new_v4().to_string());
    for reuse in [other_body, other_txn] {
        let (status, nack) = send(&reuse).await;
        assert_eq!(status, 409, "{nack}");
        assert_eq!(nack["message"]["ack"]["status"], "NACK");
        assert_eq!(nack["error"]["code"], "30000");
        assert_eq!(nack["error"]["paths"], "context.message_id");
        assert!(
            nack["error"]["message"]
                .as_str()
                .unwrap()
                .contains("used before for a different message"),
            "{nack}"
        );
    }
    // Another search proves the queue is drained; still one answer to the reused id.
    let later = net.call("search", &txn, json!({})).await;
    assert!(later.get("error").is_none(), "{later}");
    let answers = net
        .bap
        .wait_n("on_search", message_id, 1, Duration::from_secs(1))
        .await;
    assert_eq!(answers.len(), 1, "the reused id was answered once");
}
