//! Typed API errors and their one JSON shape.
//!
//! Every failure leaves the server as `{"error": "<CODE>", "message": "..."}`
//! with a stable, machine-readable code, so that the adapter can map ERP
//! errors to protocol errors without parsing prose. The message is for humans
//! and names the offending value (sku, pincode, status) where there is one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::orders::OrderStatus;

/// Everything the ERP can refuse, over HTTP or through [`crate::SampleErp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErpError {
    #[error("unknown lab '{0}'")]
    UnknownLab(String),
    #[error("lab {lab} has no package '{sku}'")]
    PackageNotFound { lab: String, sku: String },
    #[error("lab {lab} has no order '{order_no}'")]
    OrderNotFound { lab: String, order_no: String },
    #[error("{0}")]
    NotFound(String),
    /// An item names a sku the lab does not sell (a 400, unlike
    /// [`ErpError::PackageNotFound`], because the request body is at fault).
    #[error("unknown sku '{0}'")]
    UnknownSku(String),
    #[error("pincode {0} is outside the service area")]
    OutsideServiceArea(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    SlotUnavailable(String),
    #[error("order {order_no} is {status} and can no longer be cancelled")]
    CannotCancel {
        order_no: String,
        status: OrderStatus,
    },
    /// An admin `advance` that would go backwards, stand still or leave a
    /// terminal status.
    #[error("{0}")]
    InvalidTransition(String),
    #[error("missing or wrong X-Api-Key")]
    Unauthorized,
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Internal(String),
}

impl ErpError {
    /// The stable code callers switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ErpError::UnknownLab(_)
            | ErpError::PackageNotFound { .. }
            | ErpError::OrderNotFound { .. }
            | ErpError::NotFound(_) => "NOT_FOUND",
            ErpError::UnknownSku(_) => "UNKNOWN_SKU",
            ErpError::OutsideServiceArea(_) => "OUTSIDE_SERVICE_AREA",
            ErpError::BadRequest(_) => "BAD_REQUEST",
            ErpError::SlotUnavailable(_) => "SLOT_UNAVAILABLE",
            ErpError::CannotCancel { .. } => "CANNOT_CANCEL",
            ErpError::InvalidTransition(_) => "INVALID_TRANSITION",
            ErpError::Unauthorized => "UNAUTHORIZED",
            ErpError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ErpError::Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ErpError::UnknownLab(_)
            | ErpError::PackageNotFound { .. }
            | ErpError::OrderNotFound { .. }
            | ErpError::NotFound(_) => StatusCode::NOT_FOUND,
            ErpError::UnknownSku(_) | ErpError::OutsideServiceArea(_) | ErpError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ErpError::SlotUnavailable(_)
            | ErpError::CannotCancel { .. }
            | ErpError::InvalidTransition(_) => StatusCode::CONFLICT,
            ErpError::Unauthorized => StatusCode::UNAUTHORIZED,
            ErpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ErpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The wire shape of every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub message: String,
}

impl IntoResponse for ErpError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_agree() {
        let cases = [
            (ErpError::UnknownLab("X".into()), 404, "NOT_FOUND"),
            (ErpError::UnknownSku("x".into()), 400, "UNKNOWN_SKU"),
            (
                ErpError::SlotUnavailable("full".into()),
                409,
                "SLOT_UNAVAILABLE",
            ),
            (
                ErpError::CannotCancel {
                    order_no: "GFSL-000001".into(),
                    status: OrderStatus::Testing,
                },
                409,
                "CANNOT_CANCEL",
            ),
            (ErpError::Unauthorized, 401, "UNAUTHORIZED"),
            (ErpError::Internal("boom".into()), 500, "INTERNAL"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn messages_name_the_offending_value() {
        assert_eq!(
            ErpError::UnknownSku("soil-gold".into()).to_string(),
            "unknown sku 'soil-gold'"
        );
        assert_eq!(
            ErpError::OutsideServiceArea("560001".into()).to_string(),
            "pincode 560001 is outside the service area"
        );
        let cannot = ErpError::CannotCancel {
            order_no: "KTH-000002".into(),
            status: OrderStatus::Testing,
        };
        assert!(cannot.to_string().contains("TESTING"));
    }
}
