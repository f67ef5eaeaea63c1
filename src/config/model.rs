//! The flow file, as written by an integrator. Unknown keys are errors everywhere.
//!
//! These types say what may be written; `compile` turns them into what runs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

pub use super::keys::{KeyFrom, KeySource, NextKey};
pub use super::repeat::{ForEachConfig, PageStyle, PaginateConfig};
use super::secret::Secret;
pub use super::subscription::{OndcEntity, OndcGst, OndcPan, RegistryDialect, Subscription};
use super::values::{Count, Flag, HumanDuration};

/// One flow file: a Beckn participant (a role at an address) and what it does per action.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// Defaults to the file name without extension.
    #[serde(default)]
    pub name: Option<String>,
    /// `bpp` (a provider), `bap` (a buyer app) or `gateway`.
    pub role: Role,
    /// Address the participant's Beckn endpoints listen on (`127.0.0.1:7101`).
    pub listen: String,
    /// Path prefix of the Beckn endpoints, so several flows can share one listener.
    #[serde(default)]
    pub base_path: Option<String>,
    pub network: Network,
    /// Beckn domain code this participant serves (`agri.soil`).
    pub domain: String,
    #[serde(default)]
    pub validation: Validation,
    #[serde(default)]
    pub limits: Limits,
    /// Settings of the gateway role; for a buyer app (`role: bap`), the gateway its searches
    /// go to.
    #[serde(default)]
    pub gateway: Option<GatewayConfig>,
    /// The buyer app's own API (`role: bap` only): where the app calls the adapter and how the
    /// answers reach it.
    #[serde(default)]
    pub client: Option<ClientConfig>,
    /// Backends (ERPs) the steps call, by name.
    // Kept raw and read item by item (see `compile`), so that every broken backend is
    // reported, not only the first; the schema shows the real structure.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, BackendConfig>")]
    pub backends: BTreeMap<String, Value>,
    /// What each Beckn action does, by action name.
    // Kept raw and read item by item, like `backends`.
    #[serde(default)]
    #[schemars(with = "ActionsByName")]
    pub actions: BTreeMap<String, Value>,
    /// Order events the backend pushes (status changes), answered with unsolicited callbacks.
    // Kept raw and read on its own, like `actions`.
    #[serde(default)]
    #[schemars(with = "Option<EventsConfig>")]
    pub events: Option<Value>,
    /// Report this flow's orders to Flipkart Ultra's OMS, through an Ultra connection file.
    #[serde(default)]
    pub ultra: Option<super::ultra::FlowUltraConfig>,
}

/// Order events from the backend, each mapped into an unsolicited `on_status` or `on_update`
/// for the transaction it belongs to. They arrive through a `webhook` the backend calls, by a
/// `poll` of a backend endpoint, by asking the backend the state of each open order
/// (`poll_orders`), or several of these (with `webhook` and `poll` both, give `event_id`, so
/// that a change seen both ways is acted on once).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The backend posts its events to this endpoint of the flow.
    #[serde(default)]
    pub webhook: Option<EventWebhook>,
    /// The adapter asks a backend endpoint for the events since the last ones it saw.
    #[serde(default)]
    pub poll: Option<EventPoll>,
    /// The adapter asks the backend the state of each open order, one call per order; a
    /// changed state is an event (`event` is the backend's answer).
    #[serde(default)]
    pub poll_orders: Option<EventPollOrders>,
    /// Expression giving an event's own id (`event.event_id`): the same id is acted on once.
    /// Default: a digest of the event's JSON, so only identical repeats are recognised.
    /// (`poll_orders` events are known by their order and state change.)
    #[serde(default)]
    pub event_id: Option<String>,
    /// Expression giving the Beckn transaction id of a webhook or poll event
    /// (`event.client_ref`). Give this or `erp_order_id`.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Expression giving the backend's order id of a webhook or poll event (`event.order_no`):
    /// the event belongs to the transaction whose order has that id. Give this or
    /// `transaction_id`.
    #[serde(default)]
    pub erp_order_id: Option<String>,
    /// Expression; webhook and poll events for which it is false are acknowledged and
    /// ignored.
    #[serde(default)]
    pub when: Option<String>,
    /// `on_status` or `on_update`.
    pub callback: String,
    /// Steps as in an action; templates see `event`, `context` (of the transaction's last
    /// request), `flow` and earlier steps.
    #[serde(default)]
    #[schemars(with = "Vec<StepConfig>")]
    pub steps: Vec<Value>,
    pub reply: ReplyConfig,
    /// Values kept under the transaction once the reply is built, by name (letters, digits,
    /// `_`): value templates seeing what the reply sees, and the reply's `message` as
    /// `reply`. Later actions and backend events of the transaction read them as
    /// `transaction.<name>`.
    #[serde(default)]
    pub remember: BTreeMap<String, Value>,
}

