//! What runs: flows compiled once per load, shared read-only by every request through one `Arc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::beckn::action::Action;
use crate::beckn::domain::DomainRules;
use crate::beckn::error::ErrorCode;
use crate::beckn::registry::EmbeddedRegistry;
use crate::beckn::schema::CoreSchemas;
use crate::beckn::signing::PrivateKey;
use crate::config::model::Role;
use crate::mapping::{ScriptEngine, Templates, ValueTemplate};

/// Everything loaded from one flows/mappings/schemas tree.
pub struct CompiledSet {
    pub flows: Vec<Arc<CompiledFlow>>,
    pub core: Arc<CoreSchemas>,
    /// Hash of every source file's path and content: identifies the set in status and logs.
    pub hash: String,
    pub sources: Vec<PathBuf>,
    pub loaded_at: jiff::Timestamp,
}

impl CompiledSet {
    pub fn flow(&self, name: &str) -> Option<&Arc<CompiledFlow>> {
        self.flows.iter().find(|f| f.name == name)
    }
}

/// One participant: its identity, limits, backends and compiled actions.
pub struct CompiledFlow {
    pub name: String,
    pub file: PathBuf,
    pub role: Role,
    pub listen: SocketAddr,
    /// Normalised: empty, or `/prefix` without a trailing slash.
    pub base_path: String,
    pub subscriber_id: String,
    pub subscriber_uri: String,
    pub key_id: Option<String>,
    pub signing_key: Option<PrivateKey>,
    pub verify_signatures: bool,
    pub signature_skew: i64,
    pub signature_validity: i64,
    pub registry: Option<RegistrySource>,
    pub events: Option<CompiledEvents>,
    /// Answer `POST /lookup` from the embedded registry on this flow's listener.
    pub serve_registry: bool,
    /// Gateways: timeout of one forward.
    pub forward_timeout: Duration,
    pub domain: String,
    pub domain_rules: Option<Arc<DomainRules>>,
    pub allow_loopback_uris: bool,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    pub callback_timeout: Duration,
    /// Retry callbacks this long (None: until the request's `timestamp + ttl`).
    pub callback_deadline: Option<Duration>,
    pub backends: HashMap<String, Backend>,
    pub actions: HashMap<Action, CompiledAction>,
    pub templates: Templates,
    pub scripts: ScriptEngine,
}

/// Where a flow looks subscribers up.
#[derive(Clone)]
pub enum RegistrySource {
    Embedded(Arc<EmbeddedRegistry>),
    Remote {
        url: String,
        cache_ttl: Duration,
        timeout: Duration,
    },
}

/// Order events the backend pushes, answered with unsolicited callbacks.
pub struct CompiledEvents {
    /// Under the flow's `base_path`.
    pub path: String,
    pub secret: crate::config::Secret,
    /// Lower case.
    pub signature_header: String,
    /// Expression template giving the event's transaction id.
    pub transaction_id: String,
    /// Expression template rendering `true` for events to act on.
    pub when: Option<String>,
    /// The action whose callback is sent (`Status` for `on_status`).
    pub callback: Action,
    pub action: CompiledAction,
}

pub struct CompiledAction {
    pub steps: Vec<CompiledStep>,
    pub reply: Reply,
}

/// How the callback's `message` is built.
pub enum Reply {
    /// A template file under `mappings/` rendering the whole `message` as JSON.
    Template(String),
    Inline(ValueTemplate),
}

pub struct CompiledStep {
    pub name: String,
    /// Name of an expression template rendering `true` or `false`.
    pub when: Option<String>,
    pub kind: StepKind,
}

pub enum StepKind {
    Call(Box<CompiledCall>),
    /// Name of the script (its path under `mappings/`).
    Script(String),
}

pub struct CompiledCall {
    pub backend: String,
    pub method: String,
    pub path: ValueTemplate,
    pub query: Vec<(String, ValueTemplate)>,
    pub headers: Vec<(String, ValueTemplate)>,
    pub body: Option<CallBody>,
    /// Keyed by `404`, `4xx`, `timeout`...; looked up most specific first.
    pub errors: HashMap<String, ErrorRule>,
}

pub enum CallBody {
    Inline(ValueTemplate),
    Template(String),
}

pub struct ErrorRule {
    pub code: ErrorCode,
    pub message: Option<ValueTemplate>,
}
