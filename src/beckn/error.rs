//! Beckn error codes and the error object that travels in NACKs and `on_*` callbacks.
//!
//! Codes follow BECKN-005 (30000-50004) plus the widely used network extensions for signature,
//! staleness and internal failures (30016, 30022, 31001). This is the one table that decides
//! which code, HTTP status and wording a failure gets.

use serde::Serialize;

/// A Beckn error code the adapter can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    ProviderNotFound,
    ProviderLocationNotFound,
    ProviderCategoryNotFound,
    ItemNotFound,
    CategoryNotFound,
    OfferNotFound,
    AddOnNotFound,
    FulfillmentUnavailable,
    FulfillmentProviderUnavailable,
    OrderNotFound,
    InvalidCancellationReason,
    InvalidUpdateTarget,
    UpdateInconsistency,
    EntityToRateNotFound,
    InvalidRatingValue,
    InvalidSignature,
    StaleRequest,
    InternalError,
    BusinessError,
    ActionNotApplicable,
    ItemQuantityUnavailable,
    QuoteUnavailable,
    PaymentNotSupported,
    TrackingNotSupported,
    FulfillmentAgentUnavailable,
    PolicyError,
    CancellationNotPossible,
    UpdateNotPossible,
    UnsupportedRatingCategory,
    SupportUnavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 31] = [
        ErrorCode::InvalidRequest,
        ErrorCode::ProviderNotFound,
        ErrorCode::ProviderLocationNotFound,
        ErrorCode::ProviderCategoryNotFound,
        ErrorCode::ItemNotFound,
        ErrorCode::CategoryNotFound,
        ErrorCode::OfferNotFound,
        ErrorCode::AddOnNotFound,
        ErrorCode::FulfillmentUnavailable,
        ErrorCode::FulfillmentProviderUnavailable,
        ErrorCode::OrderNotFound,
        ErrorCode::InvalidCancellationReason,
        ErrorCode::InvalidUpdateTarget,
        ErrorCode::UpdateInconsistency,
        ErrorCode::EntityToRateNotFound,
        ErrorCode::InvalidRatingValue,
        ErrorCode::InvalidSignature,
        ErrorCode::StaleRequest,
        ErrorCode::InternalError,
        ErrorCode::BusinessError,
        ErrorCode::ActionNotApplicable,
        ErrorCode::ItemQuantityUnavailable,
        ErrorCode::QuoteUnavailable,
        ErrorCode::PaymentNotSupported,
        ErrorCode::TrackingNotSupported,
        ErrorCode::FulfillmentAgentUnavailable,
        ErrorCode::PolicyError,
        ErrorCode::CancellationNotPossible,
        ErrorCode::UpdateNotPossible,
        ErrorCode::UnsupportedRatingCategory,
        ErrorCode::SupportUnavailable,
    ];

    /// The wire code and its standard title.
    pub fn entry(self) -> (&'static str, &'static str) {
        use ErrorCode::*;
        match self {
            InvalidRequest => ("30000", "Invalid request error"),
            ProviderNotFound => ("30001", "Provider not found"),
            ProviderLocationNotFound => ("30002", "Provider location not found"),
            ProviderCategoryNotFound => ("30003", "Provider category not found"),
            ItemNotFound => ("30004", "Item not found"),
            CategoryNotFound => ("30005", "Category not found"),
            OfferNotFound => ("30006", "Offer not found"),
            AddOnNotFound => ("30007", "Add on not found"),
            FulfillmentUnavailable => ("30008", "Fulfillment unavailable"),
            FulfillmentProviderUnavailable => ("30009", "Fulfilment provider unavailable"),
            OrderNotFound => ("30010", "Order not found"),
            InvalidCancellationReason => ("30011", "Invalid cancellation reason"),
            InvalidUpdateTarget => ("30012", "Invalid update_target"),
            UpdateInconsistency => ("30013", "Update inconsistency"),
            EntityToRateNotFound => ("30014", "Entity to rate not found"),
            InvalidRatingValue => ("30015", "Invalid rating value"),
            InvalidSignature => ("30016", "Invalid signature"),
            StaleRequest => ("30022", "Stale request"),
            InternalError => ("31001", "Internal error"),
            BusinessError => ("40000", "Business error"),
            ActionNotApplicable => ("40001", "Action not applicable"),
            ItemQuantityUnavailable => ("40002", "Item quantity unavailable"),
            QuoteUnavailable => ("40003", "Quote unavailable"),
            PaymentNotSupported => ("40004", "Payment not supported"),
            TrackingNotSupported => ("40005", "Tracking not supported"),
            FulfillmentAgentUnavailable => ("40006", "Fulfilment agent unavailable"),
            PolicyError => ("50000", "Policy error"),
            CancellationNotPossible => ("50001", "Cancellation not possible"),
            UpdateNotPossible => ("50002", "Updation not possible"),
            UnsupportedRatingCategory => ("50003", "Unsupported rating category"),
            SupportUnavailable => ("50004", "Support unavailable"),
        }
    }

    pub fn code(self) -> &'static str {
        self.entry().0
    }

    pub fn title(self) -> &'static str {
        self.entry().1
    }

    pub fn from_code(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Most bytes of an error's `message` (and `paths`) sent to another participant; what a
/// script or an ERP put there beyond it is cut.
pub const MAX_ERROR_TEXT: usize = 1024;

/// The Beckn `Error` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BecknError {
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub paths: Option<String>,
    pub message: String,
}

impl BecknError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BecknError {
            code: code.code().to_string(),
            paths: None,
            message: message.into(),
        }
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.paths = (!path.is_empty()).then_some(path);
        self
    }

    /// The error as it may be sent: scripts, templates and ERP answers can put any text in an
    /// error, so a code outside the Beckn table becomes `fallback`'s, and `message` and
    /// `paths` are cut to [`MAX_ERROR_TEXT`] bytes (on a character boundary, marked `…`).
    pub fn bounded(mut self, fallback: ErrorCode) -> Self {
        if ErrorCode::from_code(&self.code).is_none() {
            tracing::warn!(
                code = %clip(&self.code, 64),
                sent_as = fallback.code(),
                "error code is not a Beckn error code; sent as the default"
            );
            self.code = fallback.code().to_string();
        }
        if self.message.len() > MAX_ERROR_TEXT {
            self.message = clip(&self.message, MAX_ERROR_TEXT);
        }
        if let Some(paths) = &mut self.paths
            && paths.len() > MAX_ERROR_TEXT
        {
            *paths = clip(paths, MAX_ERROR_TEXT);
        }
        self
    }
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    const ELLIPSIS: &str = "…";
    let end = text.floor_char_boundary(max.saturating_sub(ELLIPSIS.len()));
    format!("{}{ELLIPSIS}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_and_long_texts_are_bounded() {
        let e = BecknError {
            code: "99999".into(),
            paths: Some("p".repeat(5000)),
            message: "é".repeat(900_000),
        }
        .bounded(ErrorCode::InternalError);
        assert_eq!(e.code, "31001");
        assert!(e.message.len() <= MAX_ERROR_TEXT, "{}", e.message.len());
        assert!(e.message.ends_with('…') && e.message.starts_with("éé"));
        assert!(e.paths.as_ref().is_some_and(|p| p.len() <= MAX_ERROR_TEXT));
        let kept = BecknError::new(ErrorCode::FulfillmentAgentUnavailable, "slot full")
            .bounded(ErrorCode::InternalError);
        assert_eq!(
            (kept.code.as_str(), kept.message.as_str()),
            ("40006", "slot full")
        );
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("aé€", 5), "a…");
    }

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "duplicate {}", c.code());
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
    }
}
