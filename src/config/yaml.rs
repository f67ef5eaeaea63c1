//! YAML with positions: a flow file becomes a JSON value plus an index from YAML path to
//! line and column, so every later error can say exactly where it is.
//!
//! Parsing is saphyr's (a maintained, YAML 1.2 parser that keeps spans); this module only walks
//! its marked tree, applies `${VAR}` interpolation to string scalars and records positions.

use std::collections::HashMap;
use std::path::Path;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use super::diagnostic::Diagnostic;
use super::interpolate::{EnvLookup, InterpolateError, interpolate};

/// A parsed YAML document with a position for every mapping key and sequence item.
#[derive(Debug, Clone, Default)]
pub struct SpannedDoc {
    pub value: Value,
    spans: HashMap<String, (u32, u32)>,
}

impl SpannedDoc {
    /// Line and column (1-based) of the node at `path`, or of its nearest ancestor.
    pub fn locate(&self, path: &str) -> (u32, u32) {
        let mut p = path;
        loop {
            if let Some(pos) = self.spans.get(p) {
                return *pos;
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return self.spans.get("").copied().unwrap_or((1, 1)),
            }
        }
    }

    /// A diagnostic located at `path`.
    pub fn diagnostic(&self, file: &Path, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.locate(path);
        Diagnostic::new(file, message).at(line, col).path(path)
    }
}

/// The parent of a YAML path: `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Joins a key onto a YAML path.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Parses `text` (the content of `file`). Problems with interpolation are returned as
/// diagnostics alongside the document so that all of them are reported at once.
pub fn parse(
    file: &Path,
    text: &str,
    env: &dyn EnvLookup,
) -> Result<(SpannedDoc, Vec<Diagnostic>), Diagnostic> {
    parse_with(file, text, Some(env))
}

/// Parses `text` as data: strings are kept as written, without `${VAR}` interpolation (test
/// requests and fixtures describe messages, where a `$` is just a character).
pub fn parse_literal(file: &Path, text: &str) -> Result<(SpannedDoc, Vec<Diagnostic>), Diagnostic> {
    parse_with(file, text, None)
}

fn parse_with(
    file: &Path,
    text: &str,
    env: Option<&dyn EnvLookup>,
) -> Result<(SpannedDoc, Vec<Diagnostic>), Diagnostic> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        let m = e.marker();
        Diagnostic::new(file, format!("invalid YAML: {}", e.info()))
            .at(m.line() as u32, m.col() as u32 + 1)
            .hint(syntax_hint(e.info()))
    })?;
    let mut doc = SpannedDoc::default();
    let mut problems = Vec::new();
    let Some(root) = docs.into_iter().next() else {
        return Ok((doc, problems));
    };
    let mut walker = Walker {
        file,
        env,
        spans: &mut doc.spans,
        problems: &mut problems,
    };
    walker.record("", &root);
    doc.value = walker.convert("", &root);
    Ok((doc, problems))
}

struct Walker<'a> {
    file: &'a Path,
    /// `None`: strings are data and are not interpolated.
    env: Option<&'a dyn EnvLookup>,
    spans: &'a mut HashMap<String, (u32, u32)>,
    problems: &'a mut Vec<Diagnostic>,
}

impl Walker<'_> {
    fn record(&mut self, path: &str, node: &MarkedYaml<'_>) {
        let start = node.span.start;
        self.spans
            .entry(path.to_string())
            .or_insert((start.line() as u32, start.col() as u32 + 1));
    }

    fn convert(&mut self, path: &str, node: &MarkedYaml<'_>) -> Value {
        match &node.data {
            YamlData::Value(scalar) => self.scalar(path, node, scalar),
            YamlData::Representation(text, _, _) => self.string(path, node, text),
            YamlData::Sequence(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let p = format!("{path}[{i}]");
                        self.record(&p, item);
                        self.convert(&p, item)
                    })
                    .collect(),
            ),
            YamlData::Mapping(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let key = match &k.data {
                        YamlData::Value(Scalar::String(s)) => s.to_string(),
                        YamlData::Value(Scalar::Integer(i)) => i.to_string(),
                        YamlData::Value(Scalar::Boolean(b)) => b.to_string(),
                        YamlData::Representation(s, _, _) => s.to_string(),
                        _ => {
                            self.problem(k, path, "mapping keys must be plain strings");
                            continue;
                        }
                    };
                    let p = join_key(path, &key);
                    self.record(&p, k);
                    let value = self.convert(&p, v);
                    out.insert(key, value);
                }
                Value::Object(out)
            }
            YamlData::Tagged(_, inner) => self.convert(path, inner),
            YamlData::Alias(_) => {
                // saphyr resolves aliases while loading (within its node budget); one left
                // here names an anchor it could not resolve.
                self.problem(
                    node,
                    path,
                    "this YAML alias names no anchor defined above it",
                );
                Value::Null
            }
            YamlData::BadValue => {
                self.problem(node, path, "value could not be read");
                Value::Null
            }
        }
    }

    fn scalar(&mut self, path: &str, node: &MarkedYaml<'_>, scalar: &Scalar<'_>) -> Value {
        match scalar {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Number((*i).into()),
            Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Scalar::String(s) => self.string(path, node, s),
        }
    }

    fn string(&mut self, path: &str, node: &MarkedYaml<'_>, s: &str) -> Value {
        let Some(env) = self.env else {
            return Value::String(s.to_string());
        };
        match interpolate(s, env) {
            Ok(v) => Value::String(v),
            Err(e) => {
                let d = self
                    .located(node, path, &e.to_string())
                    .hint(interpolation_hint(&e));
                self.problems.push(d);
                Value::String(String::new())
            }
        }
    }

    fn problem(&mut self, node: &MarkedYaml<'_>, path: &str, message: &str) {
        let d = self.located(node, path, message);
        self.problems.push(d);
    }

    fn located(&self, node: &MarkedYaml<'_>, path: &str, message: &str) -> Diagnostic {
        let start = node.span.start;
        Diagnostic::new(self.file, message)
            .at(start.line() as u32, start.col() as u32 + 1)
            .path(path)
    }
}

