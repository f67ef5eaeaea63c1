//! The minijinja environment of one flow: strict undefined, fuel-limited, JSON auto-escaping.
//!
//! Mapping templates produce JSON, so every `{{ value }}` is written as JSON (a string comes out
//! quoted and escaped). A lab's product name with a quote in it can therefore never break a
//! message. Text templates (URL paths, query values, headers) are written raw.

use std::collections::HashSet;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ValueKind};
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value as JValue,
};
use serde_json::Value;

use super::helpers::{HelperError, money, time};

/// Names of text templates start with this; they are rendered without JSON escaping.
pub const TEXT_PREFIX: &str = "text:";
/// Names of inline value expressions (`"{{ expr }}"` in YAML) start with this.
pub const EXPR_PREFIX: &str = "expr:";
/// A template can stop a mapping with a Beckn error: `{{ fail("30004", "no such test") }}`.
const FAIL_MARKER: &str = "beckn-error:";

/// Functions and filters every template may use, besides minijinja's builtins.
pub const GLOBAL_NAMES: [&str; 3] = ["now", "uuid4", "fail"];

/// Filters every template may use besides minijinja's builtins (named in `check`'s hints).
pub const FILTER_NAMES: [&str; 13] = [
    "from_minor",
    "to_minor",
    "decimal",
    "price",
    "decimal_price",
    "fixed",
    "iso_duration",
    "tag_value",
    "segment",
    "epoch",
    "local_to_rfc3339",
    "rfc3339_to_local",
    "add_duration",
];

/// A failure while rendering a template, located in its source.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{template}{}: {}",
    line.map(|l| format!(":{l}")).unwrap_or_default(),
    crate::beckn::error::clip(detail, crate::beckn::error::MAX_ERROR_TEXT)
)]
pub struct TemplateError {
    pub template: String,
    pub line: Option<usize>,
    pub detail: String,
    /// Set when the template called `fail(code, message)`.
    pub beckn: Option<(String, String)>,
}

impl TemplateError {
    pub fn from_minijinja(fallback_name: &str, err: &Error) -> Self {
        let detail = err
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| err.kind().to_string());
        let beckn = detail
            .strip_prefix(FAIL_MARKER)
            .and_then(|rest| rest.split_once(':'))
            .map(|(c, m)| (c.to_string(), m.to_string()));
        TemplateError {
            template: err.name().unwrap_or(fallback_name).to_string(),
            line: err.line(),
            detail,
            beckn,
        }
    }
}

/// Whether a name after `|` (a filter) or after `is` (a test).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallableKind {
    Filter,
    Test,
}

impl std::fmt::Display for CallableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallableKind::Filter => "filter",
            CallableKind::Test => "test",
        })
    }
}

