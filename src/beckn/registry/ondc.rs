//! ONDC's registry lookup: `POST {url}/v2.0/lookup`, signed like a Beckn message with the
//! asking participant's key (ONDC refuses unsigned v2.0 lookups), asked by `subscriber_id` and
//! `ukId` (or by country, domain and type), answered by a JSON array of records.
//!
//! Field names read (ONDC's registry docs, v2.0 lookup): `subscriber_id`, `ukId`, `br_id`,
//! `domain`, `type`, `signing_public_key`, `encr_public_key`, `valid_from`, `valid_until`,
//! `created`, `updated`, `status`, `subscriber_url` (a full URL, or a path under
//! `https://<subscriber_id>`), `city`, `country`. A record without `status` is not trusted:
//! only `SUBSCRIBED` ones are.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::core::answer_json;
use super::{LookupQuery, Registry, RegistryError, Subscriber, SubscriberType};
use crate::beckn::signing::PrivateKey;
use crate::clock::SharedClock;

/// Who signs our v2.0 lookups: the asking participant.
pub struct LookupSigner {
    pub subscriber_id: String,
    /// Our unique key id (`ukId`) at the registry.
    pub key_id: String,
    pub key: PrivateKey,
    /// `expires - created` of the lookup's signature, seconds.
    pub validity: i64,
}

impl LookupSigner {
    /// The `Authorization` header of `body`, signed at `now` (unix seconds).
    pub fn authorization(&self, body: &[u8], now: i64) -> String {
        self.key.sign(
            body,
            &format!("{}|{}", self.subscriber_id, self.key_id),
            now,
            now + self.validity.max(1),
        )
    }
}

/// ONDC's registry at `url`, asked as `signer`.
pub struct OndcRegistry {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
    signer: std::sync::Arc<LookupSigner>,
    clock: SharedClock,
}

impl OndcRegistry {
    pub fn new(
        url: &str,
        timeout: Duration,
        signer: std::sync::Arc<LookupSigner>,
        clock: SharedClock,
    ) -> Self {
        OndcRegistry {
            url: url.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            timeout,
            signer,
            clock,
        }
    }
}

/// The v2.0 lookup body of `query`: `subscriber_id` and `ukId` when known, and the other
/// criteria under ONDC's names.
pub fn ondc_lookup_body(query: &LookupQuery) -> Value {
    let mut body = Map::new();
    let mut put = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            body.insert(name.to_string(), json!(v));
        }
    };
    put("subscriber_id", &query.subscriber_id);
    put("ukId", &query.unique_key_id);
    put("country", &query.country);
    put("domain", &query.domain);
    put("city", &query.city);
    if let Some(kind) = query.kind {
        let name = match kind {
            SubscriberType::Bap => "buyerApp",
            SubscriberType::Bpp => "sellerApp",
            SubscriberType::Bg => "gateway",
        };
        body.insert("type".into(), json!(name));
    }
    Value::Object(body)
}

impl Registry for OndcRegistry {
    fn lookup(&self, query: LookupQuery) -> BoxFuture<'_, Result<Vec<Subscriber>, RegistryError>> {
        Box::pin(async move {
            let body = ondc_lookup_body(&query).to_string().into_bytes();
            let authorization = self
                .signer
                .authorization(&body, self.clock.now().as_second());
            let request = self
                .client
                .post(format!("{}/v2.0/lookup", self.url))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::AUTHORIZATION, authorization)
                .body(body);
            let answer = answer_json(request, self.timeout).await?;
            parse_ondc_answer(&answer)
        })
    }
}

/// Reads a v2.0 lookup answer: a JSON array of records. Anything else (an object, an error
/// body) is an answer of unknown shape, never an empty list.
pub fn parse_ondc_answer(body: &Value) -> Result<Vec<Subscriber>, RegistryError> {
    let Value::Array(list) = body else {
        let said = body
            .get("error")
            .or_else(|| body.get("message"))
            .map(|v| format!(" (it says {v})"))
            .unwrap_or_default();
        return Err(RegistryError::BadAnswer(format!(
            "an ONDC lookup answers a JSON array of records, not this{said}"
        )));
    };
    list.iter().map(record).collect()
}

