//! Templates and scripts as flows reference them: inline value templates, files under
//! `mappings/` (resolved inside it), rhai scripts, and the check that every template reads only
//! names defined where it is used, with a hint naming the ones that are.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::action::TRANSACTION;
use super::{Loader, Origin};
use crate::config::Diagnostic;
use crate::config::yaml::SpannedDoc;
use crate::mapping::templates::{FILTER_NAMES, GLOBAL_NAMES};
use crate::mapping::value_template::CompileError;
use crate::mapping::{CallableKind, ScriptEngine, Templates, UnknownCallable, ValueTemplate};

/// Names minijinja defines in every template.
pub(super) const MINIJINJA_BUILTINS: [&str; 7] = [
    "range",
    "dict",
    "debug",
    "namespace",
    "lipsum",
    "cycler",
    "joiner",
];

impl Loader<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn text(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        s: &str,
        known: &HashSet<String>,
        templates: &mut Templates,
    ) -> Option<ValueTemplate> {
        match ValueTemplate::compile_text(templates, scope, path, s) {
            Ok(t) => {
                let ok = self.free_variables_ok(doc, file, path, &t, known, templates);
                ok.then_some(t)
            }
            Err(e) => {
                self.inline_error(doc, file, e);
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn value(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        v: &Value,
        known: &HashSet<String>,
        templates: &mut Templates,
    ) -> Option<ValueTemplate> {
        match ValueTemplate::compile(templates, scope, path, v) {
            Ok(t) => {
                let ok = self.free_variables_ok(doc, file, path, &t, known, templates);
                ok.then_some(t)
            }
            Err(errors) => {
                for e in errors {
                    self.inline_error(doc, file, e);
                }
                None
            }
        }
    }

    fn inline_error(&mut self, doc: &SpannedDoc, file: &Path, e: CompileError) {
        self.diagnostics.push(doc.diagnostic(
            file,
            &e.yaml_path,
            format!("template error: {}", e.error.detail),
        ));
    }

    /// Checks every template inside `t` reads only names that exist at this point.
    fn free_variables_ok(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        t: &ValueTemplate,
        known: &HashSet<String>,
        templates: &Templates,
    ) -> bool {
        let mut names = Vec::new();
        t.template_names(&mut names);
        let mut ok = true;
        for name in names {
            self.note_reads(templates, &name);
            let at = name.rsplit_once(':').map_or(path, |(_, p)| p);
            for var in templates.free_variables(&name) {
                if !known.contains(&var) {
                    ok = false;
                    self.diagnostics.push(unknown_variable(
                        doc.diagnostic(file, at, String::new()),
                        &var,
                        known,
                        templates.calls(&name, &var),
                    ));
                }
            }
            for u in templates.unknown_callables(&name) {
                ok = false;
                self.diagnostics.push(unknown_callable(
                    doc.diagnostic(file, at, String::new()),
                    &u,
                ));
            }
        }
        ok
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn template(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        templates: &mut Templates,
        name: &str,
        source: &str,
        known: &HashSet<String>,
    ) -> Option<()> {
        if let Err(e) = templates.add(name, source) {
            self.diagnostics.push(doc.diagnostic(
                file,
                path,
                format!("template error: {}", e.detail),
            ));
            return None;
        }
        self.note_reads(templates, name);
        let mut ok = true;
        for var in templates.free_variables(name) {
            if !known.contains(&var) {
                ok = false;
                self.diagnostics.push(unknown_variable(
                    doc.diagnostic(file, path, String::new()),
                    &var,
                    known,
                    templates.calls(name, &var),
                ));
            }
        }
        for u in templates.unknown_callables(name) {
            ok = false;
            self.diagnostics.push(unknown_callable(
                doc.diagnostic(file, path, String::new()),
                &u,
            ));
        }
        ok.then_some(())
    }

    /// Resolves a file under `mappings/`, refusing paths that leave it.
    fn mapping_path(&mut self, origin: &Origin<'_>, rel: &str) -> Option<PathBuf> {
        let p = Path::new(rel);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            self.diagnostics.push(
                origin
                    .diag(format!(
                        "`{rel}` must be a path inside the mappings directory"
                    ))
                    .hint("write it relative to mappings/, without `..`"),
            );
            return None;
        }
        Some(self.layout.mappings.join(p))
    }

    pub(super) fn template_file(
        &mut self,
        origin: &Origin<'_>,
        rel: &str,
        known: &HashSet<String>,
        templates: &mut Templates,
    ) -> Option<()> {
        if let Some((d, referenced)) = self.broken_templates.get_mut(rel) {
            let used_by = format!("used by {} at {}", origin.file.display(), origin.path);
            let hint = match &d.hint {
                Some(h) => format!("{h} ({used_by})"),
                None => used_by,
            };
            let d = d.clone().path(&origin.path).hint(hint);
            *referenced = true;
            self.diagnostics.push(d);
            return None;
        }
        if templates.contains(rel) {
            return self.template_vars_ok(origin, rel, known, templates);
        }
        let full = self.mapping_path(origin, rel)?;
        let source = match self.read(&full) {
            Ok(s) => s,
            Err(e) => {
                self.diagnostics.push(
                    origin
                        .diag(format!("cannot read template `{}`: {e}", full.display()))
                        .hint(format!(
                            "templates live under {}",
                            self.layout.mappings.display()
                        )),
                );
                return None;
            }
        };
        if let Err(e) = templates.add(rel, &source) {
            self.diagnostics.push(
                Diagnostic::new(&full, format!("template error: {}", e.detail))
                    .at(e.line.unwrap_or(0) as u32, 1)
                    .path(&origin.path)
                    .hint(format!(
                        "used by {} at {}",
                        origin.file.display(),
                        origin.path
                    )),
            );
            return None;
        }
        if let Some(u) = templates.unknown_callables(rel).first() {
            let d = unknown_callable(Diagnostic::new(&full, String::new()), u)
                .path(&origin.path)
                .hint(format!(
                    "used by {} at {}",
                    origin.file.display(),
                    origin.path
                ));
            self.diagnostics.push(d);
            return None;
        }
        self.template_vars_ok(origin, rel, known, templates)
    }

    fn template_vars_ok(
        &mut self,
        origin: &Origin<'_>,
        rel: &str,
        known: &HashSet<String>,
        templates: &Templates,
    ) -> Option<()> {
        self.note_reads(templates, rel);
        let full = self.layout.mappings.join(rel);
        let mut ok = true;
        for var in templates.free_variables(rel) {
            if !known.contains(&var) {
                ok = false;
                let (line, col) = self
                    .sources
                    .get(&full)
                    .and_then(|src| first_use(src, &var))
                    .unwrap_or((0, 0));
                let d = Diagnostic::new(&full, String::new())
                    .at(line, col)
                    .path(&origin.path);
                let called = templates.calls(rel, &var);
                self.diagnostics
                    .push(unknown_variable(d, &var, known, called));
            }
        }
        ok.then_some(())
    }

    /// Compiles the script `rel` (once per flow) and checks it reads only `vars` (the names
    /// in scope where it runs) besides its own; each use is checked, as scopes differ.
    pub(super) fn script(
        &mut self,
        origin: &Origin<'_>,
        rel: &str,
        vars: &HashSet<String>,
        scripts: &mut ScriptEngine,
    ) -> Option<()> {
        let full = self.mapping_path(origin, rel)?;
        if !scripts.contains(rel) {
            let source = match self.read(&full) {
                Ok(s) => s,
                Err(e) => {
                    self.diagnostics.push(
                        origin
                            .diag(format!("cannot read script `{}`: {e}", full.display()))
                            .hint(format!(
                                "scripts live under {}",
                                self.layout.mappings.display()
                            )),
                    );
                    return None;
                }
            };
            if let Err((at, message)) = scripts.add(rel, &source) {
                let (line, col) = at.unwrap_or((0, 0));
                self.diagnostics.push(
                    Diagnostic::new(&full, format!("script error: {message}"))
                        .at(line as u32, col as u32)
                        .path(&origin.path)
                        .hint(format!(
                            "used by {} at {}",
                            origin.file.display(),
                            origin.path
                        )),
                );
                return None;
            }
        }
        let mut names: Vec<String> = vars.iter().cloned().collect();
        names.sort();
        if let Some(u) = scripts.undefined_variable(rel, &names) {
            let (line, col) = u.at.unwrap_or((0, 0));
            let d = Diagnostic::new(&full, String::new())
                .at(line as u32, col as u32)
                .path(&origin.path);
            let d = unknown_name(d, "script", &u.name, vars);
            let d = Diagnostic {
                hint: d
                    .hint
                    .map(|h| format!("{h} (used by {} at {})", origin.file.display(), origin.path)),
                ..d
            };
            self.diagnostics.push(d);
            return None;
        }
        if vars.contains(TRANSACTION) && !self.reads_transaction {
            // Strict variables again without `transaction`: the script reads it if that fails.
            names.retain(|n| n != TRANSACTION);
            self.reads_transaction = scripts.undefined_variable(rel, &names).is_some();
        }
        Some(())
    }

    /// Notes whether the template `name` reads `transaction` (see
    /// [`Loader::reads_transaction`]).
    fn note_reads(&mut self, templates: &Templates, name: &str) {
        if !self.reads_transaction {
            self.reads_transaction = templates.reads_variable(name, TRANSACTION);
        }
    }
}

/// The variables a script sees where templates see `known`: the same data, without the
/// template-only functions.
pub(super) fn script_names(known: &HashSet<String>) -> HashSet<String> {
    known
        .iter()
        .filter(|k| {
            !GLOBAL_NAMES.contains(&k.as_str()) && !MINIJINJA_BUILTINS.contains(&k.as_str())
        })
        .cloned()
        .collect()
}

pub(super) fn known_names(bound: &[String], extra: &[String]) -> HashSet<String> {
    ["context", "message", "flow"]
        .iter()
        .chain(GLOBAL_NAMES.iter())
        .chain(MINIJINJA_BUILTINS.iter())
        .map(|s| s.to_string())
        .chain(bound.iter().cloned())
        .chain(extra.iter().cloned())
        .collect()
}

/// A filter or test the template uses that does not exist, at its use in the template file
/// (`d` carries the file) or at the YAML string of an inline template.
pub(super) fn unknown_callable(d: Diagnostic, u: &UnknownCallable) -> Diagnostic {
    let d = if d.line == 0 {
        d.at(u.line.unwrap_or(0) as u32, u.column.unwrap_or(0) as u32)
    } else {
        d
    };
    let d = Diagnostic {
        message: format!("unknown {} `{}`", u.kind, u.name),
        ..d
    };
    match u.kind {
        CallableKind::Filter => {
            let options: Vec<String> = FILTER_NAMES.iter().map(|s| s.to_string()).collect();
            match crate::config::closest(&u.name, &options) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None => d.hint(format!(
                    "filters are minijinja's builtins (upper, default, tojson, ...) and {}",
                    FILTER_NAMES.join(", ")
                )),
            }
        }
        CallableKind::Test => {
            let options: Vec<String> = MINIJINJA_TESTS.iter().map(|s| s.to_string()).collect();
            match crate::config::closest(&u.name, &options) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None => d.hint(format!(
                    "tests are minijinja's: {}",
                    MINIJINJA_TESTS.join(", ")
                )),
            }
        }
    }
}

