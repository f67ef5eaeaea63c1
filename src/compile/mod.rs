//! Loading is compiling: flow files, templates, scripts and schemas become one immutable
//! [`CompiledSet`], or a list of every problem found. `check`, `serve` and reload share it.
//!
//! Invariant: compiling reads the files under the three directories and nothing else; it opens
//! no socket and calls no backend.

mod buyer;
pub mod model;
pub mod sinks;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::backend::Backend;
use crate::beckn::action::Action;
use crate::beckn::domain::{DomainRules, DomainRulesFile};
use crate::beckn::error::ErrorCode;
use crate::beckn::participant::Participant;
use crate::beckn::registry::{EmbeddedRegistry, LookupQuery, RegistryFile};
use crate::beckn::schema::CoreSchemas;
use crate::beckn::signing::{PrivateKey, PublicKey};
use crate::config::model::{
    ActionConfig, BackendConfig, CallConfig, EventPoll, EventsConfig, FlowFile, ReplyConfig, Role,
    StepConfig,
};
use crate::config::yaml::{self, SpannedDoc};
use crate::config::{Diagnostic, EnvLookup, deserialize_at};
use crate::mapping::templates::{EXPR_PREFIX, GLOBAL_NAMES};
use crate::mapping::value_template::CompileError;
use crate::mapping::{ScriptEngine, Templates, ValueTemplate};
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

const DEFAULT_FUEL: u64 = 200_000;
const DEFAULT_SCRIPT_OPS: u64 = 200_000;
const DEFAULT_MAX_BODY: u64 = 1 << 20;
const DEFAULT_MAX_IN_FLIGHT: u64 = 4096;
const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_SKEW: Duration = Duration::from_secs(5);
const DEFAULT_SIGNATURE_VALIDITY: Duration = Duration::from_secs(60);
const DEFAULT_MAX_SIGNATURE_LIFETIME: Duration = Duration::from_secs(3600);
const DEFAULT_REGISTRY_NEGATIVE_TTL: Duration = Duration::from_secs(30);
const DEFAULT_REGISTRY_LOOKUPS_PER_SECOND: u64 = 20;
const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(600);
const DEFAULT_REGISTRY_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_POLL_EVERY: Duration = Duration::from_secs(5);
const MINIJINJA_BUILTINS: [&str; 7] = [
    "range",
    "dict",
    "debug",
    "namespace",
    "lipsum",
    "cycler",
    "joiner",
];

/// Loads and compiles everything under `layout`. Every problem is reported, not just the first.
pub fn load(layout: &Layout, env: &dyn EnvLookup) -> Result<CompiledSet, Vec<Diagnostic>> {
    let mut cx = Loader {
        layout,
        env,
        diagnostics: Vec::new(),
        sources: BTreeMap::new(),
        parse_problems: HashSet::new(),
        broken_templates: HashMap::new(),
        scope_names: Vec::new(),
        connections: Vec::new(),
        oms_schema: None,
    };
    let core = cx.core_schemas();
    // Ultra connections first, so that flows naming one find it.
    let mut flow_docs = Vec::new();
    for file in cx.flow_files() {
        let Some(doc) = cx.parse_flow_file(&file) else {
            continue;
        };
        if sinks::is_connection_file(&doc) {
            cx.ultra_connection(&doc, &file);
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
        ultra: cx.connections,
        core: Arc::new(core),
        hash: format!("{:016x}", hasher.finish()),
        sources: cx.sources.into_keys().collect(),
        loaded_at: jiff::Timestamp::now(),
    })
}

struct Loader<'a> {
    layout: &'a Layout,
    env: &'a dyn EnvLookup,
    diagnostics: Vec<Diagnostic>,
    /// Every file read, with its content, for the set's hash.
    sources: BTreeMap<PathBuf, String>,
    /// Where the YAML reader reported a problem (file, YAML path); see [`load`].
    parse_problems: HashSet<(PathBuf, String)>,
    /// Templates under `mappings/` that do not compile, by name, with their diagnostic and
    /// whether a flow referenced them: reported once, at the reference when there is one.
    broken_templates: HashMap<String, (Diagnostic, bool)>,
    /// Names in scope besides context, message, flow and earlier steps (`event` while
    /// compiling a flow's `events:`).
    scope_names: Vec<String>,
    /// Ultra connections compiled so far.
    connections: Vec<Arc<sinks::UltraConnection>>,
    /// The OMS order schema, compiled once.
    oms_schema: Option<Arc<crate::beckn::schema::JsonValidator>>,
}

/// Where a reference in a flow file points from, for diagnostics about the referenced file.
struct Origin<'a> {
    doc: &'a SpannedDoc,
    file: &'a Path,
    path: String,
}

impl Origin<'_> {
    fn diag(&self, message: impl Into<String>) -> Diagnostic {
        self.doc.diagnostic(self.file, &self.path, message)
    }
}

