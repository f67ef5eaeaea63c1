//! Loading is compiling: flow files, templates, scripts and schemas become one immutable
//! [`CompiledSet`], or a list of every problem found. `check`, `serve` and reload share it.
//!
//! Invariant: compiling reads the files under the three directories and nothing else; it opens
//! no socket and calls no backend.

// One file per part a flow file compiles into; the `Loader` (loader.rs) is shared by all.
mod action;
mod auth;
mod buyer;
mod call;
mod events;
mod flow;
mod key_source;
mod loader;
pub mod model;
mod paginate;
mod poll_orders;
mod registration;
pub mod sinks;
mod templates;
mod trust;

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{Diagnostic, EnvLookup};
use crate::mapping::templates::EXPR_PREFIX;
use flow::normalise_base_path;
use loader::{Loader, Origin};
use templates::known_names;

pub use model::*;

/// Where a tree of flows, mappings and schemas lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The project root: registry files are relative to it.
    pub root: PathBuf,
    pub flows: PathBuf,
    pub mappings: PathBuf,
    pub schemas: PathBuf,
}

impl Layout {
    /// `flows/` with its siblings `mappings/` and `schemas/`.
    pub fn from_flows_dir(flows: impl Into<PathBuf>) -> Self {
        let flows = flows.into();
        // `flows` alone has the empty path as parent: keep it, so files print as `mappings/x`.
        let root = flows.parent().map(Path::to_path_buf).unwrap_or_default();
        Layout {
            mappings: root.join("mappings"),
            schemas: root.join("schemas"),
            flows,
            root,
        }
    }
}

/// The core schema document, relative to `schemas/`.
pub const CORE_SCHEMA: &str = "beckn/1.1.0/core.json";

/// Loads and compiles everything under `layout`. Every problem is reported, not just the first.
pub fn load(layout: &Layout, env: &dyn EnvLookup) -> Result<CompiledSet, Vec<Diagnostic>> {
    let mut cx = Loader::new(layout, env);
    let core = cx.core_schemas();
    // Sink connections first, so that flows naming one find it.
    let mut flow_docs = Vec::new();
    for file in cx.flow_files() {
        let Some(doc) = cx.parse_flow_file(&file) else {
            continue;
        };
        if sinks::is_connection_file(&doc) {
            cx.sink_connection(&doc, &file);
        } else {
            flow_docs.push((file, doc));
        }
    }
    let mut flows = Vec::new();
    for (file, doc) in flow_docs {
        if let Some(flow) = cx.flow(&file, doc) {
            flows.push(Arc::new(flow));
        }
    }
    cx.cross_checks(&flows);
    if !cx.diagnostics.is_empty() {
        // A value the YAML reader could not produce (an unset `${VAR}`) is left empty; what
        // later checks say about that empty value repeats the one mistake, so keep only the
        // first diagnostic at such a place: the reader's own.
        let parse_problems = std::mem::take(&mut cx.parse_problems);
        let mut reported = HashSet::new();
        cx.diagnostics.retain(|d| {
            let at = (d.file.clone(), d.yaml_path.clone());
            !parse_problems.contains(&at) || reported.insert(at)
        });
        // Files shared by several flows (templates, domain rules) report their problems once.
        let mut seen = HashSet::new();
        cx.diagnostics.retain(|d| seen.insert(d.to_string()));
        return Err(cx.diagnostics);
    }
    let Some(core) = core else {
        return Err(vec![Diagnostic::new(
            &layout.schemas,
            "core schemas missing",
        )]);
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    cx.sources.hash(&mut hasher);
    Ok(CompiledSet {
        flows,
        sinks: cx.sinks.connections,
        core: Arc::new(core),
        hash: format!("{:016x}", hasher.finish()),
        sources: cx.sources.into_keys().collect(),
        // when the files were read, for operators: the system's time
        loaded_at: jiff::Timestamp::now(),
    })
}
