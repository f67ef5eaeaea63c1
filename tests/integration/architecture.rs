//! The direction of dependencies between the library's top-level modules.
//!
//! Every `.rs` file under `src/` (the library; `src/main.rs` is the CLI and may use anything) is
//! read, and every path naming another top-level module is an edge `from -> to`: `use crate::x`,
//! `crate::x::…` anywhere in code (macro bodies included), and `super::`/`self::` paths resolved
//! against the file's module. Files under `src/roles/` count as modules of their own
//! (`roles/bpp`, `roles/bap`, …; `roles` is `src/roles/mod.rs`), so that one role using another
//! shows. Comments and string literals are skipped. `#[cfg(test)]` modules are exempt: a test may
//! build its fixtures from any layer, and what it uses never ships.
//!
//! An edge is allowed when it points to a lower layer of [`LAYERS`] or stays in its own layer,
//! and breaks no rule of [`rule_broken`]. Edges that break the rules today are listed in
//! `tests/architecture_allow.txt`; an edge neither allowed nor listed fails, and so does a listed
//! edge that no longer occurs, so the list only shrinks.
//!
//! The reader is a small tokenizer rather than `syn`: only paths starting with `crate`, `super`
//! or `self` matter, a token scan sees them inside macro invocations too (a `syn` visitor does
//! not look into macro bodies), and no dependency is added.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// From top to bottom. A module may use modules of its own layer and of the layers below.
/// `app` has a place before it exists; `sinks` holds the order sinks (Flipkart Ultra among them).
const LAYERS: &[(&str, &[&str])] = &[
    ("the CLI and the demo", &["main", "demo"]),
    ("the application", &["app"]),
    ("servers", &["server", "reload"]),
    ("roles", &["roles", "dry_run", "mapping_test"]),
    ("the engine and the sinks", &["engine", "delivery", "sinks"]),
    ("compilation", &["compile"]),
    (
        "protocol, intake, mapping, storage and backends",
        &["beckn", "intake", "mapping", "store", "backend"],
    ),
    ("configuration", &["config"]),
    ("utilities", &["telemetry", "clock"]),
];

/// What `compile` may use: it turns files into a compiled set and nothing else.
const COMPILE_USES: &[&str] = &["beckn", "mapping", "backend", "config", "telemetry"];

/// Modules whose files count as modules of their own.
const SPLIT: &[&str] = &["roles"];

const ALLOW_LIST: &str = "tests/architecture_allow.txt";

