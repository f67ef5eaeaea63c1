//! A flow's subscription compiled into what `subscribe` sends ([`Registration`]): the
//! registry's URL and dialect, the domain, cities and key validity, and ONDC's extras (ops_no,
//! msn, callback path, entity), each checked where it is written.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::Loader;
use crate::beckn::registry::SubscriberType;
use crate::beckn::subscribe::Registration;
use crate::config::model::{FlowFile, OndcEntity, RegistryDialect, Role};
use crate::config::yaml::SpannedDoc;

const DEFAULT_KEY_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
const DEFAULT_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(30);

impl Loader<'_> {
    /// The flow's registration, when it has a subscription and a registry URL to send it to.
    pub(super) fn registration(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
    ) -> Option<Registration> {
        let net = &head.network;
        let sub = net.subscription.as_ref()?;
        let registry = net.registry.as_ref()?;
        let url = registry.source.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            // A registry file: the subscription only proves the request_id.
            return None;
        }
        let dialect = registry.dialect.unwrap_or_default();
        let kind = match head.role {
            Role::Bpp => SubscriberType::Bpp,
            Role::Bap => SubscriberType::Bap,
            Role::Gateway => SubscriberType::Bg,
        };
        let ops_no = sub.ops_no.map_or(
            match kind {
                SubscriberType::Bap => 1,
                _ => 2,
            },
            |c| c.0,
        );
        let mut entity = None;
        if dialect == RegistryDialect::Ondc {
            if ![1, 2, 4].contains(&ops_no) {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        "network.subscription.ops_no",
                        format!("ops_no {ops_no} is not one ONDC's registry takes"),
                    )
                    .hint(
                        "1 buyer app, 2 seller app, 4 buyer and seller app (3 and 5 are retired)",
                    ),
                );
            }
            match &sub.entity {
                Some(e) => entity = Some(entity_json(e, &sub.city_codes)),
                None => self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        "network.subscription",
                        "ONDC's registry needs the entity that subscribes (`entity:`)",
                    )
                    .hint("entity: { gst: {...}, pan: {...}, name_of_authorised_signatory: ..., email_id: ..., mobile_no: ... }"),
                ),
            }
        }
        if net.encryption_private_key.is_none() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "network.subscription",
                    "subscribing needs `encryption_private_key`: the registry's challenge is encrypted for it",
                )
                .hint("`beckn-adapter keys` prints a fresh encryption key pair"),
            );
        }
        if registry.encryption_public_key.is_none() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "network.registry",
                    "subscribing needs the registry's `encryption_public_key` to answer its challenge",
                )
                .hint("each environment (staging, pre-production, production) publishes its own"),
            );
        }
        let callback_url = sub.callback_url.clone().unwrap_or_else(|| {
            let uri = net.subscriber_uri.trim_end_matches('/');
            let after_scheme = uri.split_once("://").map_or(uri, |(_, r)| r);
            after_scheme
                .find('/')
                .map_or_else(|| "/".to_string(), |at| after_scheme[at..].to_string())
        });
        Some(Registration {
            registry_url: url.trim_end_matches('/').to_string(),
            dialect,
            request_id: sub.request_id.clone(),
            kind,
            domain: sub.domain.clone().unwrap_or_else(|| head.domain.clone()),
            city_codes: if sub.city_codes.is_empty() {
                vec!["*".into()]
            } else {
                sub.city_codes.clone()
            },
            country: sub.country.clone().unwrap_or_else(|| "IND".into()),
            key_validity: sub.key_validity.map_or(DEFAULT_KEY_VALIDITY, |d| d.0),
            timeout: sub.timeout.map_or(DEFAULT_SUBSCRIBE_TIMEOUT, |d| d.0),
            ops_no,
            msn: sub.msn.0,
            callback_url,
            entity,
        })
    }
}

/// The entity as ONDC's registry spells it; the subscriber's keys and ids are added when sent.
fn entity_json(e: &OndcEntity, city_codes: &[String]) -> Value {
    let gst_cities = if e.gst.city_code.is_empty() {
        city_codes.to_vec()
    } else {
        e.gst.city_code.clone()
    };
    let mut out = json!({
        "gst": {
            "legal_entity_name": e.gst.legal_entity_name,
            "business_address": e.gst.business_address,
            "city_code": gst_cities,
            "gst_no": e.gst.gst_no,
        },
        "pan": {
            "name_as_per_pan": e.pan.name_as_per_pan,
            "pan_no": e.pan.pan_no,
            "date_of_incorporation": e.pan.date_of_incorporation,
        },
        "name_of_authorised_signatory": e.name_of_authorised_signatory,
        "email_id": e.email_id,
        "mobile_no": e.mobile_no,
    });
    if let Some(a) = &e.address_of_authorised_signatory {
        out["address_of_authorised_signatory"] = json!(a);
    }
    out
}
