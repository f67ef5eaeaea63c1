//! Order sinks a flow reports to, as compiled: today Flipkart Ultra. Connection files
//! (`flows/ultra.yaml`: a file with `ultra:` and no `role:`) and the `ultra:` block of a Beckn
//! flow that reports its orders through one.
//!
//! Connection files are compiled before flows, so a flow's reference is resolved (or reported
//! at its line) while the flow compiles. What is compiled here is data; calling Ultra and
//! minting tokens at send time belong to `ultra`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio::sync::Semaphore;

use super::{EXPR_PREFIX, Loader, Origin, known_names};
use crate::beckn::schema::JsonValidator;
use crate::config::model::{FlowFile, Role};
use crate::config::ultra::{FlowUltraConfig, TimestampUnit, UltraFile};
use crate::config::yaml::SpannedDoc;
use crate::config::{Diagnostic, Secret};
use crate::mapping::{ScriptEngine, Templates};

/// The OMS order schema, under the schemas directory.
pub const OMS_ORDER_SCHEMA: &str = "ultra/oms-order.json";
/// Names an OMS order template reads besides `context`, `message` and `flow`.
pub const ORDER_TEMPLATE_NAMES: [&str; 4] = ["action", "user", "unit", "prepared"];
/// Callbacks whose orders are reported when a flow names none.
pub const DEFAULT_ON: [&str; 4] = ["on_confirm", "on_status", "on_cancel", "on_update"];

/// The shortest secureToken lifetime allowed: a token is issued a little in the past and must
/// stay usable for a call or two.
pub const MIN_LIFETIME_SECS: u64 = 30;
/// The longest `exp - iat` Ultra accepts.
pub const MAX_LIFETIME_SECS: u64 = 1000;
/// Default `exp - iat`: short, since one version of the docs allows only 100 s.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(90);

/// What the loader keeps while it compiles sinks: the connections so far, the OMS order schema
/// compiled once.
#[derive(Default)]
pub struct SinkLoading {
    pub(super) connections: SinkConnections,
    pub(super) oms_schema: Option<Arc<JsonValidator>>,
}

/// The order sinks' connections loaded with a set, by sink.
#[derive(Default)]
pub struct SinkConnections {
    /// Flipkart Ultra connections, by name.
    pub ultra: Vec<Arc<UltraConnection>>,
}

impl SinkConnections {
    pub fn ultra(&self, name: &str) -> Option<&Arc<UltraConnection>> {
        self.ultra.iter().find(|c| c.name == name)
    }
}

/// The order sinks a flow reports its orders to, by sink.
#[derive(Default)]
pub struct FlowSinks {
    /// Orders reported to Flipkart Ultra's OMS.
    pub ultra: Option<FlowUltra>,
}

impl FlowSinks {
    /// Whether the flow reports its orders anywhere.
    pub fn any(&self) -> bool {
        self.ultra.is_some()
    }
}

/// A compiled Ultra connection (`flows/ultra.yaml`).
pub struct UltraConnection {
    pub name: String,
    pub file: PathBuf,
    /// Without a trailing slash.
    pub api_url: String,
    pub oms_url: String,
    pub client_id: String,
    pub merchant_id: String,
    pub client_secret: Secret,
    pub tokens: SecureTokenKey,
    pub unit: TimestampUnit,
    /// Calls in flight at once.
    pub limiter: Arc<Semaphore>,
    pub timeout: Duration,
    /// How long an OMS update is retried.
    pub retry_for: Duration,
    /// `schemas/ultra/oms-order.json`.
    pub order_schema: Arc<JsonValidator>,
}

impl UltraConnection {
    /// `POST /3/oms`.
    pub fn oms_endpoint(&self) -> String {
        format!("{}/3/oms", self.oms_url)
    }
}

