//! The soil-testing journey end to end through the shipped flows and the sample ERP:
//! search -> select -> init -> confirm -> status -> track -> cancel, rating and support,
//! asserting the business content of every callback.

use serde_json::{Value, json};

use crate::common::Network;

fn tag<'a>(tags: &'a Value, group: &str, code: &str) -> Vec<&'a Value> {
    tags.as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["descriptor"]["code"] == group)
        .flat_map(|g| g["list"].as_array().into_iter().flatten())
        .filter(|t| t["descriptor"]["code"] == code)
        .map(|t| &t["value"])
        .collect()
}

fn breakup_titles(quote: &Value) -> Vec<String> {
    quote["breakup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["title"].as_str().unwrap().to_string())
        .collect()
}

fn farm_order(items: Value, slot_start: Option<&str>) -> Value {
    let mut stop = json!({
        "type": "start",
        "location": {"address": "Plot 7, Kanjhawala village", "area_code": "110081", "gps": "28.7370,77.0120"},
        "contact": {"phone": "+91-98100-22222", "email": "asha@example.org"},
        "person": {"name": "Asha Devi"}
    });
    if let Some(start) = slot_start {
        stop["time"] = json!({"range": {"start": start}});
    }
    json!({
        "provider": {"id": "GFSL"},
        "items": items,
        "fulfillments": [{"type": "home", "stops": [stop]}],
        "billing": {"name": "Asha Devi", "phone": "+91-98100-22222", "email": "asha@example.org", "address": "Plot 7, Kanjhawala village"},
        "payments": [{"collected_by": "BPP", "type": "ON-FULFILLMENT"}]
    })
}

#[tokio::test]
async fn soil_test_journey() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();

    // search: wheat, home collection, a Delhi pincode
    let on_search = net
        .call(
            "search",
            &txn,
            json!({"intent": {
                "fulfillment": {"type": "home", "stops": [{"location": {"area_code": "110081"}}]},
                "tags": [{"descriptor": {"code": "crop"}, "list": [{"descriptor": {"code": "name"}, "value": "wheat"}]}]
            }}),
        )
        .await;
    assert!(on_search.get("error").is_none(), "{on_search}");
    assert_eq!(on_search["context"]["action"], "on_search");
    assert_eq!(on_search["context"]["transaction_id"], txn);
    assert_eq!(on_search["context"]["bpp_id"], crate::common::GFSL_ID);
    let provider = &on_search["message"]["catalog"]["providers"][0];
    assert_eq!(provider["id"], "GFSL");
    assert_eq!(provider["descriptor"]["name"], "GreenField Soil Labs");
    assert_eq!(provider["locations"][0]["city"]["code"], "std:011");
    let items = provider["items"].as_array().unwrap();
    let npk = items
        .iter()
        .find(|i| i["id"] == "soil-npk-package")
        .expect("NPK package offered");
    assert_eq!(npk["price"], json!({"currency": "INR", "value": "499.00"}));
    assert_eq!(
        npk["related"], true,
        "a general test is a related match for wheat"
    );
    assert!(
        items.iter().any(|i| i["matched"] == true),
        "some wheat-specific test matches exactly"
    );
    assert!(
        npk["fulfillment_ids"]
            .as_array()
            .unwrap()
            .contains(&json!("home"))
    );
    assert_eq!(npk["time"]["duration"], "P3D");
    assert!(!tag(&npk["tags"], "parameters", "parameter").is_empty());
    let types: Vec<&Value> = provider["fulfillments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["type"])
        .collect();
    assert_eq!(types, [&json!("home"), &json!("lab")]);

    // select: one NPK test with home pickup
    let item = json!([{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}]);
    let on_select = net
        .call(
            "select",
            &txn,
            json!({"order": farm_order(item.clone(), None)}),
        )
        .await;
    assert!(on_select.get("error").is_none(), "{on_select}");
    let quote = &on_select["message"]["order"]["quote"];
    // 499.00 test + 50.00 pickup + 18% GST (98.82) = 647.82
    assert_eq!(quote["price"]["value"], "647.82");
    assert_eq!(
        breakup_titles(quote),
        ["Soil NPK Package", "Home sample pickup", "GST"]
    );
    assert_eq!(quote["breakup"][2]["price"]["value"], "98.82");
    let slots = tag(
        &on_select["message"]["order"]["fulfillments"][0]["tags"],
        "collection-slots",
        "",
    );
    assert!(slots.is_empty(), "slot codes are slot ids, not empty");
    let slot_tags = &on_select["message"]["order"]["fulfillments"][0]["tags"][0]["list"];
    let first_slot = slot_tags[0]["value"]
        .as_str()
        .expect("slots offered")
        .to_string();
    let slot_start = first_slot.split('/').next().unwrap().to_string();

    // init: billing and the chosen slot
    let on_init = net
        .call(
            "init",
            &txn,
            json!({"order": farm_order(item.clone(), Some(&slot_start))}),
        )
        .await;
    assert!(on_init.get("error").is_none(), "{on_init}");
    let order = &on_init["message"]["order"];
    assert_eq!(order["quote"]["price"]["value"], "647.82");
    assert_eq!(order["billing"]["name"], "Asha Devi");
    assert_eq!(
        order["fulfillments"][0]["stops"][0]["time"]["range"]["start"],
        slot_start
    );
    assert_eq!(order["payments"][0]["collected_by"], "BPP");
    assert_eq!(order["payments"][0]["type"], "ON-FULFILLMENT");
    assert_eq!(order["payments"][0]["params"]["amount"], "647.82");

    // confirm: the ERP books the order; its number becomes the Beckn order id
    let on_confirm = net
        .call(
            "confirm",
            &txn,
            json!({"order": farm_order(item.clone(), Some(&slot_start))}),
        )
        .await;
    assert!(on_confirm.get("error").is_none(), "{on_confirm}");
    let order = &on_confirm["message"]["order"];
    let order_id = order["id"].as_str().unwrap().to_string();
    assert!(order_id.starts_with("GFSL-"), "{order_id}");
    assert_eq!(order["status"], "ACTIVE");
    assert_eq!(order["fulfillments"][0]["type"], "home");
    assert_eq!(
        order["fulfillments"][0]["state"]["descriptor"]["code"],
        "SCHEDULED"
    );
    assert_eq!(order["quote"]["price"]["value"], "647.82");
    let booked = net.erp.orders();
    assert_eq!(booked.len(), 1);
    assert_eq!(
        booked[0].client_ref, txn,
        "the ERP order carries the transaction id"
    );

    // a repeated confirm of the same transaction does not book twice
    let again = net
        .call(
            "confirm",
            &txn,
            json!({"order": farm_order(item.clone(), Some(&slot_start))}),
        )
        .await;
    assert_eq!(again["message"]["order"]["id"], order_id);
    assert_eq!(net.erp.orders().len(), 1);

    // status: scheduled, then the lab assigns an agent
    let on_status = net
        .call("status", &txn, json!({"order_id": order_id}))
        .await;
    assert_eq!(
        on_status["message"]["order"]["fulfillments"][0]["state"]["descriptor"]["code"],
        "SCHEDULED"
    );
    net.erp
        .advance("GFSL", &order_id)
        .expect("advance to agent assigned");
    let on_status = net
        .call("status", &txn, json!({"order_id": order_id}))
        .await;
    let f = &on_status["message"]["order"]["fulfillments"][0];
    assert_eq!(f["state"]["descriptor"]["code"], "AGENT-ASSIGNED");
    assert!(
        f["agent"]["person"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );

    // track: the agent's live link
    let on_track = net.call("track", &txn, json!({"order_id": order_id})).await;
    assert_eq!(on_track["message"]["tracking"]["status"], "active");
    assert!(
        on_track["message"]["tracking"]["url"]
            .as_str()
            .unwrap()
            .contains(&order_id)
    );

    // cancel after the agent is assigned: a fee applies
    let on_cancel = net
        .call(
            "cancel",
            &txn,
            json!({"order_id": order_id, "cancellation_reason_id": "FARMER-UNAVAILABLE"}),
        )
        .await;
    assert!(on_cancel.get("error").is_none(), "{on_cancel}");
    let order = &on_cancel["message"]["order"];
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["cancellation"]["cancelled_by"], "CONSUMER");
    assert_eq!(order["cancellation"]["reason"]["id"], "FARMER-UNAVAILABLE");
    assert_eq!(
        order["fulfillments"][0]["state"]["descriptor"]["code"],
        "CANCELLED"
    );
    let fee = tag(&order["tags"], "cancellation", "fee");
    assert_eq!(fee, [&json!("50.00")]);

    // cancelling again: the ERP keeps it cancelled; an unknown order is "order not found"
    let missing = net
        .call("cancel", &txn, json!({"order_id": "GFSL-999999"}))
        .await;
    assert_eq!(missing["error"]["code"], "30010", "{missing}");

    // rating and support
    let on_rating = net
        .call(
            "rating",
            &txn,
            json!({"ratings": [{"rating_category": "Order", "id": order_id, "value": "4"}]}),
        )
        .await;
    assert!(on_rating.get("error").is_none(), "{on_rating}");
    assert!(
        on_rating["message"]["feedback_form"]["form"]["url"]
            .as_str()
            .unwrap()
            .contains("/feedback/")
    );
    let rated = net.erp.orders();
    assert_eq!(rated[0].feedback.as_ref().map(|f| f.stars), Some(4));

    let on_support = net
        .call(
            "support",
            &txn,
            json!({"support": {"ref_id": order_id, "callback_phone": "+91-98100-22222"}}),
        )
        .await;
    assert!(on_support.get("error").is_none(), "{on_support}");
    let support = &on_support["message"]["support"];
    assert!(support["ref_id"].as_str().unwrap().starts_with("T-GFSL-"));
    assert_eq!(support["phone"], "1800-11-4000");
}

#[tokio::test]
async fn report_ready_status_carries_the_report() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let item = json!([{"id": "soil-micronutrient-panel", "quantity": {"selected": {"count": 1}}}]);
    let mut order = farm_order(item, None);
    order["fulfillments"][0]["type"] = json!("lab");
    let on_confirm = net.call("confirm", &txn, json!({"order": order})).await;
    assert!(on_confirm.get("error").is_none(), "{on_confirm}");
    assert_eq!(
        on_confirm["message"]["order"]["fulfillments"][0]["type"],
        "lab"
    );
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    net.erp.advance("GFSL", &order_id).unwrap();
    net.erp.advance("GFSL", &order_id).unwrap();
    net.erp.advance("GFSL", &order_id).unwrap();
    let on_status = net
        .call("status", &txn, json!({"order_id": order_id}))
        .await;
    let order = &on_status["message"]["order"];
    assert_eq!(order["status"], "COMPLETE", "{on_status}");
    assert_eq!(
        order["fulfillments"][0]["state"]["descriptor"]["code"],
        "REPORT-READY"
    );
    let url = tag(&order["tags"], "report", "url");
    assert!(
        url[0]
            .as_str()
            .unwrap()
            .ends_with(&format!("{order_id}.pdf"))
    );
    assert!(!tag(&order["tags"], "report", "recommendation").is_empty());
    assert_eq!(order["payments"][0]["status"], "PAID");
}

#[tokio::test]
async fn empty_search_results_are_an_empty_catalog() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let on_search = net
        .call(
            "search",
            &txn,
            json!({"intent": {"fulfillment": {"stops": [{"location": {"area_code": "560001"}}]}}}),
        )
        .await;
    assert!(on_search.get("error").is_none(), "{on_search}");
    assert_eq!(on_search["message"]["catalog"]["providers"], json!([]));
}

#[tokio::test]
async fn minimal_intent_lists_the_whole_catalog() {
    let net = Network::start().await;
    let on_search = net
        .call("search", &uuid::Uuid::new_v4().to_string(), json!({}))
        .await;
    let items = on_search["message"]["catalog"]["providers"][0]["items"]
        .as_array()
        .unwrap()
        .len();
    assert!(items >= 4, "{on_search}");
}
