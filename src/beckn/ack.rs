//! The synchronous answer to every Beckn request: ACK, or NACK with an error.
//!
//! [`Rejection`] is the one table from "what went wrong on receipt" to Beckn code, HTTP status
//! and wording; handlers never build error JSON by hand.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::{BecknError, ErrorCode};

/// The ACK body, built once.
pub const ACK_BODY: &str = r#"{"message":{"ack":{"status":"ACK"}}}"#;

pub fn ack() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        ACK_BODY,
    )
        .into_response()
}

/// Why a request was refused before it was acknowledged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("`{0}` is not a Beckn action")]
    UnknownEndpoint(String),
    #[error("this provider does not support `{0}`")]
    NotServed(String),
    #[error("{}", if .0.is_empty() { "no Content-Type header: send application/json".to_string() } else { format!("content type must be application/json, got `{}`", .0) })]
    ContentType(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("request body could not be read: {0}")]
    Unreadable(String),
    #[error("malformed JSON at line {line} column {column}: {detail}")]
    /// `detail` is the parser's message without its position.
    MalformedJson {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("{message}")]
    Schema { path: String, message: String },
    #[error("context.action is `{found}` but this is the /{endpoint} endpoint")]
    ActionMismatch { endpoint: String, found: String },
    #[error("the request is addressed to `{found}`, this provider is `{ours}`")]
    WrongRecipient { ours: String, found: String },
    #[error("the request expired at {expired_at} (timestamp + ttl)")]
    Stale { expired_at: String },
    /// A message dated ahead of this participant's clock beyond the tolerated skew.
    #[error("{reason}")]
    Untimely { path: String, reason: String },
    /// An `on_search` for a search the gateway did not forward (or not to its signer).
    #[error("message id `{message_id}` answers no search this gateway forwarded: {detail}")]
    NotRouted { message_id: String, detail: String },
    /// A signature that is missing, malformed, unknown or wrong. `proxy` marks the gateway's
    /// `X-Gateway-Authorization` (answered with `Proxy-Authenticate`).
    #[error("{reason}")]
    Unauthorized {
        realm: String,
        proxy: bool,
        reason: String,
    },
    #[error("the signer is {signer} but context.{field} is {claimed}")]
    SignerMismatch {
        realm: String,
        signer: String,
        field: &'static str,
        claimed: String,
    },
    #[error("{reason}")]
    CallbackNotRegistered { reason: String },
    /// A callback addressed to another buyer app.
    #[error("the callback is addressed to `{found}`, this buyer app is `{ours}`")]
    WrongBap { ours: String, found: String },
    /// A callback answering no request of this buyer app (kept for inspection).
    #[error("message id `{message_id}` answers no request of this buyer app: {detail}")]
    UnknownRequest { message_id: String, detail: String },
    /// A callback answering a request whose ttl had ended (kept for inspection).
    #[error(
        "the request {message_id} expired at {expired_at} (timestamp + ttl): this answer came too late"
    )]
    LateCallback {
        message_id: String,
        expired_at: String,
    },
    /// A message id already recorded for another message (a repeat must be the same bytes).
    #[error(
        "message id `{0}` was used before for a different message; a new message needs a new message id"
    )]
    MessageIdReused(String),
    /// A transaction opened by another subscriber.
    #[error(
        "transaction `{0}` belongs to another subscriber; start a new transaction (new transaction_id)"
    )]
    ForeignTransaction(String),
    #[error("the provider is at capacity; retry later")]
    Busy,
    #[error("{0}; retry later")]
    Unavailable(String),
}

impl Rejection {
    /// A body that is not JSON, located by line and column.
    pub fn malformed(e: &serde_json::Error) -> Self {
        let text = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        Rejection::MalformedJson {
            line: e.line(),
            column: e.column(),
            detail: text.strip_suffix(&suffix).unwrap_or(&text).to_string(),
        }
    }

