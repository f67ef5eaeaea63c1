//! JSON Schemas of the files integrators write, generated from the types that read them, so an
//! editor's completion and the reader cannot disagree. `beckn-adapter schema` prints them; the
//! copies under `schemas/` are what the `yaml-language-server` modeline of each file points at.

use serde_json::Value;

use super::model::FlowFile;
use super::ultra::UltraFile;

/// What a file under `flows/` may be: a Beckn participant, or a connection to Flipkart Ultra.
/// Schema-only: the loader tells them apart by their top-level keys.
#[derive(schemars::JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // a schema-only type, never built
enum AnyFlowFile {
    Flow(FlowFile),
    Ultra(UltraFile),
}

/// The JSON Schema (draft 2020-12) of flow files.
pub fn flow_file() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<AnyFlowFile>();
    schema.insert("title".into(), "beckn-adapter flow file".into());
    tidy(schema.to_value())
}

/// The root schema with `$schema`, `title` and `description` first, as a person reads it.
pub fn tidy(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    let mut out = serde_json::Map::new();
    for key in ["$schema", "title", "description"] {
        if let Some(v) = map.remove(key) {
            out.insert(key.to_string(), v);
        }
    }
    out.extend(map);
    Value::Object(out)
}

/// A schema as committed: pretty JSON ending in a newline.
pub fn to_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
    text.push('\n');
    text
}
