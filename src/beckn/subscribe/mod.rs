//! Subscribing a participant with its registry: the request in the registry's dialect (Beckn
//! core in `core.rs`, ONDC in `ondc.rs`), sent to `{registry}/subscribe`, and what the answer
//! means, with a hint for each refusal we know.
//!
//! A registry answers `/subscribe` after (ONDC) or while (core) it challenges us at
//! `<base_path>/on_subscribe` and fetches our site verification page, so the adapter must be
//! serving the flow while it subscribes. Nothing here writes a file: a refused subscription
//! leaves no trace but the answer.

mod core;
mod ondc;

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::participant::Participant;
use super::registry::SubscriberType;
pub use crate::config::subscription::RegistryDialect;

/// A flow's subscription, compiled: where and how it subscribes, and what it declares.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registry's base URL, without a trailing slash.
    pub registry_url: String,
    pub dialect: RegistryDialect,
    /// The subscription's `request_id`, whose signature our site verification page serves.
    pub request_id: String,
    pub kind: SubscriberType,
    /// The domain code the registry knows us by.
    pub domain: String,
    pub city_codes: Vec<String>,
    pub country: String,
    /// How long the keys are registered for, from the moment of subscribing.
    pub key_validity: Duration,
    pub timeout: Duration,
    /// ONDC: 1 buyer app, 2 seller app, 4 both.
    pub ops_no: u64,
    /// ONDC: a marketplace seller node.
    pub msn: bool,
    /// ONDC: the path under `https://<subscriber_id>` where `/on_subscribe` is served.
    pub callback_url: String,
    /// ONDC: the entity (gst, pan, signatory, contact), as the registry spells it.
    pub entity: Option<Value>,
}

/// Why a subscription could not even be asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error(
        "this flow has no subscription to send: it needs `network.subscription` and a registry URL in `network.registry.source`"
    )]
    NotConfigured,
    #[error("subscribing needs {0}")]
    Missing(&'static str),
}

/// A request to a registry: where and what.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub url: String,
    pub body: Value,
}

/// Builds the `/subscribe` request of `me` in its registry's dialect, at `now`.
pub fn build_request(
    me: &Participant,
    now: jiff::Timestamp,
) -> Result<SubscribeRequest, SubscribeError> {
    let reg = me
        .registration
        .as_ref()
        .ok_or(SubscribeError::NotConfigured)?;
    let signing = me.signing_key.as_ref().ok_or(SubscribeError::Missing(
        "a signing key (network.signing_private_key)",
    ))?;
    let key_id = me
        .key_id
        .as_deref()
        .ok_or(SubscribeError::Missing("a key id (network.key_id)"))?;
    let encryption = me
        .onboarding
        .encryption_key
        .as_ref()
        .ok_or(SubscribeError::Missing(
            "an encryption key (network.encryption_private_key)",
        ))?;
    // Whole seconds: a verifier judging validity at a truncated second must already see
    // the keys as valid.
    let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    let until = now
        .checked_add(jiff::SignedDuration::try_from(reg.key_validity).unwrap_or_default())
        .unwrap_or(jiff::Timestamp::MAX);
    let keys = Keys {
        key_id,
        signing_public_key: signing.public_key().to_base64(),
        encryption_public_key: encryption.public_key().to_der_base64(),
        valid_from: now,
        valid_until: until,
    };
    let body = match reg.dialect {
        RegistryDialect::Core => core::request(me, reg, &keys),
        RegistryDialect::Ondc => ondc::request(me, reg, &keys, now)?,
    };
    Ok(SubscribeRequest {
        url: format!("{}/subscribe", reg.registry_url),
        body,
    })
}

/// The keys a subscription registers.
struct Keys<'a> {
    key_id: &'a str,
    signing_public_key: String,
    /// DER SubjectPublicKeyInfo, base64: what ONDC's registry expects, and Beckn registries take.
    encryption_public_key: String,
    valid_from: jiff::Timestamp,
    valid_until: jiff::Timestamp,
}

/// What came back from `/subscribe`.
#[derive(Debug, Clone)]
pub enum Answer {
    Http {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    TimedOut(Duration),
    Unreachable(String),
}

/// A refusal we recognise, each with what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    WrongKey,
    DomainNotVerified,
    ChallengeFailed,
    AlreadySubscribed,
    Html,
    Timeout,
    Unreachable,
    Unknown,
}

