//! How a flow subscribes to its registry: the `request_id` it proves, where it operates, and
//! for ONDC's registry the entity and network participant details its `/subscribe` carries.

use schemars::JsonSchema;
use serde::Deserialize;

use super::values::{Count, Flag, HumanDuration};

/// How a registry is spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RegistryDialect {
    /// Beckn core: `POST /subscribe` with the subscriber object, `POST /lookup`.
    #[default]
    Core,
    /// ONDC: `POST /subscribe` with `context.operation.ops_no` and the entity, `POST
    /// /v2.0/lookup` signed with the participant's key.
    Ondc,
}

impl RegistryDialect {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryDialect::Core => "core",
            RegistryDialect::Ondc => "ondc",
        }
    }
}

/// A subscription with the network's registry: what `beckn-adapter subscribe` sends, and what
/// the participant must prove while the registry admits it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The `request_id` sent with the subscription: its ed25519 signature is served at
    /// `/ondc-site-verification.html`.
    pub request_id: String,
    /// The domain code the registry knows this participant by (default: the flow's `domain`),
    /// e.g. `ONDC:RET10` where the network's codes differ from the flow's.
    #[serde(default)]
    pub domain: Option<String>,
    /// Cities served, as the network codes them (`std:080`); default `*`.
    #[serde(default)]
    pub city_codes: Vec<String>,
    /// Country code (default `IND`).
    #[serde(default)]
    pub country: Option<String>,
    /// How long the registered keys stay valid from the moment of subscribing (default 365d).
    #[serde(default)]
    pub key_validity: Option<HumanDuration>,
    /// Timeout of the `/subscribe` call, which waits while the registry challenges us
    /// (default 30s).
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// ONDC only: what is being registered. 1 buyer app, 2 seller app, 4 buyer and seller app
    /// (3 and 5 are retired). Default: 1 for a buyer app, 2 for a provider.
    #[serde(default)]
    pub ops_no: Option<Count>,
    /// ONDC only: a marketplace seller node (`msn`, default false).
    #[serde(default)]
    pub msn: Flag,
    /// ONDC only: the path under `https://<subscriber_id>` where `/on_subscribe` is served
    /// (default: the path of `subscriber_uri`).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// ONDC only: the legal entity behind the subscriber (required by the ONDC dialect).
    #[serde(default)]
    pub entity: Option<OndcEntity>,
}

/// The legal entity ONDC's registry records for a subscriber.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OndcEntity {
    pub gst: OndcGst,
    pub pan: OndcPan,
    pub name_of_authorised_signatory: String,
    #[serde(default)]
    pub address_of_authorised_signatory: Option<String>,
    pub email_id: String,
    pub mobile_no: String,
}

/// GST registration of the entity.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OndcGst {
    pub legal_entity_name: String,
    pub business_address: String,
    /// Cities of the registration (default: the subscription's `city_codes`).
    #[serde(default)]
    pub city_code: Vec<String>,
    pub gst_no: String,
}

/// PAN of the entity.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OndcPan {
    pub name_as_per_pan: String,
    pub pan_no: String,
    /// `DD/MM/YYYY`, as ONDC's registry writes it.
    pub date_of_incorporation: String,
}
