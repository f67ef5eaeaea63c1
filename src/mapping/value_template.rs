//! Value templates: JSON written inline in a flow file whose strings may be templates.
//!
//! A string that is exactly one `{{ expr }}` keeps the expression's type (a list stays a list,
//! a number a number); a string mixing text and `{{ }}` renders to a string; anything else is a
//! literal. This is what makes inline request bodies and small replies pleasant to write.

use minijinja::Value as JValue;
use serde_json::{Map, Value};

use super::templates::{EXPR_PREFIX, TEXT_PREFIX, TemplateError, Templates};
use crate::config::yaml::join_key;

/// A compiled inline value.
#[derive(Debug, Clone)]
pub enum ValueTemplate {
    Literal(Value),
    /// Name of a JSON-escaped template `{{ expr }}` whose output is parsed back as JSON.
    Expr(String),
    /// Name of a raw text template.
    Text(String),
    Object(Vec<(String, ValueTemplate)>),
    Array(Vec<ValueTemplate>),
}

/// A template that failed to compile, with the YAML path of the string it came from.
#[derive(Debug)]
pub struct CompileError {
    pub yaml_path: String,
    pub error: Box<TemplateError>,
}

/// Whether a string is a single `{{ expr }}` and nothing else.
fn single_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner)
}

fn has_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

impl ValueTemplate {
    /// Compiles `value`, naming each template after `scope` (the file) and its YAML path.
    pub fn compile(
        templates: &mut Templates,
        scope: &str,
        yaml_path: &str,
        value: &Value,
    ) -> Result<ValueTemplate, Vec<CompileError>> {
        let mut errors = Vec::new();
        let t = Self::compile_inner(templates, scope, yaml_path, value, &mut errors);
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(errors)
        }
    }

    fn compile_inner(
        templates: &mut Templates,
        scope: &str,
        yaml_path: &str,
        value: &Value,
        errors: &mut Vec<CompileError>,
    ) -> ValueTemplate {
        match value {
            Value::String(s) if has_template(s) => {
                let (name, source) = match single_expression(s) {
                    Some(expr) => (
                        format!("{EXPR_PREFIX}{scope}:{yaml_path}"),
                        format!("{{{{{expr}}}}}"),
                    ),
                    None => (format!("{TEXT_PREFIX}{scope}:{yaml_path}"), s.clone()),
                };
                if let Err(error) = templates.add(&name, &source) {
                    errors.push(CompileError {
                        yaml_path: yaml_path.to_string(),
                        error: Box::new(error),
                    });
                }
                if name.starts_with(EXPR_PREFIX) {
                    ValueTemplate::Expr(name)
                } else {
                    ValueTemplate::Text(name)
                }
            }
            Value::Object(map) => ValueTemplate::Object(
                map.iter()
                    .map(|(k, v)| {
                        let p = join_key(yaml_path, k);
                        (
                            k.clone(),
                            Self::compile_inner(templates, scope, &p, v, errors),
                        )
                    })
                    .collect(),
            ),
            Value::Array(items) => ValueTemplate::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let p = format!("{yaml_path}[{i}]");
                        Self::compile_inner(templates, scope, &p, v, errors)
                    })
                    .collect(),
            ),
            other => ValueTemplate::Literal(other.clone()),
        }
    }

    /// Compiles a string that is always text (a URL path, a query value, a header).
    pub fn compile_text(
        templates: &mut Templates,
        scope: &str,
        yaml_path: &str,
        s: &str,
    ) -> Result<ValueTemplate, CompileError> {
        // A lone `{{ expr }}` is evaluated as a value, so that `none` can drop a query
        // parameter instead of sending the text "none".
        Self::compile(templates, scope, yaml_path, &Value::String(s.to_string()))
            .map_err(|mut errors| errors.remove(0))
    }

    /// Template names inside this value, for static checks.
    pub fn template_names(&self, out: &mut Vec<String>) {
        match self {
            ValueTemplate::Literal(_) => {}
            ValueTemplate::Expr(n) | ValueTemplate::Text(n) => out.push(n.clone()),
            ValueTemplate::Object(fields) => fields.iter().for_each(|(_, v)| v.template_names(out)),
            ValueTemplate::Array(items) => items.iter().for_each(|v| v.template_names(out)),
        }
    }

    pub fn render(&self, templates: &Templates, ctx: &JValue) -> Result<Value, TemplateError> {
        Ok(match self {
            ValueTemplate::Literal(v) => v.clone(),
            ValueTemplate::Expr(name) => templates.render_json(name, ctx)?,
            ValueTemplate::Text(name) => Value::String(templates.render(name, ctx)?),
            ValueTemplate::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (k, v) in fields {
                    map.insert(k.clone(), v.render(templates, ctx)?);
                }
                Value::Object(map)
            }
            ValueTemplate::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| v.render(templates, ctx))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Renders a text value (path, query, header) to a string.
    pub fn render_text(
        &self,
        templates: &Templates,
        ctx: &JValue,
    ) -> Result<String, TemplateError> {
        Ok(match self.render(templates, ctx)? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_are_kept_for_single_expressions() {
        let mut t = Templates::new(10_000);
        let body = json!({
            "ref": "{{ context.transaction_id }}",
            "items": "{{ message.items | map(attribute='id') | list }}",
            "note": "order for {{ message.name }}",
            "mode": "HOME_PICKUP",
            "qty": 2
        });
        let vt = ValueTemplate::compile(&mut t, "f.yaml", "body", &body).unwrap();
        let ctx = crate::mapping::jvalue(json!({
            "context": {"transaction_id": "t-1"},
            "message": {"items": [{"id": "a"}, {"id": "b"}], "name": "Asha"}
        }));
        let out = vt.render(&t, &ctx).unwrap();
        assert_eq!(
            out,
            json!({"ref": "t-1", "items": ["a", "b"], "note": "order for Asha",
            "mode": "HOME_PICKUP", "qty": 2})
        );
    }

    #[test]
    fn compile_errors_carry_the_yaml_path() {
        let mut t = Templates::new(10_000);
        let errs = ValueTemplate::compile(&mut t, "f.yaml", "body", &json!({"a": ["{{ (x }}"]}))
            .unwrap_err();
        assert_eq!(errs[0].yaml_path, "body.a[0]");
    }
}
