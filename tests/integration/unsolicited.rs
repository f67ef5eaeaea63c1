//! Status changes pushed by the ERP become unsolicited `on_status` callbacks: a fresh message
//! id, the order's transaction id, and the report link once the report is ready.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{GFSL_ID, Network};

fn unsolicited(net: &Network, txn: &str, code: &str) -> Option<Value> {
    net.bap
        .raw
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.action == "on_status" && r.body["context"]["transaction_id"] == txn)
        .map(|r| r.body.clone())
        .find(|b| b["message"]["order"]["fulfillments"][0]["state"]["descriptor"]["code"] == code)
}

#[tokio::test]
async fn report_ready_reaches_the_farmer_app_unasked() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let order = json!({"order": {"provider": {"id": "GFSL"},
        "items": [{"id": "soil-micronutrient-panel", "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
            "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}});
    let on_confirm = net.call("confirm", &txn, order).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let confirm_message_id = on_confirm["context"]["message_id"].clone();

    // the lab works on the sample; its ERP announces every step
    net.erp
        .advance("GFSL", &order_id)
        .and_then(|_| net.erp.advance("GFSL", &order_id))
        .and_then(|_| net.erp.advance("GFSL", &order_id))
        .expect("lab drop: received, testing, report ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Each pushed event is mapped on its own, so their callbacks may overtake each other.
    let report = loop {
        let earlier = ["SAMPLE-RECEIVED", "TESTING"]
            .iter()
            .all(|code| unsolicited(&net, &txn, code).is_some());
        if let Some(b) = unsolicited(&net, &txn, "REPORT-READY").filter(|_| earlier) {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no unsolicited SAMPLE-RECEIVED, TESTING and REPORT-READY on_status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["context"]["action"], "on_status");
    assert_eq!(report["context"]["bpp_id"], GFSL_ID);
    assert_ne!(
        report["context"]["message_id"], confirm_message_id,
        "a fresh message id"
    );
    assert!(uuid::Uuid::parse_str(report["context"]["message_id"].as_str().unwrap()).is_ok());
    let order = &report["message"]["order"];
    assert_eq!(order["id"], order_id);
    assert_eq!(order["status"], "COMPLETE");
    let url = order["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["descriptor"]["code"] == "report")
        .and_then(|g| g["list"][0]["value"].as_str())
        .expect("report link")
        .to_string();
    assert!(url.ends_with(&format!("{order_id}.pdf")), "{url}");
    // the steps before it were announced too
    assert!(unsolicited(&net, &txn, "SAMPLE-RECEIVED").is_some());
    assert!(unsolicited(&net, &txn, "TESTING").is_some());
}

#[tokio::test]
async fn forged_events_are_refused() {
    let net = Network::start().await;
    let resp = net
        .http
        .post(format!("{}/erp/events", net.bpp_url))
        .header("content-type", "application/json")
        .header("x-erp-signature", "sha256=00ff")
        .body(r#"{"event":"order.status_changed","client_ref":"x","order_no":"GFSL-000001"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let unsigned = net
        .http
        .post(format!("{}/erp/events", net.bpp_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(net.bap.count(), 0);
}

#[tokio::test]
async fn erp_webhook_answers_an_oversized_body_with_413() {
    let net = Network::start().await;
    // Over the flow's default 1 MiB `validation.max_body_bytes`.
    let body = format!(r#"{{"padding":"{}"}}"#, "x".repeat((1 << 20) + 1));
    let resp = net
        .http
        .post(format!("{}/erp/events", net.bpp_url))
        .header("content-type", "application/json")
        .header("x-erp-signature", "sha256=00ff")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than 1048576 bytes")),
        "{answer}"
    );
    assert_eq!(net.bap.count(), 0);
}
