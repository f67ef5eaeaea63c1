//! Slots, quotes, orders and their life cycle, cancellation, tracking,
//! feedback, tickets and request validation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestErp, assert_error, gfsl_order, json_of, kth_order, start};

fn timestamp(value: &Value) -> jiff::Timestamp {
    value
        .as_str()
        .expect("timestamp string")
        .parse()
        .expect("RFC 3339 timestamp")
}

async fn status_of(erp: &TestErp, lab: &str, order_no: &str) -> Value {
    let (status, order) = erp.get(&format!("/labs/{lab}/orders/{order_no}")).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    order["status"].clone()
}

#[tokio::test]
async fn slots_cover_the_next_week_three_a_day() {
    let erp = start().await;
    let (status, body) = erp.get("/labs/GFSL/slots").await;
    assert_eq!(status, StatusCode::OK);
    let slots = body["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 21);
    let first_day = &slots[..3];
    let date = first_day[0]["date"].as_str().expect("date").to_owned();
    for (slot, hhmm) in first_day.iter().zip(["0900", "1100", "1400"]) {
        assert_eq!(slot["slot_id"], format!("GFSL-{date}-{hhmm}"));
        assert_eq!(slot["date"], date);
        assert_eq!(slot["mode"], "HOME_PICKUP");
        assert_eq!(slot["capacity"], 3);
        assert_eq!(slot["booked"], 0);
        let start = slot["start"].as_str().expect("start");
        assert!(start.ends_with("+05:30"), "{start}");
        assert_eq!(&start[11..16], format!("{}:{}", &hhmm[..2], &hhmm[2..]));
        let length = timestamp(&slot["end"]).duration_since(timestamp(&slot["start"]));
        assert_eq!(length, jiff::SignedDuration::from_hours(2));
    }
    assert!(timestamp(&slots[0]["start"]) > jiff::Timestamp::now());

    let (status, body) = erp
        .get(&format!("/labs/KTH/slots?date={date}&mode=LAB_DROP"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let slots = body["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 3);
    assert_eq!(slots[0]["slot_id"], format!("KTH-{date}-0900"));
    assert_eq!(slots[0]["mode"], "LAB_DROP");
}

#[tokio::test]
async fn bad_slot_queries_are_refused() {
    let erp = start().await;
    for query in ["date=24-11-2026", "mode=DRONE", "mode=VIRTUAL"] {
        let (status, body) = erp.get(&format!("/labs/GFSL/slots?{query}")).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
}

#[tokio::test]
async fn quote_adds_pickup_fee_and_gst() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    let (status, quote) = erp
        .post(
            "/labs/GFSL/quotes",
            json!({
                "items": [
                    {"sku": "soil-npk-package", "qty": 2},
                    {"sku": "soil-micronutrient-panel", "qty": 1}
                ],
                "mode": "HOME_PICKUP",
                "pincode": "110012",
                "slot_id": slot_id,
                "customer": {"name": "Asha", "phone": "+91-98765-43210"}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{quote}");
    assert!(
        quote["quote_id"]
            .as_str()
            .is_some_and(|q| q.starts_with("Q-"))
    );
    assert_eq!(quote["lab_code"], "GFSL");
    assert_eq!(
        quote["lines"],
        json!([
            {"sku": "soil-npk-package", "title": "Soil NPK Package", "qty": 2,
             "unit_price_paise": 49900, "amount_paise": 99800},
            {"sku": "soil-micronutrient-panel", "title": "Soil Micronutrient Panel", "qty": 1,
             "unit_price_paise": 89900, "amount_paise": 89900}
        ])
    );
    assert_eq!(quote["pickup_fee_paise"], 5000);
    // 18% of (99800 + 89900 + 5000) = 35046
    assert_eq!(quote["gst_paise"], 35046);
    assert_eq!(quote["total_paise"], 99800 + 89900 + 5000 + 35046);
    assert_eq!(quote["currency"], "INR");
    assert_eq!(quote["slot"]["slot_id"], slot_id);
    assert_eq!(
        quote["payment_terms"],
        json!({"mode": "CASH_ON_COLLECTION", "collected_by": "LAB"})
    );
    let until = timestamp(&quote["valid_until"]);
    let ahead = until.duration_since(jiff::Timestamp::now());
    assert!(
        ahead > jiff::SignedDuration::from_mins(14) && ahead <= jiff::SignedDuration::from_mins(15),
        "{ahead:?}"
    );
}

#[tokio::test]
async fn quote_gst_rounds_to_the_nearest_paisa() {
    let erp = start().await;
    let quote = |lab: &'static str, sku: &'static str| {
        let erp = &erp;
        async move {
            let (status, quote) = erp
                .post(
                    &format!("/labs/{lab}/quotes"),
                    json!({"items": [{"sku": sku, "qty": 1}], "mode": "LAB_DROP"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{quote}");
            quote
        }
    };
    let down = quote("GFSL", "soil-ph-ec").await;
    assert_eq!(down["pickup_fee_paise"], 0);
    assert_eq!(down["gst_paise"], 4500); // 4499.82
    assert_eq!(down["total_paise"], 24999 + 4500);
    assert_eq!(down["slot"], Value::Null);
    let half = quote("KTH", "water-irrigation-test").await;
    assert_eq!(half["gst_paise"], 3596); // 3595.5
}

#[tokio::test]
async fn quote_refuses_bad_items_modes_pincodes_and_slots() {
    let erp = start().await;
    let quote = |body: Value| erp.post("/labs/GFSL/quotes", body);

    let (status, body) =
        quote(json!({"items": [{"sku": "soil-gold", "qty": 1}], "mode": "LAB_DROP"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "UNKNOWN_SKU");
    assert_eq!(body["message"], "unknown sku 'soil-gold'");

    let (status, body) =
        quote(json!({"items": [{"sku": "soil-npk-package", "qty": 0}], "mode": "LAB_DROP"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");

    let (status, body) =
        quote(json!({"items": [{"sku": "soil-ph-ec", "qty": 1}], "mode": "HOME_PICKUP"})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");

    let (status, body) = quote(json!({
        "items": [{"sku": "soil-npk-package", "qty": 1}], "mode": "HOME_PICKUP", "pincode": "560001"
    }))
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "OUTSIDE_SERVICE_AREA",
    );
    assert_eq!(
        body["message"],
        "pincode 560001 is outside the service area"
    );

    let (status, body) = quote(json!({
        "items": [{"sku": "soil-npk-package", "qty": 1}], "mode": "HOME_PICKUP",
        "customer": {"pincode": "411005"}
    }))
    .await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "OUTSIDE_SERVICE_AREA",
    );

    let (status, body) = quote(json!({
        "items": [{"sku": "soil-npk-package", "qty": 1}], "mode": "HOME_PICKUP",
        "slot_id": "GFSL-1999-01-01-0900"
    }))
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "SLOT_UNAVAILABLE");
}

#[tokio::test]
async fn order_has_every_field_and_books_the_slot() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    let order = erp
        .place(
            "GFSL",
            gfsl_order("ref-1", "soil-npk-package", "HOME_PICKUP", Some(&slot_id)),
        )
        .await;
    assert_eq!(order["order_no"], "GFSL-000001");
    assert_eq!(order["lab_code"], "GFSL");
    assert_eq!(order["client_ref"], "ref-1");
    assert_eq!(order["status"], "BOOKED");
    assert_eq!(order["items"][0]["amount_paise"], 49900);
    assert_eq!(order["pickup_fee_paise"], 5000);
    assert_eq!(order["gst_paise"], 9882);
    assert_eq!(order["total_paise"], 49900 + 5000 + 9882);
    assert_eq!(order["currency"], "INR");
    assert_eq!(order["mode"], "HOME_PICKUP");
    assert_eq!(order["slot"]["slot_id"], slot_id);
    assert_eq!(order["customer"]["pincode"], "110037");
    assert_eq!(order["billing"]["name"], "Asha Devi");
    assert_eq!(
        order["payment"],
        json!({"mode": "CASH_ON_COLLECTION", "status": "PENDING"})
    );
    for empty in [
        "agent",
        "report_url",
        "tracking_url",
        "cancellation",
        "feedback",
    ] {
        assert_eq!(order[empty], Value::Null, "{empty}");
    }
    assert_eq!(order["created_at"], order["updated_at"]);
    assert_eq!(order["history"][0]["status"], "BOOKED");

    let (_, fetched) = erp.get("/labs/GFSL/orders/GFSL-000001").await;
    assert_eq!(fetched, order);
    let (_, slots) = erp.get("/labs/GFSL/slots").await;
    assert_eq!(slots["slots"][0]["booked"], 1);

    let second = erp
        .place(
            "KTH",
            kth_order("ref-1", "soil-npk-package", "LAB_DROP", None),
        )
        .await;
    assert_eq!(second["order_no"], "KTH-000001", "numbering is per lab");
}

#[tokio::test]
async fn same_client_ref_returns_the_existing_order() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    let body = gfsl_order(
        "retry-me",
        "soil-npk-package",
        "HOME_PICKUP",
        Some(&slot_id),
    );
    let first = erp.place("GFSL", body.clone()).await;
    let (status, again) = erp.post("/labs/GFSL/orders", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first);
    assert_eq!(erp.erp.orders().len(), 1);
    let (_, slots) = erp.get("/labs/GFSL/slots").await;
    assert_eq!(slots["slots"][0]["booked"], 1, "the slot is booked once");
}

#[tokio::test]
async fn a_full_slot_is_unavailable_until_a_booking_is_cancelled() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    for n in 1..=3 {
        erp.place(
            "GFSL",
            gfsl_order(
                &format!("r{n}"),
                "soil-npk-package",
                "HOME_PICKUP",
                Some(&slot_id),
            ),
        )
        .await;
    }
    let (status, body) = erp
        .post(
            "/labs/GFSL/orders",
            gfsl_order("r4", "soil-npk-package", "HOME_PICKUP", Some(&slot_id)),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "SLOT_UNAVAILABLE");
    let (status, body) = erp
        .post(
            "/labs/GFSL/quotes",
            json!({"items": [{"sku": "soil-npk-package", "qty": 1}], "mode": "HOME_PICKUP", "slot_id": slot_id}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "SLOT_UNAVAILABLE");
    assert_eq!(erp.erp.orders().len(), 3);

    let (status, _) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000002/cancel",
            json!({"reason_code": "CHANGED_MIND"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    erp.place(
        "GFSL",
        gfsl_order("r4", "soil-npk-package", "HOME_PICKUP", Some(&slot_id)),
    )
    .await;
}

#[tokio::test]
async fn home_pickup_goes_through_every_status() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    erp.place(
        "GFSL",
        gfsl_order(
            "walk",
            "soil-micronutrient-panel",
            "HOME_PICKUP",
            Some(&slot_id),
        ),
    )
    .await;
    let path = "/labs/GFSL/orders/GFSL-000001/tracking";
    let (_, tracking) = erp.get(path).await;
    assert_eq!(tracking["active"], false);
    assert_eq!(tracking["tracking_url"], Value::Null);

    let assigned = erp.advance("GFSL", "GFSL-000001").await;
    assert_eq!(assigned["status"], "AGENT_ASSIGNED");
    assert_eq!(assigned["agent"]["name"], "Ramesh Kumar");
    assert!(assigned["agent"]["phone"].is_string());
    assert_eq!(
        assigned["tracking_url"],
        "https://track.greenfield-labs.example/t/GFSL-000001"
    );
    let (_, tracking) = erp.get(path).await;
    assert_eq!(tracking["order_no"], "GFSL-000001");
    assert_eq!(tracking["active"], true);
    assert_eq!(tracking["agent"], assigned["agent"]);
    assert!(tracking["agent_location"]["lat"].is_f64());
    assert!(tracking["agent_location"]["lng"].is_f64());

    let collected = erp.advance("GFSL", "GFSL-000001").await;
    assert_eq!(collected["status"], "SAMPLE_COLLECTED");
    assert_eq!(collected["payment"]["status"], "PAID");
    let (_, tracking) = erp.get(path).await;
    assert_eq!(tracking["active"], false);
    assert_eq!(tracking["agent_location"], Value::Null);

    assert_eq!(
        erp.advance("GFSL", "GFSL-000001").await["status"],
        "RECEIVED_AT_LAB"
    );
    let testing = erp.advance("GFSL", "GFSL-000001").await;
    assert_eq!(testing["status"], "TESTING");
    assert_eq!(testing["report_url"], Value::Null);
    let ready = erp.advance("GFSL", "GFSL-000001").await;
    assert_eq!(ready["status"], "REPORT_READY");
    assert_eq!(
        ready["report_url"],
        "https://reports.greenfield-labs.example/r/GFSL-000001.pdf"
    );
    let advice = ready["recommendations"]
        .as_array()
        .expect("recommendations");
    assert!(
        advice
            .iter()
            .any(|a| a.as_str().is_some_and(|a| a.contains("zinc sulphate")))
    );
    let statuses: Vec<_> = ready["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().expect("status").to_owned())
        .collect();
    assert_eq!(
        statuses,
        [
            "BOOKED",
            "AGENT_ASSIGNED",
            "SAMPLE_COLLECTED",
            "RECEIVED_AT_LAB",
            "TESTING",
            "REPORT_READY"
        ]
    );

    let (status, body) = erp
        .post("/labs/GFSL/orders/GFSL-000001/advance", json!({}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "INVALID_TRANSITION");
}

#[tokio::test]
async fn lab_drop_skips_the_agent_and_can_jump() {
    let erp = start().await;
    erp.place("GFSL", gfsl_order("drop", "soil-ph-ec", "LAB_DROP", None))
        .await;
    let received = erp.advance("GFSL", "GFSL-000001").await;
    assert_eq!(received["status"], "RECEIVED_AT_LAB");
    assert_eq!(received["agent"], Value::Null);
    assert_eq!(received["payment"]["status"], "PAID");

    let (status, body) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/advance",
            json!({"to": "AGENT_ASSIGNED"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "INVALID_TRANSITION");

    let (status, ready) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/advance",
            json!({"to": "REPORT_READY"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "REPORT_READY");
    assert_eq!(ready["history"].as_array().map(Vec::len), Some(4));

    let (status, body) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/advance",
            json!({"to": "TESTING"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "INVALID_TRANSITION");
    let (status, body) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/advance",
            json!({"to": "DONE"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
}

#[tokio::test]
async fn advance_accepts_an_empty_body() {
    let erp = start().await;
    erp.place("GFSL", gfsl_order("bare", "soil-ph-ec", "LAB_DROP", None))
        .await;
    let response = erp
        .request(Method::POST, "/labs/GFSL/orders/GFSL-000001/advance")
        .send()
        .await
        .expect("POST");
    let (status, order) = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "RECEIVED_AT_LAB");
}

#[tokio::test]
async fn virtual_consultation_needs_no_slot_and_gets_a_consultant() {
    let erp = start().await;
    let order = erp
        .place(
            "KTH",
            kth_order("call", "soil-health-consult", "VIRTUAL", None),
        )
        .await;
    assert_eq!(order["pickup_fee_paise"], 0);
    assert_eq!(order["slot"], Value::Null);
    let assigned = erp.advance("KTH", "KTH-000001").await;
    assert_eq!(assigned["status"], "AGENT_ASSIGNED");
    assert_eq!(assigned["agent"]["name"], "Dr. Meera Joshi");
    let (_, tracking) = erp.get("/labs/KTH/orders/KTH-000001/tracking").await;
    assert_eq!(tracking["active"], true);
    assert_eq!(tracking["agent_location"], Value::Null);
    let done = erp.advance("KTH", "KTH-000001").await;
    assert_eq!(done["status"], "REPORT_READY");
    assert!(
        done["report_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://reports.krishitesthouse.example/r/"))
    );
}

#[tokio::test]
async fn in_process_advance_and_snapshot() {
    let erp = start().await;
    erp.place(
        "KTH",
        kth_order("rust", "soil-npk-package", "LAB_DROP", None),
    )
    .await;
    let order = erp.erp.advance("KTH", "KTH-000001").expect("advances");
    assert_eq!(order.status, sample_erp::OrderStatus::ReceivedAtLab);
    assert_eq!(
        status_of(&erp, "KTH", "KTH-000001").await,
        "RECEIVED_AT_LAB"
    );
    let snapshot = erp.erp.orders();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].client_ref, "rust");
    assert!(matches!(
        erp.erp.advance("KTH", "KTH-000009"),
        Err(sample_erp::ErpError::OrderNotFound { .. })
    ));
}

#[tokio::test]
async fn cancelling_is_free_while_booked() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    erp.place(
        "GFSL",
        gfsl_order("c1", "soil-npk-package", "HOME_PICKUP", Some(&slot_id)),
    )
    .await;
    let (status, order) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/cancel",
            json!({"reason_code": "CHANGED_MIND", "note": "rain delayed sowing"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "CANCELLED");
    let cancellation = &order["cancellation"];
    assert_eq!(cancellation["reason_code"], "CHANGED_MIND");
    assert_eq!(cancellation["note"], "rain delayed sowing");
    assert_eq!(cancellation["fee_paise"], 0);
    assert_eq!(cancellation["refund_paise"], 0);
    assert_eq!(cancellation["by"], "CUSTOMER");
    assert!(cancellation["cancelled_at"].is_string());
    let (_, slots) = erp.get("/labs/GFSL/slots").await;
    assert_eq!(slots["slots"][0]["booked"], 0, "the slot is freed");

    let (status, again) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/cancel",
            json!({"reason_code": "OTHER"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, order, "cancelling twice changes nothing");

    let (status, body) = erp
        .post("/labs/GFSL/orders/GFSL-000001/advance", json!({}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "INVALID_TRANSITION");
}

#[tokio::test]
async fn cancelling_after_agent_assignment_costs_a_fee() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    erp.place(
        "GFSL",
        gfsl_order("c2", "soil-npk-package", "HOME_PICKUP", Some(&slot_id)),
    )
    .await;
    erp.advance("GFSL", "GFSL-000001").await;
    let (status, order) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/cancel",
            json!({"reason_code": "AGENT_LATE", "by": "LAB"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{order}");
    assert_eq!(order["cancellation"]["fee_paise"], 5000);
    assert_eq!(order["cancellation"]["refund_paise"], 0);
    assert_eq!(order["cancellation"]["by"], "LAB");
}

#[tokio::test]
async fn cancelling_after_collection_is_refused() {
    let erp = start().await;
    let slot_id = erp.first_slot("GFSL").await;
    erp.place(
        "GFSL",
        gfsl_order("c3", "soil-npk-package", "HOME_PICKUP", Some(&slot_id)),
    )
    .await;
    erp.advance("GFSL", "GFSL-000001").await;
    erp.advance("GFSL", "GFSL-000001").await;
    let (status, body) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/cancel",
            json!({"reason_code": "CHANGED_MIND"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "CANNOT_CANCEL");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("SAMPLE_COLLECTED"))
    );

    let (status, body) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000009/cancel",
            json!({"reason_code": "X"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, body) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/cancel",
            json!({"note": "no reason"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
}

#[tokio::test]
async fn feedback_is_validated_and_kept_on_the_order() {
    let erp = start().await;
    erp.place("GFSL", gfsl_order("fb", "soil-ph-ec", "LAB_DROP", None))
        .await;
    for stars in [0, 6, -2] {
        let (status, body) = erp
            .post(
                "/labs/GFSL/orders/GFSL-000001/feedback",
                json!({"stars": stars}),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    let (status, feedback) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000001/feedback",
            json!({"stars": 5, "comment": "quick and clear report"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{feedback}");
    assert!(feedback["feedback_id"].is_string());
    assert_eq!(feedback["order_no"], "GFSL-000001");
    assert_eq!(feedback["stars"], 5);
    assert_eq!(feedback["comment"], "quick and clear report");
    assert!(feedback["received_at"].is_string());
    let (_, order) = erp.get("/labs/GFSL/orders/GFSL-000001").await;
    assert_eq!(order["feedback"], feedback);

    let (status, body) = erp
        .post(
            "/labs/GFSL/orders/GFSL-000404/feedback",
            json!({"stars": 3}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn tickets_open_with_help_desk_details() {
    let erp = start().await;
    erp.place("KTH", kth_order("t", "soil-npk-package", "LAB_DROP", None))
        .await;
    let (status, ticket) = erp
        .post(
            "/labs/KTH/tickets",
            json!({"order_no": "KTH-000001", "subject": "Report is in the wrong language",
                   "phone": "+91-99220-12345"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    let ticket_no = ticket["ticket_no"].as_str().expect("ticket_no");
    assert!(ticket_no.starts_with("T-"));
    assert_eq!(ticket["status"], "OPEN");
    assert_eq!(ticket["helpline"], "1800-20-4000");
    assert_eq!(ticket["email"], "help@krishitesthouse.example");
    assert_eq!(
        ticket["support_url"],
        format!("https://krishitesthouse.example/support/{ticket_no}")
    );
    assert!(ticket["created_at"].is_string());

    let (status, _) = erp
        .post("/labs/KTH/tickets", json!({"subject": "General question"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = erp
        .post(
            "/labs/KTH/tickets",
            json!({"order_no": "KTH-000404", "subject": "Where is it?"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    let (status, body) = erp.post("/labs/KTH/tickets", json!({"subject": ""})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
}

#[tokio::test]
async fn malformed_bodies_are_json_bad_requests() {
    let erp = start().await;
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = erp.request(Method::POST, "/labs/GFSL/quotes").body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        async move { json_of(request.send().await.expect("POST")).await }
    };
    let cases = [
        raw("{not json", Some("application/json")).await,
        raw("", Some("application/json")).await,
        raw(r#"{"items": [], "mode": "LAB_DROP"}"#, None).await,
        raw(
            r#"{"items": "npk", "mode": "LAB_DROP"}"#,
            Some("application/json"),
        )
        .await,
        raw(
            r#"{"items": [{"sku": "soil-npk-package", "qty": 1}], "mode": "DRONE"}"#,
            Some("application/json"),
        )
        .await,
        raw(
            r#"{"items": [], "mode": "LAB_DROP"}"#,
            Some("application/json"),
        )
        .await,
    ];
    for (status, body) in cases {
        assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
}

#[tokio::test]
async fn orders_are_validated() {
    let erp = start().await;
    let mut no_slot = gfsl_order("v1", "soil-npk-package", "HOME_PICKUP", None);
    let (status, body) = erp.post("/labs/GFSL/orders", no_slot.clone()).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("slot_id"))
    );

    no_slot["mode"] = json!("LAB_DROP");
    no_slot["customer"]["pincode"] = json!("560001");
    let (status, body) = erp.post("/labs/GFSL/orders", no_slot.clone()).await;
    assert_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "OUTSIDE_SERVICE_AREA",
    );
    assert_eq!(
        body["message"],
        "pincode 560001 is outside the service area"
    );

    let mut no_ref = gfsl_order("", "soil-npk-package", "LAB_DROP", None);
    let (status, body) = erp.post("/labs/GFSL/orders", no_ref.clone()).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    no_ref["client_ref"] = json!("v2");
    no_ref["payment_mode"] = json!("CREDIT_CARD");
    let (status, body) = erp.post("/labs/GFSL/orders", no_ref).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert!(erp.erp.orders().is_empty());
}

#[tokio::test]
async fn an_idempotency_key_already_used_answers_its_order_instead_of_booking_again() {
    let erp = start().await;
    let place = |client_ref: &'static str| {
        erp.request(Method::POST, "/labs/GFSL/orders")
            .header("Idempotency-Key", "k-1")
            .json(&gfsl_order(
                client_ref,
                "soil-npk-package",
                "LAB_DROP",
                None,
            ))
            .send()
    };
    let (first_status, first) = json_of(place("ref-a").await.expect("POST")).await;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    // Same key, even with another client reference: the same order, nothing booked.
    let (again_status, again) = json_of(place("ref-b").await.expect("POST")).await;
    assert_eq!(again_status, StatusCode::OK, "{again}");
    assert_eq!(again["order_no"], first["order_no"]);
    assert_eq!(erp.erp.orders().len(), 1);
}