/// Where the backend posts its events, and how they are authenticated.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventWebhook {
    /// Path on the flow's listener (under its `base_path`).
    pub path: String,
    /// Shared secret of the HMAC-SHA256 signature over the body.
    pub secret: Secret,
    /// Header carrying `sha256=<hex>` (default `X-Signature`).
    #[serde(default)]
    pub signature_header: Option<String>,
}

/// A backend endpoint listing order events after a cursor, asked every `every`. The cursor
/// of the next page is kept in the store, and moves only once a page's events are recorded.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventPoll {
    /// A name under `backends:`: its base URL, auth, headers and timeout apply.
    pub backend: String,
    /// Path under the backend's base URL (a GET); may contain `{{ }}` templates reading
    /// `cursor` and `flow`.
    pub path: String,
    /// Query parameters; values are templates (`{{ cursor }}`), and one rendering none or ""
    /// is left out (as `after` is on the very first poll, before any cursor is known).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers of the poll (values are templates), besides the backend's own.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Pause between polls once the backend has nothing new (default 5s). After failures the
    /// pause doubles, up to 32 times this or 5 minutes, whichever is shorter.
    #[serde(default)]
    pub every: Option<HumanDuration>,
    /// JSON pointer to the list of events in the answer (`/events`; empty: the answer is the
    /// list).
    pub items: String,
    /// JSON pointer to the cursor of the next poll in the answer (`/next`). Without it every
    /// poll asks the same, and repeats are dropped by their `event_id`.
    #[serde(default)]
    pub cursor: Option<String>,
}

/// The backend asked for the state of each open order of the flow (confirmed, its order id
/// known, not yet in a final state, not cancelled through Beckn), for backends that announce
/// no changes. The first state seen is the order's baseline; each later change is one event.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventPollOrders {
    /// A name under `backends:`: its base URL, auth, headers and timeout apply.
    pub backend: String,
    /// Path under the backend's base URL (a GET, one per open order); templates read
    /// `transaction` (its memory, with `erp_order_id`), `order_id` (the backend's order id)
    /// and `flow`.
    pub path: String,
    /// Query parameters (values are templates, as `path`).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers of the call (values are templates), besides the backend's own.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How often each open order is asked (default 30s, at least 100ms). After failures an
    /// order's pause doubles, up to 32 times this or 5 minutes, whichever is shorter.
    #[serde(default)]
    pub every: Option<HumanDuration>,
    /// At most this many calls at once (default 4, 1 to 64).
    #[serde(default)]
    pub concurrency: Option<Count>,
    /// JSON pointer to the order's state in the answer (`/state`).
    pub state: String,
    /// States after which the order is no longer asked.
    #[serde(default, rename = "final")]
    pub final_states: Vec<String>,
}

