//! Rendering a JSON template straight to a `serde_json::Value`, without writing each value as
//! JSON text and parsing it back.
//!
//! A mapping template writes its skeleton as literal text and its data with `{{ }}`. The slow
//! way serialises every value to escaped JSON text, then parses the whole output. Here the
//! formatter keeps each string, list and map it is given and writes in its place one marker
//! byte (`\u{1}`, which valid JSON text never contains raw) padded with spaces to exactly the
//! length of the JSON text it stands for; the output is then read by a small JSON reader that
//! takes the kept value at each marker. The output is as long as the text would have been, so
//! fuel (charged per byte written) runs out at the same point, and errors of the template are
//! the same ones, from the same run.
//!
//! Whenever the two could differ the caller renders the slow way instead: a template whose
//! captured output (`{% set %}` blocks, `{% filter %}`, a macro result not written at once)
//! could carry markers into an expression, output this reader does not accept exactly as
//! serde_json would, or markers that do not match what was kept.

use std::cell::RefCell;
use std::collections::HashSet;

use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, Error, Output, State, Value as JValue};
use serde_json::{Map, Number, Value};

/// The byte standing for a kept value in the output.
const MARKER: u8 = 0x01;
/// Deeper than this the reader gives up and the slow path decides (serde_json's own limit
/// is 128 levels).
const MAX_DEPTH: usize = 100;

/// The values kept by the formatter during one render, in the order they were written.
struct Kept {
    values: Vec<KeptValue>,
}

struct KeptValue {
    value: JValue,
    /// The length of its JSON text (the marker and its padding).
    len: usize,
    /// How deeply it nests (a string 0, `[[1]]` 2).
    nesting: usize,
}

thread_local! {
    /// Set while [`render_value`] renders on this thread; the formatter keeps values only then.
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// Restores the previous collection when a render ends, also by panic.
struct Collecting(Option<Kept>);

impl Drop for Collecting {
    fn drop(&mut self) {
        let previous = self.0.take();
        KEPT.with(|k| *k.borrow_mut() = previous);
    }
}

/// The environment's formatter: in a JSON template being rendered to a value, a string, list
/// or map is kept and a padded marker written; everything else as minijinja writes it.
pub fn formatter(out: &mut Output, state: &mut State, value: &JValue) -> Result<(), Error> {
    if matches!(state.auto_escape(), AutoEscape::Json)
        && !value.is_safe()
        && matches!(
            value.kind(),
            ValueKind::String | ValueKind::Seq | ValueKind::Map
        )
        && let Some((len, nesting)) = json_len(value, 0)
    {
        let kept = KEPT.with(|k| match k.borrow_mut().as_mut() {
            Some(kept) => {
                kept.values.push(KeptValue {
                    value: value.clone(),
                    len,
                    nesting,
                });
                true
            }
            None => false,
        });
        if kept {
            return write_marker(out, len);
        }
    }
    minijinja::escape_formatter(out, state, value)
}

fn write_marker(out: &mut Output, len: usize) -> Result<(), Error> {
    const SPACES: &str = "                                                                ";
    out.write_str("\u{1}")?;
    let mut rest = len - 1;
    while rest > 0 {
        let n = rest.min(SPACES.len());
        out.write_str(&SPACES[..n])?;
        rest -= n;
    }
    Ok(())
}

/// The length of `to_json(value)` as minijinja's JSON escaping writes it (compact) and how
/// deeply it nests, or None for what this module leaves to minijinja (floats, bytes, plain
/// objects, iterables, …).
fn json_len(value: &JValue, depth: usize) -> Option<(usize, usize)> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value.kind() {
        ValueKind::String => value.as_str().map(|s| (string_len(s), 0)),
        ValueKind::None | ValueKind::Undefined => Some((4, 0)),
        ValueKind::Bool => Some((if value.is_true() { 4 } else { 5 }, 0)),
        ValueKind::Number => int_text(value).map(|t| (t.len(), 0)),
        ValueKind::Seq => {
            let mut len = 2;
            let mut nest = 0;
            let mut n = 0;
            for item in value.as_object()?.try_iter()? {
                let (l, d) = json_len(&item, depth + 1)?;
                len += l;
                nest = nest.max(d);
                n += 1;
            }
            Some((len + n.max(1) - 1, nest + 1))
        }
        ValueKind::Map => {
            let mut len = 2;
            let mut nest = 0;
            let mut n = 0;
            for (k, v) in value.as_object()?.try_iter_pairs()? {
                let (l, d) = json_len(&v, depth + 1)?;
                len += key_text(&k)?.len_json() + 1 + l;
                nest = nest.max(d);
                n += 1;
            }
            Some((len + n.max(1) - 1, nest + 1))
        }
        _ => None,
    }
}

/// The text of an integer as JSON writes it; None for floats and 128-bit values beyond
/// 64 bits (those serde_json would read back as floats).
fn int_text(value: &JValue) -> Option<String> {
    if !value.is_integer() {
        return None;
    }
    if let Some(i) = value.as_i64() {
        return Some(i.to_string());
    }
    u64::try_from(value.clone()).ok().map(|u| u.to_string())
}

