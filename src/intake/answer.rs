//! The body of a callback leaving: the message, or an error in its place.

use serde_json::{Value, json};

use super::validate::Rules;
use crate::beckn::action::Action;
use crate::beckn::error::{BecknError, ErrorCode};

/// The callback answering `action`: the message, or the error. An outgoing message that breaks
/// the core schema or the domain rules is logged and replaced by an internal error, so a
/// receiver never gets an invalid message.
pub fn callback_body(
    rules: &Rules,
    action: Action,
    context: Value,
    outcome: Result<Value, BecknError>,
) -> Value {
    let body = match outcome {
        Ok(message) => crate::beckn::context::envelope(context, message),
        Err(error) => return error_body(action, context, error),
    };
    let callback = action.callback();
    let violations = rules.outgoing_violations(callback, &body);
    if violations.is_empty() {
        return body;
    }
    let ids = |k: &str| body["context"][k].as_str().unwrap_or_default().to_string();
    let (transaction_id, message_id) = (ids("transaction_id"), ids("message_id"));
    let flow = rules.flow;
    for v in &violations {
        tracing::error!(%flow, %callback, %transaction_id, %message_id, path = %v.path, problem = %v.message, "outgoing {callback} breaks the schema");
    }
    let error = BecknError::new(
        ErrorCode::InternalError,
        format!("the provider produced an invalid {callback}"),
    );
    error_body(action, body["context"].clone(), error)
}

/// A callback reporting `error` instead of a result, its code one of the Beckn table (else
/// 31001) and its texts bounded, whoever made it.
pub fn error_body(action: Action, context: Value, error: BecknError) -> Value {
    let error = error.bounded(ErrorCode::InternalError);
    if action.callback_requires_message() {
        json!({"context": context, "message": {}, "error": error})
    } else {
        json!({"context": context, "error": error})
    }
}