/// A filter or test a template uses that does not exist, where it is used (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCallable {
    pub kind: CallableKind,
    pub name: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// The compiled templates of one flow.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn new(fuel: u64) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(fuel));
        env.set_recursion_limit(64);
        env.set_formatter(format_value);
        env.set_auto_escape_callback(|name| {
            if name.starts_with(TEXT_PREFIX) {
                AutoEscape::None
            } else {
                AutoEscape::Json
            }
        });
        env.add_filter("from_minor", from_minor);
        env.add_filter("price", price);
        env.add_filter("fixed", fixed);
        env.add_filter("iso_duration", iso_duration);
        env.add_filter("tag_value", tag_value);
        env.add_filter("segment", segment);
        env.add_filter("epoch", epoch);
        env.add_filter("to_minor", to_minor);
        env.add_filter("decimal", decimal);
        env.add_filter("decimal_price", decimal_price);
        env.add_filter("local_to_rfc3339", local_to_rfc3339);
        env.add_filter("rfc3339_to_local", rfc3339_to_local);
        env.add_filter("add_duration", add_duration);
        env.add_function("now", now);
        env.add_function("uuid4", uuid4);
        env.add_function("fail", fail);
        Templates { env }
    }

    /// Compiles a template under `name`; the error carries the line.
    pub fn add(&mut self, name: &str, source: &str) -> Result<(), TemplateError> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| TemplateError::from_minijinja(name, &e))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }

    /// Top-level variables a template reads that it does not define itself.
    pub fn free_variables(&self, name: &str) -> Vec<String> {
        let mut vars: Vec<String> = self
            .env
            .get_template(name)
            .map(|t| t.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default();
        vars.sort();
        vars
    }

    /// Whether the template `name` reads the top-level variable `var`: itself, or through a
    /// template it imports, includes or extends, followed by name. A template named only at
    /// run time, or a call of `debug()` (which prints every variable), counts as reading it,
    /// so the answer errs towards "reads".
    pub fn reads_variable(&self, name: &str, var: &str) -> bool {
        self.reads_from(name, var, &mut HashSet::new())
    }

    fn reads_from(&self, name: &str, var: &str, seen: &mut HashSet<String>) -> bool {
        use minijinja::machinery::{Instruction, get_compiled_template};
        if !seen.insert(name.to_string()) {
            return false;
        }
        let Ok(tmpl) = self.env.get_template(name) else {
            return false;
        };
        if tmpl.undeclared_variables(false).contains(var) {
            return true;
        }
        let compiled = get_compiled_template(&tmpl);
        for instructions in std::iter::once(&compiled.instructions).chain(compiled.blocks.values())
        {
            let mut previous: Option<&Instruction> = None;
            for idx in 0u32.. {
                let Some(instr) = instructions.get(idx) else {
                    break;
                };
                match instr {
                    Instruction::Include(_) | Instruction::LoadBlocks => {
                        let names = match previous {
                            Some(Instruction::LoadConst(v)) => constant_names(v),
                            _ => None,
                        };
                        let Some(names) = names else {
                            return true;
                        };
                        if names.iter().any(|n| self.reads_from(n, var, seen)) {
                            return true;
                        }
                    }
                    Instruction::CallFunction(f, _) if *f == "debug" => return true,
                    _ => {}
                }
                previous = Some(instr);
            }
        }
        false
    }

    /// The filters and tests a compiled template applies that this environment does not
    /// have, in source order. minijinja only finds these when the template runs; `check`
    /// reports them from the compiled instructions.
    pub fn unknown_callables(&self, name: &str) -> Vec<UnknownCallable> {
        use minijinja::machinery::{Instruction, get_compiled_template};
        let Ok(tmpl) = self.env.get_template(name) else {
            return Vec::new();
        };
        let compiled = get_compiled_template(&tmpl);
        let mut found: Vec<UnknownCallable> = Vec::new();
        for instructions in std::iter::once(&compiled.instructions).chain(compiled.blocks.values())
        {
            for idx in 0u32.. {
                let Some(instr) = instructions.get(idx) else {
                    break;
                };
                let (kind, callable) = match instr {
                    Instruction::ApplyFilter(f, _, _) => (CallableKind::Filter, *f),
                    Instruction::PerformTest(t, _, _) => (CallableKind::Test, *t),
                    _ => continue,
                };
                if found.iter().any(|u| u.kind == kind && u.name == callable)
                    || self.has_callable(kind, callable)
                {
                    continue;
                }
                let span = instructions.get_span(idx);
                found.push(UnknownCallable {
                    kind,
                    name: callable.to_string(),
                    line: span
                        .map(|s| usize::from(s.start_line))
                        .or_else(|| instructions.get_line(idx)),
                    column: span.map(|s| usize::from(s.start_col) + 1),
                });
            }
        }
        found.sort_by_key(|u| (u.line, u.column));
        found
    }

    /// Whether the template `name` calls `function` as a function (`{{ function(...) }}`),
    /// so that `check` can say "calls" rather than "reads".
    pub fn calls(&self, name: &str, function: &str) -> bool {
        use minijinja::machinery::{Instruction, get_compiled_template};
        let Ok(tmpl) = self.env.get_template(name) else {
            return false;
        };
        let compiled = get_compiled_template(&tmpl);
        std::iter::once(&compiled.instructions)
            .chain(compiled.blocks.values())
            .any(|instructions| {
                (0u32..)
                    .map_while(|idx| instructions.get(idx))
                    .any(|i| matches!(i, Instruction::CallFunction(f, _) if *f == function))
            })
    }

    /// Whether the environment has this filter or test: asked of minijinja itself by applying
    /// it to `none` in a scratch template, so builtins and our own filters count alike.
    fn has_callable(&self, kind: CallableKind, name: &str) -> bool {
        let (probe, unknown) = match kind {
            CallableKind::Filter => (format!("{{{{ none | {name} }}}}"), ErrorKind::UnknownFilter),
            CallableKind::Test => (format!("{{{{ none is {name} }}}}"), ErrorKind::UnknownTest),
        };
        !matches!(self.env.render_str(&probe, ()), Err(e) if e.kind() == unknown)
    }

    /// Renders to text.
    pub fn render(&self, name: &str, ctx: &JValue) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError::from_minijinja(name, &e))?;
        tmpl.render(ctx)
            .map_err(|e| TemplateError::from_minijinja(name, &e))
    }

    /// Renders a JSON-producing template and parses its output.
    pub fn render_json(&self, name: &str, ctx: &JValue) -> Result<Value, TemplateError> {
        let text = self.render(name, ctx)?;
        serde_json::from_str(&text).map_err(|e| TemplateError {
            template: name.to_string(),
            line: None,
            detail: format!(
                "output is not valid JSON ({e}) near: {}",
                excerpt(&text, e.line(), e.column())
            ),
            beckn: None,
        })
    }
}