/// The `actions:` map as the flow schema describes it: one optional entry per Beckn action,
/// so editors complete action names. Never deserialised: [`FlowFile`] keeps the raw map.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // a schema-only type
struct ActionsByName {
    search: Option<ActionConfig>,
    select: Option<ActionConfig>,
    init: Option<ActionConfig>,
    confirm: Option<ActionConfig>,
    status: Option<ActionConfig>,
    track: Option<ActionConfig>,
    cancel: Option<ActionConfig>,
    update: Option<ActionConfig>,
    rating: Option<ActionConfig>,
    support: Option<ActionConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Bpp,
    Bap,
    Gateway,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Bpp => "bpp",
            Role::Bap => "bap",
            Role::Gateway => "gateway",
        }
    }
}

/// The participant's identity on the Beckn network.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Subscriber id registered with the network registry (an FQDN).
    pub subscriber_id: String,
    /// Public URL other participants call.
    pub subscriber_uri: String,
    /// The registry's unique key id of the signing key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// ed25519 signing key, base64 of the 32-byte seed or the 64-byte seed+public form: the
    /// value (`${LAB_SIGNING_KEY}`) or where to read it (`{ file: … }`, `{ env: … }`,
    /// `{ command: [...] }`).
    #[serde(default)]
    pub signing_private_key: Option<KeySource>,
    /// The key that takes over signing when keys are rotated (`beckn-adapter keys rotate`):
    /// its `key_id`, `signing_private_key` and `sign_from`.
    #[serde(default)]
    pub next_key: Option<NextKey>,
    /// X25519 encryption key, base64 of the raw 32 bytes or of the PKCS#8 DER form: needed to
    /// answer a registry's `on_subscribe` challenge. Given like `signing_private_key`.
    #[serde(default)]
    pub encryption_private_key: Option<KeySource>,
    /// The subscription this participant is registering with its registry.
    #[serde(default)]
    pub subscription: Option<Subscription>,
    /// Where subscribers' keys and URLs are looked up.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// Verify the signatures of incoming messages (default true). Turning it off is for local
    /// development only; the adapter warns at start.
    #[serde(default)]
    pub verify_signatures: Option<Flag>,
    /// Clock difference tolerated on a signature's `created` (default 5s).
    #[serde(default)]
    pub signature_skew: Option<HumanDuration>,
    /// `expires - created` of the signatures this participant makes (default 60s).
    #[serde(default)]
    pub signature_validity: Option<HumanDuration>,
    /// Longest `expires - created` accepted on a received signature (default 1h, what Beckn
    /// signing libraries use); longer-lived signatures are refused.
    #[serde(default)]
    pub max_signature_lifetime: Option<HumanDuration>,
}

/// A registry: a YAML file of subscribers (relative to the project root) or a remote Beckn
/// registry's base URL (`http://` or `https://`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// A registry file (relative to the project root, `registry/local.yaml`) or a Beckn
    /// registry's URL (`https://registry.example.org`).
    pub source: String,
    /// Answer `POST /lookup` from this (file) registry on the flow's listener, so a local
    /// network needs no other registry.
    #[serde(default)]
    pub serve: Flag,
    /// How the registry is spoken to: `core` (Beckn's `/subscribe` and `/lookup`, the default)
    /// or `ondc` (ONDC's `/subscribe` and the signed `/v2.0/lookup`).
    #[serde(default)]
    pub dialect: Option<RegistryDialect>,
    /// The registry's X25519 encryption public key (base64 DER or raw), which its
    /// `on_subscribe` challenges are encrypted with; each environment publishes its own.
    #[serde(default)]
    pub encryption_public_key: Option<String>,
    /// How long lookups are reused (default 10m; never past an entry's valid_until).
    #[serde(default)]
    pub cache_ttl: Option<HumanDuration>,
    /// Timeout of one lookup (default 3s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// How long an answer without a usable entry, or a failed lookup, is reused (default 30s),
    /// so unknown keys cost one lookup each per period, and a new subscriber is seen soon.
    #[serde(default)]
    pub negative_cache_ttl: Option<HumanDuration>,
    /// Most lookups sent to this registry per second (default 20, bursts of as many);
    /// messages needing a lookup past the limit are refused (NACK 30016) until it refills.
    #[serde(default)]
    pub max_lookups_per_second: Option<Count>,
    /// A signature whose key id the cache holds no usable entry for (a key published since
    /// the last lookup) asks the registry again, at most once per subscriber per this period
    /// (default 10s), before it is refused.
    #[serde(default)]
    pub refresh_unknown_key_every: Option<HumanDuration>,
}