    /// Beckn code, HTTP status and the error path of this rejection.
    pub fn classify(&self) -> (ErrorCode, StatusCode, Option<String>) {
        use Rejection::*;
        match self {
            UnknownEndpoint(_) => (ErrorCode::InvalidRequest, StatusCode::NOT_FOUND, None),
            NotServed(_) => (ErrorCode::ActionNotApplicable, StatusCode::NOT_FOUND, None),
            ContentType(_) => (
                ErrorCode::InvalidRequest,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
            ),
            TooLarge(_) => (
                ErrorCode::InvalidRequest,
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
            ),
            Unreadable(_) => (ErrorCode::InvalidRequest, StatusCode::BAD_REQUEST, None),
            MalformedJson { .. } => (ErrorCode::InvalidRequest, StatusCode::BAD_REQUEST, None),
            Schema { path, .. } => (
                ErrorCode::InvalidRequest,
                StatusCode::BAD_REQUEST,
                Some(path.clone()),
            ),
            ActionMismatch { .. } => (
                ErrorCode::InvalidRequest,
                StatusCode::BAD_REQUEST,
                Some("context.action".into()),
            ),
            WrongRecipient { .. } => (
                ErrorCode::InvalidRequest,
                StatusCode::BAD_REQUEST,
                Some("context.bpp_id".into()),
            ),
            Stale { .. } => (
                ErrorCode::StaleRequest,
                StatusCode::BAD_REQUEST,
                Some("context.ttl".into()),
            ),
            Untimely { path, .. } => (
                ErrorCode::StaleRequest,
                StatusCode::BAD_REQUEST,
                Some(path.clone()),
            ),
            NotRouted { .. } => (
                ErrorCode::InvalidRequest,
                StatusCode::BAD_REQUEST,
                Some("context.message_id".into()),
            ),
            Unauthorized { .. } => (ErrorCode::InvalidSignature, StatusCode::UNAUTHORIZED, None),
            SignerMismatch { field, .. } => (
                ErrorCode::InvalidSignature,
                StatusCode::UNAUTHORIZED,
                Some(format!("context.{field}")),
            ),
            WrongBap { .. } => (
                ErrorCode::InvalidRequest,
                StatusCode::BAD_REQUEST,
                Some("context.bap_id".into()),
            ),
            UnknownRequest { .. } => (
                ErrorCode::InvalidRequest,
                StatusCode::BAD_REQUEST,
                Some("context.message_id".into()),
            ),
            LateCallback { .. } => (
                ErrorCode::StaleRequest,
                StatusCode::BAD_REQUEST,
                Some("context.message_id".into()),
            ),
            CallbackNotRegistered { .. } => (
                ErrorCode::InvalidRequest,
                StatusCode::BAD_REQUEST,
                Some("context.bap_uri".into()),
            ),
            MessageIdReused(_) => (
                ErrorCode::InvalidRequest,
                StatusCode::CONFLICT,
                Some("context.message_id".into()),
            ),
            ForeignTransaction(_) => (
                ErrorCode::InvalidRequest,
                StatusCode::CONFLICT,
                Some("context.transaction_id".into()),
            ),
            Busy | Unavailable(_) => (
                ErrorCode::InternalError,
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
        }
    }

    pub fn to_beckn(&self) -> BecknError {
        let (code, _, path) = self.classify();
        let e = BecknError::new(code, self.to_string());
        match path {
            Some(p) => e.with_path(p),
            None => e,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (_, status, _) = self.classify();
        let body = json!({
            "message": {"ack": {"status": "NACK"}},
            "error": self.to_beckn(),
        });
        let mut response = (status, axum::Json(body)).into_response();
        let challenge = match &self {
            Rejection::Unauthorized { realm, proxy, .. } => Some((realm, *proxy)),
            Rejection::SignerMismatch { realm, .. } => Some((realm, false)),
            _ => None,
        };
        if let Some((realm, proxy)) = challenge {
            let name = if proxy {
                header::PROXY_AUTHENTICATE
            } else {
                header::WWW_AUTHENTICATE
            };
            let value =
                format!("Signature realm=\"{realm}\",headers=\"(created) (expires) digest\"");
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_shape() {
        let r = Rejection::Schema {
            path: "context.transaction_id".into(),
            message: "\"x\" is not a \"uuid\"".into(),
        };
        let e = r.to_beckn();
        assert_eq!(e.code, "30000");
        assert_eq!(e.paths.as_deref(), Some("context.transaction_id"));
        assert_eq!(r.classify().1, StatusCode::BAD_REQUEST);
        let ack: serde_json::Value = serde_json::from_str(ACK_BODY).unwrap();
        assert_eq!(ack["message"]["ack"]["status"], "ACK");
    }
}