/// The length of a JSON string literal of `s`, quotes included, escaped as minijinja does.
fn string_len(s: &str) -> usize {
    let mut len = s.len() + 2;
    for &b in s.as_bytes() {
        if b < 0x20 {
            len += if matches!(b, 0x08 | 0x0c | b'\n' | b'\r' | b'\t') {
                1
            } else {
                5
            };
        } else if b == b'"' || b == b'\\' {
            len += 1;
        }
    }
    len
}

/// A map key as JSON writes it: strings as they are, integers and booleans as their text.
enum Key<'a> {
    Str(&'a str),
    Text(String),
}

impl Key<'_> {
    fn len_json(&self) -> usize {
        match self {
            Key::Str(s) => string_len(s),
            Key::Text(t) => t.len() + 2,
        }
    }

    fn into_string(self) -> String {
        match self {
            Key::Str(s) => s.to_string(),
            Key::Text(t) => t,
        }
    }
}

fn key_text(key: &JValue) -> Option<Key<'_>> {
    match key.kind() {
        ValueKind::String => key.as_str().map(Key::Str),
        ValueKind::Bool => Some(Key::Text(
            if key.is_true() { "true" } else { "false" }.into(),
        )),
        ValueKind::Number => int_text(key).map(Key::Text),
        _ => None,
    }
}

/// A kept value as serde_json reads its JSON text.
fn convert(value: &JValue) -> Option<Value> {
    Some(match value.kind() {
        ValueKind::String => Value::String(value.as_str()?.to_string()),
        ValueKind::None | ValueKind::Undefined => Value::Null,
        ValueKind::Bool => Value::Bool(value.is_true()),
        ValueKind::Number => {
            if let Some(i) = value.as_i64() {
                Value::Number(Number::from(i))
            } else {
                Value::Number(Number::from(u64::try_from(value.clone()).ok()?))
            }
        }
        ValueKind::Seq => Value::Array(
            value
                .as_object()?
                .try_iter()?
                .map(|v| convert(&v))
                .collect::<Option<_>>()?,
        ),
        ValueKind::Map => {
            let mut map = Map::new();
            for (k, v) in value.as_object()?.try_iter_pairs()? {
                map.insert(key_text(&k)?.into_string(), convert(&v)?);
            }
            Value::Object(map)
        }
        _ => return None,
    })
}

/// Whether the outcome of [`render_value`] is final, or the slow path must decide.
pub enum Rendered {
    Value(Value),
    Failed(Error),
    /// The output could not be read back exactly; render as text and parse.
    Fallback,
}

/// Renders `name` to a value; see the module doc for when it answers [`Rendered::Fallback`].
pub fn render_value(env: &Environment<'static>, name: &str, ctx: &JValue) -> Rendered {
    let tmpl = match env.get_template(name) {
        Ok(t) => t,
        Err(e) => return Rendered::Failed(e),
    };
    let previous = KEPT.with(|k| k.borrow_mut().replace(Kept { values: Vec::new() }));
    let mut guard = Collecting(previous);
    let rendered = tmpl.render(ctx);
    let kept = KEPT.with(|k| k.borrow_mut().take());
    let restore = guard.0.take();
    KEPT.with(|k| *k.borrow_mut() = restore);
    drop(guard);
    let text = match rendered {
        Ok(text) => text,
        Err(e) => return Rendered::Failed(e),
    };
    let Some(kept) = kept else {
        return Rendered::Fallback;
    };
    let mut reader = Reader {
        text: text.as_bytes(),
        pos: 0,
        kept: &kept.values,
        next: 0,
    };
    match reader.document() {
        Some(v) if reader.next == kept.values.len() => Rendered::Value(v),
        _ => Rendered::Fallback,
    }
}

/// A JSON reader of the marked output: accepts only what serde_json accepts and reads the same
/// value from it; anything else (including text serde_json would reject) is None.
struct Reader<'a> {
    text: &'a [u8],
    pos: usize,
    kept: &'a [KeptValue],
    next: usize,
}

