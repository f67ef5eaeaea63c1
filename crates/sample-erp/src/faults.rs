//! Fault injection: make the ERP misbehave the way real back offices do.
//!
//! The adapter must survive an ERP behind a captive portal (HTML instead of
//! JSON), a crashing one (500), a slow one and one that sends broken JSON.
//! A fault applies to every `/api/v1/labs/...` call until cleared; the health
//! and fault-control endpoints are never affected, so tests can always switch
//! a fault off again.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::SampleErp;
use crate::error::ErpError;

/// A way for the ERP to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every call answers 200 with an HTML page (`text/html`).
    Html,
    /// Every call answers 500 `{"error":"INTERNAL",...}`.
    ServerError,
    /// Every call sleeps this long, then answers normally.
    Slow(Duration),
    /// Every call answers 200 with `application/json` that is not JSON.
    Garbage,
}

/// The page a misconfigured proxy or login wall would serve.
const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Maintenance</title></head>\
<body><h1>We'll be back soon</h1><p>The lab portal is under maintenance.</p></body></html>\n";

/// Looks like JSON and is labelled JSON, but stops half-way.
const GARBAGE: &str = "{\"packages\": [{\"sku\": \"soil-npk-pa";

/// Wire form of a fault, for `PUT /api/v1/faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub mode: FaultMode,
    /// Only meaningful (and required) for `slow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    Html,
    ServerError,
    Garbage,
    Slow,
}

impl TryFrom<FaultSpec> for Fault {
    type Error = ErpError;

    fn try_from(spec: FaultSpec) -> Result<Fault, ErpError> {
        Ok(match spec.mode {
            FaultMode::Html => Fault::Html,
            FaultMode::ServerError => Fault::ServerError,
            FaultMode::Garbage => Fault::Garbage,
            FaultMode::Slow => {
                let delay_ms = spec
                    .delay_ms
                    .ok_or_else(|| ErpError::BadRequest("mode 'slow' needs delay_ms".into()))?;
                Fault::Slow(Duration::from_millis(delay_ms))
            }
        })
    }
}

impl From<Fault> for FaultSpec {
    fn from(fault: Fault) -> FaultSpec {
        let (mode, delay_ms) = match fault {
            Fault::Html => (FaultMode::Html, None),
            Fault::ServerError => (FaultMode::ServerError, None),
            Fault::Garbage => (FaultMode::Garbage, None),
            Fault::Slow(delay) => (
                FaultMode::Slow,
                Some(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
            ),
        };
        FaultSpec { mode, delay_ms }
    }
}

/// Middleware that applies the current fault, if any, before the request
/// reaches authentication or a handler.
pub async fn inject(State(erp): State<SampleErp>, request: Request, next: Next) -> Response {
    match erp.fault() {
        None => next.run(request).await,
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Fault::Html) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            HTML_PAGE,
        )
            .into_response(),
        Some(Fault::ServerError) => {
            ErpError::Internal("injected fault: the ERP is down".into()).into_response()
        }
        Some(Fault::Garbage) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            GARBAGE,
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_convert_both_ways() {
        for fault in [
            Fault::Html,
            Fault::ServerError,
            Fault::Garbage,
            Fault::Slow(Duration::from_millis(250)),
        ] {
            assert_eq!(Fault::try_from(FaultSpec::from(fault)), Ok(fault));
        }
    }

    #[test]
    fn slow_needs_a_delay() {
        let spec: FaultSpec = serde_json::from_str(r#"{"mode":"slow"}"#).expect("valid spec");
        assert!(matches!(
            Fault::try_from(spec),
            Err(ErpError::BadRequest(_))
        ));
    }

    #[test]
    fn garbage_is_not_json() {
        assert!(serde_json::from_str::<serde_json::Value>(GARBAGE).is_err());
    }
}