/// How strictly incoming and outgoing messages are checked.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// Domain rule file under `schemas/`; defaults to `domains/<domain>.yaml` when it exists.
    #[serde(default)]
    pub domain_rules: Option<String>,
    /// Accept `http://` subscriber URIs on loopback addresses (local networks, demos, tests).
    #[serde(default)]
    pub allow_loopback_uris: Flag,
    /// Largest accepted request body; defaults to 1 MiB.
    #[serde(default)]
    pub max_body_bytes: Option<Count>,
    /// Longest `context.ttl` accepted on a received message (default 1d); a message without
    /// a ttl stays valid this long after its timestamp.
    #[serde(default)]
    pub max_ttl: Option<HumanDuration>,
    /// How far a received message's `context.timestamp` may be ahead of this clock
    /// (default 5s).
    #[serde(default)]
    pub timestamp_skew: Option<HumanDuration>,
}

/// Resource limits that keep one bad mapping from hurting the whole adapter.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// minijinja fuel per template render (roughly: instructions).
    #[serde(default)]
    pub template_fuel: Option<Count>,
    /// rhai operations per script run.
    #[serde(default)]
    pub script_max_operations: Option<Count>,
    /// Requests whose flows may run at once; beyond it a request waits up to 2 s for one to finish, then is NACKed.
    #[serde(default)]
    pub max_in_flight: Option<Count>,
    /// Timeout of one callback delivery attempt.
    #[serde(default)]
    pub callback_timeout: Option<HumanDuration>,
    /// How long a callback is retried before it becomes a dead letter; default: until the
    /// request's `timestamp + ttl`.
    #[serde(default)]
    pub callback_deadline: Option<HumanDuration>,
}

/// How a gateway forwards; for a buyer app, which gateway its searches go to.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("not" = {"required": ["url", "subscriber_id"]}))]
pub struct GatewayConfig {
    /// Timeout of one forward to a provider or a buyer app (gateways), or of one request sent
    /// (buyer apps); default 5s.
    #[serde(default)]
    pub forward_timeout: Option<HumanDuration>,
    /// Buyer apps: the gateway's base URL (`https://gateway.example.org`).
    #[serde(default)]
    pub url: Option<String>,
    /// Buyer apps: the gateway's subscriber id; its URL is looked up in the registry.
    #[serde(default)]
    pub subscriber_id: Option<String>,
}

/// How the adapter answers a call of the client API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    /// Wait until every expected callback arrived or the ttl ended, then answer with them all.
    Sync,
    /// Answer at once with the message id; `GET {base}/responses/{message_id}` gives the
    /// callbacks later.
    Async,
    /// Answer at once; POST each callback to the app's webhook, signed with an HMAC.
    Webhook,
}

impl AnswerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerMode::Sync => "sync",
            AnswerMode::Async => "async",
            AnswerMode::Webhook => "webhook",
        }
    }
}

impl std::str::FromStr for AnswerMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(AnswerMode::Sync),
            "async" => Ok(AnswerMode::Async),
            "webhook" => Ok(AnswerMode::Webhook),
            other => Err(format!(
                "`{other}` is not an answer mode (sync, async or webhook)"
            )),
        }
    }
}

