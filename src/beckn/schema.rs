//! JSON Schema validation of Beckn messages: the 1.1.0 core schemas, compiled once per load.

use std::collections::HashMap;

use serde_json::Value;

/// One way a message breaks a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted path into the message (`context.transaction_id`, `message.order.items[0].id`).
    pub path: String,
    pub message: String,
}

/// A compiled JSON Schema.
pub struct JsonValidator {
    validator: jsonschema::Validator,
}

impl JsonValidator {
    /// Compiles a draft 2020-12 schema with format checking on (dates, URIs, UUIDs, durations).
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(schema)
            .map(|validator| JsonValidator { validator })
            .map_err(|e| e.to_string())
    }

    /// Up to `max` violations, in document order.
    pub fn violations(&self, instance: &Value, max: usize) -> Vec<Violation> {
        self.validator
            .iter_errors(instance)
            .take(max)
            .map(|e| Violation {
                path: pointer_to_path(e.instance_path().as_str()),
                message: shorten(&e.to_string(), 240),
            })
            .collect()
    }

    pub fn is_valid(&self, instance: &Value) -> bool {
        self.validator.is_valid(instance)
    }
}

/// The Beckn core schema of every action and callback body.
pub struct CoreSchemas {
    by_name: HashMap<String, JsonValidator>,
}

/// Bodies the core document must describe, under `$defs/<name>`.
pub const CORE_BODIES: [&str; 20] = [
    "search",
    "select",
    "init",
    "confirm",
    "status",
    "track",
    "cancel",
    "update",
    "rating",
    "support",
    "on_search",
    "on_select",
    "on_init",
    "on_confirm",
    "on_status",
    "on_track",
    "on_cancel",
    "on_update",
    "on_rating",
    "on_support",
];

impl CoreSchemas {
    /// Compiles one validator per body from the core document (`$defs` with one entry per
    /// component and per body).
    pub fn from_document(doc: &Value) -> Result<Self, String> {
        let defs = doc
            .get("$defs")
            .and_then(Value::as_object)
            .ok_or("the core schema has no `$defs`")?;
        let mut by_name = HashMap::new();
        for name in CORE_BODIES {
            if !defs.contains_key(name) {
                return Err(format!("the core schema has no `$defs/{name}`"));
            }
            let mut root = doc.clone();
            if let Some(obj) = root.as_object_mut() {
                obj.insert("$ref".into(), Value::String(format!("#/$defs/{name}")));
            }
            let validator = JsonValidator::compile(&root).map_err(|e| format!("{name}: {e}"))?;
            by_name.insert(name.to_string(), validator);
        }
        Ok(CoreSchemas { by_name })
    }

    /// The validator for an action or callback name (`search`, `on_search`).
    pub fn get(&self, name: &str) -> Option<&JsonValidator> {
        self.by_name.get(name)
    }
}

/// `/message/order/items/0/id` -> `message.order.items[0].id`.
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(pointer_to_path(""), "");
        assert_eq!(pointer_to_path("/context/ttl"), "context.ttl");
        assert_eq!(
            pointer_to_path("/message/order/items/0/id"),
            "message.order.items[0].id"
        );
    }

    #[test]
    fn formats_are_checked() {
        let v = JsonValidator::compile(&json!({
            "properties": {"id": {"format": "uuid"}, "ttl": {"format": "duration"}}
        }))
        .unwrap();
        assert!(v.is_valid(&json!({"id": "6f1c6b1e-8a7d-4c39-9f0e-2d1b3a4c5d6e", "ttl": "PT30S"})));
        let bad = v.violations(&json!({"id": "nope", "ttl": "30 seconds"}), 10);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].path, "id");
    }
}
