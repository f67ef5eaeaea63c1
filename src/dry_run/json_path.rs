//! Paths into JSON values (`message.order.items[0].id`, `tags["a.b"]`) and structural diffs
//! that name the path of every difference, so a failing mapping test says where, not just that.

use std::fmt;

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path into a JSON value, written `a.b[0].c`; keys that are not plain words are quoted:
/// `tags["x.y"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(pub Vec<Segment>);

/// Why a path could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}` is not a path: {reason} (write it like message.order.items[0].id)")]
pub struct BadPath {
    pub path: String,
    pub reason: String,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, BadPath> {
        let bad = |reason: &str| BadPath {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let mut segments = Vec::new();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        let mut first = true;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('[') {
                let (inside, tail) = after.split_once(']').ok_or_else(|| bad("`[` not closed"))?;
                if let Some(quoted) = inside.strip_prefix('"') {
                    let key = quoted
                        .strip_suffix('"')
                        .ok_or_else(|| bad("a quoted key needs a closing `\"`"))?;
                    segments.push(Segment::Key(key.to_string()));
                } else {
                    let index = inside
                        .trim()
                        .parse()
                        .map_err(|_| bad("an index is a whole number"))?;
                    segments.push(Segment::Index(index));
                }
                rest = tail;
            } else {
                let word = if first {
                    rest
                } else {
                    rest.strip_prefix('.')
                        .ok_or_else(|| bad("expected `.` or `[` between parts"))?
                };
                let end = word.find(['.', '[']).unwrap_or(word.len());
                if end == 0 {
                    return Err(bad("a part is empty"));
                }
                segments.push(Segment::Key(word[..end].to_string()));
                rest = &word[end..];
            }
            first = false;
        }
        Ok(JsonPath(segments))
    }

    pub fn key(&self, key: &str) -> JsonPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(key.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> JsonPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    /// The path below its first `n` segments (`message.order.id` without 1: `order.id`).
    pub fn skip(&self, n: usize) -> JsonPath {
        JsonPath(self.0.iter().skip(n).cloned().collect())
    }

    pub fn first_key(&self) -> Option<&str> {
        match self.0.first() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// The value at this path inside `root`.
    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(root, |v, seg| match seg {
            Segment::Key(k) => v.get(k),
            Segment::Index(i) => v.get(i),
        })
    }

    /// This path and its ancestors, longest first (for "the nearest place that exists").
    pub fn ancestors(&self) -> impl Iterator<Item = JsonPath> + '_ {
        (0..=self.0.len())
            .rev()
            .map(|n| JsonPath(self.0[..n].to_vec()))
    }
}

fn is_word(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '@' || c == '$')
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if is_word(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[\"{k}\"]")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// One difference: at `path`, `expected` (None: should be absent) against `actual` (None: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub path: JsonPath,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

/// Equality of JSON values where `1` and `1.0` are the same number.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Every difference between `expected` and `actual`, both whole: extra keys and items count.
pub fn diff_exact(expected: &Value, actual: &Value, at: &JsonPath, out: &mut Vec<Mismatch>) {
    diff(expected, actual, at, false, out)
}

/// Differences where `expected` only names what matters: keys it leaves out are not compared,
/// and a `null` there means "absent or null". Arrays still compare item by item.
pub fn diff_partial(expected: &Value, actual: &Value, at: &JsonPath, out: &mut Vec<Mismatch>) {
    diff(expected, actual, at, true, out)
}

fn diff(expected: &Value, actual: &Value, at: &JsonPath, partial: bool, out: &mut Vec<Mismatch>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => diff(ev, av, &at.key(k), partial, out),
                    None if partial && ev.is_null() => {}
                    None => out.push(Mismatch {
                        path: at.key(k),
                        expected: Some(ev.clone()),
                        actual: None,
                    }),
                }
            }
            if !partial {
                for (k, av) in a {
                    if !e.contains_key(k) {
                        out.push(Mismatch {
                            path: at.key(k),
                            expected: None,
                            actual: Some(av.clone()),
                        });
                    }
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, ev) in e.iter().enumerate() {
                match a.get(i) {
                    Some(av) => diff(ev, av, &at.index(i), partial, out),
                    None => out.push(Mismatch {
                        path: at.index(i),
                        expected: Some(ev.clone()),
                        actual: None,
                    }),
                }
            }
            for (i, av) in a.iter().enumerate().skip(e.len()) {
                out.push(Mismatch {
                    path: at.index(i),
                    expected: None,
                    actual: Some(av.clone()),
                });
            }
        }
        _ if same(expected, actual) => {}
        _ => out.push(Mismatch {
            path: at.clone(),
            expected: Some(expected.clone()),
            actual: Some(actual.clone()),
        }),
    }
}

/// A value on one line, cut to `max` characters: diffs stay readable when a whole object differs.
pub fn brief(value: Option<&Value>, max: usize) -> String {
    let Some(v) = value else {
        return "(absent)".to_string();
    };
    let text = v.to_string();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_round_trip() {
        for text in [
            "message.order.items[0].id",
            "a",
            "tags[\"x.y\"].v",
            "list[2][3]",
        ] {
            assert_eq!(JsonPath::parse(text).unwrap().to_string(), text);
        }
        assert!(JsonPath::parse("a..b").is_err());
        assert!(JsonPath::parse("a[x]").is_err());
        assert!(JsonPath::parse("").is_err());
        let v = json!({"a": {"b": [1, {"c": "d"}]}});
        assert_eq!(
            JsonPath::parse("a.b[1].c").unwrap().get(&v),
            Some(&json!("d"))
        );
        assert_eq!(JsonPath::parse("a.x").unwrap().get(&v), None);
    }

    #[test]
    fn exact_diff_names_every_place() {
        let expected = json!({"a": 1, "b": {"c": [1, 2]}, "d": "x"});
        let actual = json!({"a": 1.0, "b": {"c": [1, 3, 4]}, "e": true});
        let mut out = Vec::new();
        diff_exact(&expected, &actual, &JsonPath::default(), &mut out);
        let got: Vec<String> = out
            .iter()
            .map(|m| {
                format!(
                    "{} {} {}",
                    m.path,
                    brief(m.expected.as_ref(), 20),
                    brief(m.actual.as_ref(), 20)
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                "b.c[1] 2 3",
                "b.c[2] (absent) 4",
                "d \"x\" (absent)",
                "e (absent) true"
            ]
        );
    }

    #[test]
    fn partial_diff_ignores_unnamed_keys() {
        let mut out = Vec::new();
        diff_partial(
            &json!({"a": {"b": 1}, "gone": null}),
            &json!({"a": {"b": 1, "c": 2}, "z": 0}),
            &JsonPath::default(),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        diff_partial(
            &json!({"a": {"b": 2}}),
            &json!({"a": {"b": 1}}),
            &JsonPath::default(),
            &mut out,
        );
        assert_eq!(out[0].path.to_string(), "a.b");
    }
}
