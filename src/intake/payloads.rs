//! Payload logging: every message received and sent, with its headers, when switched on
//! (`--log-payloads`). Signatures keep only their `keyId`, secret headers are masked and the
//! configured personal fields (phone, email…) are replaced wherever they occur in the body.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use serde_json::Value;

use crate::beckn::redact::{self, PersonalFields};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Switches payload logging on or off, with the personal fields masked in bodies (names and
/// dotted paths, [`PersonalFields`]); the store's message log masks the same fields.
pub fn configure(enabled: bool, personal_fields: Vec<String>) {
    ENABLED.store(enabled, Ordering::Relaxed);
    redact::set_personal_fields(PersonalFields::new(personal_fields));
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The body as it may be logged: JSON with personal fields masked, or a note that it is not JSON.
pub fn redacted_body(body: &[u8]) -> String {
    redact::personal_fields()
        .mask(body)
        .and_then(|masked| serde_json::from_slice::<Value>(&masked).ok())
        .map(|v| v.to_string())
        .unwrap_or_else(|| format!("<{} bytes, not JSON>", body.len()))
}

/// A message received.
pub fn received(flow: &str, action: &str, headers: &HeaderMap, body: &[u8]) {
    if enabled() {
        tracing::info!(target: "beckn_adapter::payload", %flow, %action, direction = "in", headers = %redact::headers_json(headers), body = %redacted_body(body), "payload");
    }
}

/// A message sent to `url`.
pub fn sent(flow: &str, action: &str, url: &str, headers: &[(String, String)], body: &[u8]) {
    if enabled() {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::try_from(k.as_str()),
                axum::http::HeaderValue::try_from(v.as_str()),
            ) {
                map.insert(k, v);
            }
        }
        tracing::info!(target: "beckn_adapter::payload", %flow, %action, direction = "out", %url, headers = %redact::headers_json(&map), body = %redacted_body(body), "payload");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_fields_are_masked_at_any_depth() {
        let fields = PersonalFields::new(["phone", "email"]);
        let body = br#"{"a":{"contact":{"phone":"+91-98","email":"x@y"},"list":[{"phone":"1"}]},"name":"kept"}"#;
        let out = fields.mask(body).unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(
            !out.contains("+91-98") && !out.contains("x@y") && !out.contains("\"1\""),
            "{out}"
        );
        assert!(out.contains("kept"));
    }

    #[test]
    fn names_are_masked_in_payload_logs() {
        let body = br#"{"message":{"order":{"billing":{"name":"Asha Devi"},
            "fulfillments":[{"customer":{"person":{"name":"Asha Devi"}}}],
            "items":[{"descriptor":{"name":"Soil NPK Package"}}]}}}"#;
        let logged = redacted_body(body);
        assert!(!logged.contains("Asha"), "{logged}");
        assert!(logged.contains("Soil NPK Package"), "{logged}");
        assert_eq!(redacted_body(b"<xml/>"), "<6 bytes, not JSON>");
    }
}
