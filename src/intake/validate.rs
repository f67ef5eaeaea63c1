//! The checks of a message arriving (the first failure is its NACK) and of one leaving (its
//! violations, for the sender to log and replace).

use serde_json::Value;

use super::message::text;
use super::nack::first_violation;
use crate::beckn::ack::Rejection;
use crate::beckn::action::Action;
use crate::beckn::context::{TimeLimits, check_times};
use crate::beckn::domain::DomainRules;
use crate::beckn::schema::{CoreSchemas, Violation};

/// Most violations reported in one NACK or log line.
pub const MAX_VIOLATIONS: usize = 5;

/// What one flow's messages are checked against, taken from the flow by its role.
pub struct Rules<'a> {
    /// The flow's name, for log lines.
    pub flow: &'a str,
    /// Our subscriber id: the recipient a message must name.
    pub subscriber_id: &'a str,
    pub core: &'a CoreSchemas,
    pub domain: Option<&'a DomainRules>,
    pub allow_loopback_uris: bool,
    /// Bounds on a received message's `timestamp` and `ttl`.
    pub time_limits: &'a TimeLimits,
}

impl Rules<'_> {
    /// Every check of a parsed request to a provider, in order (action, core schema,
    /// recipient, domain rules, times against `now`); the first failure is the NACK.
    pub fn check_request(
        &self,
        action: Action,
        request: &Value,
        now: jiff::Timestamp,
    ) -> Result<(), Rejection> {
        action_matches(action.as_str(), request)?;
        self.core_violation(action.as_str(), request)?;
        if let Some(bpp_id) = request.pointer("/context/bpp_id").and_then(Value::as_str)
            && bpp_id != self.subscriber_id
        {
            return Err(Rejection::WrongRecipient {
                ours: self.subscriber_id.to_string(),
                found: bpp_id.to_string(),
            });
        }
        self.domain_violation(action.as_str(), request)?;
        let context = request.get("context").unwrap_or(&Value::Null);
        check_times(context, self.time_limits, now)?;
        Ok(())
    }

    /// The checks of a parsed callback to a buyer app before it is looked at: action, core
    /// schema, recipient, domain rules.
    pub fn check_callback(&self, action: Action, body: &Value) -> Result<(), Rejection> {
        let name = action.callback();
        action_matches(name, body)?;
        self.core_violation(name, body)?;
        let bap_id = text(body, "/context/bap_id");
        if bap_id != self.subscriber_id {
            return Err(Rejection::WrongBap {
                ours: self.subscriber_id.to_string(),
                found: bap_id.to_string(),
            });
        }
        self.domain_violation(name, body)?;
        Ok(())
    }

    /// Core schema and domain rule violations of an outgoing message `name`.
    pub fn outgoing_violations(&self, name: &str, body: &Value) -> Vec<Violation> {
        let mut out = self
            .core
            .get(name)
            .map(|v| v.violations(body, MAX_VIOLATIONS))
            .unwrap_or_default();
        if let Some(rules) = self.domain {
            out.extend(rules.check(name, body, self.allow_loopback_uris, MAX_VIOLATIONS));
        }
        out
    }

    fn core_violation(&self, name: &str, body: &Value) -> Result<(), Rejection> {
        match self.core.get(name) {
            Some(v) => first_violation(v.violations(body, MAX_VIOLATIONS)),
            None => Ok(()),
        }
    }

    fn domain_violation(&self, name: &str, body: &Value) -> Result<(), Rejection> {
        match self.domain {
            Some(rules) => {
                first_violation(rules.check(name, body, self.allow_loopback_uris, MAX_VIOLATIONS))
            }
            None => Ok(()),
        }
    }
}

/// The action a message's context names (if it names one) must be the one of the endpoint it
/// came to, `name`.
pub fn action_matches(name: &str, body: &Value) -> Result<(), Rejection> {
    match body.pointer("/context/action").and_then(Value::as_str) {
        Some(found) if found != name => Err(Rejection::ActionMismatch {
            endpoint: name.to_string(),
            found: found.to_string(),
        }),
        _ => Ok(()),
    }
}
