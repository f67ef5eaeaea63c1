//! The content type every Beckn endpoint takes: JSON.

use axum::http::{HeaderMap, header};

use crate::beckn::ack::Rejection;

/// Accepts `application/json` (any case, with or without parameters such as a charset).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Rejection::ContentType(ct.to_string()))
    }
}