impl Reader<'_> {
    fn document(&mut self) -> Option<Value> {
        let v = self.value(0)?;
        self.skip_ws();
        (self.pos == self.text.len()).then_some(v)
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.text.get(self.pos) {
            if matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.pos).copied()
    }

    /// The kept value at a marker, after checking its padding.
    fn marker(&mut self) -> Option<&KeptValue> {
        let kept = self.kept.get(self.next)?;
        let end = self.pos.checked_add(kept.len)?;
        let padding = self.text.get(self.pos + 1..end)?;
        if !padding.iter().all(|b| *b == b' ') {
            return None;
        }
        self.pos = end;
        self.next += 1;
        Some(kept)
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            MARKER => {
                let kept = self.marker()?;
                if depth + kept.nesting > MAX_DEPTH {
                    return None;
                }
                convert(&kept.value)
            }
            b'{' => {
                self.pos += 1;
                let mut map = Map::new();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Some(Value::Object(map));
                }
                loop {
                    let key = match self.peek()? {
                        b'"' => self.string()?,
                        MARKER => self.marker()?.value.as_str()?.to_string(),
                        _ => return None,
                    };
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    map.insert(key, v);
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Some(Value::Object(map));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Some(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Some(Value::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(Value::String),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Option<Value> {
        let end = self.pos + word.len();
        (self.text.get(self.pos..end)? == word).then(|| {
            self.pos = end;
            v
        })
    }

    /// A string literal: without escapes taken as it is, otherwise read by serde_json.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            match *self.text.get(i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                b if b < 0x20 => return None,
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        let raw = std::str::from_utf8(&self.text[start..=i]).ok()?;
        if escaped {
            serde_json::from_str(raw).ok()
        } else {
            Some(raw[1..raw.len() - 1].to_string())
        }
    }

    /// A number: plain non-negative integers directly, anything else read by serde_json.
    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        let mut end = start;
        while let Some(b) = self.text.get(end)
            && matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        {
            end += 1;
        }
        let token = std::str::from_utf8(&self.text[start..end]).ok()?;
        self.pos = end;
        let plain =
            token.bytes().all(|b| b.is_ascii_digit()) && (token == "0" || !token.starts_with('0'));
        if plain && let Ok(u) = token.parse::<u64>() {
            return Some(Value::Number(Number::from(u)));
        }
        match serde_json::from_str::<Value>(token).ok()? {
            v @ Value::Number(_) => Some(v),
            _ => None,
        }
    }
}

/// Whether every template `name` can run (itself and what it imports, includes or extends,
/// named by constants) writes captured output only straight to the output: no `{% set %}`
/// or `{% filter %}` blocks, and every macro or object call written at once. Only then does a
/// marker stand where the value's text would, in the order the values were kept.
pub fn markers_keep_order(env: &Environment<'static>, name: &str) -> bool {
    keeps_order(env, name, &mut HashSet::new())
}

/// Functions whose results are not captured output.
const PLAIN_FUNCTIONS: [&str; 10] = [
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
    "now",
    "uuid4",
    "fail",
];

fn keeps_order(env: &Environment<'static>, name: &str, seen: &mut HashSet<String>) -> bool {
    use minijinja::machinery::{Instruction, get_compiled_template};
    if !seen.insert(name.to_string()) {
        return true;
    }
    let Ok(tmpl) = env.get_template(name) else {
        return false;
    };
    let compiled = get_compiled_template(&tmpl);
    for instructions in std::iter::once(&compiled.instructions).chain(compiled.blocks.values()) {
        let mut previous: Option<&Instruction> = None;
        for idx in 0u32.. {
            let Some(instr) = instructions.get(idx) else {
                break;
            };
            let next_emits = matches!(instructions.get(idx + 1), Some(Instruction::Emit));
            match instr {
                // `{% from … import … %}` discards the imported template's own output, and
                // `{% import … as … %}` captures it only to drop it: kept values without their
                // markers, which the count of markers read catches. Any other capture could
                // put markers where an expression reads them.
                Instruction::BeginCapture(mode) => {
                    let discard = format!("{mode:?}") == "Discard";
                    let import = matches!(
                        (
                            instructions.get(idx + 1),
                            instructions.get(idx + 2),
                            instructions.get(idx + 3),
                            instructions.get(idx + 4),
                            instructions.get(idx + 5),
                        ),
                        (
                            Some(Instruction::PushWith),
                            Some(Instruction::LoadConst(_)),
                            Some(Instruction::Include(_)),
                            Some(Instruction::EndCapture),
                            Some(Instruction::ExportLocals),
                        )
                    );
                    if !discard && !import {
                        return false;
                    }
                }
                Instruction::EmitRaw(raw) if raw.as_bytes().contains(&MARKER) => return false,
                Instruction::CallFunction(f, _) if !PLAIN_FUNCTIONS.contains(f) && !next_emits => {
                    return false;
                }
                Instruction::CallMethod(..) | Instruction::CallObject(_) if !next_emits => {
                    return false;
                }
                Instruction::Include(_) | Instruction::LoadBlocks => {
                    let names = match previous {
                        Some(Instruction::LoadConst(v)) => constant_names(v),
                        _ => None,
                    };
                    let Some(names) = names else {
                        return false;
                    };
                    if !names.iter().all(|n| keeps_order(env, n, seen)) {
                        return false;
                    }
                }
                _ => {}
            }
            previous = Some(instr);
        }
    }
    true
}

/// The template names a constant include/import/extends argument gives.
fn constant_names(v: &JValue) -> Option<Vec<String>> {
    if let Some(s) = v.as_str() {
        return Some(vec![s.to_string()]);
    }
    v.try_iter()
        .ok()?
        .map(|n| n.as_str().map(str::to_string))
        .collect()
}