/// The template names a constant `{% include %}`, `{% import %}` or `{% extends %}` argument
/// gives: one name or a list of them (the first that exists is used); None when it is not
/// such a constant.
fn constant_names(v: &JValue) -> Option<Vec<String>> {
    if let Some(s) = v.as_str() {
        return Some(vec![s.to_string()]);
    }
    v.try_iter()
        .ok()?
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// The output line around a JSON error, to show what the template produced.
fn excerpt(text: &str, line: usize, col: usize) -> String {
    let l = text.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    let start = col.saturating_sub(40);
    let snippet: String = l.chars().skip(start).take(80).collect();
    format!("`{}` (output line {line}, column {col})", snippet.trim())
}

/// `49900 | from_minor` -> `"499.00"`: amounts kept in minor units (paise, cents) as a
/// Beckn decimal string. `scale` is the number of minor digits (2 by default).
fn from_minor(value: JValue, scale: Option<u32>) -> Result<String, Error> {
    let minor = i128::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("from_minor needs a whole number, got {value}"),
        )
    })?;
    let scale = scale.unwrap_or(2);
    if scale > money::MAX_SCALE {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "from_minor: scale {scale} is more than {}",
                money::MAX_SCALE
            ),
        ));
    }
    Ok(money::from_minor(minor, scale))
}

/// `"1499.50" | to_minor` -> `149950`: a decimal amount in minor units (`scale` digits).
fn to_minor(value: JValue, scale: Option<u32>) -> Result<i64, Error> {
    let text = decimal_text("to_minor", &value)?;
    let minor = money::to_minor(&text, scale.unwrap_or(2)).map_err(helper_error)?;
    i64::try_from(minor).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("to_minor: `{text}` is too large an amount"),
        )
    })
}

/// `"1499.5" | decimal` -> `"1499.50"`: a decimal amount (string or number) as a Beckn
/// price value with `places` decimals (2 by default), exactly.
fn decimal(value: JValue, places: Option<u32>) -> Result<String, Error> {
    let text = decimal_text("decimal", &value)?;
    money::decimal(&text, places.unwrap_or(2)).map_err(helper_error)
}

/// `"1499.5" | decimal_price` -> `{"currency": "INR", "value": "1499.50"}`: a Beckn `Price`
/// from a decimal amount, for ERPs that price in rupees rather than paise.
fn decimal_price(
    value: JValue,
    currency: Option<String>,
    places: Option<u32>,
) -> Result<JValue, Error> {
    Ok(price_object(currency, decimal(value, places)?))
}