/// The API a buyer app (`role: bap`) offers its own application: one endpoint per Beckn
/// action; the adapter builds, signs and routes the request and collects the callbacks.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Address of the client API; default: the flow's `listen`. Give it a private address
    /// when the Beckn endpoints face the network.
    #[serde(default)]
    pub listen: Option<String>,
    /// Path prefix of the client API (default `/api`).
    #[serde(default)]
    pub base_path: Option<String>,
    /// A token the app must send as `Authorization: Bearer <token>`; without one, whoever
    /// reaches the client API's address may use it.
    #[serde(default)]
    pub token: Option<Secret>,
    /// `ttl` of the requests whose call sets none (default 30s): how long callbacks are
    /// awaited, and the longest a synchronous call waits.
    #[serde(default)]
    pub ttl: Option<HumanDuration>,
    /// Answer mode of the calls that do not choose one (default `sync`).
    #[serde(default)]
    pub mode: Option<AnswerMode>,
    /// `context.location` of the requests whose call sets none, written as in Beckn
    /// (`{country: {code: IND}}`).
    #[serde(default)]
    pub location: Option<Value>,
    /// The app's webhook: callbacks of `webhook`-mode calls and unsolicited callbacks
    /// (`on_status`, `on_update`) are posted there.
    #[serde(default)]
    pub webhook: Option<AppWebhook>,
    /// App-shaped requests and answers, by action.
    #[serde(default)]
    #[schemars(with = "ClientActionsByName")]
    pub actions: BTreeMap<String, ClientAction>,
}

/// Where callbacks are posted for the app, and the secret that lets it trust them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppWebhook {
    /// http(s) URL the callbacks are POSTed to.
    pub url: String,
    /// Shared secret of the HMAC-SHA256 signature of each delivery.
    pub secret: Secret,
    /// Header carrying `t=<unix seconds>,sha256=<hex>` (default `X-Adapter-Signature`).
    #[serde(default)]
    pub signature_header: Option<String>,
}

/// Templates between the app's own JSON and Beckn, for one action.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientAction {
    /// A template under `mappings/` turning the app's body (`input`) into the request:
    /// `{"context": {...}, "message": {...}}`, context optional. Used for bodies without a
    /// `message`.
    #[serde(default)]
    pub request_template: Option<String>,
    /// A template under `mappings/` turning the callbacks (`responses`, `missing`, `status`,
    /// the request's `context` and `message`) into the answer's `result`.
    #[serde(default)]
    pub response_template: Option<String>,
}

/// The `client.actions:` map as the flow schema describes it (editor completion). Never
/// deserialised: [`ClientConfig`] reads a map and `compile` checks its keys.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // a schema-only type
struct ClientActionsByName {
    search: Option<ClientAction>,
    select: Option<ClientAction>,
    init: Option<ClientAction>,
    confirm: Option<ClientAction>,
    status: Option<ClientAction>,
    track: Option<ClientAction>,
    cancel: Option<ClientAction>,
    update: Option<ClientAction>,
    rating: Option<ClientAction>,
    support: Option<ClientAction>,
}

/// A backend (the ERP) the flow calls.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// http(s) URL that call paths are appended to.
    pub base_url: String,
    /// How calls authenticate (a secret: never logged).
    #[serde(default)]
    pub auth: Option<BackendAuth>,
    /// Per-call timeout; defaults to 5s.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Extra headers sent on every call.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Retries of failed calls, used only by idempotent actions (search, status, track).
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    /// JSON pointer to the backend's own error code in its error bodies (`/error`), so that
    /// `errors:` tables can match it (`SLOT_UNAVAILABLE`).
    #[serde(default)]
    pub error_code: Option<String>,
    /// Header (`Idempotency-Key`) carrying, on every call but GET, a key derived from the
    /// Beckn message and the step: the same for every run of the same request, so a backend
    /// that honours it acts once however often the request is run (after a take-over).
    #[serde(default)]
    pub idempotency_header: Option<String>,
}

