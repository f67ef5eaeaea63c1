//! Which line of which file wrote each value of a reply, so that a failing mapping test points
//! at the line to fix rather than only at the template.
//!
//! minijinja keeps no map from output back to source. So the reply template is rendered a second
//! time from instrumented copies of the mappings: every stretch of literal template text (outside
//! `{{ }}`, `{% %}` and `{# #}`), and every new line inside one, begins with an invisible marker
//! naming its file and line. Values written with `{{ }}` are JSON-escaped, so a raw marker can
//! only come from template text. The output is then scanned as JSON and each value gets the last
//! marker before it: the line on which the value starts. Inline replies (`reply: message:`) are
//! located in the flow file by their YAML path instead.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::json_path::{JsonPath, Segment};
use crate::beckn::action::Action;
use crate::compile::{CompiledFlow, Layout, Reply};
use crate::config::SpannedDoc;
use crate::config::yaml;
use crate::engine::EngineError;
use crate::mapping::templates::{EXPR_PREFIX, TEXT_PREFIX};
use crate::mapping::{ScriptError, Templates};

const OPEN: char = '\u{1}';
const CLOSE: char = '\u{2}';
/// The instrumented render runs after the real one succeeded under the flow's own fuel; this
/// only stops a pathological template.
const FUEL: u64 = 10_000_000;

/// A line of a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLine {
    pub file: PathBuf,
    pub line: u32,
}

impl fmt::Display for SourceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What builds an action's `message`.
#[derive(Debug, Clone)]
pub enum ReplySource {
    Template { file: PathBuf },
    Inline { at: SourceLine, yaml_path: String },
}

impl fmt::Display for ReplySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplySource::Template { file } => write!(f, "template {}", file.display()),
            ReplySource::Inline { at, yaml_path } => write!(f, "inline reply {at} ({yaml_path})"),
        }
    }
}

/// Where the values of one rendered reply were written.
pub struct Origins {
    pub reply: ReplySource,
    located: Located,
}

enum Located {
    /// Start line of each value, by its path in the message.
    Template(HashMap<String, SourceLine>),
    Inline {
        doc: SpannedDoc,
        file: PathBuf,
        base: String,
    },
    Unknown,
}

impl Origins {
    /// The line that wrote the value at `path` (a path in the `message`), or the nearest
    /// enclosing value that exists when that one does not.
    pub fn of(&self, path: &JsonPath) -> Option<SourceLine> {
        match &self.located {
            Located::Template(lines) => path
                .ancestors()
                .find_map(|p| lines.get(&p.to_string()).cloned()),
            Located::Inline { doc, file, base } => {
                let yaml_path = yaml_path(base, path);
                let (line, _) = doc.locate(&yaml_path);
                Some(SourceLine {
                    file: file.clone(),
                    line,
                })
            }
            Located::Unknown => None,
        }
    }
}

