//! Why an action's flow failed, and which Beckn error the caller gets for it.

use crate::backend::BackendFailure;
use crate::beckn::error::{BecknError, ErrorCode};
use crate::mapping::{ScriptError, TemplateError};

/// A backend call that failed, and what the caller is told about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("step `{step}`: backend `{backend}` {failure}")]
pub struct BackendCallError {
    pub step: String,
    pub backend: String,
    pub failure: BackendFailure,
    /// What the flow's `errors:` table (or the default) says the caller is told.
    pub reply: BecknError,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Backend(Box<BackendCallError>),
    #[error("template {0}")]
    Template(TemplateError),
    #[error("script {0}")]
    Script(ScriptError),
    #[error("action `{0}` is not configured in this flow")]
    NotConfigured(String),
    /// The request itself cannot be served (an identifier that would change the backend path).
    #[error("request refused: {}", .0.message)]
    Refused(BecknError),
}

impl EngineError {
    /// The error object sent to the caller in the `on_*` callback. Internals (template names,
    /// script lines) stay in the logs; the caller gets the code and a plain message, bounded
    /// (a code outside the Beckn table becomes 31001, long messages are cut).
    pub fn to_beckn(&self) -> BecknError {
        self.unbounded().bounded(ErrorCode::InternalError)
    }

    fn unbounded(&self) -> BecknError {
        match self {
            EngineError::Backend(call) => call.reply.clone(),
            EngineError::Template(TemplateError {
                beckn: Some((code, message)),
                ..
            })
            | EngineError::Script(ScriptError::Beckn { code, message, .. }) => BecknError {
                code: code.clone(),
                paths: None,
                message: message.clone(),
            },
            EngineError::Template(_) | EngineError::Script(_) => BecknError::new(
                ErrorCode::InternalError,
                "the provider could not build a response to this request",
            ),
            EngineError::Refused(e) => e.clone(),
            EngineError::NotConfigured(action) => BecknError::new(
                ErrorCode::ActionNotApplicable,
                format!("this provider does not support `{action}`"),
            ),
        }
    }
}