/// The text of a decimal amount: strings as they are, numbers in their shortest exact form.
fn decimal_text(helper: &str, value: &JValue) -> Result<String, Error> {
    if let Some(s) = value.as_str() {
        return Ok(s.to_string());
    }
    if let Ok(n) = i128::try_from(value.clone()) {
        return Ok(n.to_string());
    }
    match f64::try_from(value.clone()) {
        Ok(f) if f.is_finite() && value.kind() == minijinja::value::ValueKind::Number => {
            Ok(f.to_string())
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{helper}: `{value}` is neither a decimal string nor a number"),
        )),
    }
}

/// `"2026-12-02T09:00" | local_to_rfc3339("Asia/Kolkata")` -> `"2026-12-02T09:00:00+05:30"`.
fn local_to_rfc3339(value: String, tz: String) -> Result<String, Error> {
    time::local_to_rfc3339(&value, &tz).map_err(helper_error)
}

/// `"2026-12-02T03:30:00Z" | rfc3339_to_local("Asia/Kolkata")` -> `"2026-12-02T09:00"`;
/// a strftime `format` may follow the zone.
fn rfc3339_to_local(value: String, tz: String, format: Option<String>) -> Result<String, Error> {
    time::rfc3339_to_local(&value, &tz, format.as_deref()).map_err(helper_error)
}

/// `t | add_duration("PT2H")` (or `"2h"`): an RFC 3339 time moved by a duration.
fn add_duration(value: String, duration: String) -> Result<String, Error> {
    time::add_duration(&value, &duration).map_err(helper_error)
}

fn helper_error(e: HelperError) -> Error {
    Error::new(ErrorKind::InvalidOperation, e.to_string())
}

/// `49900 | price` -> `{"currency": "INR", "value": "499.00"}`: a Beckn `Price` from minor
/// units. A filter rather than a template macro because catalogs call it for every item.
fn price(value: JValue, currency: Option<String>, scale: Option<u32>) -> Result<JValue, Error> {
    Ok(price_object(currency, from_minor(value, scale)?))
}

fn price_object(currency: Option<String>, amount: String) -> JValue {
    JValue::from_object(Price {
        currency: currency.unwrap_or_else(|| "INR".into()),
        value: amount,
    })
}

/// A Beckn `Price` as templates see it: a map of `currency` and `value` (in that order, as a
/// map of the two would list them), built without a map per call and written by
/// [`format_value`] without walking one.
#[derive(Debug)]
struct Price {
    currency: String,
    value: String,
}

impl Object for Price {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        match key.as_str()? {
            "currency" => Some(JValue::from(self.currency.as_str())),
            "value" => Some(JValue::from(self.value.as_str())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["currency", "value"])
    }
}

/// The environment's formatter. In a JSON template the values a catalog writes most (strings,
/// booleans, prices) go straight into the output, as minijinja's JSON escaping writes them but
/// without a JSON string built for each; anything else, and text templates, are minijinja's.
fn format_value(out: &mut Output, state: &mut State, value: &JValue) -> Result<(), Error> {
    if matches!(state.auto_escape(), AutoEscape::Json) && !value.is_safe() {
        if let Some(s) = value.as_str() {
            return write_json_str(out, s);
        }
        if value.kind() == ValueKind::Bool {
            let text = if value.is_true() { "true" } else { "false" };
            return out.write_str(text).map_err(Error::from);
        }
        if let Some(price) = value.downcast_object_ref::<Price>() {
            out.write_str("{\"currency\":")?;
            write_json_str(out, &price.currency)?;
            out.write_str(",\"value\":")?;
            write_json_str(out, &price.value)?;
            return out.write_str("}").map_err(Error::from);
        }
    }
    minijinja::escape_formatter(out, state, value)
}

/// A JSON string literal, escaped exactly as minijinja's JSON auto-escaping escapes it: `"`,
/// `\`, the short escapes, other control characters as `\u00xx`; everything else as it is.
fn write_json_str(out: &mut Output, s: &str) -> Result<(), Error> {
    out.write_str("\"")?;
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        out.write_str(&s[start..i])?;
        match b {
            b'"' => out.write_str("\\\"")?,
            b'\\' => out.write_str("\\\\")?,
            0x08 => out.write_str("\\b")?,
            0x0c => out.write_str("\\f")?,
            b'\n' => out.write_str("\\n")?,
            b'\r' => out.write_str("\\r")?,
            b'\t' => out.write_str("\\t")?,
            _ => write!(out, "\\u{b:04x}")?,
        }
        start = i + 1;
    }
    out.write_str(&s[start..])?;
    out.write_str("\"").map_err(Error::from)
}

