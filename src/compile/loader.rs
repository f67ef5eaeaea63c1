//! The file walk and the diagnostics plumbing every part of compiling shares: the [`Loader`]
//! reads files (remembering each for the set's hash), parses YAML with positions, and collects
//! every problem rather than stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{CORE_SCHEMA, Layout};
use crate::beckn::schema::CoreSchemas;
use crate::config::yaml::{self, SpannedDoc};
use crate::config::{Diagnostic, EnvLookup, deserialize_at};
use crate::mapping::Templates;

/// Compiles one tree: what it reads from, what it has read, and every problem found so far.
pub(super) struct Loader<'a> {
    pub(super) layout: &'a Layout,
    pub(super) env: &'a dyn EnvLookup,
    pub(super) diagnostics: Vec<Diagnostic>,
    /// Every file read, with its content, for the set's hash.
    pub(super) sources: BTreeMap<PathBuf, String>,
    /// Where the YAML reader reported a problem (file, YAML path); see [`super::load`].
    pub(super) parse_problems: HashSet<(PathBuf, String)>,
    /// Templates under `mappings/` that do not compile, by name, with their diagnostic and
    /// whether a flow referenced them: reported once, at the reference when there is one.
    pub(super) broken_templates: HashMap<String, (Diagnostic, bool)>,
    /// Names in scope besides context, message, flow and earlier steps (`event` while
    /// compiling a flow's `events:`).
    pub(super) scope_names: Vec<String>,
    /// The order sinks' connections compiled so far, and what compiling them needs once.
    pub(super) sinks: super::sinks::SinkLoading,
    /// Whether a template or script checked since the current action began reads
    /// `transaction` (directly or through a template it imports or includes): only such
    /// actions have the transaction's memory read from the store before they run.
    pub(super) reads_transaction: bool,
}

/// Where a reference in a flow file points from, for diagnostics about the referenced file.
pub(super) struct Origin<'a> {
    pub(super) doc: &'a SpannedDoc,
    pub(super) file: &'a Path,
    pub(super) path: String,
}

impl Origin<'_> {
    pub(super) fn diag(&self, message: impl Into<String>) -> Diagnostic {
        self.doc.diagnostic(self.file, &self.path, message)
    }
}

impl<'a> Loader<'a> {
    pub(super) fn new(layout: &'a Layout, env: &'a dyn EnvLookup) -> Self {
        Loader {
            layout,
            env,
            diagnostics: Vec::new(),
            sources: BTreeMap::new(),
            parse_problems: HashSet::new(),
            broken_templates: HashMap::new(),
            scope_names: Vec::new(),
            sinks: Default::default(),
            reads_transaction: false,
        }
    }

    pub(super) fn read(&mut self, path: &Path) -> Result<String, std::io::Error> {
        let text = std::fs::read_to_string(path)?;
        self.sources.insert(path.to_path_buf(), text.clone());
        Ok(text)
    }

    /// Problems the YAML reader found while building a document, remembered by place.
    pub(super) fn add_parse_problems(&mut self, problems: Vec<Diagnostic>) {
        for d in &problems {
            self.parse_problems
                .insert((d.file.clone(), d.yaml_path.clone()));
        }
        self.diagnostics.extend(problems);
    }