/// How calls to a backend authenticate: exactly one kind. Every credential is a secret
/// (give it through the environment: `${NAME}`); none is ever logged or shown by `render`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["header", "value"], "not": {"anyOf": [{"required": ["bearer"]}, {"required": ["query"]}, {"required": ["basic"]}, {"required": ["hmac"]}, {"required": ["oauth2_client_credentials"]}]}},
    {"required": ["query", "value"], "not": {"anyOf": [{"required": ["bearer"]}, {"required": ["header"]}, {"required": ["basic"]}, {"required": ["hmac"]}, {"required": ["oauth2_client_credentials"]}]}},
    {"required": ["bearer"], "not": {"anyOf": [{"required": ["header"]}, {"required": ["value"]}, {"required": ["query"]}, {"required": ["basic"]}, {"required": ["hmac"]}, {"required": ["oauth2_client_credentials"]}]}},
    {"required": ["basic"], "not": {"anyOf": [{"required": ["header"]}, {"required": ["value"]}, {"required": ["query"]}, {"required": ["bearer"]}, {"required": ["hmac"]}, {"required": ["oauth2_client_credentials"]}]}},
    {"required": ["hmac"], "not": {"anyOf": [{"required": ["header"]}, {"required": ["value"]}, {"required": ["query"]}, {"required": ["bearer"]}, {"required": ["basic"]}, {"required": ["oauth2_client_credentials"]}]}},
    {"required": ["oauth2_client_credentials"], "not": {"anyOf": [{"required": ["header"]}, {"required": ["value"]}, {"required": ["query"]}, {"required": ["bearer"]}, {"required": ["basic"]}, {"required": ["hmac"]}]}}
]))]
pub struct BackendAuth {
    /// Header carrying the key (`X-Api-Key`), with `value`.
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter carrying the key (`api_key`), with `value`.
    #[serde(default)]
    pub query: Option<String>,
    /// The key sent in `header` or `query`.
    #[serde(default)]
    pub value: Option<Secret>,
    /// A token sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer: Option<Secret>,
    /// HTTP Basic: `Authorization: Basic base64(username:password)`.
    #[serde(default)]
    pub basic: Option<BasicAuthConfig>,
    /// An HMAC signature of each request, in a header.
    #[serde(default)]
    pub hmac: Option<HmacAuthConfig>,
    /// A bearer token from an OAuth2 token endpoint (client credentials grant), cached until
    /// shortly before it expires and renewed once when the backend answers 401.
    #[serde(default)]
    pub oauth2_client_credentials: Option<OAuth2Config>,
}

/// HTTP Basic credentials.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    pub username: Secret,
    pub password: Secret,
}

/// A signature over each request: HMAC of a rendered string with a secret key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacAuthConfig {
    /// Header carrying the signature (`X-Signature`).
    pub header: String,
    /// The HMAC key.
    pub key: Secret,
    /// Only `sha256` (the default).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// A minijinja template over `method`, `path` (the URL's whole path), `query` (the query
    /// string, no `?`), `body` (as sent) and `timestamp` (Unix seconds):
    /// `"{{ method }}\n{{ path }}\n{{ timestamp }}\n{{ body }}"`.
    pub string_to_sign: String,
    /// `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Header carrying the signed timestamp (`X-Timestamp`), when the backend checks it.
    #[serde(default)]
    pub timestamp_header: Option<String>,
}

/// OAuth2 client credentials grant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The token endpoint (http(s)); it is sent a form (`grant_type=client_credentials`).
    pub token_url: String,
    pub client_id: Secret,
    pub client_secret: Secret,
    /// Space-separated scopes, sent as `scope`.
    #[serde(default)]
    pub scope: Option<String>,
    /// Sent as `audience` (some providers require one).
    #[serde(default)]
    pub audience: Option<String>,
    /// Where the client credentials go: `body` (form fields, the default) or `basic`
    /// (`Authorization: Basic`).
    #[serde(default)]
    pub client_auth: Option<String>,
    /// Renew a token this long before it expires; default the smaller of 30s and a tenth of
    /// its lifetime.
    #[serde(default)]
    pub refresh_margin: Option<HumanDuration>,
}

/// Retries of failed calls (timeouts, unreachable, 5xx, 429), for idempotent actions only.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts after the first.
    pub attempts: Count,
    /// Pause before the first retry, growing with each (default 200ms).
    #[serde(default)]
    pub backoff: Option<HumanDuration>,
}