#[test]
fn library_modules_depend_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    read_sources(&root.join("src"), root, &mut files);
    assert!(files.len() > 20, "the sources were found");
    let allow_text = std::fs::read_to_string(root.join(ALLOW_LIST)).unwrap();
    let allow = parse_allow_list(&allow_text);
    let problems = check(&files, &allow);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_checker_catches_a_forbidden_edge_and_a_stale_allowance() {
    let files = vec![
        (
            "src/store/mod.rs".to_string(),
            "//! Mentions crate::sinks in a comment.\n\
             pub mod sqlite;\n\
             /* crate::roles /* nested */ crate::roles */\n\
             const S: &str = \"crate::roles::bpp\";\n\
             const R: &str = r#\"crate::roles \"# ;\n\
             fn f<'a>(x: &'a str) -> char { let _ = crate::config::X; '\"' }\n\
             use crate::{beckn::ack, sinks::ultra::oms::refusal};\n"
                .to_string(),
        ),
        (
            "src/store/sqlite/mod.rs".to_string(),
            "use super::super::telemetry;\n\
             #[cfg(test)]\nmod tests { use crate::demo::x; }\n\
             fn g() { super::super::server::serve(); }\n"
                .to_string(),
        ),
        (
            "src/roles/bpp.rs".to_string(),
            "use super::Services;\nuse super::gateway::forward;\n".to_string(),
        ),
        (
            "src/roles/gateway.rs".to_string(),
            "use crate::engine::run;\nuse super::bpp::read_body;\n".to_string(),
        ),
        (
            "src/roles/mod.rs".to_string(),
            "pub struct Services;\n".to_string(),
        ),
        (
            "src/sinks/mod.rs".to_string(),
            "fn h() { crate::roles::bpp::x() }\n".to_string(),
        ),
        ("src/engine/mod.rs".to_string(), String::new()),
        ("src/beckn/mod.rs".to_string(), String::new()),
        ("src/config/mod.rs".to_string(), String::new()),
        ("src/telemetry/mod.rs".to_string(), String::new()),
        ("src/demo/mod.rs".to_string(), String::new()),
        ("src/server/mod.rs".to_string(), String::new()),
    ];
    let allow =
        parse_allow_list("# only shrinks\nroles/gateway -> roles/bpp\nstore -> mapping  # gone\n");
    let problems = check(&files, &allow);
    let text = problems.join("\n");
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has("src/store/mod.rs:7: store -> sinks breaks"),
        "a forbidden edge is named with its file and line:\n{text}"
    );
    assert!(has("the store never uses a sink"), "{text}");
    assert!(
        has("src/store/sqlite/mod.rs:4: store -> server breaks"),
        "{text}"
    );
    assert!(
        has("src/sinks/mod.rs:1: sinks -> roles/bpp breaks"),
        "{text}"
    );
    assert!(
        has("src/roles/bpp.rs:2: roles/bpp -> roles/gateway breaks"),
        "{text}"
    );
    assert!(has("one role never uses another"), "{text}");
    assert!(
        has("tests/architecture_allow.txt:3: `store -> mapping` no longer occurs"),
        "a stale allowance is reported:\n{text}"
    );
    assert!(
        !has("roles/gateway -> roles/bpp"),
        "an allowed edge passes:\n{text}"
    );
    assert!(
        !has("store -> roles"),
        "comments and strings are skipped:\n{text}"
    );
    assert!(!has("-> demo"), "a #[cfg(test)] module is exempt:\n{text}");
    assert_eq!(problems.len(), 5, "{text}");
}

/// Reads every `.rs` file under `dir` but `src/main.rs`, as (path from the crate root, text).
fn read_sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if rel != "src/main.rs" {
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

/// An allowed edge and the line of the list that allows it.
struct Allowance {
    line: usize,
    from: String,
    to: String,
}

fn parse_allow_list(text: &str) -> Vec<Allowance> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let Some((from, to)) = line.split_once("->") else {
            panic!("{ALLOW_LIST}:{}: expected `from -> to`, got `{raw}`", n + 1);
        };
        out.push(Allowance {
            line: n + 1,
            from: from.trim().to_string(),
            to: to.trim().to_string(),
        });
    }
    out
}

/// Every problem: references on edges neither allowed nor listed, and listed edges that no
/// longer occur.
fn check(files: &[(String, String)], allow: &[Allowance]) -> Vec<String> {
    let modules = Modules::of(files);
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (path, text) in files {
        let Some(module) = module_path(path) else {
            continue;
        };
        let Some(from) = modules.node(&module) else {
            continue;
        };
        for (target, line) in references(text, &module) {
            let Some(to) = modules.node(&target) else {
                continue;
            };
            if to != from {
                found
                    .entry((from.clone(), to))
                    .or_default()
                    .push(format!("{path}:{line}"));
            }
        }
    }
    let listed: BTreeSet<(String, String)> = allow
        .iter()
        .map(|a| (a.from.clone(), a.to.clone()))
        .collect();
    let mut problems = Vec::new();
    let mut violations = BTreeSet::new();
    for ((from, to), places) in &found {
        let Some(rule) = rule_broken(from, to) else {
            continue;
        };
        violations.insert((from.clone(), to.clone()));
        if listed.contains(&(from.clone(), to.clone())) {
            continue;
        }
        for place in places {
            problems.push(format!("{place}: {from} -> {to} breaks the rule: {rule}"));
        }
    }
    for a in allow {
        if !violations.contains(&(a.from.clone(), a.to.clone())) {
            problems.push(format!(
                "{ALLOW_LIST}:{}: `{} -> {}` no longer occurs (or is allowed by the layers): \
                 delete the line, the list only shrinks",
                a.line, a.from, a.to
            ));
        }
    }
    problems
}

