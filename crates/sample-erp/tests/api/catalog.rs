//! Health, authentication, lab profiles and package search.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{assert_error, json_of, start};

fn skus(body: &Value) -> Vec<(String, String)> {
    body["packages"]
        .as_array()
        .expect("packages array")
        .iter()
        .map(|p| {
            (
                p["sku"].as_str().expect("sku").to_owned(),
                p["match"].as_str().expect("match").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn health_needs_no_key() {
    let erp = start().await;
    let response = erp
        .client
        .get(format!("{}/health", erp.base))
        .send()
        .await
        .expect("GET");
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn lab_and_control_calls_need_the_right_key() {
    let erp = start().await;
    for path in ["/labs/GFSL/profile", "/labs/KTH/packages", "/faults"] {
        let url = format!("{}{path}", erp.base);
        let missing = erp.client.get(&url).send().await.expect("GET");
        let (status, body) = json_of(missing).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(body["message"], "missing or wrong X-Api-Key");
        let wrong = erp
            .client
            .get(&url)
            .header("X-Api-Key", "guess")
            .send()
            .await
            .expect("GET");
        let (status, body) = json_of(wrong).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn profiles_describe_each_lab() {
    let erp = start().await;
    let (status, gfsl) = erp.get("/labs/GFSL/profile").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(gfsl["lab_code"], "GFSL");
    assert_eq!(gfsl["lab_name"], "GreenField Soil Labs");
    assert_eq!(gfsl["city"], "New Delhi");
    assert_eq!(gfsl["city_std_code"], "std:011");
    assert_eq!(gfsl["pincode"], "110012");
    assert_eq!(gfsl["gps"], "28.6369,77.1617");
    assert_eq!(gfsl["phone"], "+91-11-40001234");
    assert_eq!(gfsl["email"], "care@greenfield-labs.example");
    assert_eq!(gfsl["home_pickup_fee_paise"], 5000);
    assert_eq!(gfsl["serviceable_pincode_prefix"], "1100");
    assert_eq!(
        gfsl["modes"],
        serde_json::json!(["HOME_PICKUP", "LAB_DROP"])
    );
    assert!(gfsl["support"]["helpline"].is_string());
    assert!(gfsl["support"]["hours"].is_string());

    let (_, kth) = erp.get("/labs/KTH/profile").await;
    assert_eq!(kth["lab_name"], "Krishi Test House");
    assert_eq!(kth["city_std_code"], "std:020");
    assert_eq!(kth["home_pickup_fee_paise"], 7500);
    assert_eq!(
        kth["modes"],
        serde_json::json!(["LAB_DROP", "HOME_PICKUP", "VIRTUAL"])
    );
}

#[tokio::test]
async fn unknown_lab_sku_order_and_route_are_not_found() {
    let erp = start().await;
    for path in [
        "/labs/XYZ/profile",
        "/labs/XYZ/packages",
        "/labs/GFSL/packages/soil-gold",
        "/labs/GFSL/orders/GFSL-999999",
        "/labs/GFSL/orders/GFSL-999999/tracking",
        "/labs/GFSL/nothing-here",
    ] {
        let (status, body) = erp.get(path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let (_, body) = erp.get("/labs/GFSL/packages/soil-gold").await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("soil-gold"))
    );
}

#[tokio::test]
async fn wrong_method_is_a_json_error() {
    let erp = start().await;
    let response = erp
        .request(Method::DELETE, "/labs/GFSL/profile")
        .send()
        .await
        .expect("DELETE");
    let (status, body) = json_of(response).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
}

#[tokio::test]
async fn package_by_sku_has_every_field() {
    let erp = start().await;
    let (status, package) = erp.get("/labs/GFSL/packages/soil-npk-package").await;
    assert_eq!(status, StatusCode::OK);
    for field in [
        "sku",
        "title",
        "summary",
        "parameters",
        "price_paise",
        "gst_percent",
        "turnaround_days",
        "sample_instructions",
        "crops",
        "modes",
        "cancellation_policy",
    ] {
        assert!(!package[field].is_null(), "{field} missing: {package}");
    }
    assert_eq!(package["price_paise"], 49900);
    assert_eq!(package["gst_percent"], 18);
    assert_eq!(
        package["cancellation_policy"],
        serde_json::json!({"free_until_status": "BOOKED", "fee_paise": 5000})
    );
    let (_, kth) = erp.get("/labs/KTH/packages/soil-npk-package").await;
    assert_ne!(kth["price_paise"], package["price_paise"]);
}

#[tokio::test]
async fn listing_carries_the_lab_and_all_packages() {
    let erp = start().await;
    let (status, body) = erp.get("/labs/KTH/packages").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["lab"]["lab_code"], "KTH");
    assert_eq!(body["lab"]["lab_name"], "Krishi Test House");
    assert_eq!(body["lab"]["gps"], "18.5308,73.8475");
    let hits = skus(&body);
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|(_, m)| m == "exact"));
}

#[tokio::test]
async fn crop_filter_marks_exact_and_related() {
    let erp = start().await;
    let (status, body) = erp.get("/labs/GFSL/packages?crop=wheat").await;
    assert_eq!(status, StatusCode::OK);
    let hits = skus(&body);
    let expect = |sku: &str, m: &str| (sku.to_owned(), m.to_owned());
    assert_eq!(
        hits,
        [
            expect("soil-npk-package", "related"),
            expect("soil-micronutrient-panel", "exact"),
            expect("soil-full-health-card", "related"),
            expect("soil-salinity-sodicity", "exact"),
        ]
    );
    let (_, body) = erp.get("/labs/KTH/packages?crop=Sugarcane").await;
    let exact: Vec<_> = skus(&body)
        .into_iter()
        .filter(|(_, m)| m == "exact")
        .map(|(s, _)| s)
        .collect();
    assert_eq!(exact, ["water-irrigation-test", "soil-sugarcane-panel"]);
}

#[tokio::test]
async fn pincode_outside_area_gives_an_empty_list() {
    let erp = start().await;
    let (status, body) = erp.get("/labs/GFSL/packages?pincode=560001").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["packages"], serde_json::json!([]));
    let (_, body) = erp.get("/labs/GFSL/packages?pincode=110034").await;
    assert_eq!(skus(&body).len(), 5);
}

#[tokio::test]
async fn mode_and_text_filters() {
    let erp = start().await;
    let (_, body) = erp.get("/labs/KTH/packages?mode=VIRTUAL").await;
    let hits: Vec<_> = skus(&body).into_iter().map(|(s, _)| s).collect();
    assert_eq!(hits, ["soil-health-consult"]);

    let (_, body) = erp.get("/labs/GFSL/packages?mode=HOME_PICKUP").await;
    assert!(skus(&body).iter().all(|(s, _)| s != "soil-ph-ec"));

    let (_, body) = erp.get("/labs/GFSL/packages?q=BORON").await;
    let hits: Vec<_> = skus(&body).into_iter().map(|(s, _)| s).collect();
    assert_eq!(hits, ["soil-micronutrient-panel", "soil-full-health-card"]);

    let (status, body) = erp
        .get("/labs/GFSL/packages?q=zinc&crop=cotton&mode=LAB_DROP&pincode=110012")
        .await;
    assert_eq!(status, StatusCode::OK);
    let hits: Vec<_> = skus(&body).into_iter().collect();
    assert_eq!(
        hits,
        [("soil-full-health-card".to_owned(), "related".to_owned())]
    );

    let (status, body) = erp.get("/labs/GFSL/packages?q=no-such-thing").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["packages"], serde_json::json!([]));
}

#[tokio::test]
async fn malformed_filters_are_bad_requests() {
    let erp = start().await;
    for query in ["pincode=11001", "pincode=abcdef", "mode=DRONE"] {
        let (status, body) = erp.get(&format!("/labs/GFSL/packages?{query}")).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
}