/// What one action does: steps in order, then the reply.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// Run in order; each result is bound to the step's name.
    // Kept raw and read item by item (see `compile`), so that every broken step is reported.
    #[serde(default)]
    #[schemars(with = "Vec<StepConfig>")]
    pub steps: Vec<Value>,
    pub reply: ReplyConfig,
    /// Values kept under the transaction once the reply is built, by name (letters, digits,
    /// `_`): value templates seeing what the reply sees, and the reply's `message` as
    /// `reply`. Later actions and backend events of the transaction read them as
    /// `transaction.<name>`.
    #[serde(default)]
    pub remember: BTreeMap<String, Value>,
}

/// One step: a backend call or a script, its result bound to `name`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["call"]}, {"required": ["script"]}]))]
pub struct StepConfig {
    /// The name later steps and the reply use for this step's result (letters, digits, `_`).
    pub name: String,
    /// A template expression; the step runs only when it is truthy.
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub call: Option<CallConfig>,
    /// Make the call once per element of a list; the step's result is the list of answers,
    /// in the list's order.
    #[serde(default)]
    pub for_each: Option<ForEachConfig>,
    /// A rhai script under `mappings/`.
    #[serde(default)]
    pub script: Option<String>,
}

/// A call to a backend; its JSON answer is the step's result.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("not" = {"anyOf": [{"required": ["body", "body_template"]}, {"required": ["body", "form"]}, {"required": ["form", "body_template"]}, {"required": ["text_body", "body"]}, {"required": ["text_body", "body_template"]}, {"required": ["text_body", "form"]}]}))]
pub struct CallConfig {
    /// A name under `backends:`.
    pub backend: String,
    /// GET (default), POST, PUT, PATCH or DELETE.
    #[serde(default)]
    pub method: Option<String>,
    /// Path under the backend's base URL; may contain `{{ }}` templates.
    pub path: String,
    /// Query parameters; values are templates, and one rendering none or "" is left out.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers of this call (values are templates), besides the backend's own.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// An inline JSON body: strings that are one `{{ expr }}` keep the expression's type.
    #[serde(default)]
    pub body: Option<Value>,
    /// A template file under `mappings/` that renders the JSON body.
    #[serde(default)]
    pub body_template: Option<String>,
    /// A form body (`application/x-www-form-urlencoded`): fields whose values are templates;
    /// like `query`, one rendering none or "" is left out.
    #[serde(default)]
    pub form: Option<BTreeMap<String, String>>,
    /// A raw text body (XML, CSV, plain text): a text template, sent with `content_type`.
    #[serde(default)]
    pub text_body: Option<String>,
    /// The `Content-Type` of `text_body` (default `text/plain; charset=utf-8`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Fetch the answer page by page; the step's result is then one JSON array of every
    /// page's items, in order.
    #[serde(default)]
    pub paginate: Option<PaginateConfig>,
    /// How backend failures become Beckn errors, by the backend's own error code
    /// (`SLOT_UNAVAILABLE`, see the backend's `error_code`), status (`404`), class (`4xx`,
    /// `5xx`) or kind (`timeout`, `unreachable`, `invalid_response`, `max_pages`).
    #[serde(default)]
    pub errors: BTreeMap<String, ErrorRule>,
}

/// A Beckn error to answer with; `message` may use `{{ response }}` (the backend's body).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    /// A Beckn error code (30000-30016, 30022, 31001, 40000-40006, 50000-50004).
    pub code: String,
    /// A text template; default: the code's title.
    #[serde(default)]
    pub message: Option<String>,
}

/// The callback's `message`: a template file, or an inline value template.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["template"]}, {"required": ["message"]}]))]
pub struct ReplyConfig {
    /// A template under `mappings/` rendering the whole `message` as JSON.
    #[serde(default)]
    pub template: Option<String>,
    /// The `message` written inline; strings may be templates.
    #[serde(default)]
    pub message: Option<Value>,
}
