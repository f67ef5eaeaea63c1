//! Flow files as written: the model, `${VAR}` interpolation, secrets, and diagnostics that say
//! file, line, column and YAML path.

pub mod diagnostic;
pub mod interpolate;
pub mod json_schema;
pub mod keys;
pub mod model;
pub mod repeat;
pub mod rotation;
pub mod secret;
pub mod subscription;
pub mod ultra;
pub mod values;
pub mod yaml;

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use diagnostic::Diagnostic;
pub use interpolate::{EnvLookup, ProcessEnv};
pub use secret::Secret;
pub use yaml::SpannedDoc;

/// Deserializes the part of `doc` found at `base` into `T`, turning a serde error into a
/// diagnostic at the exact key that caused it, with a "did you mean" hint for misspelt keys.
pub fn deserialize_at<T: DeserializeOwned>(
    doc: &SpannedDoc,
    file: &Path,
    base: &str,
    value: &Value,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let mut path = base.to_string();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
                serde_path_to_error::Segment::Map { key } => path = yaml::join_key(&path, key),
                serde_path_to_error::Segment::Enum { variant } => {
                    path = yaml::join_key(&path, variant)
                }
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let message = err.inner().to_string();
        let mut diagnostic;
        if let Some((field, expected)) = parse_unknown_field(&message) {
            let at = if path.ends_with(&format!(".{field}")) || path == field {
                path.clone()
            } else {
                yaml::join_key(&path, &field)
            };
            diagnostic = doc.diagnostic(file, &at, format!("unknown key `{field}`"));
            if let Some(best) = closest(&field, &expected) {
                diagnostic = diagnostic.hint(format!(
                    "did you mean `{best}`? allowed keys here: {}",
                    expected.join(", ")
                ));
            } else if !expected.is_empty() {
                diagnostic = diagnostic.hint(format!("allowed keys here: {}", expected.join(", ")));
            }
        } else {
            diagnostic = doc.diagnostic(file, &path, message);
            if let Some(missing) = parse_missing_field(&diagnostic.message) {
                diagnostic = diagnostic.hint(format!("add `{missing}:` here"));
            }
        }
        diagnostic
    })
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into the field and the options.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, tail) = rest.split_once('`')?;
    let expected = tail
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    Some((field.to_string(), expected))
}

fn parse_missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split_once('`')?.0.to_string())
}

/// The closest of `options` to `word`, if any is close enough to be a likely typo.
pub fn closest<'a>(word: &str, options: &'a [String]) -> Option<&'a str> {
    options
        .iter()
        .map(|o| (strsim::jaro_winkler(word, o), o))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        backend: String,
        path: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        steps: Vec<Inner>,
    }

    fn diag(text: &str) -> Diagnostic {
        let (doc, _) = yaml::parse(Path::new("f.yaml"), text, &HashMap::new()).unwrap();
        deserialize_at::<Outer>(&doc, Path::new("f.yaml"), "", &doc.value).unwrap_err()
    }

    #[test]
    fn unknown_key_is_located_with_hint() {
        let d = diag("steps:\n  - backend: erp\n    pth: /x\n");
        assert_eq!(d.message, "unknown key `pth`");
        assert_eq!((d.line, d.col), (3, 5));
        assert_eq!(d.yaml_path, "steps[0].pth");
        assert!(d.hint.unwrap().contains("did you mean `path`"));
    }

    #[test]
    fn missing_and_wrong_type() {
        let d = diag("steps:\n  - backend: erp\n");
        assert!(d.message.contains("missing field `path`"), "{d}");
        assert_eq!(d.yaml_path, "steps[0]");
        let d = diag("steps:\n  - backend: [1]\n    path: /x\n");
        assert_eq!(d.yaml_path, "steps[0].backend");
        assert_eq!(d.line, 2);
    }
}
