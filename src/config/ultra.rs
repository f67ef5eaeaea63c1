//! Flipkart Ultra, as written in flow files: a connection file of its own (`flows/ultra.yaml`)
//! and, in a Beckn flow, the `ultra:` block that reports the flow's orders to Ultra's OMS.

use schemars::JsonSchema;
use serde::Deserialize;

use super::secret::Secret;
use super::values::{Count, Flag, HumanDuration};

/// A file declaring a connection to Flipkart Ultra, which flows name in `ultra.connection`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UltraFile {
    /// Defaults to the file name without extension; flows refer to the connection by it.
    #[serde(default)]
    pub name: Option<String>,
    pub ultra: UltraConnectionConfig,
}

/// Where Ultra is and who the partner is.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UltraConnectionConfig {
    /// Base URL of the token and user APIs (`/1/dummy`, `/1/authorization/auth`,
    /// `/1/resource/bulk`), e.g. `https://platform.flipkart.net`.
    pub api_url: String,
    /// Base URL of the OMS (`/3/oms`); default: `api_url`.
    #[serde(default)]
    pub oms_url: Option<String>,
    /// The client id Flipkart issued, in `merchant.app` form: the `iss` of every secureToken.
    pub client_id: String,
    /// The bare merchant id sent as `clientId` when a grant token is exchanged; default: the
    /// part of `client_id` before its first dot.
    #[serde(default)]
    pub merchant_id: Option<String>,
    /// The client secret of the grant exchange.
    pub client_secret: Secret,
    /// The RSA private key whose public half Flipkart holds (PEM, PKCS#1 or PKCS#8).
    pub private_key: PrivateKeySource,
    /// `exp - iat` of each secureToken (default 90s; at most 1000s).
    #[serde(default)]
    pub token_lifetime: Option<HumanDuration>,
    /// Unit of OMS timestamps: `seconds` (default) or `milliseconds`.
    #[serde(default)]
    pub timestamp_unit: Option<TimestampUnit>,
    /// Calls to Ultra in flight at once (default 4); more wait their turn.
    #[serde(default)]
    pub max_in_flight: Option<Count>,
    /// Timeout of one call (default 5s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// How long an OMS update is retried before it becomes a dead letter (default 2d).
    #[serde(default)]
    pub retry_for: Option<HumanDuration>,
}

/// A PEM key, in a file (relative to the project root) or given inline (from a secret).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["file"]}, {"required": ["pem"]}]))]
pub struct PrivateKeySource {
    /// A PEM file, relative to the project root.
    #[serde(default)]
    pub file: Option<String>,
    /// The PEM text itself: give it through the environment (`${ULTRA_PRIVATE_KEY}`).
    #[serde(default)]
    pub pem: Option<Secret>,
}

/// How OMS timestamps are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    Seconds,
    Milliseconds,
}

impl TimestampUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampUnit::Seconds => "seconds",
            TimestampUnit::Milliseconds => "milliseconds",
        }
    }
}

/// In a Beckn flow: report the flow's orders to Ultra's OMS. The template sees the order
/// message (`context`, `message`, `action`: `on_confirm`, `on_status`...), the user (`user`,
/// with `identity_token`) and `unit`; it renders the Ultra order, or `null` for none.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowUltraConfig {
    /// The name of an Ultra connection file (`ultra`).
    pub connection: String,
    /// Template under `mappings/` rendering the OMS order.
    pub order_template: String,
    /// A rhai script under `mappings/` run first; its result is `prepared` in the template.
    #[serde(default)]
    pub script: Option<String>,
    /// Callbacks whose orders are reported (default: on_confirm, on_status, on_cancel,
    /// on_update).
    #[serde(default)]
    pub on: Option<Vec<String>>,
    /// Providers (`role: bpp`), whose orders' users did not sign in here: an expression giving
    /// the user's identity token from the message (a tag the buyer app sends, say).
    #[serde(default)]
    pub identity_token: Option<String>,
    /// Send an `ORDER_FULFILLED` update only once its `lastFulfillmentDate` has passed.
    #[serde(default)]
    pub hold_fulfilled: Flag,
}