/// `12.5 | fixed(2)` -> `"12.50"`.
fn fixed(value: JValue, places: Option<usize>) -> Result<String, Error> {
    let n = f64::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("fixed needs a number, got {value}"),
        )
    })?;
    Ok(format!("{n:.*}", places.unwrap_or(2)))
}

/// `3 | iso_duration("days")` -> `"P3D"`; units: seconds (default), minutes, hours, days.
fn iso_duration(value: JValue, unit: Option<String>) -> Result<String, Error> {
    let n = i64::try_from(value.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("iso_duration needs a whole number, got {value}"),
        )
    })?;
    Ok(match unit.as_deref().unwrap_or("seconds") {
        "days" => format!("P{n}D"),
        "hours" => format!("PT{n}H"),
        "minutes" => format!("PT{n}M"),
        "seconds" => format!("PT{n}S"),
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("iso_duration unit must be seconds, minutes, hours or days, not {other}"),
            ));
        }
    })
}

/// `intent.tags | tag_value("crop", "name")`: the value of a Beckn tag (a `list` entry with
/// that descriptor code inside the tag group with that code), or none.
fn tag_value(tags: JValue, group: String, code: String) -> JValue {
    let matches_code = |v: &JValue, want: &str| {
        v.get_attr("descriptor")
            .and_then(|d| d.get_attr("code"))
            .is_ok_and(|c| c.as_str() == Some(want))
    };
    let Ok(groups) = tags.try_iter() else {
        return JValue::from(());
    };
    for g in groups {
        if !matches_code(&g, &group) {
            continue;
        }
        let Ok(list) = g.get_attr("list").and_then(|l| l.try_iter()) else {
            continue;
        };
        for entry in list {
            if matches_code(&entry, &code) {
                return entry.get_attr("value").unwrap_or(JValue::from(()));
            }
        }
    }
    JValue::from(())
}

/// Characters a URL path segment may keep as they are (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `{{ id | segment }}`: the value as one URL path segment. Unlike `urlencode` it also encodes
/// `/`, so an identifier from a request can never reach another path of the backend.
fn segment(value: String) -> String {
    percent_encoding::utf8_percent_encode(&value, SEGMENT).to_string()
}

/// `{{ "2026-11-23T10:00:00Z" | epoch }}`: an RFC 3339 time as a Unix timestamp, in
/// `seconds` (default) or `milliseconds`, optionally moved by an ISO 8601 duration
/// (`epoch("seconds", "P7D")`: a week later). Days count in UTC.
fn epoch(value: String, unit: Option<String>, plus: Option<String>) -> Result<i64, Error> {
    let bad = |what: String| Error::new(ErrorKind::InvalidOperation, what);
    let ts: jiff::Timestamp = value
        .parse()
        .map_err(|e| bad(format!("epoch: `{value}` is not an RFC 3339 time: {e}")))?;
    let ts = match plus {
        None => ts,
        Some(p) => {
            let span: jiff::Span = p
                .parse()
                .map_err(|e| bad(format!("epoch: `{p}` is not an ISO 8601 duration: {e}")))?;
            ts.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .checked_add(span)
                .map_err(|e| bad(format!("epoch: cannot add `{p}`: {e}")))?
                .timestamp()
        }
    };
    match unit.as_deref().unwrap_or("seconds") {
        "seconds" => Ok(ts.as_second()),
        "milliseconds" => Ok(ts.as_millisecond()),
        other => Err(bad(format!(
            "epoch: unit `{other}` is neither seconds nor milliseconds"
        ))),
    }
}

/// `now()` in a template: the time a message is written, a value in it like a uuid, decided
/// nothing by; so the system's time, not the application's clock.
fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn uuid4() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn fail(code: String, message: String) -> Result<String, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{FAIL_MARKER}{code}:{message}"),
    ))
}

#[cfg(test)]
mod tests;
