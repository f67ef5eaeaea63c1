//! Reading the data files a dry run is given (requests, fixtures, mapping tests): JSON or YAML,
//! taken literally (no `${VAR}`), with a line and column for every problem.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::config::yaml::{self, SpannedDoc};
use crate::config::{Diagnostic, deserialize_at};

/// A data file that cannot be used, with where and why.
#[derive(Debug, Clone, thiserror::Error)]
pub struct InputError(pub Vec<Diagnostic>);

impl InputError {
    pub fn one(d: Diagnostic) -> Self {
        InputError(vec![d])
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads `path` as JSON (`.json`) or YAML (anything else) into a document that can locate
/// every key. JSON syntax errors come from the JSON reader, which names the exact spot.
pub fn read_data(path: &Path) -> Result<SpannedDoc, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::one(Diagnostic::new(path, format!("cannot read: {e}"))))?;
    parse_data(path, &text)
}

/// [`read_data`] on text already read.
pub fn parse_data(path: &Path, text: &str) -> Result<SpannedDoc, InputError> {
    let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
    let json = if is_json {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => Some(v),
            Err(e) => {
                return Err(InputError::one(
                    Diagnostic::new(path, format!("invalid JSON: {e}"))
                        .at(e.line() as u32, e.column() as u32),
                ));
            }
        }
    } else {
        None
    };
    // JSON is YAML too: the YAML reader gives the positions. Should it disagree with a valid
    // JSON file (tabs, say), the JSON value is kept and problems point at the file.
    match (yaml::parse_literal(path, text), json) {
        (Ok((mut doc, problems)), json) => {
            if let Some(v) = json {
                doc.value = v;
            } else if !problems.is_empty() {
                return Err(InputError(problems));
            }
            Ok(doc)
        }
        (Err(_), Some(v)) => {
            let mut doc = SpannedDoc::default();
            doc.value = v;
            Ok(doc)
        }
        (Err(d), None) => Err(InputError::one(d)),
    }
}

/// Deserialises the part of `doc` at `at` (a YAML path) into `T`, located on failure.
pub fn typed<T: DeserializeOwned>(
    doc: &SpannedDoc,
    file: &Path,
    at: &str,
    value: &serde_json::Value,
) -> Result<T, InputError> {
    deserialize_at(doc, file, at, value).map_err(InputError::one)
}

/// `rel` resolved against the directory of `file` (paths in a test file are relative to it).
pub fn beside(file: &Path, rel: &str) -> PathBuf {
    match file.parent() {
        Some(dir) => dir.join(rel),
        None => PathBuf::from(rel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_are_located() {
        let err = parse_data(Path::new("r.json"), "{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        assert_eq!(err.0[0].line, 3, "{err}");
        assert!(err.to_string().starts_with("r.json:3:"), "{err}");
    }

    #[test]
    fn json_keys_have_positions() {
        let doc = parse_data(
            Path::new("r.json"),
            "{\n  \"a\": {\n    \"b\": \"${X}\"\n  }\n}",
        )
        .unwrap();
        assert_eq!(doc.value["a"]["b"], "${X}");
        assert_eq!(doc.locate("a.b").0, 3);
    }

    #[test]
    fn yaml_errors_are_located() {
        let err = parse_data(Path::new("r.yaml"), "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.0[0].line >= 1, "{err}");
    }
}
