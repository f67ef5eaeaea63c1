//! One flow file compiled into a [`CompiledFlow`]: its head (role, listener, limits), its
//! parts (compiled by the sibling files) and the checks across flows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{CompiledFlow, Loader, Origin, RoleSpec};
use crate::beckn::action::Action;
use crate::beckn::domain::{DomainRules, DomainRulesFile};
use crate::config::Diagnostic;
use crate::config::model::{ActionConfig, FlowFile, Role};
use crate::config::yaml::SpannedDoc;
use crate::mapping::{ScriptEngine, Templates};

const DEFAULT_FUEL: u64 = 200_000;
const DEFAULT_SCRIPT_OPS: u64 = 200_000;
const DEFAULT_MAX_BODY: u64 = 1 << 20;
const DEFAULT_MAX_IN_FLIGHT: u64 = 4096;
const DEFAULT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl Loader<'_> {
    pub(super) fn flow(&mut self, file: &Path, doc: SpannedDoc) -> Option<CompiledFlow> {
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
        let sinks = self.flow_sinks(
            &doc,
            file,
            head.as_ref(),
            &scope,
            &mut templates,
            &mut scripts,
        );
        self.report_unreferenced_templates();
        let head = head?;
        self.gateway_reports_no_orders(&doc, file, &head);
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
                if events.is_some() {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            "events",
                            "a gateway has no orders: its `events:` would never run",
                        )
                        .hint("remove them, or make this flow `role: bpp`"),
                    );
                }
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
        let participant = self.participant(&doc, file, &head);
        if self.diagnostics.len() > before {
            return None;
        }
        let backends = backends
            .into_iter()
            .filter_map(|(k, v)| v.map(|b| (k, b)))
            .collect();
        let spec = match head.role {
            Role::Bpp => RoleSpec::Provider { events },
            Role::Bap => RoleSpec::Buyer(bap?),
            Role::Gateway => RoleSpec::Gateway,
        };
        Some(CompiledFlow {
            name,
            file: file.to_path_buf(),
            spec,
            listen: listen?,
            base_path: normalise_base_path(head.base_path.as_deref().unwrap_or("")),
            participant,
            sinks,
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

    pub(super) fn domain_rules(
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

    /// Checks across flows: two flows may not answer on the same address and path.
    pub(super) fn cross_checks(&mut self, flows: &[Arc<CompiledFlow>]) {
        let mut seen: HashMap<(SocketAddr, String), &Path> = HashMap::new();
        let mut names: HashMap<&str, &Path> = HashMap::new();
        // A buyer app's client API is a place too: no other endpoints may share its prefix.
        let client_apis = flows.iter().filter_map(|f| {
            f.bap()
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

pub(super) fn normalise_base_path(p: &str) -> String {
    let trimmed = p.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}
