//! Ultra's OMS rules: what an order update must look like before it is sent (the order in which
//! its states may follow each other is the store ledger's), and what Ultra's answers mean for
//! the outbox.

use serde_json::Value;

use super::states::OmsState;
use crate::beckn::schema::{JsonValidator, Violation};
use crate::config::ultra::TimestampUnit;

/// A checked order update, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OmsOrder {
    pub order_id: String,
    pub state: OmsState,
    pub identity_token: String,
    /// In the connection's unit.
    pub last_fulfillment_date: i64,
    /// The body to POST.
    pub body: Value,
}

/// Tidies what a mapping produced (an empty or null `orderMetadata` or `description` is left
/// out, as Ultra wants) and checks it against the schema and the rules that relate fields.
pub fn check(
    mut order: Value,
    schema: &JsonValidator,
    unit: TimestampUnit,
) -> Result<OmsOrder, Vec<Violation>> {
    if let Some(map) = order.as_object_mut() {
        let empty = |v: &Value| {
            v.is_null() || v.as_object().is_some_and(|m| m.is_empty()) || v.as_str() == Some("")
        };
        for key in ["orderMetadata", "description"] {
            if map.get(key).is_some_and(empty) {
                map.remove(key);
            }
        }
    }
    let mut problems = schema.violations(&order, 16);
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut rule = |path: &str, message: String| {
        problems.push(Violation {
            path: path.to_string(),
            message,
        })
    };
    let num = |k: &str| order.get(k).and_then(Value::as_f64).unwrap_or_default();
    let int = |k: &str| order.get(k).and_then(Value::as_i64).unwrap_or_default();
    let text = |k: &str| order.get(k).and_then(Value::as_str).unwrap_or_default();
    let state = OmsState::parse(text("orderState")).unwrap_or(OmsState::Confirmed);
    let (forward, reverse) = (num("forwardTransaction"), num("reverseTransaction"));
    if reverse > forward {
        rule(
            "reverseTransaction",
            format!("the refund {reverse} is more than the amount paid {forward}"),
        );
    }
    if reverse > 0.0 && state == OmsState::Confirmed {
        rule(
            "reverseTransaction",
            "a refund belongs to a cancelled or fulfilled order, not a confirmed one".into(),
        );
    }
    for key in ["forwardTransaction", "reverseTransaction"] {
        let scaled = num(key) * 10_000.0;
        if (scaled - scaled.round()).abs() > 1e-6 {
            rule(key, format!("{} has more than 4 decimals", num(key)));
        }
    }
    let (low, high) = match unit {
        TimestampUnit::Seconds => (1_000_000_000, 100_000_000_000),
        TimestampUnit::Milliseconds => (1_000_000_000_000, 100_000_000_000_000),
    };
    for key in [
        "orderTimestamp",
        "orderUpdatedTimestamp",
        "lastFulfillmentDate",
    ] {
        let v = int(key);
        if !(low..high).contains(&v) {
            rule(
                key,
                format!(
                    "{v} is not a Unix time in {} (the connection's `timestamp_unit`)",
                    unit.as_str()
                ),
            );
        }
    }
    if int("orderUpdatedTimestamp") < int("orderTimestamp") {
        rule(
            "orderUpdatedTimestamp",
            "the update is older than the order".into(),
        );
    }
    if int("lastFulfillmentDate") < int("orderTimestamp") {
        rule(
            "lastFulfillmentDate",
            "the last fulfillment date is before the order".into(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(OmsOrder {
        order_id: text("orderId").to_string(),
        state,
        identity_token: text("identityToken").to_string(),
        last_fulfillment_date: int("lastFulfillmentDate"),
        body: order,
    })
}

/// What an answer of `POST /3/oms` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OmsAnswer {
    Accepted,
    /// Code 23: this state was accepted before (a repeat): done.
    AlreadyAccepted,
    /// Rate limited (429, code 31) or a server problem: try again later.
    Retry(String),
    /// Refused for good (codes 10-15, 21-26 and other 4xx), with Flipkart's message.
    Refused(String),
}

/// Reads Ultra's answer: HTTP status and body (`{"status": <code>, "message": ...}`).
pub fn classify(http: u16, body: &[u8]) -> OmsAnswer {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|v| v.get("status")).and_then(|s| {
        s.as_i64()
            .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
    });
    let message = super::api::answer_message(body);
    let described = |what: &str| match code {
        Some(c) => format!("{what} (HTTP {http}, code {c}): {message}"),
        None => format!("{what} (HTTP {http}): {message}"),
    };
    match (http, code) {
        (200..=299, Some(23)) | (400..=499, Some(23)) => OmsAnswer::AlreadyAccepted,
        (200..=299, _) => OmsAnswer::Accepted,
        (429, _) | (_, Some(31)) | (408, _) => OmsAnswer::Retry(described("rate limited")),
        // An expired secureToken: the next attempt carries a fresh one.
        (_, Some(13)) => OmsAnswer::Retry(described("token expired")),
        (500..=599, _) => OmsAnswer::Retry(described("Ultra failed")),
        (_, Some(10..=15)) => OmsAnswer::Refused(described("token or identity refused")),
        (_, Some(21..=26)) => OmsAnswer::Refused(described("order refused")),
        _ => OmsAnswer::Refused(described("refused")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> JsonValidator {
        let text = include_str!("../../../schemas/ultra/oms-order.json");
        JsonValidator::compile(&serde_json::from_str(text).unwrap()).unwrap()
    }

    fn order() -> Value {
        json!({
            "orderId": "GFSL-000001", "orderState": "ORDER_CONFIRMED", "identityToken": "IDT-1",
            "description": "Soil test", "orderTimestamp": 1_795_428_000_i64,
            "orderUpdatedTimestamp": 1_795_428_000_i64, "forwardTransaction": 647.82,
            "reverseTransaction": 0, "lastFulfillmentDate": 1_796_032_800_i64,
            "orderMetadata": {}
        })
    }

    fn paths(r: Result<OmsOrder, Vec<Violation>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|v| v.path).collect()
    }

    #[test]
    fn a_good_order_passes_and_loses_its_empty_metadata() {
        let ok = check(order(), &schema(), TimestampUnit::Seconds).unwrap();
        assert_eq!(ok.state, OmsState::Confirmed);
        assert!(ok.body.get("orderMetadata").is_none());
        assert_eq!(ok.last_fulfillment_date, 1_796_032_800);
    }

    #[test]
    fn each_rule_names_its_field() {
        let s = schema();
        let mut o = order();
        o["forwardTransaction"] = json!(0);
        assert_eq!(
            paths(check(o, &s, TimestampUnit::Seconds)),
            ["forwardTransaction"]
        );
        let mut o = order();
        o["orderState"] = json!("ORDER_SHIPPED");
        assert_eq!(paths(check(o, &s, TimestampUnit::Seconds)), ["orderState"]);
        let mut o = order();
        o["reverseTransaction"] = json!(10);
        assert_eq!(
            paths(check(o, &s, TimestampUnit::Seconds)),
            ["reverseTransaction"]
        );
        let mut o = order();
        o["orderState"] = json!("ORDER_CANCELLED");
        o["reverseTransaction"] = json!(700);
        assert_eq!(
            paths(check(o, &s, TimestampUnit::Seconds)),
            ["reverseTransaction"]
        );
        let mut o = order();
        o["forwardTransaction"] = json!(1.23456);
        assert_eq!(
            paths(check(o, &s, TimestampUnit::Seconds)),
            ["forwardTransaction"]
        );
        // Seconds where milliseconds are configured.
        assert_eq!(
            paths(check(order(), &s, TimestampUnit::Milliseconds)),
            [
                "orderTimestamp",
                "orderUpdatedTimestamp",
                "lastFulfillmentDate"
            ]
        );
        let mut o = order();
        o.as_object_mut().unwrap().remove("identityToken");
        assert_eq!(paths(check(o, &s, TimestampUnit::Seconds)), [""]);
    }

    #[test]
    fn answers_are_classified_as_documented() {
        assert_eq!(classify(200, b"{}"), OmsAnswer::Accepted);
        assert_eq!(
            classify(
                400,
                br#"{"status": 23, "message": "Order state already exists"}"#
            ),
            OmsAnswer::AlreadyAccepted
        );
        assert!(matches!(
            classify(429, br#"{"status": 31}"#),
            OmsAnswer::Retry(_)
        ));
        assert!(matches!(classify(503, b"down"), OmsAnswer::Retry(_)));
        let OmsAnswer::Refused(m) = classify(
            400,
            br#"{"status": 21, "message": "forward transaction must be positive"}"#,
        ) else {
            panic!("code 21 is final")
        };
        assert!(
            m.contains("code 21") && m.contains("forward transaction must be positive"),
            "{m}"
        );
        assert!(matches!(
            classify(401, br#"{"status": 11}"#),
            OmsAnswer::Refused(_)
        ));
    }
}