/// minijinja's builtin tests, for hints (whether a test exists is asked of minijinja itself).
const MINIJINJA_TESTS: [&str; 22] = [
    "defined",
    "undefined",
    "none",
    "true",
    "false",
    "boolean",
    "number",
    "integer",
    "float",
    "string",
    "sequence",
    "iterable",
    "mapping",
    "odd",
    "even",
    "divisibleby",
    "startingwith",
    "endingwith",
    "in",
    "lower",
    "upper",
    "sameas",
];

fn unknown_variable(d: Diagnostic, var: &str, known: &HashSet<String>, called: bool) -> Diagnostic {
    if !called {
        return unknown_name(d, "template", var, known);
    }
    let functions: Vec<String> = GLOBAL_NAMES
        .iter()
        .chain(MINIJINJA_BUILTINS.iter())
        .map(|s| s.to_string())
        .collect();
    let d = Diagnostic {
        message: format!("template calls `{var}`, which is not a function here"),
        ..d
    };
    let list = functions.join(", ");
    match crate::config::closest(var, &functions) {
        Some(best) => d.hint(format!("did you mean `{best}`? functions: {list}")),
        None => d.hint(format!(
            "functions: {list} (and macros the template defines or imports)"
        )),
    }
}

/// `what` (a template or script) reads `var`, which `known` lacks; the hint names the
/// closest defined name and all of them.
fn unknown_name(d: Diagnostic, what: &str, var: &str, known: &HashSet<String>) -> Diagnostic {
    let mut options: Vec<String> = known
        .iter()
        .filter(|k| {
            !GLOBAL_NAMES.contains(&k.as_str()) && !MINIJINJA_BUILTINS.contains(&k.as_str())
        })
        .cloned()
        .collect();
    options.sort();
    let mut d = Diagnostic {
        message: format!("{what} reads `{var}`, which is not defined at this point"),
        ..d
    };
    d = match crate::config::closest(var, &options) {
        Some(best) => d.hint(format!("did you mean `{best}`? available here: {}", options.join(", "))),
        None => d.hint(format!(
            "available here: {} (a step's result is available to the steps after it and to the reply)",
            options.join(", ")
        )),
    };
    d
}

