//! Beckn core's registry lookup: `POST {url}/lookup` with the query as JSON, answered by a
//! list of subscribers in one of the shapes registries in the wild write.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{LookupQuery, Registry, RegistryError, Subscriber, SubscriberType};

/// A remote Beckn registry, `POST {url}/lookup`.
pub struct RemoteRegistry {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl RemoteRegistry {
    pub fn new(url: &str, timeout: Duration) -> Self {
        RemoteRegistry {
            url: url.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            timeout,
        }
    }
}

impl Registry for RemoteRegistry {
    fn lookup(&self, query: LookupQuery) -> BoxFuture<'_, Result<Vec<Subscriber>, RegistryError>> {
        Box::pin(async move {
            let request = self
                .client
                .post(format!("{}/lookup", self.url))
                .json(&query);
            let body = answer_json(request, self.timeout).await?;
            parse_lookup_answer(&body)
        })
    }
}

/// Sends a lookup and reads its JSON answer: a timeout, a refusal, an HTML page (a portal or
/// proxy in front of the API) and text that is not JSON are each an error of their own.
pub(super) async fn answer_json(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Value, RegistryError> {
    let resp = request.timeout(timeout).send().await.map_err(|e| {
        if e.is_timeout() {
            RegistryError::TimedOut(timeout)
        } else {
            RegistryError::Unreachable(e.to_string())
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(RegistryError::Status(status.as_u16()));
    }
    let bytes = resp.bytes().await.map_err(|e| {
        if e.is_timeout() {
            RegistryError::TimedOut(timeout)
        } else {
            RegistryError::Unreachable(e.to_string())
        }
    })?;
    if bytes.trim_ascii_start().starts_with(b"<") {
        return Err(RegistryError::BadAnswer(
            "the registry answered an HTML page, not JSON: is the URL the registry's API?".into(),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::BadAnswer(format!("the answer is not JSON: {e}")))
}

/// Reads a lookup answer as registries in the wild write it: a bare array, or an object with
/// `subscribers`/`message`/`data`; `unique_key_id`, `key_id` or `ukId`; `url` or
/// `subscriber_url`; `valid_until` or `valid_to`.
pub fn parse_lookup_answer(body: &Value) -> Result<Vec<Subscriber>, RegistryError> {
    let list = match body {
        Value::Array(a) => a,
        Value::Object(o) => ["subscribers", "message", "data", "result"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_array))
            .ok_or_else(|| RegistryError::BadAnswer("no list of subscribers".into()))?,
        _ => return Err(RegistryError::BadAnswer("not a JSON list".into())),
    };
    let text = |v: &Value, names: &[&str]| {
        names
            .iter()
            .find_map(|n| v.get(*n).and_then(Value::as_str))
            .map(str::to_string)
    };
    let mut out = Vec::new();
    for entry in list {
        let required = |names: &[&str]| {
            text(entry, names).ok_or_else(|| {
                RegistryError::BadAnswer(format!("an entry has no {}", names.join("/")))
            })
        };
        let kind = match required(&["type", "subscriber_type"])?
            .to_ascii_uppercase()
            .as_str()
        {
            "BAP" => SubscriberType::Bap,
            "BPP" => SubscriberType::Bpp,
            "BG" | "GATEWAY" => SubscriberType::Bg,
            other => return Err(RegistryError::BadAnswer(format!("unknown type {other}"))),
        };
        let time = |names: &[&str]| text(entry, names).and_then(|s| s.parse().ok());
        out.push(Subscriber {
            subscriber_id: required(&["subscriber_id"])?,
            kind,
            url: required(&["subscriber_url", "url"])?,
            domain: text(entry, &["domain"]).unwrap_or_default(),
            city: text(entry, &["city"]),
            country: text(entry, &["country"]),
            unique_key_id: required(&["unique_key_id", "key_id", "ukId", "uk_id"])?,
            signing_public_key: required(&["signing_public_key"])?,
            encr_public_key: text(entry, &["encr_public_key"]),
            valid_from: time(&["valid_from"]),
            valid_until: time(&["valid_until", "valid_to"]),
            status: text(entry, &["status"]).unwrap_or_else(|| "SUBSCRIBED".into()),
        });
    }
    Ok(out)
}
