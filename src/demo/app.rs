//! A stand-in for the farmer app's own server: it receives the adapter's webhook deliveries
//! and checks each one's HMAC as a real app should, refusing (401) what does not verify.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::Notify;

use crate::delivery::app_webhook;

/// How far a delivery's signing time may be from ours.
const TOLERANCE_SECONDS: i64 = 300;

/// One delivery as the app received it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The envelope: `event`, `action`, `transaction_id`, `message_id`, `bpp_id`,
    /// `callback` (the on_* body).
    pub envelope: Value,
    pub raw: Bytes,
    pub signature: Option<String>,
    /// Whether the HMAC verified, and why not.
    pub verified: Result<(), String>,
}

/// What reached the app's webhook.
pub struct AppStandIn {
    secret: Vec<u8>,
    /// Lower case.
    header: String,
    deliveries: Mutex<Vec<Delivery>>,
    arrived: Notify,
}

impl AppStandIn {
    pub fn new(secret: Vec<u8>, header: String) -> Self {
        AppStandIn {
            secret,
            header: header.to_ascii_lowercase(),
            deliveries: Mutex::default(),
            arrived: Notify::new(),
        }
    }

    /// `POST /beckn/callbacks`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/beckn/callbacks", post(receive))
            .with_state(self)
    }

    /// Every delivery so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `deadline` for a delivery matching `wanted`.
    pub async fn wait_for(
        &self,
        deadline: Duration,
        wanted: impl Fn(&Delivery) -> bool,
    ) -> Option<Delivery> {
        tokio::time::timeout(deadline, async {
            loop {
                let arrived = self.arrived.notified();
                if let Some(d) = self.deliveries().into_iter().find(|d| wanted(d)) {
                    return d;
                }
                arrived.await;
            }
        })
        .await
        .ok()
    }
}

async fn receive(
    State(app): State<Arc<AppStandIn>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get(app.header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The sample app is another program: it checks signatures by the system's clock.
    let now = jiff::Timestamp::now().as_second();
    let verified = match &signature {
        Some(s) => app_webhook::verify(&app.secret, &body, s, now, TOLERANCE_SECONDS)
            .map_err(|e| e.to_string()),
        None => Err(format!("no {} header", app.header)),
    };
    let status = if verified.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    let envelope = serde_json::from_slice(&body).unwrap_or(Value::Null);
    app.deliveries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Delivery {
            envelope,
            raw: body,
            signature,
            verified,
        });
    app.arrived.notify_waiters();
    status
}