/// Line and column (1-based) of the first use of `var` as a word in the template `src`, to
/// point at it. Only `{{ }}` and `{% %}` tags are searched: a word in the template's text or
/// in a `{# #}` comment (which often names the steps a template reads) is not a use.
fn first_use(src: &str, var: &str) -> Option<(u32, u32)> {
    let code = template_code(src);
    code.lines().enumerate().find_map(|(i, l)| {
        l.match_indices(var)
            .find(|(at, _)| {
                let before = l[..*at].chars().next_back();
                let after = l[at + var.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
            .map(|(at, _)| (i as u32 + 1, l[..at].chars().count() as u32 + 1))
    })
}

/// `src` with everything outside `{{ }}` and `{% %}` tags blanked, one space per character
/// and newlines kept, so that lines and columns still match the source.
fn template_code(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    // The closing delimiter awaited, and whether the text up to it is kept.
    let mut inside: Option<(&str, bool)> = None;
    let mut rest = src;
    while let Some(c) = rest.chars().next() {
        let opened = match inside {
            None => [("{{", "}}", true), ("{%", "%}", true), ("{#", "#}", false)]
                .into_iter()
                .find(|(open, _, _)| rest.starts_with(open)),
            Some(_) => None,
        };
        if let Some((_, close, keep)) = opened {
            inside = Some((close, keep));
            out.push_str("  ");
            rest = &rest[2..];
        } else if let Some((close, _)) = inside.filter(|(close, _)| rest.starts_with(close)) {
            inside = None;
            out.push_str(&" ".repeat(close.len()));
            rest = &rest[close.len()..];
        } else {
            let keep = inside.is_some_and(|(_, keep)| keep);
            out.push(if keep || c == '\n' { c } else { ' ' });
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

pub(super) fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_skips_comments_and_text() {
        let src = "{#- on_status: reads order and state -#}\n{\"order\": {{ order_of(order, state) }},\n  {%- if state.x %}\"s\": 1{% endif %}}";
        assert_eq!(first_use(src, "order"), Some((2, 23)));
        assert_eq!(first_use(src, "state"), Some((2, 30)));
        assert_eq!(first_use(src, "order_of"), Some((2, 14)));
        assert_eq!(first_use(src, "missing"), None);
    }

    #[test]
    fn template_code_keeps_positions() {
        let src = "é {# x #}\n{{ a }}b";
        let code = template_code(src);
        assert_eq!(code.chars().count(), src.chars().count());
        assert_eq!(code, "         \n   a    ");
    }
}
