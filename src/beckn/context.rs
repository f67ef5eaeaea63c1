//! Building the context of outgoing messages from the context of the request they answer.

use serde_json::{Value, json};

use super::action::Action;
use crate::compile::CompiledFlow;

/// The context of the `on_*` answering `request_context`: same transaction and message ids,
/// the callback's action, this provider's id and URI, and a fresh timestamp.
pub fn callback_context(flow: &CompiledFlow, action: Action, request_context: &Value) -> Value {
    let mut ctx = match request_context {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    ctx["action"] = json!(action.callback());
    ctx["bpp_id"] = json!(flow.subscriber_id);
    ctx["bpp_uri"] = json!(flow.subscriber_uri);
    ctx["timestamp"] = json!(now_rfc3339());
    if ctx.get("domain").is_none() {
        ctx["domain"] = json!(flow.domain);
    }
    if ctx.get("version").is_none() {
        ctx["version"] = json!("1.1.0");
    }
    ctx
}

/// RFC 3339 in UTC with milliseconds, as Beckn messages carry it.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    format!("{:.3}", now)
}

/// When a request stops being valid: `timestamp + ttl`, if both are present and well formed.
///
/// The ttl is parsed as a full ISO 8601 duration, calendar units included: the schema accepts
/// `P1D` or `P1M`, and a fixed-length duration type would reject them, silently skipping the
/// stale check. Calendar units are added in UTC, where a day is always 24 hours.
pub fn expiry(context: &Value) -> Option<jiff::Timestamp> {
    let ts: jiff::Timestamp = context.get("timestamp")?.as_str()?.parse().ok()?;
    let ttl: jiff::Span = context.get("ttl")?.as_str()?.parse().ok()?;
    let expires = ts
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .checked_add(ttl)
        .ok()?;
    Some(expires.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_adds_ttl() {
        let ctx = json!({"timestamp": "2026-01-01T10:00:00Z", "ttl": "PT30S"});
        assert_eq!(expiry(&ctx).unwrap().to_string(), "2026-01-01T10:00:30Z");
        assert!(expiry(&json!({"timestamp": "x", "ttl": "PT30S"})).is_none());
    }

    #[test]
    fn expiry_takes_calendar_units() {
        let at = |ttl: &str| {
            expiry(&json!({"timestamp": "2026-01-31T10:00:00+05:30", "ttl": ttl}))
                .map(|t| t.to_string())
        };
        assert_eq!(at("P1D").as_deref(), Some("2026-02-01T04:30:00Z"));
        assert_eq!(at("P1DT2H").as_deref(), Some("2026-02-01T06:30:00Z"));
        assert_eq!(at("P1W").as_deref(), Some("2026-02-07T04:30:00Z"));
        assert_eq!(at("P1M").as_deref(), Some("2026-02-28T04:30:00Z"));
        assert!(at("soon").is_none());
    }

    #[test]
    fn timestamps_are_rfc3339_millis() {
        let s = now_rfc3339();
        assert!(s.ends_with('Z') && s.contains('.'), "{s}");
        assert!(s.parse::<jiff::Timestamp>().is_ok());
    }
}
