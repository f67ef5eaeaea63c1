//! A stand-in Beckn registry for the adapter's demo and tests, speaking two dialects:
//!
//! - Beckn core: `POST /subscribe` with the subscriber object, `POST /lookup`.
//! - ONDC: `POST /subscribe` with `context.operation.ops_no` and `message.entity`,
//!   `POST /v2.0/lookup`, whose `Authorization` signature is verified against the asker's
//!   own record.
//!
//! Subscribing is strict and synchronous: the registry encrypts a random challenge for the
//! subscriber's encryption key, POSTs it to the subscriber's `on_subscribe`, and checks the
//! answer; for ONDC it then fetches `/ondc-site-verification.html` and checks the ed25519
//! signature of the `request_id`. Only then is the record `SUBSCRIBED` and the subscription
//! answered. A refusal is a NACK with one of this stand-in's codes ([`codes`]).

mod crypto;
mod lookup;
mod subscribe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use serde::Serialize;
use tokio::net::TcpListener;

pub use crypto::{encrypt_challenge, x25519_der, x25519_public};

/// This stand-in's refusal codes (its own; the texts carry the meaning).
pub mod codes {
    /// The body is not a subscription of the dialect.
    pub const BAD_REQUEST: &str = "1001";
    /// A public key does not decode.
    pub const BAD_KEY: &str = "1020";
    /// The `on_subscribe` challenge was not answered with its plaintext.
    pub const CHALLENGE_FAILED: &str = "1030";
    /// The site verification page is missing or its signature is wrong.
    pub const DOMAIN_NOT_VERIFIED: &str = "1040";
    /// The subscriber's ukId is subscribed with other keys.
    pub const ALREADY_SUBSCRIBED: &str = "1050";
    /// A v2.0 lookup without a valid signature of a subscribed participant.
    pub const UNAUTHORISED: &str = "1060";
}

/// One subscriber's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub subscriber_id: String,
    pub unique_key_id: String,
    /// BAP, BPP or BG.
    pub kind: String,
    pub domain: String,
    /// The full URL of its Beckn endpoints.
    pub url: String,
    pub city: String,
    pub country: String,
    pub signing_public_key: String,
    /// DER base64 as the subscriber sent it.
    pub encr_public_key: String,
    pub valid_from: String,
    pub valid_until: String,
    pub status: String,
    pub created: String,
    pub updated: String,
    /// Which dialect subscribed it.
    pub dialect: &'static str,
}

/// What the stand-in is started with.
pub struct Config {
    /// The registry's X25519 private key (32 bytes); its public key is what participants
    /// configure as `network.registry.encryption_public_key`.
    pub encryption_key: [u8; 32],
    /// How long each call to a subscriber may take.
    pub timeout: Duration,
}

impl Config {
    /// A fresh random key and a 5-second timeout.
    pub fn generate() -> Config {
        let mut key = [0u8; 32];
        // A failing system RNG leaves no way to run a registry at all.
        getrandom::fill(&mut key).unwrap_or_else(|e| panic!("system random source: {e}"));
        Config {
            encryption_key: key,
            timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) struct State {
    secret: x25519_dalek::StaticSecret,
    timeout: Duration,
    client: reqwest::Client,
    records: Mutex<Vec<Record>>,
    /// Where `https://<subscriber_id>` is reached instead (local networks: `http://127.0.0.1:port`).
    origins: Mutex<HashMap<String, String>>,
    /// What happened, in order (subscriptions, challenges, verifications, lookups).
    events: Mutex<Vec<String>>,
}

impl State {
    pub(crate) fn origin(&self, subscriber_id: &str) -> String {
        self.origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subscriber_id)
            .cloned()
            .unwrap_or_else(|| format!("https://{subscriber_id}"))
    }

    pub(crate) fn note(&self, event: String) {
        tracing::info!(target: "registry_standin", "{event}");
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    pub(crate) fn records(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The stand-in registry; clones share their state.
#[derive(Clone)]
pub struct RegistryStandin {
    state: Arc<State>,
}

impl RegistryStandin {
    pub fn new(config: Config) -> Self {
        RegistryStandin {
            state: Arc::new(State {
                secret: x25519_dalek::StaticSecret::from(config.encryption_key),
                timeout: config.timeout,
                client: reqwest::Client::new(),
                records: Mutex::default(),
                origins: Mutex::default(),
                events: Mutex::default(),
            }),
        }
    }

    /// The registry's encryption public key, base64 DER (what participants configure).
    pub fn encryption_public_key(&self) -> String {
        x25519_der(&x25519_dalek::PublicKey::from(&self.state.secret))
    }

    /// Reach `https://<subscriber_id>` at `origin` instead (for the ONDC challenge, site
    /// verification and the registered URL).
    pub fn route_subscriber(&self, subscriber_id: &str, origin: &str) {
        self.state
            .origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                subscriber_id.to_string(),
                origin.trim_end_matches('/').to_string(),
            );
    }

    /// The records, in the order they were first subscribed.
    pub fn records(&self) -> Vec<Record> {
        self.state.records().clone()
    }

    /// What happened so far, one line each.
    pub fn events(&self) -> Vec<String> {
        self.state
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/subscribe", post(subscribe::subscribe))
            .route("/lookup", post(lookup::core_lookup))
            .route("/v2.0/lookup", post(lookup::ondc_lookup))
            .with_state(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests;
