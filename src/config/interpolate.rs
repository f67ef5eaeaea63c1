//! `${VAR}` and `${VAR:-default}` substitution in flow files.
//!
//! Environment variables are read through [`EnvLookup`] so tests and `check` can inject their
//! own environment instead of mutating the process's.

/// Where interpolation reads variables from.
pub trait EnvLookup: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvLookup for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    #[error("environment variable `{0}` is not set and has no default")]
    Unset(String),
    #[error("unterminated `${{` (missing `}}`)")]
    Unterminated,
    #[error("`{0}` is not a valid variable name")]
    BadName(String),
}

/// Replaces `${NAME}` and `${NAME:-default}`; `$${` stands for a literal `${`.
/// An empty variable counts as unset when a default is given, as in POSIX shells.
pub fn interpolate(input: &str, env: &dyn EnvLookup) -> Result<String, InterpolateError> {
    if !input.contains('$') {
        return Ok(input.to_string());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(body_start) = tail.strip_prefix("${") {
            let end = body_start.find('}').ok_or(InterpolateError::Unterminated)?;
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if !is_var_name(name) {
                return Err(InterpolateError::BadName(name.to_string()));
            }
            match (env.get(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(InterpolateError::Unset(name.to_string())),
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("A".to_string(), "alpha".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    #[test]
    fn cases() {
        let e = env();
        let ok = |s: &str| interpolate(s, &e).unwrap();
        assert_eq!(ok("plain"), "plain");
        assert_eq!(ok("${A}"), "alpha");
        assert_eq!(ok("x-${A}-y"), "x-alpha-y");
        assert_eq!(ok("${B:-http://127.0.0.1:7180}"), "http://127.0.0.1:7180");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("$${A}"), "${A}");
        assert_eq!(ok("cost $5"), "cost $5");
        assert_eq!(
            interpolate("${B}", &e),
            Err(InterpolateError::Unset("B".into()))
        );
        assert_eq!(interpolate("${A", &e), Err(InterpolateError::Unterminated));
        assert_eq!(
            interpolate("${1A}", &e),
            Err(InterpolateError::BadName("1A".into()))
        );
    }
}
