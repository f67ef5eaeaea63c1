//! Time and money helpers shared by templates (filters) and scripts (functions), so both speak
//! the same names with the same results. Each helper is a plain function over strings and
//! integers; `templates.rs` and `scripts.rs` only adapt them to their engine.

pub mod money;
pub mod time;

/// A helper refused its input; the message names the helper and the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{helper}: `{input}` {reason}")]
pub struct HelperError {
    pub helper: &'static str,
    pub input: String,
    pub reason: String,
}

impl HelperError {
    pub(crate) fn new(helper: &'static str, input: &str, reason: impl Into<String>) -> Self {
        HelperError {
            helper,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}
