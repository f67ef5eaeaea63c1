//! Mappings: minijinja templates and rhai scripts that turn backend JSON into Beckn messages.
//!
//! Both run under limits (template fuel, script operations, sizes) so a bad mapping fails one
//! message, never the adapter.

pub mod helpers;
pub mod scripts;
pub mod templates;
pub mod value_template;

pub use scripts::{ScriptEngine, ScriptError, UndefinedVariable};
pub use templates::{CallableKind, TemplateError, Templates, UnknownCallable};
pub use value_template::ValueTemplate;

/// Any serialisable value as a template value.
pub fn jvalue<T: serde::Serialize>(v: T) -> minijinja::Value {
    minijinja::Value::from(minijinja::value::Serde(v))
}
