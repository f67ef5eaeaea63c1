//! Each injected fault, switched on and off in-process and over HTTP.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, header};
use sample_erp::Fault;
use serde_json::json;

use crate::common::{TestErp, assert_error, json_of, start};

async fn profile(erp: &TestErp) -> reqwest::Response {
    erp.request(Method::GET, "/labs/GFSL/profile")
        .send()
        .await
        .expect("GET")
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn health_is_ok(erp: &TestErp) {
    let response = erp
        .client
        .get(format!("{}/health", erp.base))
        .send()
        .await
        .expect("GET");
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn html_fault_serves_a_web_page() {
    let erp = start().await;
    erp.erp.set_fault(Some(Fault::Html));
    let response = profile(&erp).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(content_type(&response).starts_with("text/html"));
    let body = response.text().await.expect("body");
    assert!(body.starts_with("<!DOCTYPE html>"));
    // Even a POST without a key gets the page: the fault comes first.
    let response = erp
        .client
        .post(format!("{}/labs/GFSL/orders", erp.base))
        .send()
        .await
        .expect("POST");
    assert!(content_type(&response).starts_with("text/html"));
    health_is_ok(&erp).await;
    erp.erp.set_fault(None);
    let (status, _) = json_of(profile(&erp).await).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn server_error_fault_answers_500_internal() {
    let erp = start().await;
    erp.erp.set_fault(Some(Fault::ServerError));
    let (status, body) = json_of(profile(&erp).await).await;
    assert_error(status, &body, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL");
    health_is_ok(&erp).await;
}

#[tokio::test]
async fn garbage_fault_sends_broken_json() {
    let erp = start().await;
    erp.erp.set_fault(Some(Fault::Garbage));
    let response = profile(&erp).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/json");
    let body = response.text().await.expect("body");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_err());
}

#[tokio::test]
async fn slow_fault_delays_then_answers_normally() {
    let erp = start().await;
    let delay = Duration::from_millis(300);
    erp.erp.set_fault(Some(Fault::Slow(delay)));
    let started = Instant::now();
    let (status, body) = json_of(profile(&erp).await).await;
    assert!(started.elapsed() >= delay);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["lab_code"], "GFSL");

    let started = Instant::now();
    health_is_ok(&erp).await;
    assert!(started.elapsed() < delay, "health is never slowed");
}

#[tokio::test]
async fn faults_are_controlled_over_http() {
    let erp = start().await;
    let (status, current) = json_of(
        erp.request(Method::GET, "/faults")
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(current, serde_json::Value::Null);

    let set = erp
        .request(Method::PUT, "/faults")
        .json(&json!({"mode": "slow", "delay_ms": 50}))
        .send()
        .await
        .expect("PUT");
    let (status, body) = json_of(set).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"mode": "slow", "delay_ms": 50}));
    assert_eq!(
        erp.erp.fault(),
        Some(Fault::Slow(Duration::from_millis(50)))
    );

    for (spec, fault) in [
        (json!({"mode": "html"}), Fault::Html),
        (json!({"mode": "server_error"}), Fault::ServerError),
        (json!({"mode": "garbage"}), Fault::Garbage),
    ] {
        let response = erp
            .request(Method::PUT, "/faults")
            .json(&spec)
            .send()
            .await
            .expect("PUT");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the control API is never faulty"
        );
        assert_eq!(erp.erp.fault(), Some(fault));
    }

    let cleared = erp
        .request(Method::DELETE, "/faults")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(erp.erp.fault(), None);
    let (status, _) = json_of(profile(&erp).await).await;
    assert_eq!(status, StatusCode::OK);

    for bad in [json!({"mode": "slow"}), json!({"mode": "flaky"})] {
        let response = erp
            .request(Method::PUT, "/faults")
            .json(&bad)
            .send()
            .await
            .expect("PUT");
        let (status, body) = json_of(response).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "BAD_REQUEST");
    }
    assert_eq!(erp.erp.fault(), None);
}