/// One record of a v2.0 lookup answer.
fn record(entry: &Value) -> Result<Subscriber, RegistryError> {
    let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_string);
    let required = |name: &str| {
        text(name)
            .ok_or_else(|| RegistryError::BadAnswer(format!("a lookup record has no `{name}`")))
    };
    let subscriber_id = required("subscriber_id")?;
    let kind = match required("type")?.to_ascii_lowercase().as_str() {
        "bap" | "buyerapp" => SubscriberType::Bap,
        "bpp" | "sellerapp" => SubscriberType::Bpp,
        "bg" | "gateway" => SubscriberType::Bg,
        other => {
            return Err(RegistryError::BadAnswer(format!(
                "a lookup record has the unknown type `{other}`"
            )));
        }
    };
    let url = match text("subscriber_url") {
        Some(u) if u.starts_with('/') => format!("https://{subscriber_id}{u}"),
        Some(u) => u,
        None => format!("https://{subscriber_id}"),
    };
    let time = |name: &str| text(name).and_then(|s| s.parse().ok());
    Ok(Subscriber {
        kind,
        url,
        domain: text("domain").unwrap_or_default(),
        city: text("city"),
        country: text("country"),
        unique_key_id: required("ukId")?,
        signing_public_key: required("signing_public_key")?,
        encr_public_key: text("encr_public_key"),
        valid_from: time("valid_from"),
        valid_until: time("valid_until"),
        // No status, no trust.
        status: text("status").unwrap_or_default(),
        subscriber_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_json(status: Option<&str>) -> Value {
        let mut r = json!({"subscriber_id": "bap.example", "ukId": "uk-1", "br_id": "br-9",
            "domain": "ONDC:RET10", "type": "buyerApp", "subscriber_url": "/ondc",
            "signing_public_key": "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk=",
            "encr_public_key": "MCowBQYDK2VuAyEA", "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2027-01-01T00:00:00Z", "created": "2026-01-01T00:00:00Z",
            "updated": "2026-01-01T00:00:00Z"});
        if let Some(s) = status {
            r["status"] = json!(s);
        }
        r
    }

    #[test]
    fn a_v2_record_is_read_with_its_url_under_the_subscriber_id() {
        let list = parse_ondc_answer(&json!([record_json(Some("SUBSCRIBED"))])).unwrap();
        let s = &list[0];
        assert_eq!(s.kind, SubscriberType::Bap);
        assert_eq!(s.url, "https://bap.example/ondc");
        assert_eq!(s.unique_key_id, "uk-1");
        let mid = "2026-06-01T00:00:00Z".parse().unwrap();
        assert!(s.is_valid_at(mid));
    }

    #[test]
    fn only_subscribed_records_are_trusted() {
        let mid = "2026-06-01T00:00:00Z".parse().unwrap();
        for status in [None, Some("INITIATED"), Some("UNSUBSCRIBED")] {
            let list = parse_ondc_answer(&json!([record_json(status)])).unwrap();
            assert!(!list[0].is_valid_at(mid), "{status:?}");
        }
    }

    #[test]
    fn an_answer_of_unknown_shape_is_an_error_not_an_empty_list() {
        for body in [
            json!({"message": {"ack": {"status": "NACK"}}, "error": {"code": "1001"}}),
            json!({"subscribers": []}),
            json!("SUBSCRIBED"),
            json!([{"subscriber_id": "x"}]),
        ] {
            assert!(
                matches!(parse_ondc_answer(&body), Err(RegistryError::BadAnswer(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn the_lookup_body_uses_ondc_names() {
        let body = ondc_lookup_body(&LookupQuery::key("bpp.example", "uk-2"));
        assert_eq!(
            body,
            json!({"subscriber_id": "bpp.example", "ukId": "uk-2"})
        );
        let by_domain = ondc_lookup_body(&LookupQuery {
            country: Some("IND".into()),
            domain: Some("ONDC:RET10".into()),
            kind: Some(SubscriberType::Bpp),
            ..Default::default()
        });
        assert_eq!(
            by_domain,
            json!({"country": "IND", "domain": "ONDC:RET10", "type": "sellerApp"})
        );
    }
}