    pub(super) fn de<T: serde::de::DeserializeOwned>(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        value: &Value,
    ) -> Option<T> {
        match deserialize_at(doc, file, path, value) {
            Ok(v) => Some(v),
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// Reads and deserialises a YAML file referenced from a flow (`origin`), with `${VAR}`
    /// interpolation and located diagnostics.
    pub(super) fn yaml_file<T: serde::de::DeserializeOwned>(
        &mut self,
        origin: &Origin<'_>,
        full: &Path,
        what: &str,
    ) -> Option<(SpannedDoc, T)> {
        let text = match self.read(full) {
            Ok(t) => t,
            Err(e) => {
                self.diagnostics
                    .push(origin.diag(format!("cannot read {what} `{}`: {e}", full.display())));
                return None;
            }
        };
        let (doc, problems) = match yaml::parse(full, &text, self.env) {
            Ok(p) => p,
            Err(d) => {
                self.diagnostics.push(d);
                return None;
            }
        };
        self.add_parse_problems(problems);
        let parsed = self.de(&doc, full, "", &doc.value)?;
        Some((doc, parsed))
    }

    pub(super) fn core_schemas(&mut self) -> Option<CoreSchemas> {
        let path = self.layout.schemas.join(CORE_SCHEMA);
        let text = match self.read(&path) {
            Ok(t) => t,
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::new(&path, format!("cannot read the Beckn core schema: {e}"))
                        .hint("the schemas directory sits beside flows/ (or pass --schemas)"),
                );
                return None;
            }
        };
        let doc: Value = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::new(&path, format!("invalid JSON: {e}"))
                        .at(e.line() as u32, e.column() as u32),
                );
                return None;
            }
        };
        match CoreSchemas::from_document(&doc) {
            Ok(c) => Some(c),
            Err(e) => {
                self.diagnostics.push(Diagnostic::new(&path, e));
                None
            }
        }
    }

    /// Compiles every `*.j2` under `mappings/`, named by its path there (`soil/on_search.j2`),
    /// so that templates can import macros from each other.
    pub(super) fn preload_templates(&mut self, templates: &mut Templates) {
        let root = self.layout.mappings.clone();
        let mut files = Vec::new();
        collect_files(&root, "j2", &mut files);
        files.sort();
        for full in files {
            let Ok(rel) = full.strip_prefix(&root) else {
                continue;
            };
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let source = match self.read(&full) {
                Ok(s) => s,
                Err(e) => {
                    self.diagnostics
                        .push(Diagnostic::new(&full, format!("cannot read: {e}")));
                    continue;
                }
            };
            if let Err(e) = templates.add(&name, &source) {
                let d = Diagnostic::new(&full, format!("template error: {}", e.detail))
                    .at(e.line.unwrap_or(0) as u32, 1);
                self.broken_templates.insert(name, (d, false));
            } else if let Some(u) = templates.unknown_callables(&name).first() {
                let d =
                    super::templates::unknown_callable(Diagnostic::new(&full, String::new()), u);
                self.broken_templates.insert(name, (d, false));
            }
        }
    }

    /// Reports the broken templates no reference has reported (macro files, unused ones).
    pub(super) fn report_unreferenced_templates(&mut self) {
        let mut broken: Vec<_> = std::mem::take(&mut self.broken_templates)
            .into_iter()
            .filter(|(_, (_, referenced))| !referenced)
            .collect();
        broken.sort_by(|a, b| a.0.cmp(&b.0));
        self.diagnostics
            .extend(broken.into_iter().map(|(_, (d, _))| d));
    }

    pub(super) fn flow_files(&mut self) -> Vec<PathBuf> {
        let dir = &self.layout.flows;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.diagnostics.push(Diagnostic::new(
                    dir,
                    format!("cannot read the flows directory: {e}"),
                ));
                return Vec::new();
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            self.diagnostics.push(
                Diagnostic::new(dir, "no flow files (*.yaml) found")
                    .hint("a flow file declares a role, a network identity and its actions"),
            );
        }
        files
    }

    /// Reads and parses a file under `flows/`.
    pub(super) fn parse_flow_file(&mut self, file: &Path) -> Option<SpannedDoc> {
        let text = match self.read(file) {
            Ok(t) => t,
            Err(e) => {
                self.diagnostics
                    .push(Diagnostic::new(file, format!("cannot read: {e}")));
                return None;
            }
        };
        let (doc, problems) = match yaml::parse(file, &text, self.env) {
            Ok(parsed) => parsed,
            Err(d) => {
                self.diagnostics.push(d);
                return None;
            }
        };
        self.add_parse_problems(problems);
        Some(doc)
    }
}

/// Files with extension `ext` below `dir`, recursively; an unreadable or missing directory
/// yields none (a flow that references a missing file reports it where it is referenced).
fn collect_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, ext, out);
        } else if path.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(path);
        }
    }
}
