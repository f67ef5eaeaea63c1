//! The LIMS's one error shape: `{"fault": {"code": "SLOT_TAKEN", "detail": "..."}}`.
//!
//! Deliberately unlike the sample ERP's `{"error": ..., "message": ...}`: an adapter maps
//! each ERP's own shape (here with `error_code: /fault/code`), never a shape it imposes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything the LIMS refuses, over HTTP or through [`crate::SampleLims`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimsError {
    #[error("no test '{0}' in the catalog")]
    UnknownTest(String),
    #[error("no quotation '{0}'")]
    UnknownQuotation(String),
    #[error("no booking '{0}'")]
    UnknownBooking(String),
    #[error("no slot '{0}'")]
    UnknownSlot(String),
    #[error("slot {0} is already taken")]
    SlotTaken(String),
    #[error("a field visit needs a slot_ref")]
    SlotRequired,
    #[error("booking {booking_no} is {state} and can no longer be cancelled")]
    NotCancellable { booking_no: String, state: String },
    #[error("booking {0} is already closed")]
    AlreadyClosed(String),
    #[error("score must be 1 to 5, got {0}")]
    BadScore(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("missing, unknown or expired access token")]
    TokenInvalid,
    #[error("the LIMS is down for maintenance")]
    Maintenance,
    #[error("no such endpoint")]
    NoRoute,
}

impl LimsError {
    /// The stable code callers switch on.
    pub fn code(&self) -> &'static str {
        match self {
            LimsError::UnknownTest(_) => "UNKNOWN_TEST",
            LimsError::UnknownQuotation(_) => "NO_SUCH_QUOTATION",
            LimsError::UnknownBooking(_) => "NO_SUCH_BOOKING",
            LimsError::UnknownSlot(_) => "NO_SUCH_SLOT",
            LimsError::SlotTaken(_) => "SLOT_TAKEN",
            LimsError::SlotRequired => "SLOT_REQUIRED",
            LimsError::NotCancellable { .. } => "NOT_CANCELLABLE",
            LimsError::AlreadyClosed(_) => "ALREADY_CLOSED",
            LimsError::BadScore(_) => "BAD_SCORE",
            LimsError::Invalid(_) => "INVALID",
            LimsError::TokenInvalid => "TOKEN_INVALID",
            LimsError::Maintenance => "MAINTENANCE",
            LimsError::NoRoute => "NO_ROUTE",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            LimsError::UnknownBooking(_) | LimsError::NoRoute => StatusCode::NOT_FOUND,
            LimsError::UnknownTest(_)
            | LimsError::UnknownQuotation(_)
            | LimsError::UnknownSlot(_)
            | LimsError::SlotRequired
            | LimsError::BadScore(_)
            | LimsError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            LimsError::SlotTaken(_)
            | LimsError::NotCancellable { .. }
            | LimsError::AlreadyClosed(_) => StatusCode::CONFLICT,
            LimsError::TokenInvalid => StatusCode::UNAUTHORIZED,
            LimsError::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for LimsError {
    fn into_response(self) -> Response {
        let body = json!({"fault": {"code": self.code(), "detail": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_statuses_and_details_agree() {
        let cases = [
            (LimsError::SlotTaken("D2-0900".into()), 409, "SLOT_TAKEN"),
            (
                LimsError::UnknownBooking("BHM-9".into()),
                404,
                "NO_SUCH_BOOKING",
            ),
            (LimsError::UnknownTest("X".into()), 422, "UNKNOWN_TEST"),
            (LimsError::TokenInvalid, 401, "TOKEN_INVALID"),
            (LimsError::Maintenance, 503, "MAINTENANCE"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code);
        }
        assert_eq!(
            LimsError::SlotTaken("D2-0900".into()).to_string(),
            "slot D2-0900 is already taken"
        );
    }
}
