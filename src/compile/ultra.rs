//! Compiling Flipkart Ultra: connection files (`flows/ultra.yaml`: a file with `ultra:` and no
//! `role:`) and the `ultra:` block of a Beckn flow that reports its orders through one.
//!
//! Connection files are compiled before flows, so a flow's reference is resolved (or reported
//! at its line) while the flow compiles.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{EXPR_PREFIX, Loader, Origin, known_names};
use crate::beckn::schema::JsonValidator;
use crate::config::Diagnostic;
use crate::config::ultra::{FlowUltraConfig, TimestampUnit, UltraFile};
use crate::config::yaml::SpannedDoc;
use crate::mapping::{ScriptEngine, Templates};
use crate::ultra::token::{DEFAULT_LIFETIME, MAX_LIFETIME_SECS, MIN_LIFETIME_SECS, TokenMinter};
use crate::ultra::{DEFAULT_ON, FlowUltra, UltraConnection};

/// The OMS order schema, under the schemas directory.
pub const OMS_ORDER_SCHEMA: &str = "ultra/oms-order.json";
/// Names an OMS order template reads besides `context`, `message` and `flow`.
pub const ORDER_TEMPLATE_NAMES: [&str; 4] = ["action", "user", "unit", "prepared"];

/// Whether a parsed file under `flows/` declares an Ultra connection rather than a flow.
pub fn is_connection_file(doc: &SpannedDoc) -> bool {
    doc.value.get("ultra").is_some() && doc.value.get("role").is_none()
}

