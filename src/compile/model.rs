//! What runs: flows compiled once per load, shared read-only by every request through one `Arc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::sinks::{FlowSinks, SinkConnections};
use crate::backend::Backend;
use crate::beckn::action::Action;
use crate::beckn::domain::DomainRules;
use crate::beckn::error::ErrorCode;
use crate::beckn::participant::Participant;
use crate::beckn::schema::CoreSchemas;
use crate::config::Secret;
use crate::config::model::{AnswerMode, Role};
use crate::mapping::{ScriptEngine, Templates, ValueTemplate};

/// Re-exported: flows name their registry source here.
pub use crate::beckn::registry::RegistrySource;

/// Everything loaded from one flows/mappings/schemas tree.
pub struct CompiledSet {
    pub flows: Vec<Arc<CompiledFlow>>,
    /// The order sinks' connections.
    pub sinks: SinkConnections,
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
    /// The role played and what it adds to the flow.
    pub spec: RoleSpec,
    pub listen: SocketAddr,
    /// Normalised: empty, or `/prefix` without a trailing slash.
    pub base_path: String,
    /// Who the flow is on the network: identity, key, trust settings.
    pub participant: Participant,
    /// Where the flow's orders are reported (`compile::sinks`).
    pub sinks: FlowSinks,
    /// Answer `POST /lookup` from the embedded registry on this flow's listener.
    pub serve_registry: bool,
    /// Gateways: timeout of one forward; buyer apps: of one request sent.
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

/// What a flow's role adds to it. A gateway adds nothing but its forward timeout, so a part
/// that belongs to another role cannot be carried by a flow that never runs it.
pub enum RoleSpec {
    /// `role: bpp`: its order events from the backend, if it has any.
    Provider { events: Option<CompiledEvents> },
    /// `role: bap`: the gateway and the client API.
    Buyer(CompiledBap),
    /// `role: gateway`.
    Gateway,
}

impl CompiledFlow {
    pub fn role(&self) -> Role {
        match self.spec {
            RoleSpec::Provider { .. } => Role::Bpp,
            RoleSpec::Buyer(_) => Role::Bap,
            RoleSpec::Gateway => Role::Gateway,
        }
    }

    /// A provider's order events.
    pub fn events(&self) -> Option<&CompiledEvents> {
        match &self.spec {
            RoleSpec::Provider { events } => events.as_ref(),
            _ => None,
        }
    }

    /// A buyer app's gateway and client API.
    pub fn bap(&self) -> Option<&CompiledBap> {
        match &self.spec {
            RoleSpec::Buyer(bap) => Some(bap),
            _ => None,
        }
    }
}

/// What a buyer app (`role: bap`) adds to a flow: where its searches go and the API its own
/// application calls.
pub struct CompiledBap {
    /// Where searches that name no BPP go; None: such searches are refused.
    pub gateway: Option<GatewayTarget>,
    /// Address of the client API (the flow's `listen` unless `client.listen` says otherwise).
    pub client_listen: SocketAddr,
    /// Normalised like `base_path`; never empty (default `/api`).
    pub client_base_path: String,
    /// Bearer token the app must present, if any.
    pub token: Option<Secret>,
    /// ttl of requests whose call sets none.
    pub ttl: Duration,
    /// Answer mode of calls that choose none.
    pub mode: AnswerMode,
    /// `context.location` of requests whose call sets none.
    pub location: Option<serde_json::Value>,
    pub webhook: Option<CompiledAppWebhook>,
    /// App-shaped requests and answers, by action.
    pub actions: HashMap<Action, ClientTemplates>,
}

/// The gateway a buyer app's searches go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayTarget {
    /// A base URL, used as given.
    Url(String),
    /// A subscriber id, whose URL the registry holds.
    Subscriber(String),
}

/// The app's webhook.
pub struct CompiledAppWebhook {
    pub url: String,
    pub secret: Secret,
    /// Lower case.
    pub signature_header: String,
}

/// Template names (under `mappings/`) of one action of the client API.
#[derive(Debug, Clone, Default)]
pub struct ClientTemplates {
    pub request: Option<String>,
    pub response: Option<String>,
}