/// The rule the edge `from -> to` breaks, if any.
fn rule_broken(from: &str, to: &str) -> Option<String> {
    let top = |node: &str| node.split('/').next().unwrap().to_string();
    let (from_top, to_top) = (top(from), top(to));
    if from.starts_with("roles/") && to.starts_with("roles/") {
        return Some("one role never uses another (files under src/roles/ are separate)".into());
    }
    if to_top == "roles" && from_top == "sinks" {
        return Some("sinks never use roles".into());
    }
    if from_top == "store" && to_top == "sinks" {
        return Some("the store never uses a sink".into());
    }
    if from_top == "beckn" && to_top == "compile" {
        return Some("beckn never uses compile".into());
    }
    if from_top == "compile" && !COMPILE_USES.contains(&to_top.as_str()) {
        return Some(format!("compile uses only {}", COMPILE_USES.join(", ")));
    }
    let layer = |m: &str| LAYERS.iter().position(|(_, ms)| ms.contains(&m));
    let (Some(lf), Some(lt)) = (layer(&from_top), layer(&to_top)) else {
        return Some(format!(
            "every module has a layer (add `{from_top}` or `{to_top}` to LAYERS in tests/integration/architecture.rs)"
        ));
    };
    (lt < lf).then(|| {
        format!(
            "dependencies point down: {} ({}) is above {} ({})",
            to_top, LAYERS[lt].0, from_top, LAYERS[lf].0
        )
    })
}

/// The crate's top-level modules and the children of the split ones.
struct Modules {
    top: BTreeSet<String>,
    children: BTreeMap<String, BTreeSet<String>>,
}

impl Modules {
    fn of(files: &[(String, String)]) -> Modules {
        let mut top = BTreeSet::new();
        let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, _) in files {
            let Some(m) = module_path(path) else { continue };
            if let Some(first) = m.first() {
                top.insert(first.clone());
                if let Some(child) = m.get(1).filter(|_| SPLIT.contains(&first.as_str())) {
                    children
                        .entry(first.clone())
                        .or_default()
                        .insert(child.clone());
                }
            }
        }
        Modules { top, children }
    }

    /// The module an absolute path lies in: its first segment, or `first/second` for a child
    /// of a split module. None for the crate root and what is not a module of the crate.
    fn node(&self, path: &[String]) -> Option<String> {
        let first = path.first().filter(|f| self.top.contains(*f))?;
        match path.get(1) {
            Some(second) if self.children.get(first).is_some_and(|c| c.contains(second)) => {
                Some(format!("{first}/{second}"))
            }
            _ => Some(first.clone()),
        }
    }
}

/// `src/roles/bap/inbound.rs` -> `[roles, bap, inbound]`; `mod.rs` and `lib.rs` name their
/// directory (`lib.rs`: the root, `[]`).
fn module_path(path: &str) -> Option<Vec<String>> {
    let rel = path.strip_prefix("src/")?.strip_suffix(".rs")?;
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|l| l == "mod") || parts == ["lib"] {
        parts.pop();
    }
    Some(parts)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Identifiers, `::` and punctuation with their lines; comments, strings, characters,
