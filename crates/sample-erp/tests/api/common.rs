//! A running ERP per test, and request helpers that carry the API key.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sample_erp::{ErpConfig, SampleErp};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const KEY: &str = "sample-erp-key";

/// A server for one test; it shuts down when dropped.
pub struct TestErp {
    pub erp: SampleErp,
    pub base: String,
    pub client: reqwest::Client,
    _shutdown: oneshot::Sender<()>,
}

pub async fn start() -> TestErp {
    start_with(ErpConfig::default()).await
}

pub async fn start_with(config: ErpConfig) -> TestErp {
    let erp = SampleErp::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let (shutdown, stop) = oneshot::channel::<()>();
    tokio::spawn(erp.clone().serve(listener, async {
        // Dropping the sender counts as "stop" too.
        let _ = stop.await;
    }));
    TestErp {
        erp,
        base: format!("http://{address}/api/v1"),
        client: reqwest::Client::new(),
        _shutdown: shutdown,
    }
}

impl TestErp {
    /// A request with the API key set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("X-Api-Key", KEY)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.request(Method::GET, path).send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .request(Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("POST");
        json_of(response).await
    }

    /// Places an order and insists it was created.
    pub async fn place(&self, lab: &str, body: Value) -> Value {
        let (status, order) = self.post(&format!("/labs/{lab}/orders"), body).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        order
    }

    /// The id of the first listed slot of `lab` (tomorrow 09:00).
    pub async fn first_slot(&self, lab: &str) -> String {
        let (status, body) = self.get(&format!("/labs/{lab}/slots")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["slots"][0]["slot_id"]
            .as_str()
            .expect("slot id")
            .to_owned()
    }

    pub async fn advance(&self, lab: &str, order_no: &str) -> Value {
        let (status, order) = self
            .post(&format!("/labs/{lab}/orders/{order_no}/advance"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{order}");
        order
    }
}

pub async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text:?}"));
    (status, value)
}

/// Asserts the ERP's error shape and code.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// An order body for a GFSL customer in New Delhi.
pub fn gfsl_order(client_ref: &str, sku: &str, mode: &str, slot_id: Option<&str>) -> Value {
    json!({
        "client_ref": client_ref,
        "items": [{"sku": sku, "qty": 1}],
        "mode": mode,
        "slot_id": slot_id,
        "customer": {
            "name": "Asha Devi",
            "phone": "+91-98765-43210",
            "email": "asha@example.com",
            "address": "House 12, Kapashera village, New Delhi",
            "pincode": "110037",
            "gps": "28.5245,77.0836"
        },
        "billing": {"name": "Asha Devi"},
        "payment_mode": "CASH_ON_COLLECTION"
    })
}

/// An order body for a KTH customer in Pune.
pub fn kth_order(client_ref: &str, sku: &str, mode: &str, slot_id: Option<&str>) -> Value {
    json!({
        "client_ref": client_ref,
        "items": [{"sku": sku, "qty": 1}],
        "mode": mode,
        "slot_id": slot_id,
        "customer": {
            "name": "Vijay Pawar",
            "phone": "+91-99220-12345",
            "address": "Gat 41, Hadapsar, Pune",
            "pincode": "411028"
        }
    })
}
