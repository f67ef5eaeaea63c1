//! Status-change webhooks, checked by a real receiver on 127.0.0.1:0.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::{gfsl_order, start_with};
use sample_erp::{ErpConfig, WebhookConfig};

const SECRET: &str = "webhook-test-secret";
/// Generous: a deadline, not a delay. The receiver normally gets each event
/// within milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);

/// One delivery as the receiver saw it.
struct Delivery {
    signature: Option<String>,
    body: Bytes,
}

/// Starts a receiver that forwards every delivery to the returned channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Delivery>) {
    async fn receive(
        State(deliveries): State<mpsc::UnboundedSender<Delivery>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let signature = headers
            .get("x-erp-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // A closed channel just means the test has finished.
        let _ = deliveries.send(Delivery { signature, body });
        StatusCode::NO_CONTENT
    }
    let (sender, deliveries) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route("/hooks/erp", post(receive))
        .with_state(sender);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/hooks/erp"), deliveries)
}

/// Waits for the next delivery, failing the test at the deadline.
async fn next(deliveries: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(DEADLINE, deliveries.recv())
        .await
        .expect("a webhook delivery before the deadline")
        .expect("receiver still running")
}

/// Checks the signature independently of the ERP's own signing code.
fn verify(delivery: &Delivery) -> Value {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(&delivery.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(delivery.signature.as_deref(), Some(expected.as_str()));
    serde_json::from_slice(&delivery.body).expect("JSON event")
}

#[tokio::test]
async fn status_changes_are_posted_signed_and_in_order() {
    let (url, mut deliveries) = receiver().await;
    let erp = start_with(ErpConfig {
        webhook: Some(WebhookConfig {
            url,
            secret: SECRET.to_owned(),
            ..Default::default()
        }),
        ..ErpConfig::default()
    })
    .await;
    let slot_id = erp.first_slot("GFSL").await;
    erp.place(
        "GFSL",
        gfsl_order("hook-1", "soil-npk-package", "HOME_PICKUP", Some(&slot_id)),
    )
    .await;

    erp.advance("GFSL", "GFSL-000001").await;
    let event = verify(&next(&mut deliveries).await);
    assert_eq!(event["event"], "order.status_changed");
    assert_eq!(event["lab_code"], "GFSL");
    assert_eq!(event["order_no"], "GFSL-000001");
    assert_eq!(event["client_ref"], "hook-1");
    assert_eq!(event["status"], "AGENT_ASSIGNED");
    assert_eq!(event["order"]["status"], "AGENT_ASSIGNED");
    assert_eq!(event["order"]["agent"]["name"], "Ramesh Kumar");

    // A jump announces every status passed through, in order.
    let (status, _) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/advance",
            json!({"to": "RECEIVED_AT_LAB"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let first = verify(&next(&mut deliveries).await);
    let second = verify(&next(&mut deliveries).await);
    assert_eq!(first["status"], "SAMPLE_COLLECTED");
    assert_eq!(second["status"], "RECEIVED_AT_LAB");

    // In-process advances notify too.
    erp.erp.advance("GFSL", "GFSL-000001").expect("advances");
    assert_eq!(verify(&next(&mut deliveries).await)["status"], "TESTING");
}

#[tokio::test]
async fn cancellation_is_posted_once() {
    let (url, mut deliveries) = receiver().await;
    let erp = start_with(ErpConfig {
        webhook: Some(WebhookConfig {
            url,
            secret: SECRET.to_owned(),
            ..Default::default()
        }),
        ..ErpConfig::default()
    })
    .await;
    erp.place("GFSL", gfsl_order("hook-2", "soil-ph-ec", "LAB_DROP", None))
        .await;
    for _ in 0..2 {
        let (status, _) = erp
            .post(
                "/labs/GFSL/orders/GFSL-000001/cancel",
                json!({"reason_code": "CHANGED_MIND"}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::OK);
    }
    let event = verify(&next(&mut deliveries).await);
    assert_eq!(event["status"], "CANCELLED");
    assert_eq!(
        event["order"]["cancellation"]["reason_code"],
        "CHANGED_MIND"
    );

    // The repeated cancel changed nothing and so sent nothing: the next
    // delivery is already another order's.
    erp.place("GFSL", gfsl_order("hook-3", "soil-ph-ec", "LAB_DROP", None))
        .await;
    erp.advance("GFSL", "GFSL-000002").await;
    let event = verify(&next(&mut deliveries).await);
    assert_eq!(event["order_no"], "GFSL-000002");
}

#[tokio::test]
async fn an_unreachable_webhook_does_not_break_the_api() {
    // Bind and drop a listener to get a port nobody listens on.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("local address")
    };
    let erp = start_with(ErpConfig {
        webhook: Some(WebhookConfig {
            url: format!("http://{closed}/hooks"),
            secret: SECRET.to_owned(),
            ..Default::default()
        }),
        ..ErpConfig::default()
    })
    .await;
    erp.place("GFSL", gfsl_order("hook-4", "soil-ph-ec", "LAB_DROP", None))
        .await;
    let order = erp.advance("GFSL", "GFSL-000001").await;
    assert_eq!(order["status"], "RECEIVED_AT_LAB");
}