/// lifetimes and numbers left out.
fn tokenize(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    // Skips a quoted literal whose opening quote is at `i`, counting lines; returns after it.
    let skip_quoted = |mut i: usize, quote: char, line: &mut usize| {
        i += 1;
        while i < c.len() && c[i] != quote {
            if c[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_quoted(i, '"', &mut line);
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), else a lifetime or label.
            if at(i + 1) == '\\' || (at(i + 2) == '\'' && at(i + 1) != '\'') {
                i = skip_quoted(i, '\'', &mut line);
            } else {
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix && (at(i) == '"' || at(i) == '#') {
                let mut hashes = 0;
                while at(i + hashes) == '#' {
                    hashes += 1;
                }
                if at(i + hashes) == '"' {
                    // A raw string: ends at a quote followed by as many hashes.
                    i += hashes + 1;
                    while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                        if c[i] == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                    i += hashes + 1;
                    continue;
                }
                if word == "r" && hashes == 1 {
                    // A raw identifier, `r#type`.
                    i += 1;
                    let start = i;
                    while at(i).is_alphanumeric() || at(i) == '_' {
                        i += 1;
                    }
                    out.push((Tok::Ident(c[start..i].iter().collect()), line));
                    continue;
                }
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_quoted(i, '"', &mut line);
                continue;
            }
            if word == "b" && at(i) == '\'' {
                i = skip_quoted(i, '\'', &mut line);
                continue;
            }
            out.push((Tok::Ident(word), line));
        } else if ch.is_ascii_digit() {
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// Every absolute path (with its line) that a `crate::`, `super::` or `self::` path of the file
/// of module `module` names, `#[cfg(test)]` modules left out.
fn references(text: &str, module: &[String]) -> Vec<(Vec<String>, usize)> {
    let toks = tokenize(text);
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: &Tok| toks.get(i).is_some_and(|(x, _)| x == t);
    let mut out = Vec::new();
    // Inline modules open around the current token: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        // `#[cfg(test)]`, then perhaps other attributes and `pub`, then `mod name { … }`.
        if is(i, &Tok::Punct('#')) && cfg_test_at(&toks, i + 1) {
            let mut j = i + 7;
            while is(j, &Tok::Punct('#')) {
                j = skip_group(&toks, j + 1);
            }
            if ident(j) == Some("pub") {
                j += 1;
                if is(j, &Tok::Punct('(')) {
                    j = skip_group(&toks, j);
                }
            }
            if ident(j) == Some("mod") && is(j + 2, &Tok::Punct('{')) {
                i = skip_group(&toks, j + 2);
                continue;
            }
            i = j;
            continue;
        }
        match &toks[i].0 {
            Tok::Punct('{') => {
                if ident(i.wrapping_sub(2)) == Some("mod")
                    && let Some(name) = ident(i.wrapping_sub(1))
                {
                    inline.push((name.to_string(), depth + 1));
                }
                depth += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(word)
                if matches!(word.as_str(), "crate" | "super" | "self")
                    && is(i + 1, &Tok::PathSep)
                    && !is(i.wrapping_sub(1), &Tok::PathSep) =>
            {
                let mut base: Vec<String> = if word == "crate" {
                    Vec::new()
                } else {
                    module
                        .iter()
                        .cloned()
                        .chain(inline.iter().map(|(n, _)| n.clone()))
                        .collect()
                };
                if word == "super" {
                    base.pop();
                }
                i = use_tree(&toks, i + 2, base, &mut out);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether `[cfg(test)]` starts at `i`.
fn cfg_test_at(toks: &[(Tok, usize)], i: usize) -> bool {
    let want = [
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    want.iter()
        .enumerate()
        .all(|(k, t)| toks.get(i + k).is_some_and(|(x, _)| x == t))
}

/// The index after the bracketed group opening at `i` (`(`, `[` or `{`).
fn skip_group(toks: &[(Tok, usize)], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while j < toks.len() {
        match toks[j].0 {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth <= 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// Reads the rest of a path (or use tree) from `i` below `base`, pushing each path it names;
/// returns the index after it.
fn use_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    mut base: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let line = toks.get(i).map_or(0, |t| t.1);
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                match s.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => base.push(s.clone()),
                }
                if toks.get(i + 1).is_some_and(|t| t.0 == Tok::PathSep) {
                    i += 2;
                    continue;
                }
                out.push((base, line));
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        None => return i,
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        Some(Tok::Ident(s)) if s == "as" => i += 2,
                        _ => i = use_tree(toks, i, base.clone(), out).max(i + 1),
                    }
                }
            }
            Some(Tok::Punct('*')) => {
                out.push((base, line));
                return i + 1;
            }
            _ => {
                out.push((base, line));
                return i;
            }
        }
    }
}