fn yaml_path(base: &str, path: &JsonPath) -> String {
    let mut out = base.to_string();
    for seg in &path.0 {
        match seg {
            Segment::Key(k) => out = yaml::join_key(&out, k),
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Locates the values of `action`'s reply, rendered from `scope` (the variables the reply saw).
pub fn reply_origins(
    layout: &Layout,
    flow: &CompiledFlow,
    action: Action,
    scope: &Map<String, Value>,
) -> Option<Origins> {
    let compiled = flow.actions.get(&action)?;
    match &compiled.reply {
        Reply::Template(name) => {
            let located = traced_render(&layout.mappings, name, scope)
                .map_or(Located::Unknown, Located::Template);
            Some(Origins {
                reply: ReplySource::Template {
                    file: layout.mappings.join(name),
                },
                located,
            })
        }
        Reply::Inline(_) => {
            let base = format!("actions.{action}.reply.message");
            let doc = flow_doc(&flow.file)?;
            let (line, _) = doc.locate(&base);
            Some(Origins {
                reply: ReplySource::Inline {
                    at: SourceLine {
                        file: flow.file.clone(),
                        line,
                    },
                    yaml_path: base.clone(),
                },
                located: Located::Inline {
                    doc,
                    file: flow.file.clone(),
                    base,
                },
            })
        }
    }
}

/// Locates the values the template `name` (under `mappings/`) renders from `scope`: for
/// mappings other than an action's reply, such as an order sink's order template.
pub fn template_origins(layout: &Layout, name: &str, scope: &Map<String, Value>) -> Origins {
    let located =
        traced_render(&layout.mappings, name, scope).map_or(Located::Unknown, Located::Template);
    Origins {
        reply: ReplySource::Template {
            file: layout.mappings.join(name),
        },
        located,
    }
}

/// The flow file's positions (values are not needed, so nothing is interpolated).
fn flow_doc(file: &Path) -> Option<SpannedDoc> {
    let text = std::fs::read_to_string(file).ok()?;
    yaml::parse_literal(file, &text).ok().map(|(doc, _)| doc)
}

/// Where a template failed or a script stopped, as `file:line` a person can open: mapping files
/// under `mappings/`, inline templates at their place in the flow file.
pub fn locate_template(layout: &Layout, name: &str, line: Option<usize>) -> String {
    let inline = name
        .strip_prefix(EXPR_PREFIX)
        .or_else(|| name.strip_prefix(TEXT_PREFIX));
    if let Some(rest) = inline
        && let Some((file, yaml_path)) = rest.split_once(':')
    {
        let file = PathBuf::from(file);
        return match flow_doc(&file) {
            Some(doc) => {
                let (l, _) = doc.locate(yaml_path);
                format!("{}:{l} ({yaml_path})", file.display())
            }
            None => format!("{} ({yaml_path})", file.display()),
        };
    }
    let file = layout.mappings.join(name);
    match line {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    }
}

/// An engine failure with its place: `file:line` for templates and scripts.
pub fn explain(layout: &Layout, err: &EngineError) -> String {
    match err {
        EngineError::Template(t) => {
            let at = locate_template(layout, &t.template, t.line);
            match &t.beckn {
                Some((code, message)) => format!("template {at} called fail({code}, {message})"),
                None => format!("template {at}: {}", t.detail),
            }
        }
        EngineError::Script(s) => match s {
            ScriptError::Failed {
                script,
                line,
                detail,
            } => format!(
                "script {}: {detail}",
                locate_template(layout, script, *line)
            ),
            ScriptError::Limit { script, what } => format!(
                "script {}: stopped, {what}",
                layout.mappings.join(script).display()
            ),
            ScriptError::Beckn {
                script,
                code,
                message,
            } => format!(
                "script {} threw Beckn error {code}: {message}",
                layout.mappings.join(script).display()
            ),
        },
        other => other.to_string(),
    }
}

/// Renders `name` from instrumented copies of every template under `mappings` and returns the
/// start line of each value of its JSON output, by path.
fn traced_render(
    mappings: &Path,
    name: &str,
    scope: &Map<String, Value>,
) -> Option<HashMap<String, SourceLine>> {
    let mut files = Vec::new();
    collect_templates(mappings, mappings, &mut files);
    let mut table = Vec::new();
    let mut templates = Templates::new(FUEL);
    for (rel, full) in files {
        let Ok(source) = std::fs::read_to_string(&full) else {
            continue;
        };
        let marked = instrument(&full, &source, &mut table);
        // A template the markers break is simply not traced.
        let _ = templates.add(&rel, &marked);
    }
    let output = templates
        .render(name, &crate::mapping::jvalue(scope))
        .ok()?;
    let (clean, marks) = strip(&output);
    let mut scanner = Scanner {
        text: clean.as_bytes(),
        pos: 0,
        starts: Vec::new(),
    };
    scanner.value(&JsonPath::default())?;
    let mut out = HashMap::new();
    for (path, start) in scanner.starts {
        // The last marker at or before the value's first character.
        let i = marks.partition_point(|(offset, _)| *offset <= start);
        if let Some((_, idx)) = i.checked_sub(1).and_then(|i| marks.get(i))
            && let Some(line) = table.get(*idx)
        {
            out.insert(path.to_string(), line.clone());
        }
    }
    Some(out)
}

/// Template files under `dir` as (name under `root` with `/`, full path).
fn collect_templates(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_templates(root, &path, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some("j2")
            && let Ok(rel) = path.strip_prefix(root)
        {
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, path));
        }
    }
}

/// `src` with a marker at the start of every stretch of template text and of every line in
/// one; `table` gets the file and line each marker stands for.
fn instrument(file: &Path, src: &str, table: &mut Vec<SourceLine>) -> String {
    let mut out = String::with_capacity(src.len() * 2);
    let mut line = 1u32;
    let mut mark = |out: &mut String, line: u32| {
        table.push(SourceLine {
            file: file.to_path_buf(),
            line,
        });
        out.push(OPEN);
        out.push_str(&(table.len() - 1).to_string());
        out.push(CLOSE);
    };
    // Inside a tag: its closing delimiter, and the quote of a string literal being read.
    let mut tag: Option<&str> = None;
    let mut quote: Option<char> = None;
    let mut text_starts = true;
    let mut rest = src;
    while let Some(c) = rest.chars().next() {
        match tag {
            None => {
                let opened = [("{{", "}}"), ("{%", "%}"), ("{#", "#}")]
                    .into_iter()
                    .find(|(open, _)| rest.starts_with(open));
                if let Some((open, close)) = opened {
                    out.push_str(open);
                    rest = &rest[2..];
                    tag = Some(close);
                    text_starts = true;
                    continue;
                }
                if text_starts {
                    mark(&mut out, line);
                    text_starts = false;
                }
                out.push(c);
                if c == '\n' {
                    line += 1;
                    mark(&mut out, line);
                }
            }
            Some(close) => {
                if let Some(q) = quote {
                    if c == '\\' {
                        out.push(c);
                        rest = &rest[1..];
                        if let Some(next) = rest.chars().next() {
                            out.push(next);
                            rest = &rest[next.len_utf8()..];
                        }
                        continue;
                    }
                    if c == q {
                        quote = None;
                    }
                } else if rest.starts_with(close) {
                    out.push_str(close);
                    rest = &rest[close.len()..];
                    tag = None;
                    continue;
                } else if close != "#}" && (c == '"' || c == '\'') {
                    quote = Some(c);
                }
                out.push(c);
                if c == '\n' {
                    line += 1;
                }
            }
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The output without markers, and each marker's (offset in that output, table index).
fn strip(marked: &str) -> (String, Vec<(usize, usize)>) {
    let mut clean = String::with_capacity(marked.len());
    let mut marks = Vec::new();
    let mut rest = marked;
    while let Some(at) = rest.find(OPEN) {
        clean.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len_utf8()..];
        match after.split_once(CLOSE) {
            Some((digits, tail)) => {
                if let Ok(idx) = digits.parse() {
                    marks.push((clean.len(), idx));
                }
                rest = tail;
            }
            None => {
                rest = after;
            }
        }
    }
    clean.push_str(rest);
    (clean, marks)
}

/// A JSON reader that notes where each value starts, by path.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    starts: Vec<(JsonPath, usize)>,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self
            .text
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.skip_ws();
        (self.text.get(self.pos) == Some(&b)).then(|| self.pos += 1)
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.pos).copied()
    }

    fn value(&mut self, path: &JsonPath) -> Option<()> {
        let first = self.peek()?;
        self.starts.push((path.clone(), self.pos));
        match first {
            b'{' => {
                self.pos += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.peek()?;
                    let key = self.string()?;
                    self.eat(b':')?;
                    self.value(&path.key(&key))?;
                    if self.eat(b',').is_none() {
                        return self.eat(b'}');
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                let mut i = 0;
                loop {
                    self.value(&path.index(i))?;
                    i += 1;
                    if self.eat(b',').is_none() {
                        return self.eat(b']');
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            _ => {
                let start = self.pos;
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b',' | b']' | b'}'))
                {
                    self.pos += 1;
                }
                (self.pos > start).then_some(())
            }
        }
    }

    /// Reads a string literal at the current position and returns its value.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        if self.text.get(self.pos) != Some(&b'"') {
            return None;
        }
        self.pos += 1;
        loop {
            match self.text.get(self.pos)? {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    break;
                }
                _ => self.pos += 1,
            }
        }
        serde_json::from_slice(self.text.get(start..self.pos)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trace(files: &[(&str, &str)], name: &str, scope: Value) -> HashMap<String, SourceLine> {
        let dir = tempfile::tempdir().unwrap();
        for (rel, src) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, src).unwrap();
        }
        let scope = scope.as_object().cloned().unwrap_or_default();
        let out = traced_render(dir.path(), name, &scope).expect("traced");
        out.into_iter()
            .map(|(k, v)| {
                let rel = v.file.strip_prefix(dir.path()).unwrap().to_path_buf();
                (
                    k,
                    SourceLine {
                        file: rel,
                        line: v.line,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn values_point_at_their_lines_and_macros() {
        let common =
            "{%- macro money(p) -%}\n{\"currency\": \"INR\", \"value\": {{ p }}}\n{%- endmacro -%}";
        let reply = "{#- a comment {{ x }} -#}\n{%- from \"t/common.j2\" import money -%}\n{\n  \"order\": {\n    \"id\": {{ id }},\n    {%- if true %}\n    \"price\": {{ money(5) }},\n    {%- endif %}\n    \"items\": [{% for i in items %}{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}]\n  }\n}";
        let got = trace(
            &[("t/common.j2", common), ("t/reply.j2", reply)],
            "t/reply.j2",
            json!({"id": "a\"}", "items": [1, 2]}),
        );
        let at = |p: &str| {
            let l = &got[p];
            format!("{}:{}", l.file.display(), l.line)
        };
        assert_eq!(at("order.id"), "t/reply.j2:5");
        assert_eq!(at("order.price"), "t/common.j2:2");
        assert_eq!(at("order.price.value"), "t/common.j2:2");
        assert_eq!(at("order.items[1]"), "t/reply.j2:9");
        assert_eq!(at("order"), "t/reply.j2:4");
    }

    #[test]
    fn string_literals_in_tags_are_not_text() {
        let mut table = Vec::new();
        let out = instrument(Path::new("x.j2"), "{{ \"}}\" }}a\n{# c #}", &mut table);
        assert_eq!(out, "{{ \"}}\" }}\u{1}0\u{2}a\n\u{1}1\u{2}{# c #}");
        assert_eq!(table[1].line, 2);
    }
}
