//! The request of a dry run: read from a file or given inline, its context completed with
//! valid defaults (so a test names only what it is about), and checked as the provider would
//! check it on arrival.

use std::path::Path;

use serde_json::{Map, Value, json};

use super::input::{InputError, read_data};
use crate::beckn::action::Action;
use crate::beckn::schema::{CoreSchemas, Violation};
use crate::compile::CompiledFlow;
use crate::config::SpannedDoc;
use crate::intake::validate::MAX_VIOLATIONS;

/// Transaction id of completed requests: fixed, so tests can expect it in backend calls.
pub const DEFAULT_TRANSACTION_ID: &str = "00000000-0000-4000-8000-000000000001";
/// Message id of completed requests.
pub const DEFAULT_MESSAGE_ID: &str = "00000000-0000-4000-8000-000000000002";
/// The buyer app completed requests come from.
pub const DEFAULT_BAP_ID: &str = "buyer-app.example";
pub const DEFAULT_BAP_URI: &str = "https://buyer-app.example/beckn";

/// Reads a request file (JSON or YAML): `context` (optional, completed) and `message`.
pub fn load_request(path: &Path) -> Result<Value, InputError> {
    let doc = read_data(path)?;
    check_shape(&doc, path, "")?;
    Ok(doc.value)
}

/// Checks that `doc` at `at` looks like a request: an object with `context` (an object) and
/// `message`, and nothing else.
pub fn check_shape(doc: &SpannedDoc, file: &Path, at: &str) -> Result<(), InputError> {
    let value = if at.is_empty() {
        Some(&doc.value)
    } else {
        super::json_path::JsonPath::parse(at)
            .ok()
            .and_then(|p| p.get(&doc.value))
    };
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    let Some(Value::Object(map)) = value else {
        return Err(InputError::one(
            doc.diagnostic(
                file,
                at,
                "a request is a mapping with `context` and `message`",
            )
            .hint("message: { order_id: GFSL-1001 }   (context fields left out get defaults)"),
        ));
    };
    let mut problems = Vec::new();
    for (k, v) in map {
        match k.as_str() {
            "message" => {}
            "context" if v.is_object() => {}
            "context" => problems.push(doc.diagnostic(
                file,
                &join(k),
                "`context` must be a mapping (its fields override the defaults)",
            )),
            other => problems.push(
                doc.diagnostic(file, &join(k), format!("unknown key `{other}`"))
                    .hint("a Beckn request has `context` and `message`"),
            ),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InputError(problems))
    }
}

/// `request` with its context completed: every context field it leaves out gets a valid
/// default (this flow's domain and ids, the action, fixed transaction and message ids, the
/// current time, a 30-second ttl). Fields it gives are kept as given.
pub fn complete(flow: &CompiledFlow, action: Action, request: &Value) -> Value {
    let mut context = Map::new();
    let mut put = |k: &str, v: Value| {
        context.insert(k.to_string(), v);
    };
    put("domain", json!(flow.domain));
    put("action", json!(action.as_str()));
    put("version", json!("1.1.0"));
    put("bap_id", json!(DEFAULT_BAP_ID));
    put("bap_uri", json!(DEFAULT_BAP_URI));
    if action != Action::Search {
        put("bpp_id", json!(flow.participant.subscriber_id));
        put("bpp_uri", json!(flow.participant.subscriber_uri));
    }
    put("transaction_id", json!(DEFAULT_TRANSACTION_ID));
    put("message_id", json!(DEFAULT_MESSAGE_ID));
    // A request completed for a dry run is dated now by the system's clock.
    put(
        "timestamp",
        json!(crate::beckn::context::rfc3339(jiff::Timestamp::now())),
    );
    put("ttl", json!("PT30S"));
    if let Some(Value::Object(given)) = request.get("context") {
        for (k, v) in given {
            context.insert(k.clone(), v.clone());
        }
    }
    let mut out = Map::new();
    out.insert("context".into(), Value::Object(context));
    if let Some(message) = request.get("message") {
        out.insert("message".into(), message.clone());
    }
    Value::Object(out)
}

/// Why the provider would refuse `request` on arrival (NACK), apart from signatures and
/// expiry: the action named in the context, the core schema, the recipient, the domain rules.
pub fn request_violations(
    flow: &CompiledFlow,
    core: &CoreSchemas,
    action: Action,
    request: &Value,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(found) = request.pointer("/context/action").and_then(Value::as_str)
        && found != action.as_str()
    {
        out.push(Violation {
            path: "context.action".into(),
            message: format!("`{found}` sent to the `{action}` endpoint"),
        });
    }
    if let Some(v) = core.get(action.as_str()) {
        out.extend(v.violations(request, MAX_VIOLATIONS));
    }
    if let Some(bpp_id) = request.pointer("/context/bpp_id").and_then(Value::as_str)
        && bpp_id != flow.participant.subscriber_id
    {
        out.push(Violation {
            path: "context.bpp_id".into(),
            message: format!(
                "addressed to `{bpp_id}`, but this flow is `{}`",
                flow.participant.subscriber_id
            ),
        });
    }
    if let Some(rules) = &flow.domain_rules {
        out.extend(rules.check(
            action.as_str(),
            request,
            flow.allow_loopback_uris,
            MAX_VIOLATIONS,
        ));
    }
    out
}