/// Order events from the backend (pushed to a webhook, polled, or both), answered with
/// unsolicited callbacks.
pub struct CompiledEvents {
    pub webhook: Option<CompiledWebhook>,
    pub poll: Option<CompiledPoll>,
    pub poll_orders: Option<Box<CompiledPollOrders>>,
    /// Expression template giving the event's own id; None: a digest of its JSON.
    pub event_id: Option<String>,
    /// How a webhook or poll event finds its transaction; None when only `poll_orders`
    /// brings events (which know their transaction).
    pub placement: Option<Placement>,
    /// Expression template rendering `true` for events to act on.
    pub when: Option<String>,
    /// The action whose callback is sent (`Status` for `on_status`).
    pub callback: Action,
    pub action: CompiledAction,
}

/// The endpoint the backend posts events to.
pub struct CompiledWebhook {
    /// Under the flow's `base_path`.
    pub path: String,
    pub secret: crate::config::Secret,
    /// Lower case.
    pub signature_header: String,
}

/// The backend endpoint polled for events. Templates see `cursor` and `flow`.
pub struct CompiledPoll {
    pub backend: String,
    pub path: ValueTemplate,
    pub query: Vec<(String, ValueTemplate)>,
    pub headers: Vec<(String, ValueTemplate)>,
    pub every: Duration,
    /// JSON pointer to the list of events in the answer (empty: the whole answer).
    pub items: String,
    /// JSON pointer to the next cursor in the answer.
    pub cursor: Option<String>,
}

/// How a webhook or poll event names its transaction: an expression template giving the
/// Beckn transaction id, or the backend's order id (looked up among the flow's transactions).
pub enum Placement {
    TransactionId(String),
    ErpOrderId(String),
}

/// The backend asked for each open order's state (`events.poll_orders`). Templates see
/// `transaction`, `order_id` and `flow`.
pub struct CompiledPollOrders {
    pub backend: String,
    pub path: ValueTemplate,
    pub query: Vec<(String, ValueTemplate)>,
    pub headers: Vec<(String, ValueTemplate)>,
    pub every: Duration,
    /// At most this many status calls at once (1 to 64).
    pub concurrency: usize,
    /// JSON pointer to the order's state in the answer.
    pub state: String,
    /// States after which an order is no longer asked.
    pub final_states: Vec<String>,
}

pub struct CompiledAction {
    pub steps: Vec<CompiledStep>,
    pub reply: Reply,
    /// What the transaction remembers after the reply (`remember:`), by name.
    pub remember: Vec<(String, ValueTemplate)>,
    /// Whether a step, the reply or `remember:` reads `transaction` (found when compiled,
    /// through imported and included templates too): the store is asked for the
    /// transaction's memory only then, not before every action.
    pub reads_transaction: bool,
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
    /// `for_each:`: the call is made once per element of a list.
    pub for_each: Option<ForEach>,
}

/// A compiled `for_each:`.
pub struct ForEach {
    /// Renders the list.
    pub items: ValueTemplate,
    /// The name each element is bound to.
    pub as_name: String,
    pub concurrency: usize,
    pub max_items: usize,
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
    /// A form body's fields (`form:`), sent `application/x-www-form-urlencoded`.
    pub form: Option<Vec<(String, ValueTemplate)>>,
    /// A raw text body (`text_body:`) and its content type.
    pub text: Option<(ValueTemplate, String)>,
    /// `paginate:`: the call is repeated page by page.
    pub paginate: Option<Paginate>,
    /// Keyed by `404`, `4xx`, `timeout`...; looked up most specific first.
    pub errors: HashMap<String, ErrorRule>,
}

/// A compiled `paginate:`.
pub struct Paginate {
    pub paging: Paging,
    /// JSON pointer to each page's items.
    pub items: String,
    /// Size of a full page: a shorter one is the last (page and offset styles).
    pub size: Option<u64>,
    /// Makes a page the last when it renders true; sees `response` and `page`.
    pub stop: Option<ValueTemplate>,
    pub max_pages: u32,
}

/// How the next page is asked for.
pub enum Paging {
    /// `param` = start, start + 1, ...
    Page { param: String, start: u64 },
    /// `param` = start, start + size, ...
    Offset {
        param: String,
        start: u64,
        size: u64,
    },
    /// The next page's URL, at a pointer in the body or (None) in the `Link` header.
    NextLink { pointer: Option<String> },
    /// The value at `pointer` sent back as `param`.
    Cursor { param: String, pointer: String },
}

pub enum CallBody {
    Inline(ValueTemplate),
    Template(String),
}

pub struct ErrorRule {
    pub code: ErrorCode,
    pub message: Option<ValueTemplate>,
}
