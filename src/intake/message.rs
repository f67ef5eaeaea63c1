//! Reading fields of a message.

use serde_json::Value;

/// A string field of a JSON object, or "".
pub fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}