/// How to fix a `${VAR}` that could not be substituted.
fn interpolation_hint(e: &InterpolateError) -> String {
    match e {
        InterpolateError::Unset(name) => {
            format!("set {name} in the environment, or give a default: ${{{name}:-value}}")
        }
        InterpolateError::Unterminated => "write it as ${NAME} or ${NAME:-default}".to_string(),
        InterpolateError::BadName(_) => {
            "names are letters, digits and _, not starting with a digit; write $${ for a literal ${"
                .to_string()
        }
    }
}

/// The parser reports where it noticed a problem, often past the mistake: say where to look.
fn syntax_hint(info: &str) -> String {
    if info.contains("alias expansion") {
        return "aliases may expand to at most 100000 nodes in all; share smaller blocks".into();
    }
    let opened = if info.contains("flow mapping") {
        Some("{")
    } else if info.contains("flow sequence") {
        Some("[")
    } else {
        None
    };
    match opened {
        Some(open) => format!(
            "a `{open}` opened on this line or above is not closed, or a `,` is missing between its entries"
        ),
        None => {
            "the mistake is here or just above: check indentation, quotes and `key: value` spacing"
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn spans_and_values() {
        let env = HashMap::from([("PORT".to_string(), "9000".to_string())]);
        let text = "role: bpp\nlisten: 127.0.0.1:${PORT}\nactions:\n  search:\n    steps:\n      - name: a\n        n: 3\n";
        let (doc, problems) = parse(Path::new("f.yaml"), text, &env).unwrap();
        assert!(problems.is_empty());
        assert_eq!(doc.value["listen"], "127.0.0.1:9000");
        assert_eq!(doc.value["actions"]["search"]["steps"][0]["n"], 3);
        assert_eq!(doc.locate("role"), (1, 1));
        assert_eq!(doc.locate("actions.search"), (4, 3));
        assert_eq!(doc.locate("actions.search.steps[0].name"), (6, 9));
        assert_eq!(doc.locate("actions.search.steps[0].nope"), (6, 9));
    }

    #[test]
    fn interpolation_problems_are_located() {
        let env = HashMap::new();
        let (_, problems) = parse(Path::new("f.yaml"), "a: 1\nb: ${MISSING}\n", &env).unwrap();
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].line, problems[0].col), (2, 4));
        assert!(problems[0].message.contains("MISSING"));
        let hint = problems[0].hint.as_deref().unwrap_or_default();
        assert!(hint.contains("${MISSING:-value}"), "{hint}");
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse(Path::new("f.yaml"), "a: [1, 2\nb: 3\n", &HashMap::new()).unwrap_err();
        assert!(err.line >= 1, "{err}");
        assert!(err.message.starts_with("invalid YAML"));
        assert!(err.hint.is_some(), "{err}");
        let text = "steps:\n  - call: { backend: erp, path: /x\n  - name: y\n";
        let err = parse(Path::new("f.yaml"), text, &HashMap::new()).unwrap_err();
        let hint = err.hint.unwrap_or_default();
        assert!(
            hint.contains("a `{` opened on this line or above"),
            "{hint}"
        );
    }

    #[test]
    fn literal_parse_keeps_dollar_braces() {
        let (doc, problems) = parse_literal(Path::new("f.yaml"), "a: ${MISSING}\n").unwrap();
        assert!(problems.is_empty());
        assert_eq!(doc.value["a"], "${MISSING}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        assert!(parse(Path::new("f.yaml"), "a: 1\na: 2\n", &HashMap::new()).is_err());
    }
}
