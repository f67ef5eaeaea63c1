//! Redaction of what must not be stored or logged: signatures, keys, tokens.

use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// Headers that carry secrets outright.
const SECRET_HEADERS: [&str; 5] = [
    "cookie",
    "set-cookie",
    "x-api-key",
    "securetoken",
    "proxy-authorization",
];

/// The headers as a JSON object, with signatures reduced to their `keyId` and secrets masked.
pub fn headers_json(headers: &HeaderMap) -> String {
    let mut out = Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let text = value.to_str().unwrap_or("<binary>");
        let shown = if name == "authorization" || name == "x-gateway-authorization" {
            signature_summary(text)
        } else if SECRET_HEADERS.contains(&name) {
            "***".to_string()
        } else {
            text.to_string()
        };
        out.insert(name.to_string(), Value::String(shown));
    }
    Value::Object(out).to_string()
}

/// `Signature keyId="a|k|ed25519",...,signature="…"` -> `Signature keyId="a|k|ed25519" (signature redacted)`;
/// any other credential -> `***`.
pub fn signature_summary(value: &str) -> String {
    match value.split(',').find_map(|p| {
        p.trim()
            .strip_prefix("Signature ")
            .or(Some(p.trim()))
            .filter(|p| p.starts_with("keyId="))
    }) {
        Some(key_id) => format!("Signature {key_id} (signature redacted)"),
        None => "***".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_keep_only_their_key_id() {
        let s = r#"Signature keyId="bap.example|k1|ed25519",algorithm="ed25519",created="1",expires="2",headers="(created) (expires) digest",signature="c2VjcmV0""#;
        let r = signature_summary(s);
        assert_eq!(
            r,
            r#"Signature keyId="bap.example|k1|ed25519" (signature redacted)"#
        );
        assert!(!r.contains("c2VjcmV0"));
        assert_eq!(signature_summary("Bearer abc"), "***");
        let mut h = HeaderMap::new();
        h.insert("authorization", s.parse().unwrap());
        h.insert("x-api-key", "k".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        let j = headers_json(&h);
        assert!(
            !j.contains("c2VjcmV0")
                && j.contains("\"x-api-key\":\"***\"")
                && j.contains("application/json"),
            "{j}"
        );
    }
}