impl Loader<'_> {
    fn read(&mut self, path: &Path) -> Result<String, std::io::Error> {
        let text = std::fs::read_to_string(path)?;
        self.sources.insert(path.to_path_buf(), text.clone());
        Ok(text)
    }

    /// Problems the YAML reader found while building a document, remembered by place.
    fn add_parse_problems(&mut self, problems: Vec<Diagnostic>) {
        for d in &problems {
            self.parse_problems
                .insert((d.file.clone(), d.yaml_path.clone()));
        }
        self.diagnostics.extend(problems);
    }

    fn core_schemas(&mut self) -> Option<CoreSchemas> {
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
    fn preload_templates(&mut self, templates: &mut Templates) {
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
            }
        }
    }

    /// Reports the broken templates no reference has reported (macro files, unused ones).
    fn report_unreferenced_templates(&mut self) {
        let mut broken: Vec<_> = std::mem::take(&mut self.broken_templates)
            .into_iter()
            .filter(|(_, (_, referenced))| !referenced)
            .collect();
        broken.sort_by(|a, b| a.0.cmp(&b.0));
        self.diagnostics
            .extend(broken.into_iter().map(|(_, (d, _))| d));
    }

    fn flow_files(&mut self) -> Vec<PathBuf> {
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
    fn parse_flow_file(&mut self, file: &Path) -> Option<SpannedDoc> {
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

    fn flow(&mut self, file: &Path, doc: SpannedDoc) -> Option<CompiledFlow> {
        let before = self.diagnostics.len();
        let head: Option<FlowFile> = self.de(&doc, file, "", &doc.value);
        let name = head
            .as_ref()
            .and_then(|h| h.name.clone())
            .unwrap_or_else(|| {
                file.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        let limits = head.as_ref().map(|h| &h.limits);
        let fuel = limits
            .and_then(|l| l.template_fuel)
            .map_or(DEFAULT_FUEL, |c| c.0);
        let ops = limits
            .and_then(|l| l.script_max_operations)
            .map_or(DEFAULT_SCRIPT_OPS, |c| c.0);
        let mut templates = Templates::new(fuel);
        self.preload_templates(&mut templates);
        let mut scripts = ScriptEngine::new(ops);
        let scope = file.display().to_string();

        let backends = self.backends(&doc, file);
        let mut actions = HashMap::new();
        if let Some(map) = doc.value.get("actions").and_then(Value::as_object) {
            for (key, raw) in map {
                let path = format!("actions.{key}");
                let action = match key.parse::<Action>() {
                    Ok(a) => a,
                    Err(e) => {
                        let options: Vec<String> =
                            Action::ALL.iter().map(|a| a.to_string()).collect();
                        let mut d = doc.diagnostic(file, &path, e.to_string());
                        d = match crate::config::closest(key, &options) {
                            Some(best) => d.hint(format!("did you mean `{best}`?")),
                            None => d.hint(format!("actions are: {}", options.join(", "))),
                        };
                        self.diagnostics.push(d);
                        continue;
                    }
                };
                let Some(cfg) = self.de::<ActionConfig>(&doc, file, &path, raw) else {
                    continue;
                };
                let compiled = self.action(
                    &doc,
                    file,
                    &scope,
                    &path,
                    cfg,
                    &backends,
                    &mut templates,
                    &mut scripts,
                );
                if let Some(c) = compiled {
                    actions.insert(action, c);
                }
            }
        }

        let events = match doc.value.get("events") {
            Some(raw) if !raw.is_null() => self.events(
                &doc,
                file,
                &scope,
                raw,
                &backends,
                &mut templates,
                &mut scripts,
            ),
            _ => None,
        };
        let ultra = match head.as_ref().and_then(|h| h.ultra.as_ref()) {
            Some(_) => {
                let cfg: Option<crate::config::ultra::FlowUltraConfig> = doc
                    .value
                    .get("ultra")
                    .and_then(|raw| self.de(&doc, file, "ultra", raw));
                let is_provider = head.as_ref().is_some_and(|h| h.role == Role::Bpp);
                cfg.and_then(|cfg| {
                    self.flow_ultra(
                        &doc,
                        file,
                        &scope,
                        cfg,
                        is_provider,
                        &mut templates,
                        &mut scripts,
                    )
                })
            }
            None => None,
        };
        self.report_unreferenced_templates();
        let head = head?;
        if head.role == Role::Gateway && head.ultra.is_some() {
            self.diagnostics.push(doc.diagnostic(
                file,
                "ultra",
                "a gateway has no orders to report to Ultra",
            ));
        }
        let listen = match head.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        "listen",
                        format!("`{}` is not an address", head.listen),
                    )
                    .hint("write it as host:port, e.g. 127.0.0.1:7101"),
                );
                None
            }
        };
        match head.role {
            Role::Bpp => {
                if head.actions.is_empty() {
                    self.diagnostics.push(
                        doc.diagnostic(file, "", "the flow declares no actions")
                            .hint("add `actions:` with at least `search:`"),
                    );
                }
                if head.gateway.is_some() {
                    self.diagnostics.push(doc.diagnostic(
                        file,
                        "gateway",
                        "`gateway:` settings belong to `role: gateway` flows",
                    ));
                }
            }
            Role::Gateway => {
                if !head.actions.is_empty() || !head.backends.is_empty() {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            "actions",
                            "a gateway forwards messages; it has no `actions:` or `backends:`",
                        )
                        .hint("remove them, or make this flow `role: bpp`"),
                    );
                }
                self.gateway_settings_of_a_gateway(&doc, file, &head);
            }
            Role::Bap => self.bap_has_no_provider_parts(&doc, file, &head),
        }
        if head.role != Role::Bap && head.client.is_some() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "client",
                    "`client:` (the app-facing API) belongs to `role: bap` flows",
                )
                .hint("remove it, or make this flow `role: bap`"),
            );
        }
        let bap = match (head.role, listen) {
            (Role::Bap, Some(listen)) => self.bap(&doc, file, &head, listen, &mut templates),
            _ => None,
        };
        {
            let (field, value) = ("network.subscriber_uri", &head.network.subscriber_uri);
            if reqwest::Url::parse(value).is_err() {
                self.diagnostics.push(
                    doc.diagnostic(file, field, format!("`{value}` is not a URL"))
                        .hint("e.g. https://soil-lab.example.org/beckn"),
                );
            }
        }
        let domain_rules = self.domain_rules(&doc, file, &head);
        let trust = self.trust(&doc, file, &head);
        if self.diagnostics.len() > before {
            return None;
        }
        let backends = backends
            .into_iter()
            .filter_map(|(k, v)| v.map(|b| (k, b)))
            .collect();
        Some(CompiledFlow {
            name,
            file: file.to_path_buf(),
            role: head.role,
            listen: listen?,
            base_path: normalise_base_path(head.base_path.as_deref().unwrap_or("")),
            participant: Participant {
                subscriber_id: head.network.subscriber_id,
                subscriber_uri: head
                    .network
                    .subscriber_uri
                    .trim_end_matches('/')
                    .to_string(),
                key_id: head.network.key_id,
                signing_key: trust.signing_key,
                verify_signatures: trust.verify,
                signature_skew: head
                    .network
                    .signature_skew
                    .map_or(DEFAULT_SKEW, |d| d.0)
                    .as_secs() as i64,
                signature_validity: head
                    .network
                    .signature_validity
                    .map_or(DEFAULT_SIGNATURE_VALIDITY, |d| d.0)
                    .as_secs()
                    .max(1) as i64,
                max_signature_lifetime: head
                    .network
                    .max_signature_lifetime
                    .map_or(DEFAULT_MAX_SIGNATURE_LIFETIME, |d| d.0)
                    .as_secs()
                    .min(i64::MAX as u64) as i64,
                time_limits: crate::beckn::context::TimeLimits {
                    max_ttl: head
                        .validation
                        .max_ttl
                        .map_or(crate::beckn::context::DEFAULT_MAX_TTL, |d| d.0),
                    skew: head
                        .validation
                        .timestamp_skew
                        .map_or(crate::beckn::context::DEFAULT_TIMESTAMP_SKEW, |d| d.0),
                },
                registry: trust.registry,
            },
            events,
            bap,
            ultra,
            serve_registry: head.network.registry.as_ref().is_some_and(|r| r.serve.0),
            forward_timeout: head
                .gateway
                .as_ref()
                .and_then(|g| g.forward_timeout)
                .map_or(DEFAULT_FORWARD_TIMEOUT, |d| d.0),
            domain: head.domain,
            domain_rules,
            allow_loopback_uris: head.validation.allow_loopback_uris.0,
            max_body_bytes: head
                .validation
                .max_body_bytes
                .map_or(DEFAULT_MAX_BODY, |c| c.0) as usize,
            max_in_flight: head
                .limits
                .max_in_flight
                .map_or(DEFAULT_MAX_IN_FLIGHT, |c| c.0) as usize,
            callback_deadline: head.limits.callback_deadline.map(|d| d.0),
            callback_timeout: head
                .limits
                .callback_timeout
                .map_or(DEFAULT_CALLBACK_TIMEOUT, |d| d.0),
            backends,
            actions,
            templates,
            scripts,
        })
    }

    fn de<T: serde::de::DeserializeOwned>(
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

    /// Backends by name; `None` for one that has errors (reported), so references to it are
    /// not reported a second time.
    fn backends(&mut self, doc: &SpannedDoc, file: &Path) -> BTreeMap<String, Option<Backend>> {
        let mut out = BTreeMap::new();
        let Some(map) = doc.value.get("backends").and_then(Value::as_object) else {
            return out;
        };
        for (name, raw) in map {
            let path = format!("backends.{name}");
            let backend = self
                .de::<BackendConfig>(doc, file, &path, raw)
                .and_then(|cfg| self.backend(doc, file, &path, name, cfg));
            out.insert(name.clone(), backend);
        }
        out
    }

    fn backend(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        name: &str,
        cfg: BackendConfig,
    ) -> Option<Backend> {
        let mut ok = true;
        if let Some(p) = &cfg.error_code
            && !p.starts_with('/')
        {
            ok = false;
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.error_code"),
                    format!("`{p}` is not a JSON pointer"),
                )
                .hint("e.g. /error for a body like {\"error\": \"NOT_FOUND\"}"),
            );
        }
        match reqwest::Url::parse(&cfg.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                ok = false;
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("{path}.base_url"),
                        format!("`{}` is not an http(s) URL", cfg.base_url),
                    )
                    .hint("e.g. http://127.0.0.1:7180/api/v1"),
                );
            }
        }
        let auth = match cfg.auth {
            None => None,
            Some(a) => match (a.header, a.value, a.bearer) {
                (Some(h), Some(v), None) => Some((h, v)),
                (None, None, Some(token)) => Some((
                    "Authorization".to_string(),
                    crate::config::Secret::new(format!("Bearer {}", token.expose())),
                )),
                _ => {
                    ok = false;
                    self.diagnostics.push(
                        doc.diagnostic(file, &format!("{path}.auth"), "auth needs either `header` with `value`, or `bearer`")
                            .hint("auth: { header: X-Api-Key, value: ${ERP_API_KEY} }  or  auth: { bearer: ${ERP_TOKEN} }"),
                    );
                    None
                }
            },
        };
        ok.then(|| Backend {
            name: name.to_string(),
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            auth,
            headers: cfg.headers.into_iter().collect(),
            timeout: cfg.timeout.map_or(DEFAULT_BACKEND_TIMEOUT, |d| d.0),
            error_code: cfg.error_code,
            idempotency_header: cfg.idempotency_header,
            retry: cfg.retry.map(|r| {
                (
                    r.attempts.0 as u32,
                    r.backoff.map_or(Duration::from_millis(200), |d| d.0),
                )
            }),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn action(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        cfg: ActionConfig,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> Option<CompiledAction> {
        let before = self.diagnostics.len();
        let mut steps = Vec::new();
        let mut bound: Vec<String> = Vec::new();
        for (i, raw) in cfg.steps.iter().enumerate() {
            let spath = format!("{path}.steps[{i}]");
            // A broken step is reported once: its name stays bound, so the later steps and
            // the reply that use its result are not reported as reading an unknown name.
            let Some(step) = self.de::<StepConfig>(doc, file, &spath, raw) else {
                if let Some(name) = raw.get("name").and_then(Value::as_str) {
                    bound.push(name.to_string());
                }
                continue;
            };
            let name = step.name.clone();
            if let Some(c) = self.step(
                doc, file, scope, &spath, step, &bound, backends, templates, scripts,
            ) {
                steps.push(c);
            }
            bound.push(name);
        }
        let reply = self.reply(
            doc,
            file,
            scope,
            &format!("{path}.reply"),
            cfg.reply,
            &bound,
            templates,
        );
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledAction {
            steps,
            reply: reply?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        step: StepConfig,
        bound: &[String],
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> Option<CompiledStep> {
        let before = self.diagnostics.len();
        let reserved = ["context", "message", "flow", "response"];
        if reserved.contains(&step.name.as_str()) || GLOBAL_NAMES.contains(&step.name.as_str()) {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.name"),
                    format!("`{}` is a reserved name", step.name),
                )
                .hint("reserved: context, message, flow, response, now, uuid4, fail"),
            );
        } else if bound.contains(&step.name) {
            self.diagnostics.push(doc.diagnostic(
                file,
                &format!("{path}.name"),
                format!(
                    "another step of this action is already named `{}`",
                    step.name
                ),
            ));
        } else if !is_identifier(&step.name) {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.name"),
                    format!("`{}` is not a valid name", step.name),
                )
                .hint("use letters, digits and _ (templates refer to the result by this name)"),
            );
        }
        let known = known_names(bound, &self.scope_names);
        let when = step.when.as_ref().and_then(|expr| {
            let name = format!("{EXPR_PREFIX}{scope}:{path}.when");
            let source = format!("{{{{ true if ({expr}) else false }}}}");
            self.template(
                doc,
                file,
                &format!("{path}.when"),
                templates,
                &name,
                &source,
                &known,
            )
            .map(|_| name)
        });
        let kind = match (step.call, step.script) {
            (Some(call), None) => self
                .call(
                    doc,
                    file,
                    scope,
                    &format!("{path}.call"),
                    call,
                    &known,
                    backends,
                    templates,
                )
                .map(|c| StepKind::Call(Box::new(c))),
            (None, Some(script)) => {
                let origin = Origin {
                    doc,
                    file,
                    path: format!("{path}.script"),
                };
                self.script(&origin, &script, scripts)
                    .map(|_| StepKind::Script(script))
            }
            _ => {
                self.diagnostics.push(
                    doc.diagnostic(file, path, "a step needs exactly one of `call` or `script`")
                        .hint("call: { backend: erp, path: /packages }  or  script: soil/x.rhai"),
                );
                None
            }
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledStep {
            name: step.name,
            when,
            kind: kind?,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        call: CallConfig,
        known: &HashSet<String>,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
    ) -> Option<CompiledCall> {
        let before = self.diagnostics.len();
        if !backends.contains_key(&call.backend) {
            let names: Vec<String> = backends.keys().cloned().collect();
            let mut d = doc.diagnostic(
                file,
                &format!("{path}.backend"),
                format!("no backend named `{}`", call.backend),
            );
            d = match crate::config::closest(&call.backend, &names) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None if names.is_empty() => d.hint("declare it under `backends:`"),
                None => d.hint(format!("declared backends: {}", names.join(", "))),
            };
            self.diagnostics.push(d);
        }
        let method = call
            .method
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            self.diagnostics.push(doc.diagnostic(
                file,
                &format!("{path}.method"),
                format!("`{method}` is not one of GET, POST, PUT, PATCH, DELETE"),
            ));
        }
        if !call.path.starts_with('/') {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.path"),
                    "the path must start with `/`",
                )
                .hint("it is appended to the backend's base_url"),
            );
        }
        let path_t = self.text(
            doc,
            file,
            scope,
            &format!("{path}.path"),
            &call.path,
            known,
            templates,
        );
        let mut query = Vec::new();
        for (k, v) in &call.query {
            if let Some(t) = self.text(
                doc,
                file,
                scope,
                &format!("{path}.query.{k}"),
                v,
                known,
                templates,
            ) {
                query.push((k.clone(), t));
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &call.headers {
            if let Some(t) = self.text(
                doc,
                file,
                scope,
                &format!("{path}.headers.{k}"),
                v,
                known,
                templates,
            ) {
                headers.push((k.clone(), t));
            }
        }
        let body = match (call.body, call.body_template) {
            (Some(_), Some(_)) => {
                self.diagnostics.push(doc.diagnostic(
                    file,
                    &format!("{path}.body_template"),
                    "give either `body` or `body_template`, not both",
                ));
                None
            }
            (Some(inline), None) => self
                .value(
                    doc,
                    file,
                    scope,
                    &format!("{path}.body"),
                    &inline,
                    known,
                    templates,
                )
                .map(CallBody::Inline),
            (None, Some(t)) => {
                let origin = Origin {
                    doc,
                    file,
                    path: format!("{path}.body_template"),
                };
                self.template_file(&origin, &t, known, templates)
                    .map(|_| CallBody::Template(t))
            }
            (None, None) => None,
        };
        let mut errors = HashMap::new();
        let mut with_response = known.clone();
        with_response.insert("response".into());
        for (key, rule) in call.errors {
            let rpath = format!("{path}.errors.{key}");
            let is_status =
                key.len() == 3 && key.parse::<u16>().is_ok_and(|s| (400..600).contains(&s));
            let is_kind = matches!(
                key.as_str(),
                "timeout" | "unreachable" | "invalid_response" | "4xx" | "5xx"
            );
            // A missing or broken backend is reported already, and without it the keys
            // cannot be judged: give them the benefit of the doubt.
            let backend_codes = match backends.get(&call.backend) {
                Some(Some(b)) => b.error_code.is_some(),
                Some(None) | None => true,
            };
            if !is_status && !is_kind && !backend_codes {
                self.diagnostics.push(
                    doc.diagnostic(file, &rpath, format!("`{key}` is not a failure this table can match"))
                        .hint("use an HTTP status (404), a class (4xx, 5xx), timeout, unreachable, invalid_response, or the backend's own error code once the backend sets `error_code:`"),
                );
            }
            let Some(code) = ErrorCode::from_code(&rule.code) else {
                self.diagnostics.push(
                    doc.diagnostic(file, &format!("{rpath}.code"), format!("`{}` is not a Beckn error code", rule.code))
                        .hint("e.g. 30004 item not found, 30010 order not found, 40003 quote unavailable, 50001 cancellation not possible, 31001 internal error"),
                );
                continue;
            };
            let message = rule.message.as_ref().and_then(|m| {
                self.text(
                    doc,
                    file,
                    scope,
                    &format!("{rpath}.message"),
                    m,
                    &with_response,
                    templates,
                )
            });
            errors.insert(key, ErrorRule { code, message });
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledCall {
            backend: call.backend,
            method,
            path: path_t?,
            query,
            headers,
            body,
            errors,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        reply: ReplyConfig,
        bound: &[String],
        templates: &mut Templates,
    ) -> Option<Reply> {
        let known = known_names(bound, &self.scope_names);
        match (reply.template, reply.message) {
            (Some(t), None) => {
                let origin = Origin {
                    doc,
                    file,
                    path: format!("{path}.template"),
                };
                self.template_file(&origin, &t, &known, templates)
                    .map(|_| Reply::Template(t))
            }
            (None, Some(m)) => self
                .value(
                    doc,
                    file,
                    scope,
                    &format!("{path}.message"),
                    &m,
                    &known,
                    templates,
                )
                .map(Reply::Inline),
            _ => {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        path,
                        "a reply needs exactly one of `template` or `message`",
                    )
                    .hint("reply: { template: soil/on_search.j2 }"),
                );
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn text(
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
    fn value(
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
            for var in templates.free_variables(&name) {
                if !known.contains(&var) {
                    ok = false;
                    let at = name.rsplit_once(':').map_or(path, |(_, p)| p);
                    self.diagnostics.push(unknown_variable(
                        doc.diagnostic(file, at, String::new()),
                        &var,
                        known,
                    ));
                }
            }
        }
        ok
    }

    #[allow(clippy::too_many_arguments)]
    fn template(
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
        let mut ok = true;
        for var in templates.free_variables(name) {
            if !known.contains(&var) {
                ok = false;
                self.diagnostics.push(unknown_variable(
                    doc.diagnostic(file, path, String::new()),
                    &var,
                    known,
                ));
            }
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

    fn template_file(
        &mut self,
        origin: &Origin<'_>,
        rel: &str,
        known: &HashSet<String>,
        templates: &mut Templates,
    ) -> Option<()> {
        if templates.contains(rel) {
            return self.template_vars_ok(origin, rel, known, templates);
        }
        if let Some((d, referenced)) = self.broken_templates.get_mut(rel) {
            let d = d.clone().path(&origin.path).hint(format!(
                "used by {} at {}",
                origin.file.display(),
                origin.path
            ));
            *referenced = true;
            self.diagnostics.push(d);
            return None;
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
        self.template_vars_ok(origin, rel, known, templates)
    }

    fn template_vars_ok(
        &mut self,
        origin: &Origin<'_>,
        rel: &str,
        known: &HashSet<String>,
        templates: &Templates,
    ) -> Option<()> {
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
                self.diagnostics.push(unknown_variable(d, &var, known));
            }
        }
        ok.then_some(())
    }

    fn script(&mut self, origin: &Origin<'_>, rel: &str, scripts: &mut ScriptEngine) -> Option<()> {
        if scripts.contains(rel) {
            return Some(());
        }
        let full = self.mapping_path(origin, rel)?;
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
        Some(())
    }

    fn domain_rules(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
    ) -> Option<Arc<DomainRules>> {
        let (rel, explicit) = match &head.validation.domain_rules {
            Some(r) => (r.clone(), true),
            None => (format!("domains/{}.yaml", head.domain), false),
        };
        let full = self.layout.schemas.join(&rel);
        if !explicit && !full.exists() {
            return None;
        }
        let origin = Origin {
            doc,
            file,
            path: "validation.domain_rules".into(),
        };
        let (rdoc, parsed): (_, DomainRulesFile) =
            self.yaml_file(&origin, &full, "domain rules")?;
        if parsed.domain != head.domain {
            self.diagnostics.push(rdoc.diagnostic(
                &full,
                "domain",
                format!(
                    "these rules are for domain `{}` but flow {} serves `{}`",
                    parsed.domain,
                    file.display(),
                    head.domain
                ),
            ));
            return None;
        }
        match DomainRules::compile(parsed) {
            Ok(r) => Some(Arc::new(r)),
            Err(errors) => {
                for (path, message) in errors {
                    self.diagnostics.push(rdoc.diagnostic(
                        &full,
                        &path,
                        format!("invalid schema: {message}"),
                    ));
                }
                None
            }
        }
    }

    /// Compiles `events:`: the webhook, the expressions that place an event, and its steps and
    /// reply, whose templates may read `event`.
    #[allow(clippy::too_many_arguments)]
    fn events(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        raw: &Value,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> Option<CompiledEvents> {
        let cfg: EventsConfig = self.de(doc, file, "events", raw)?;
        let before = self.diagnostics.len();
        let callback = match cfg.callback.as_str() {
            "on_status" => Action::Status,
            "on_update" => Action::Update,
            other => {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        "events.callback",
                        format!("`{other}` cannot be sent unsolicited"),
                    )
                    .hint("use on_status or on_update"),
                );
                Action::Status
            }
        };
        if cfg.webhook.is_none() && cfg.poll.is_none() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "events",
                    "events need a way in: a `webhook:` the backend calls, a `poll:` of a backend endpoint, or both",
                )
                .hint("webhook: { path: /erp/events, secret: ${ERP_WEBHOOK_SECRET} }  or  poll: { backend: erp, path: /order-events, items: /events, cursor: /next }"),
            );
        }
        if let Some(webhook) = &cfg.webhook
            && !webhook.path.starts_with('/')
        {
            self.diagnostics.push(doc.diagnostic(
                file,
                "events.webhook.path",
                "the webhook path must start with `/`",
            ));
        }
        let poll = cfg
            .poll
            .map(|p| self.event_poll(doc, file, scope, p, backends, templates));
        self.scope_names = vec!["event".to_string()];
        let known = known_names(&[], &self.scope_names);
        let transaction_id = format!("{EXPR_PREFIX}{scope}:events.transaction_id");
        let txn_ok = self.template(
            doc,
            file,
            "events.transaction_id",
            templates,
            &transaction_id,
            &format!("{{{{ ({}) }}}}", cfg.transaction_id),
            &known,
        );
        let event_id = cfg.event_id.as_ref().and_then(|expr| {
            let name = format!("{EXPR_PREFIX}{scope}:events.event_id");
            let source = format!("{{{{ ({expr}) }}}}");
            self.template(
                doc,
                file,
                "events.event_id",
                templates,
                &name,
                &source,
                &known,
            )
            .map(|_| name)
        });
        let when = cfg.when.as_ref().and_then(|expr| {
            let name = format!("{EXPR_PREFIX}{scope}:events.when");
            let source = format!("{{{{ true if ({expr}) else false }}}}");
            self.template(doc, file, "events.when", templates, &name, &source, &known)
                .map(|_| name)
        });
        let action = self.action(
            doc,
            file,
            scope,
            "events",
            ActionConfig {
                steps: cfg.steps,
                reply: cfg.reply,
            },
            backends,
            templates,
            scripts,
        );
        self.scope_names.clear();
        txn_ok?;
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledEvents {
            webhook: cfg.webhook.map(|w| CompiledWebhook {
                path: w.path,
                secret: w.secret,
                signature_header: w
                    .signature_header
                    .unwrap_or_else(|| "X-Signature".into())
                    .to_ascii_lowercase(),
            }),
            poll: poll.flatten(),
            event_id,
            transaction_id,
            when,
            callback,
            action: action?,
        })
    }

    /// Compiles `events.poll`: the backend request (templates reading `cursor` and `flow`) and
    /// where the events and the next cursor are in the answer.
    fn event_poll(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        cfg: EventPoll,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
    ) -> Option<CompiledPoll> {
        const PATH: &str = "events.poll";
        const MIN_EVERY: Duration = Duration::from_millis(100);
        let before = self.diagnostics.len();
        if !backends.contains_key(&cfg.backend) {
            let names: Vec<String> = backends.keys().cloned().collect();
            let mut d = doc.diagnostic(
                file,
                &format!("{PATH}.backend"),
                format!("no backend named `{}`", cfg.backend),
            );
            d = match crate::config::closest(&cfg.backend, &names) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None if names.is_empty() => d.hint("declare it under `backends:`"),
                None => d.hint(format!("declared backends: {}", names.join(", "))),
            };
            self.diagnostics.push(d);
        }
        if !cfg.path.starts_with('/') {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{PATH}.path"),
                    "the path must start with `/`",
                )
                .hint("it is appended to the backend's base_url"),
            );
        }
        let every = cfg.every.map_or(DEFAULT_POLL_EVERY, |d| d.0);
        if every < MIN_EVERY {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{PATH}.every"),
                    format!("polling every {every:?} would flood the backend"),
                )
                .hint("poll at most every 100ms; a few seconds is usual"),
            );
        }
        if !cfg.items.is_empty() && !cfg.items.starts_with('/') {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{PATH}.items"),
                    format!("`{}` is not a JSON pointer", cfg.items),
                )
                .hint("e.g. /events for an answer like {\"events\": [...]}; \"\" when the answer is the list"),
            );
        }
        if let Some(c) = &cfg.cursor
            && !c.starts_with('/')
        {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{PATH}.cursor"),
                    format!("`{c}` is not a JSON pointer"),
                )
                .hint("e.g. /next for an answer like {\"events\": [...], \"next\": 42}"),
            );
        }
        // Poll templates see the cursor and the flow, not a request.
        let known: HashSet<String> = ["cursor", "flow"]
            .iter()
            .chain(GLOBAL_NAMES.iter())
            .chain(MINIJINJA_BUILTINS.iter())
            .map(|s| s.to_string())
            .collect();
        let mut compiled = Vec::new();
        let path = self.text(
            doc,
            file,
            scope,
            &format!("{PATH}.path"),
            &cfg.path,
            &known,
            templates,
        );
        if let Some(t) = &path {
            compiled.push((format!("{PATH}.path"), t.clone()));
        }
        let mut pairs = |section: &str, map: &BTreeMap<String, String>, me: &mut Self| {
            let mut out = Vec::new();
            for (k, v) in map {
                let at = format!("{PATH}.{section}.{k}");
                if let Some(t) = me.text(doc, file, scope, &at, v, &known, templates) {
                    compiled.push((at, t.clone()));
                    out.push((k.clone(), t));
                }
            }
            out
        };
        let query = pairs("query", &cfg.query, self);
        let headers = pairs("headers", &cfg.headers, self);
        if cfg.cursor.is_none() {
            for (at, t) in &compiled {
                let mut names = Vec::new();
                t.template_names(&mut names);
                if names
                    .iter()
                    .any(|n| templates.free_variables(n).iter().any(|v| v == "cursor"))
                {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            at,
                            "template reads `cursor`, but `poll:` says nowhere where the backend's answer gives it",
                        )
                        .hint("add `cursor: /next` (a JSON pointer to the next cursor in the answer)"),
                    );
                }
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledPoll {
            backend: cfg.backend,
            path: path?,
            query,
            headers,
            every,
            items: cfg.items,
            cursor: cfg.cursor,
        })
    }

    /// The flow's signing key and registry; both are needed unless verification is off.
    fn trust(&mut self, doc: &SpannedDoc, file: &Path, head: &FlowFile) -> Trust {
        let net = &head.network;
        let verify = net.verify_signatures.is_none_or(|f| f.0);
        let signing_key = match &net.signing_private_key {
            Some(secret) => match PrivateKey::from_base64(secret.expose()) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.diagnostics.push(
                        doc.diagnostic(file, "network.signing_private_key", e.to_string())
                            .hint("`beckn-adapter keys` prints a fresh key pair and its registry entry"),
                    );
                    None
                }
            },
            None if verify => {
                self.diagnostics.push(
                    doc.diagnostic(file, "network", "no `signing_private_key`: every callback must be signed")
                        .hint("generate one with `beckn-adapter keys` and set it from the environment, e.g. signing_private_key: ${LAB_SIGNING_KEY}"),
                );
                None
            }
            None => None,
        };
        if signing_key.is_some() && net.key_id.is_none() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "network",
                    "a signing key needs its `key_id` (the registry's unique key id)",
                )
                .hint("key_id: lab-key-1"),
            );
        }
        let registry = match &net.registry {
            None if verify => {
                self.diagnostics.push(
                    doc.diagnostic(file, "network", "no `registry`: signatures cannot be checked without one")
                        .hint("registry: { file: registry/local.yaml }  or  registry: { url: https://registry.example.org }"),
                );
                None
            }
            None => None,
            Some(cfg) => {
                let src = cfg.source.trim();
                if src.starts_with("http://") || src.starts_with("https://") {
                    if reqwest::Url::parse(src).is_err() {
                        self.diagnostics.push(doc.diagnostic(
                            file,
                            "network.registry.source",
                            format!("`{src}` is not a URL"),
                        ));
                    }
                    if cfg.serve.0 {
                        self.diagnostics.push(
                            doc.diagnostic(file, "network.registry.serve", "only a registry file can be served")
                                .hint("serve: true needs `source:` to be a file such as registry/local.yaml"),
                        );
                    }
                    Some(RegistrySource::Remote {
                        url: src.to_string(),
                        cache_ttl: cfg.cache_ttl.map_or(DEFAULT_REGISTRY_TTL, |d| d.0),
                        negative_cache_ttl: cfg
                            .negative_cache_ttl
                            .map_or(DEFAULT_REGISTRY_NEGATIVE_TTL, |d| d.0),
                        timeout: cfg.timeout.map_or(DEFAULT_REGISTRY_TIMEOUT, |d| d.0),
                        max_lookups_per_second: cfg
                            .max_lookups_per_second
                            .map_or(DEFAULT_REGISTRY_LOOKUPS_PER_SECOND, |c| c.0)
                            .clamp(1, u32::MAX as u64)
                            as u32,
                    })
                } else {
                    self.registry_file(doc, file, src)
                        .map(RegistrySource::Embedded)
                }
            }
        };
        if let (Some(RegistrySource::Embedded(reg)), Some(key), Some(key_id)) =
            (&registry, &signing_key, &net.key_id)
        {
            let own = reg.find(&LookupQuery::key(&net.subscriber_id, key_id));
            let public = key.public_key().to_base64();
            if !own.iter().any(|s| s.signing_public_key == public) {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        "network.signing_private_key",
                        format!(
                            "the registry has no entry for {}|{key_id} with this key's public key",
                            net.subscriber_id
                        ),
                    )
                    .hint(format!(
                        "add it to the registry file: signing_public_key: {public}"
                    )),
                );
            }
        }
        Trust {
            verify,
            signing_key,
            registry,
        }
    }

    /// Reads and deserialises a YAML file referenced from a flow (`origin`), with `${VAR}`
    /// interpolation and located diagnostics.
    fn yaml_file<T: serde::de::DeserializeOwned>(
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

    fn registry_file(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        rel: &str,
    ) -> Option<Arc<EmbeddedRegistry>> {
        let full = self.layout.root.join(rel);
        let origin = Origin {
            doc,
            file,
            path: "network.registry.source".into(),
        };
        let (rdoc, parsed): (_, RegistryFile) = self.yaml_file(&origin, &full, "registry")?;
        let mut ok = true;
        for (i, s) in parsed.subscribers.iter().enumerate() {
            if let Err(e) = PublicKey::from_base64(&s.signing_public_key) {
                ok = false;
                self.diagnostics.push(rdoc.diagnostic(
                    &full,
                    &format!("subscribers[{i}].signing_public_key"),
                    e.to_string(),
                ));
            }
        }
        ok.then(|| {
            Arc::new(EmbeddedRegistry {
                subscribers: parsed.subscribers,
            })
        })
    }

    /// Checks across flows: two flows may not answer on the same address and path.
    fn cross_checks(&mut self, flows: &[Arc<CompiledFlow>]) {
        let mut seen: HashMap<(SocketAddr, String), &Path> = HashMap::new();
        let mut names: HashMap<&str, &Path> = HashMap::new();
        // A buyer app's client API is a place too: no other endpoints may share its prefix.
        let client_apis = flows.iter().filter_map(|f| {
            f.bap
                .as_ref()
                .map(|b| (b.client_listen, b.client_base_path.clone(), f))
        });
        let places = flows
            .iter()
            .map(|f| (f.listen, f.base_path.clone(), f))
            .chain(client_apis);
        for (listen, base_path, f) in places {
            if let Some(other) = seen.insert((listen, base_path.clone()), &f.file) {
                self.diagnostics.push(
                    Diagnostic::new(
                        &f.file,
                        format!(
                            "{} already serves {}{}",
                            other.display(),
                            listen,
                            if base_path.is_empty() {
                                "/"
                            } else {
                                &base_path
                            }
                        ),
                    )
                    .hint("give one of them another `listen` address or a `base_path`"),
                );
            }
        }
        for f in flows {
            if let Some(other) = names.insert(&f.name, &f.file) {
                self.diagnostics.push(
                    Diagnostic::new(
                        &f.file,
                        format!("flow name `{}` is also used by {}", f.name, other.display()),
                    )
                    .hint("set a distinct `name:`"),
                );
            }
        }
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

/// The trust settings of one flow, as compiled.
struct Trust {
    verify: bool,
    signing_key: Option<PrivateKey>,
    registry: Option<RegistrySource>,
}

fn known_names(bound: &[String], extra: &[String]) -> HashSet<String> {
    ["context", "message", "flow"]
        .iter()
        .chain(GLOBAL_NAMES.iter())
        .chain(MINIJINJA_BUILTINS.iter())
        .map(|s| s.to_string())
        .chain(bound.iter().cloned())
        .chain(extra.iter().cloned())
        .collect()
}

fn unknown_variable(d: Diagnostic, var: &str, known: &HashSet<String>) -> Diagnostic {
    let mut options: Vec<String> = known
        .iter()
        .filter(|k| {
            !GLOBAL_NAMES.contains(&k.as_str()) && !MINIJINJA_BUILTINS.contains(&k.as_str())
        })
        .cloned()
        .collect();
    options.sort();
    let mut d = Diagnostic {
        message: format!("template reads `{var}`, which is not defined at this point"),
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

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn normalise_base_path(p: &str) -> String {
    let trimmed = p.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
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
