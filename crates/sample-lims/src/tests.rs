//! The API over HTTP, as a client sees it.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;

async fn start(config: LimsConfig) -> (SampleLims, String) {
    let lims = SampleLims::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(lims.clone().serve(listener, std::future::pending()));
    (lims, url)
}

async fn token(http: &reqwest::Client, url: &str) -> String {
    let answer: Value = http
        .post(format!("{url}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let resp = http.get(url).bearer_auth(token).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Value) -> (u16, Value) {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn tokens_come_for_the_right_client_only_and_are_counted() {
    let (lims, url) = start(LimsConfig::default()).await;
    let http = reqwest::Client::new();
    let wrong = http
        .post(format!("{url}/oauth/token"))
        .basic_auth(DEFAULT_CLIENT_ID, Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let basic: Value = http
        .post(format!("{url}/oauth/token"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(basic["token_type"], "Bearer");
    assert_eq!(basic["expires_in"], 300);
    let no_grant = http
        .post(format!("{url}/oauth/token"))
        .form(&[("client_id", DEFAULT_CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(no_grant.status().as_u16(), 400);
    token(&http, &url).await;
    assert_eq!(lims.tokens_issued(), 2);
    let counts: Value = http
        .get(format!("{url}/_test/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts, json!({"issued": 2, "refused": 0}));
}

#[tokio::test]
async fn the_api_refuses_missing_expired_and_revoked_tokens_in_its_fault_shape() {
    let (lims, url) = start(LimsConfig {
        token_lifetime: Duration::from_millis(300),
        ..LimsConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let (status, body) = get(&http, &format!("{url}/api/tests"), "nope").await;
    assert_eq!(status, 401);
    assert_eq!(body["fault"]["code"], "TOKEN_INVALID");
    let short = token(&http, &url).await;
    assert_eq!(get(&http, &format!("{url}/api/tests"), &short).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lims.live_tokens() > 0 {
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&http, &format!("{url}/api/tests"), &short).await.0, 401);
    let fresh = token(&http, &url).await;
    lims.revoke_tokens();
    assert_eq!(get(&http, &format!("{url}/api/tests"), &fresh).await.0, 401);
    assert_eq!(lims.calls_refused(), 3);
}

#[tokio::test]
async fn the_catalog_pages_with_meta_and_decimal_prices() {
    let (_lims, url) = start(LimsConfig::default()).await;
    let http = reqwest::Client::new();
    let t = token(&http, &url).await;
    let (status, first) = get(&http, &format!("{url}/api/tests?page=1&per_page=3"), &t).await;
    assert_eq!(status, 200);
    assert_eq!(
        first["meta"],
        json!({"page": 1, "pages": 3, "per_page": 3, "total": 7})
    );
    assert_eq!(first["data"][0]["test_code"], "BH-SOIL-NPK");
    assert_eq!(first["data"][0]["price"], "1250.00");
    let (_, last) = get(&http, &format!("{url}/api/tests?page=3&per_page=3"), &t).await;
    assert_eq!(last["data"].as_array().unwrap().len(), 1);
    let (status, bad) = get(&http, &format!("{url}/api/tests?page=x"), &t).await;
    assert_eq!(status, 422);
    assert_eq!(bad["fault"]["code"], "INVALID");
}

#[tokio::test]
async fn a_booking_answers_little_and_moves_through_its_states() {
    let (lims, url) = start(LimsConfig::default()).await;
    let http = reqwest::Client::new();
    let t = token(&http, &url).await;
    let (_, slots) = get(&http, &format!("{url}/api/slots"), &t).await;
    let slot = slots["slots"][0].clone();
    assert_eq!(
        slot["starts"].as_str().unwrap().len(),
        "2026-12-02T09:00".len()
    );
    let (status, quotation) = post(
        &http,
        &format!("{url}/api/quotations"),
        &t,
        json!({"tests": [{"test_code": "BH-SOIL-NPK"}], "collection": "FIELD_VISIT"}),
    )
    .await;
    assert_eq!(status, 201, "{quotation}");
    assert_eq!(quotation["total"], "1652.00");
    let request = json!({"quotation_no": quotation["quotation_no"], "slot_ref": slot["slot_ref"],
        "farmer": {"name": "Asha"}, "client_reference": "txn-1"});
    let (status, booked) = post(&http, &format!("{url}/api/bookings"), &t, request).await;
    assert_eq!(status, 201);
    let booking_no = booked["booking_no"].as_str().unwrap().to_owned();
    assert_eq!(booked, json!({"booking_no": booking_no, "state": "BOOKED"}));

    let (status, taken) = post(
        &http,
        &format!("{url}/api/bookings"),
        &t,
        json!({"quotation_no": quotation["quotation_no"], "slot_ref": slot["slot_ref"],
               "farmer": {}, "client_reference": "txn-2"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(taken["fault"]["code"], "SLOT_TAKEN");

    let moved = http
        .post(format!("{url}/_lab/bookings/{booking_no}/advance"))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status().as_u16(), 200);
    lims.advance(&booking_no).unwrap();
    let (_, state) = get(&http, &format!("{url}/api/bookings/{booking_no}"), &t).await;
    assert_eq!(state["state"], "IN_ANALYSIS");
    let (status, refused) = post(
        &http,
        &format!("{url}/api/bookings/{booking_no}/cancel"),
        &t,
        json!({}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(refused["fault"]["code"], "NOT_CANCELLABLE");
    let (status, missing) = get(&http, &format!("{url}/api/bookings/BHM-999999"), &t).await;
    assert_eq!(status, 404);
    assert_eq!(missing["fault"]["code"], "NO_SUCH_BOOKING");
}

#[tokio::test]
async fn maintenance_answers_503_until_lifted() {
    let (lims, url) = start(LimsConfig::default()).await;
    let http = reqwest::Client::new();
    let t = token(&http, &url).await;
    lims.set_down(true);
    let (status, body) = get(&http, &format!("{url}/api/tests"), &t).await;
    assert_eq!(status, 503);
    assert_eq!(body["fault"]["code"], "MAINTENANCE");
    lims.set_down(false);
    assert_eq!(get(&http, &format!("{url}/api/tests"), &t).await.0, 200);
}