/// What a Beckn flow's `ultra:` block compiles to.
pub struct FlowUltra {
    pub connection: Arc<UltraConnection>,
    /// Template name under `mappings/`.
    pub order_template: String,
    pub script: Option<String>,
    /// Callback names (`on_confirm`...) whose orders are reported.
    pub on: Vec<String>,
    /// Expression template giving the user's identity token from a message (providers).
    pub identity_token: Option<String>,
    pub hold_fulfilled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the Ultra private key is not an RSA key in PEM (PKCS#1 or PKCS#8): {0}")]
    BadKey(String),
    #[error("the secureToken cannot be signed: {0}")]
    Sign(String),
}

/// The claims of a secureToken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

/// The RS256 key a connection's secureTokens are signed with, checked when flows load, and the
/// token in use (`ultra::token` decides when to mint a new one).
pub struct SecureTokenKey {
    client_id: String,
    key: EncodingKey,
    lifetime_secs: i64,
    /// The token in use and its `exp` (Unix seconds), shared by the connection's calls.
    pub current: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for SecureTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureTokenKey")
            .field("client_id", &self.client_id)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl SecureTokenKey {
    /// `pem` is the private key; `lifetime` is capped by the caller's validation at 1000 s.
    pub fn new(client_id: &str, pem: &[u8], lifetime: Duration) -> Result<Self, TokenError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| TokenError::BadKey(e.to_string()))?;
        let tokens = SecureTokenKey {
            client_id: client_id.to_string(),
            key,
            lifetime_secs: lifetime.as_secs().clamp(1, MAX_LIFETIME_SECS) as i64,
            current: Mutex::new(None),
        };
        // Sign once now, so a key that parses but cannot sign is reported when flows load
        // (a check of the key: any time does, the system's is at hand).
        tokens.sign(jiff::Timestamp::now().as_second())?;
        Ok(tokens)
    }

    /// `exp - iat` of the tokens signed.
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_secs
    }

    /// A token issued at `iat` (Unix seconds), and its `exp`.
    pub fn sign(&self, iat: i64) -> Result<(String, i64), TokenError> {
        let claims = Claims {
            iss: self.client_id.clone(),
            iat,
            exp: iat + self.lifetime_secs,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, claims.exp))
    }
}

/// Whether a parsed file under `flows/` declares an Ultra connection rather than a flow.
pub fn is_connection_file(doc: &SpannedDoc) -> bool {
    doc.value.get("ultra").is_some() && doc.value.get("role").is_none()
}

impl Loader<'_> {
    pub(super) fn sink_connection(&mut self, doc: &SpannedDoc, file: &Path) {
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
        let tokens = pem.and_then(|pem| {
            match SecureTokenKey::new(&cfg.client_id, pem.as_bytes(), lifetime) {
                Ok(m) => Some(m),
                Err(e) => {
                    self.diagnostics
                        .push(doc.diagnostic(file, "ultra.private_key", e.to_string()));
                    None
                }
            }
        });
        let order_schema = self.oms_schema();
        if self.diagnostics.len() > before {
            return;
        }
        let (Some(tokens), Some(order_schema)) = (tokens, order_schema) else {
            return;
        };
        if let Some(other) = self.sinks.connections.ultra.iter().find(|c| c.name == name) {
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
        self.sinks.connections.ultra.push(Arc::new(UltraConnection {
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
            timeout: cfg.timeout.map_or(Duration::from_secs(5), |d| d.0),
            retry_for: cfg
                .retry_for
                .map_or(Duration::from_secs(2 * 86_400), |d| d.0),
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
        if let Some(s) = &self.sinks.oms_schema {
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
                self.sinks.oms_schema = Some(v.clone());
                Some(v)
            }
            Err(d) => {
                self.diagnostics.push(d);
                None
            }
        }
    }

    /// The sinks a flow's head names (its `ultra:` block), compiled.
    pub(super) fn flow_sinks(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: Option<&FlowFile>,
        scope: &str,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> FlowSinks {
        let ultra = match head.and_then(|h| h.ultra.as_ref()) {
            Some(_) => {
                let cfg: Option<FlowUltraConfig> = doc
                    .value
                    .get("ultra")
                    .and_then(|raw| self.de(doc, file, "ultra", raw));
                let is_provider = head.is_some_and(|h| h.role == Role::Bpp);
                cfg.and_then(|cfg| {
                    self.flow_ultra(doc, file, scope, cfg, is_provider, templates, scripts)
                })
            }
            None => None,
        };
        FlowSinks { ultra }
    }

    /// A gateway forwards searches and places no orders: naming a sink is a mistake.
    pub(super) fn gateway_reports_no_orders(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
    ) {
        if head.role == Role::Gateway && head.ultra.is_some() {
            self.diagnostics.push(doc.diagnostic(
                file,
                "ultra",
                "a gateway has no orders to report to Ultra",
            ));
        }
    }

    /// A flow's `ultra:` block: its connection, mapping and options.
    #[allow(clippy::too_many_arguments)]
    fn flow_ultra(
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
            .sinks
            .connections
            .ultra
            .iter()
            .find(|c| c.name == cfg.connection)
            .cloned();
        if connection.is_none() {
            let names: Vec<String> = self
                .sinks
                .connections
                .ultra
                .iter()
                .map(|c| c.name.clone())
                .collect();
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
            let vars = ["context", "message", "flow", "action", "user", "unit"];
            self.script(&origin, script, &vars.map(String::from).into(), scripts);
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
