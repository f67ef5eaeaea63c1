//! Payload logging: every message received and sent, with its headers, when switched on
//! (`--log-payloads`). Signatures keep only their `keyId`, secret headers are masked and the
//! configured personal fields (phone, email…) are replaced wherever they occur in the body.

use std::sync::RwLock;

use axum::http::HeaderMap;
use serde_json::Value;

use crate::beckn::redact;

struct Settings {
    enabled: bool,
    personal_fields: Vec<String>,
}

static SETTINGS: RwLock<Settings> = RwLock::new(Settings {
    enabled: false,
    personal_fields: Vec::new(),
});

/// Switches payload logging on or off, with the field names to redact in bodies.
pub fn configure(enabled: bool, personal_fields: Vec<String>) {
    let mut s = SETTINGS.write().unwrap_or_else(|p| p.into_inner());
    s.enabled = enabled;
    s.personal_fields = personal_fields;
}

fn enabled() -> bool {
    SETTINGS.read().map(|s| s.enabled).unwrap_or(false)
}

/// The body as it may be logged: JSON with personal fields masked, or a note that it is not JSON.
pub fn redacted_body(body: &[u8]) -> String {
    let fields = SETTINGS
        .read()
        .map(|s| s.personal_fields.clone())
        .unwrap_or_default();
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            mask(&mut v, &fields);
            v.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}

fn mask(v: &mut Value, fields: &[String]) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if fields.iter().any(|f| f == k) && !child.is_null() {
                    *child = Value::String("***".into());
                } else {
                    mask(child, fields);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mask(i, fields)),
        _ => {}
    }
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
        configure(false, vec!["phone".into(), "email".into()]);
        let body = br#"{"a":{"contact":{"phone":"+91-98","email":"x@y"},"list":[{"phone":"1"}]},"name":"kept"}"#;
        let out = redacted_body(body);
        assert!(
            !out.contains("+91-98") && !out.contains("x@y") && !out.contains("\"1\""),
            "{out}"
        );
        assert!(out.contains("kept"));
    }
}
