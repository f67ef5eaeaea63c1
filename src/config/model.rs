//! The flow file, as written by an integrator. Unknown keys are errors everywhere.
//!
//! These types say what may be written; `compile` turns them into what runs.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::secret::Secret;
use super::values::{Count, Flag, HumanDuration};

/// One flow file: a Beckn participant (a role at an address) and what it does per action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// Defaults to the file name without extension.
    #[serde(default)]
    pub name: Option<String>,
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
    /// Settings of the gateway role.
    #[serde(default)]
    pub gateway: Option<GatewayConfig>,
    #[serde(default)]
    pub backends: BTreeMap<String, Value>,
    #[serde(default)]
    pub actions: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Subscriber id registered with the network registry (an FQDN).
    pub subscriber_id: String,
    /// Public URL other participants call.
    pub subscriber_uri: String,
    /// The registry's unique key id of the signing key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// ed25519 signing key, base64 of the 32-byte seed or the 64-byte seed+public form.
    #[serde(default)]
    pub signing_private_key: Option<Secret>,
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
}

/// A registry: a YAML file of subscribers (relative to the project root) or a remote Beckn
/// registry's base URL (`http://` or `https://`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub source: String,
    /// Answer `POST /lookup` from this (file) registry on the flow's listener, so a local
    /// network needs no other registry.
    #[serde(default)]
    pub serve: Flag,
    /// How long lookups are reused (default 10m; never past an entry's valid_until).
    #[serde(default)]
    pub cache_ttl: Option<HumanDuration>,
    /// Timeout of one lookup (default 3s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

/// How strictly incoming and outgoing messages are checked.
#[derive(Debug, Default, Deserialize)]
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
}

/// Resource limits that keep one bad mapping from hurting the whole adapter.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// minijinja fuel per template render (roughly: instructions).
    #[serde(default)]
    pub template_fuel: Option<Count>,
    /// rhai operations per script run.
    #[serde(default)]
    pub script_max_operations: Option<Count>,
    /// Requests whose flows may run at once; beyond it requests are NACKed, not queued.
    #[serde(default)]
    pub max_in_flight: Option<Count>,
    /// Timeout of one callback delivery attempt.
    #[serde(default)]
    pub callback_timeout: Option<HumanDuration>,
}

/// How a gateway forwards.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Timeout of one forward to a provider or a buyer app (default 5s).
    #[serde(default)]
    pub forward_timeout: Option<HumanDuration>,
}

/// A backend (the ERP) the flow calls.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub base_url: String,
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
}

/// Either a named header carrying a key, or a bearer token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendAuth {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub value: Option<Secret>,
    #[serde(default)]
    pub bearer: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub attempts: Count,
    #[serde(default)]
    pub backoff: Option<HumanDuration>,
}

/// What one action does: steps in order, then the reply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    #[serde(default)]
    pub steps: Vec<Value>,
    pub reply: ReplyConfig,
}

/// One step: a backend call or a script, its result bound to `name`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    pub name: String,
    /// A template expression; the step runs only when it is truthy.
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub call: Option<CallConfig>,
    /// A rhai script under `mappings/`.
    #[serde(default)]
    pub script: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    pub backend: String,
    #[serde(default)]
    pub method: Option<String>,
    /// Path under the backend's base URL; may contain `{{ }}` templates.
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// An inline JSON body: strings that are one `{{ expr }}` keep the expression's type.
    #[serde(default)]
    pub body: Option<Value>,
    /// A template file under `mappings/` that renders the JSON body.
    #[serde(default)]
    pub body_template: Option<String>,
    /// How backend failures become Beckn errors, by the backend's own error code
    /// (`SLOT_UNAVAILABLE`, see the backend's `error_code`), status (`404`), class (`4xx`,
    /// `5xx`) or kind (`timeout`, `unreachable`, `invalid_response`).
    #[serde(default)]
    pub errors: BTreeMap<String, ErrorRule>,
}

/// A Beckn error to answer with; `message` may use `{{ response }}` (the backend's body).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// The callback's `message`: a template file, or an inline value template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyConfig {
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub message: Option<Value>,
}