impl Loader<'_> {
    pub(super) fn ultra_connection(&mut self, doc: &SpannedDoc, file: &Path) {
        let Some(head): Option<UltraFile> = self.de(doc, file, "", &doc.value) else {
            return;
        };
        let before = self.diagnostics.len();
        let cfg = head.ultra;
        let name = head.name.unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let url = |this: &mut Self, field: &str, value: &str| -> String {
            match reqwest::Url::parse(value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => this.diagnostics.push(
                    doc.diagnostic(file, field, format!("`{value}` is not an http(s) URL"))
                        .hint("e.g. https://platform.flipkart.net"),
                ),
            }
            value.trim_end_matches('/').to_string()
        };
        let api_url = url(self, "ultra.api_url", &cfg.api_url);
        let oms_url = match &cfg.oms_url {
            Some(u) => url(self, "ultra.oms_url", u),
            None => api_url.clone(),
        };
        if cfg.client_id.trim().is_empty() {
            self.diagnostics.push(doc.diagnostic(
                file,
                "ultra.client_id",
                "the client id is empty",
            ));
        }
        let merchant_id = cfg.merchant_id.clone().unwrap_or_else(|| {
            cfg.client_id
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string()
        });
        let lifetime = cfg.token_lifetime.map_or(DEFAULT_LIFETIME, |d| d.0);
        if lifetime.as_secs() > MAX_LIFETIME_SECS || lifetime.as_secs() < MIN_LIFETIME_SECS {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "ultra.token_lifetime",
                    format!(
                        "a secureToken may live from {MIN_LIFETIME_SECS}s to {MAX_LIFETIME_SECS}s, not {}s",
                        lifetime.as_secs()
                    ),
                )
                .hint("keep it short (the default 90s): Flipkart's docs also say 100s at most"),
            );
        }
        let pem = self.private_key(doc, file, &cfg.private_key);
        let tokens =
            pem.and_then(
                |pem| match TokenMinter::new(&cfg.client_id, pem.as_bytes(), lifetime) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        self.diagnostics.push(doc.diagnostic(
                            file,
                            "ultra.private_key",
                            e.to_string(),
                        ));
                        None
                    }
                },
            );
        let order_schema = self.oms_schema();
        if self.diagnostics.len() > before {
            return;
        }
        let (Some(tokens), Some(order_schema)) = (tokens, order_schema) else {
            return;
        };
        if let Some(other) = self.connections.iter().find(|c| c.name == name) {
            self.diagnostics.push(
                Diagnostic::new(
                    file,
                    format!(
                        "Ultra connection `{name}` is also declared by {}",
                        other.file.display()
                    ),
                )
                .hint("set a distinct `name:`"),
            );
            return;
        }
        self.connections.push(Arc::new(UltraConnection {
            name,
            file: file.to_path_buf(),
            api_url,
            oms_url,
            client_id: cfg.client_id,
            merchant_id,
            client_secret: cfg.client_secret,
            tokens,
            unit: cfg.timestamp_unit.unwrap_or(TimestampUnit::Seconds),
            limiter: Arc::new(Semaphore::new(
                cfg.max_in_flight.map_or(4, |c| c.0).clamp(1, 1024) as usize,
            )),
            timeout: cfg
                .timeout
                .map_or(std::time::Duration::from_secs(5), |d| d.0),
            retry_for: cfg
                .retry_for
                .map_or(std::time::Duration::from_secs(2 * 86_400), |d| d.0),
            order_schema,
        }));
    }

    fn private_key(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        source: &crate::config::ultra::PrivateKeySource,
    ) -> Option<String> {
        match (&source.file, &source.pem) {
            (Some(rel), None) => {
                let full = self.layout.root.join(rel);
                match self.read(&full) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        self.diagnostics.push(
                            doc.diagnostic(
                                file,
                                "ultra.private_key.file",
                                format!("cannot read the private key `{}`: {e}", full.display()),
                            )
                            .hint("the path is relative to the project root"),
                        );
                        None
                    }
                }
            }
            (None, Some(pem)) => Some(pem.expose().to_string()),
            _ => {
                self.diagnostics.push(doc.diagnostic(
                    file,
                    "ultra.private_key",
                    "give exactly one of `file` and `pem`",
                ));
                None
            }
        }
    }

    fn oms_schema(&mut self) -> Option<Arc<JsonValidator>> {
        if let Some(s) = &self.oms_schema {
            return Some(s.clone());
        }
        let path = self.layout.schemas.join(OMS_ORDER_SCHEMA);
        let text = match self.read(&path) {
            Ok(t) => t,
            Err(e) => {
                self.diagnostics.push(Diagnostic::new(
                    &path,
                    format!("cannot read the Ultra OMS order schema: {e}"),
                ));
                return None;
            }
        };
        let parsed = serde_json::from_str(&text).map_err(|e| {
            Diagnostic::new(&path, format!("invalid JSON: {e}"))
                .at(e.line() as u32, e.column() as u32)
        });
        let compiled =
            parsed.and_then(|v| JsonValidator::compile(&v).map_err(|e| Diagnostic::new(&path, e)));
        match compiled {
            Ok(v) => {
                let v = Arc::new(v);
                self.oms_schema = Some(v.clone());
                Some(v)
            }
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// A flow's `ultra:` block: its connection, mapping and options.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn flow_ultra(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        cfg: FlowUltraConfig,
        is_provider: bool,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> Option<FlowUltra> {
        let before = self.diagnostics.len();
        let connection = self
            .connections
            .iter()
            .find(|c| c.name == cfg.connection)
            .cloned();
        if connection.is_none() {
            let names: Vec<String> = self.connections.iter().map(|c| c.name.clone()).collect();
            let d = doc.diagnostic(
                file,
                "ultra.connection",
                format!("no Ultra connection `{}`", cfg.connection),
            );
            self.diagnostics
                .push(match crate::config::closest(&cfg.connection, &names) {
                    Some(best) => d.hint(format!("did you mean `{best}`?")),
                    None => d.hint(
                        "declare one in a file under flows/ with `ultra:` (see flows/ultra.yaml)",
                    ),
                });
        }
        let on: Vec<String> = cfg
            .on
            .unwrap_or_else(|| DEFAULT_ON.iter().map(|s| s.to_string()).collect());
        for (i, c) in on.iter().enumerate() {
            let ok = c
                .strip_prefix("on_")
                .and_then(|a| a.parse::<crate::beckn::action::Action>().ok())
                .is_some();
            if !ok {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("ultra.on[{i}]"),
                        format!("`{c}` is not a Beckn callback"),
                    )
                    .hint("e.g. on_confirm, on_status, on_cancel, on_update"),
                );
            }
        }
        let extra: Vec<String> = ORDER_TEMPLATE_NAMES.iter().map(|s| s.to_string()).collect();
        let known = known_names(&[], &extra);
        if let Some(script) = &cfg.script {
            let origin = Origin {
                doc,
                file,
                path: "ultra.script".into(),
            };
            self.script(&origin, script, scripts);
        }
        let origin = Origin {
            doc,
            file,
            path: "ultra.order_template".into(),
        };
        self.template_file(&origin, &cfg.order_template, &known, templates);
        let identity_token = match (&cfg.identity_token, is_provider) {
            (Some(expr), _) => {
                let name = format!("{EXPR_PREFIX}{scope}:ultra.identity_token");
                let known = known_names(&[], &["action".to_string()]);
                self.template(
                    doc,
                    file,
                    "ultra.identity_token",
                    templates,
                    &name,
                    &format!("{{{{ ({expr}) }}}}"),
                    &known,
                )
                .map(|_| name)
            }
            (None, true) => {
                self.diagnostics.push(
                    doc.diagnostic(file, "ultra", "a provider needs `ultra.identity_token`")
                        .hint("an expression finding the user's Ultra identity token in the order message, e.g. a tag the buyer app sends"),
                );
                None
            }
            (None, false) => None,
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(FlowUltra {
            connection: connection?,
            order_template: cfg.order_template,
            script: cfg.script,
            on,
            identity_token,
            hold_fulfilled: cfg.hold_fulfilled.0,
        })
    }
}