impl Refusal {
    pub fn hint(self) -> &'static str {
        match self {
            Refusal::WrongKey => {
                "the registry does not accept our keys: check network.signing_private_key and network.encryption_private_key against what was whitelisted, and that the encryption public key is sent in DER form (`beckn-adapter keys` prints both)"
            }
            Refusal::DomainNotVerified => {
                "the registry could not verify the domain: https://<subscriber_id>/ondc-site-verification.html must be served by this adapter (listener of the flow, reachable from the registry) and network.subscription.request_id must be the request_id sent"
            }
            Refusal::ChallengeFailed => {
                "the registry's challenge was not answered: <subscriber_uri>/on_subscribe must reach the running adapter, and network.registry.encryption_public_key must be the key of this registry's environment (staging, pre-production and production differ)"
            }
            Refusal::AlreadySubscribed => {
                "the registry already has this subscriber and key: use a new network.key_id for new keys, or ops_no for an update, or check the current record with a lookup"
            }
            Refusal::Html => {
                "the registry answered an HTML page: network.registry.source is probably a portal or a proxy, not the registry's API base URL"
            }
            Refusal::Timeout => {
                "the registry did not answer in time: it waits on our on_subscribe and site verification page, so check they are reachable from it, or raise network.subscription.timeout"
            }
            Refusal::Unreachable => {
                "the registry could not be reached: check network.registry.source and the network path to it"
            }
            Refusal::Unknown => {
                "read the registry's answer above; its documentation lists its codes"
            }
        }
    }

    /// Reads a refusal's text (its code's message) as one of the known kinds.
    fn from_text(text: &str) -> Refusal {
        let t = text.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
        if has(&["already", "duplicate", "exists"]) {
            Refusal::AlreadySubscribed
        } else if has(&["challenge", "on_subscribe"]) {
            Refusal::ChallengeFailed
        } else if has(&["domain", "site verification", "site-verification", "ssl"]) {
            Refusal::DomainNotVerified
        } else if has(&["key", "signature"]) {
            Refusal::WrongKey
        } else {
            Refusal::Unknown
        }
    }
}

/// What the registry's answer means.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub accepted: bool,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What the registry said, in a line.
    pub said: String,
    pub refusal: Option<Refusal>,
    pub hint: Option<&'static str>,
}

impl Outcome {
    fn accepted(status: u16, said: String) -> Self {
        Outcome {
            accepted: true,
            status: Some(status),
            said,
            refusal: None,
            hint: None,
        }
    }

    fn refused(status: Option<u16>, said: String, refusal: Refusal) -> Self {
        Outcome {
            accepted: false,
            status,
            said,
            refusal: Some(refusal),
            hint: Some(refusal.hint()),
        }
    }
}

/// Reads a `/subscribe` answer in `dialect`.
pub fn interpret(dialect: RegistryDialect, answer: &Answer) -> Outcome {
    let (status, content_type, body) = match answer {
        Answer::TimedOut(after) => {
            return Outcome::refused(
                None,
                format!("no answer within {after:?}"),
                Refusal::Timeout,
            );
        }
        Answer::Unreachable(e) => {
            return Outcome::refused(None, e.clone(), Refusal::Unreachable);
        }
        Answer::Http {
            status,
            content_type,
            body,
        } => (*status, content_type.as_deref(), body.as_slice()),
    };
    let text = String::from_utf8_lossy(body);
    let html =
        content_type.is_some_and(|c| c.contains("html")) || text.trim_start().starts_with('<');
    if html {
        return Outcome::refused(
            Some(status),
            format!("HTTP {status}, an HTML page: {}", clip(&text)),
            Refusal::Html,
        );
    }
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        let refusal = if status < 300 {
            Refusal::Unknown
        } else {
            Refusal::from_text(&text)
        };
        return Outcome::refused(
            Some(status),
            format!("HTTP {status}, not JSON: {}", clip(&text)),
            refusal,
        );
    };
    match dialect {
        RegistryDialect::Core => core::interpret(status, &json),
        RegistryDialect::Ondc => ondc::interpret(status, &json),
    }
}

/// At most 300 characters of `text`, on one line.
fn clip(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None => one_line,
    }
}

/// Sends `me`'s subscription to its registry and reads the answer. The only outgoing call of
/// this module; the request waits while the registry challenges us.
pub async fn subscribe(
    me: &Participant,
    now: jiff::Timestamp,
) -> Result<(SubscribeRequest, Outcome), SubscribeError> {
    let request = build_request(me, now)?;
    let reg = me
        .registration
        .as_ref()
        .ok_or(SubscribeError::NotConfigured)?;
    let answer = post(&request, reg.timeout).await;
    let outcome = interpret(reg.dialect, &answer);
    Ok((request, outcome))
}

async fn post(request: &SubscribeRequest, timeout: Duration) -> Answer {
    let client = reqwest::Client::new();
    let sent = client
        .post(&request.url)
        .timeout(timeout)
        .json(&request.body)
        .send()
        .await;
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            Answer::TimedOut(timeout)
        } else {
            Answer::Unreachable(e.to_string())
        }
    };
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match resp.bytes().await {
        Ok(body) => Answer::Http {
            status,
            content_type,
            body: body.to_vec(),
        },
        Err(e) => failed(e),
    }
}

#[cfg(test)]
mod tests;
