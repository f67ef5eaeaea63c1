//! The domain layer: network rules on top of the Beckn core schema (for soil testing, the UKI
//! reference's "Assumptions Made"), kept in an editable YAML file under `schemas/domains/`.
//!
//! The file holds JSON Schema (written as YAML) for the context and for each action's
//! `message`, plus rules JSON Schema cannot say (a subscriber URI must sit on its id's domain).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::schema::{CORE_BODIES, JsonValidator, Violation};
use crate::config::values::Flag;

/// The domain rule file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainRulesFile {
    /// The domain code these rules are for (`agri.soil`).
    pub domain: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Shared definitions, referenced as `#/$defs/<name>`.
    #[serde(default, rename = "$defs")]
    pub defs: Map<String, Value>,
    /// Schema every context must satisfy, requests and callbacks alike.
    #[serde(default)]
    pub context: Option<Value>,
    /// Extra schema for the context of requests (`search` … `support`).
    #[serde(default)]
    pub request_context: Option<Value>,
    /// Extra schema for the context of callbacks (`on_search` … `on_support`).
    #[serde(default)]
    pub callback_context: Option<Value>,
    /// Schema of `message`, by action or callback name.
    #[serde(default)]
    pub messages: BTreeMap<String, Value>,
    #[serde(default)]
    pub subscriber_uris: UriRules,
}

/// How `bap_uri` / `bpp_uri` must relate to `bap_id` / `bpp_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UriRules {
    #[serde(default = "yes")]
    pub require_https: Flag,
    #[serde(default = "yes")]
    pub same_domain_as_id: Flag,
}

fn yes() -> Flag {
    Flag(true)
}

impl Default for UriRules {
    fn default() -> Self {
        UriRules {
            require_https: Flag(true),
            same_domain_as_id: Flag(true),
        }
    }
}

/// Compiled domain rules.
pub struct DomainRules {
    pub domain: String,
    by_name: BTreeMap<String, JsonValidator>,
    uris: UriRules,
}

impl DomainRules {
    /// Compiles one validator per body; errors name the part of the file that failed.
    pub fn compile(file: DomainRulesFile) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        for name in file.messages.keys() {
            if !CORE_BODIES.contains(&name.as_str()) {
                errors.push((
                    format!("messages.{name}"),
                    format!("`{name}` is not a Beckn action or callback"),
                ));
            }
        }
        let mut by_name = BTreeMap::new();
        for name in CORE_BODIES {
            let is_callback = name.starts_with("on_");
            let mut context_parts = Vec::new();
            if let Some(c) = &file.context {
                context_parts.push(c.clone());
            }
            let specific = if is_callback {
                &file.callback_context
            } else {
                &file.request_context
            };
            if let Some(c) = specific {
                context_parts.push(c.clone());
            }
            let mut properties = Map::new();
            properties.insert("context".into(), json!({ "allOf": context_parts }));
            if let Some(m) = file.messages.get(name) {
                properties.insert("message".into(), m.clone());
            }
            let schema = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": file.defs,
                "type": "object",
                "properties": properties,
            });
            match JsonValidator::compile(&schema) {
                Ok(v) => {
                    by_name.insert(name.to_string(), v);
                }
                Err(e) => {
                    let at = if file.messages.contains_key(name) {
                        format!("messages.{name}")
                    } else {
                        "context".to_string()
                    };
                    errors.push((at, e));
                    break;
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(DomainRules {
            domain: file.domain,
            by_name,
            uris: file.subscriber_uris,
        })
    }

    /// Every rule the body of `name` breaks, up to `max`.
    pub fn check(
        &self,
        name: &str,
        body: &Value,
        allow_loopback: bool,
        max: usize,
    ) -> Vec<Violation> {
        let mut out = match self.by_name.get(name) {
            Some(v) => v.violations(body, max),
            None => Vec::new(),
        };
        if let Some(context) = body.get("context") {
            for (id, uri) in [("bap_id", "bap_uri"), ("bpp_id", "bpp_uri")] {
                if let Some(problem) = self.check_uri(context, id, uri, allow_loopback) {
                    out.push(Violation {
                        path: format!("context.{uri}"),
                        message: problem,
                    });
                }
            }
        }
        out.truncate(max);
        out
    }

    fn check_uri(
        &self,
        context: &Value,
        id_field: &str,
        uri_field: &str,
        allow_loopback: bool,
    ) -> Option<String> {
        let uri = context.get(uri_field)?.as_str()?;
        let url = reqwest::Url::parse(uri).ok()?; // the core schema already reports non-URIs
        let host = url.host_str().unwrap_or_default();
        if allow_loopback && is_loopback(host) {
            return None;
        }
        if self.uris.require_https.0 && url.scheme() != "https" {
            return Some(format!("{uri_field} must be an https URL, got `{uri}`"));
        }
        if self.uris.same_domain_as_id.0 {
            let id = context.get(id_field).and_then(Value::as_str)?;
            let same = host == id
                || host.ends_with(&format!(".{id}"))
                || id.ends_with(&format!(".{host}"));
            if !same {
                return Some(format!(
                    "{uri_field} host `{host}` is not on the domain of {id_field} `{id}`"
                ));
            }
        }
        None
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> DomainRules {
        let file: DomainRulesFile = serde_json::from_value(json!({
            "domain": "agri.soil",
            "context": {"properties": {"domain": {"const": "agri.soil"}}},
            "request_context": {"required": ["ttl"]},
            "messages": {"search": {"properties": {"intent": {"properties": {
                "fulfillment": {"properties": {"type": {"enum": ["home", "lab", "virtual"]}}}}}}}}
        }))
        .unwrap();
        DomainRules::compile(file)
            .map_err(|e| format!("{e:?}"))
            .unwrap()
    }

    #[test]
    fn rules_apply_per_body() {
        let r = rules();
        let body = json!({"context": {"domain": "retail", "bap_id": "bap.example.org",
            "bap_uri": "https://bap.example.org/beckn"},
            "message": {"intent": {"fulfillment": {"type": "drone"}}}});
        let v = r.check("search", &body, false, 10);
        let paths: Vec<_> = v.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&"context.domain"), "{v:?}");
        assert!(paths.contains(&"context"), "ttl required: {v:?}");
        assert!(paths.contains(&"message.intent.fulfillment.type"), "{v:?}");
        // callbacks do not need the request-only ttl rule
        let cb = json!({"context": {"domain": "agri.soil"}});
        assert!(r.check("on_search", &cb, false, 10).is_empty());
    }

    #[test]
    fn subscriber_uris() {
        let r = rules();
        let ctx = |id: &str, uri: &str| json!({"context": {"domain": "agri.soil", "bap_id": id, "bap_uri": uri}});
        assert!(
            r.check(
                "on_search",
                &ctx("bap.example.org", "https://bap.example.org/b"),
                false,
                5
            )
            .is_empty()
        );
        assert_eq!(
            r.check(
                "on_search",
                &ctx("bap.example.org", "http://bap.example.org/b"),
                false,
                5
            )
            .len(),
            1
        );
        assert_eq!(
            r.check(
                "on_search",
                &ctx("bap.example.org", "https://evil.example.com/"),
                false,
                5
            )
            .len(),
            1
        );
        assert_eq!(
            r.check(
                "on_search",
                &ctx("bap.example.org", "http://127.0.0.1:7001"),
                false,
                5
            )
            .len(),
            1
        );
        assert!(
            r.check(
                "on_search",
                &ctx("bap.example.org", "http://127.0.0.1:7001"),
                true,
                5
            )
            .is_empty()
        );
    }
}
