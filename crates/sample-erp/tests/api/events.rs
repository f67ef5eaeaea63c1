//! The order-events endpoint: status changes listed after a cursor, for integrations that
//! poll instead of taking webhooks.

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{assert_error, gfsl_order, kth_order, start};

fn statuses(page: &Value) -> Vec<&str> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["status"].as_str().expect("status"))
        .collect()
}

#[tokio::test]
async fn status_changes_are_listed_after_a_cursor() {
    let erp = start().await;
    let (status, empty) = erp.get("/labs/KTH/order-events").await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(statuses(&empty), Vec::<&str>::new());
    assert_eq!(empty["next"], 0);

    erp.place(
        "KTH",
        kth_order("poll-1", "soil-npk-package", "LAB_DROP", None),
    )
    .await;
    erp.place("GFSL", gfsl_order("poll-2", "soil-ph-ec", "LAB_DROP", None))
        .await;
    erp.advance("KTH", "KTH-000001").await;
    erp.advance("GFSL", "GFSL-000001").await;
    erp.advance("KTH", "KTH-000001").await;

    let (status, page) = erp.get("/labs/KTH/order-events?after=0&limit=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(statuses(&page), ["RECEIVED_AT_LAB"]);
    let event = &page["events"][0];
    assert_eq!(event["event"], "order.status_changed");
    assert_eq!(event["event_id"], "EV-000001");
    assert_eq!(event["lab_code"], "KTH");
    assert_eq!(event["order_no"], "KTH-000001");
    assert_eq!(event["client_ref"], "poll-1");
    assert_eq!(event["order"]["status"], "RECEIVED_AT_LAB");
    assert_eq!(page["next"], 1);

    // GFSL's change (seq 2) is not KTH's business.
    let (_, rest) = erp.get("/labs/KTH/order-events?after=1").await;
    assert_eq!(statuses(&rest), ["TESTING"]);
    assert_eq!(rest["events"][0]["seq"], 3);
    assert_eq!(rest["next"], 3);
    let (_, caught_up) = erp.get("/labs/KTH/order-events?after=3").await;
    assert_eq!(statuses(&caught_up), Vec::<&str>::new());
    assert_eq!(caught_up["next"], 3, "the cursor stays where it was");

    // The in-process view agrees with the API.
    let page = erp.erp.events("GFSL", None, None).expect("events");
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].order_no, "GFSL-000001");
}

#[tokio::test]
async fn bad_queries_and_labs_are_refused() {
    let erp = start().await;
    let (status, body) = erp.get("/labs/KTH/order-events?after=soon").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let (status, body) = erp.get("/labs/KTH/order-events?limit=0").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    let (status, body) = erp.get("/labs/NOPE/order-events").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, body) = json_without_key(&erp).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

async fn json_without_key(erp: &crate::common::TestErp) -> (StatusCode, Value) {
    let response = erp
        .client
        .get(format!("{}/labs/KTH/order-events", erp.base))
        .send()
        .await
        .expect("GET");
    crate::common::json_of(response).await
}
