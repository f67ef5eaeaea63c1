//! The OMS rules, as Ultra enforces them on `POST /3/oms`.

use serde_json::Value;

use crate::User;

/// An order as the stand-in keeps it: the latest accepted body and each state in turn.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AcceptedOrder {
    pub order_id: String,
    pub identity_token: String,
    pub states: Vec<String>,
    pub latest: Value,
}

/// A refusal: Ultra's status code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmsError {
    pub code: i64,
    pub message: String,
}

impl OmsError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        OmsError {
            code,
            message: message.into(),
        }
    }
}

const STATES: [&str; 3] = ["ORDER_CONFIRMED", "ORDER_FULFILLED", "ORDER_CANCELLED"];
const FIELDS: [&str; 10] = [
    "orderId",
    "orderState",
    "identityToken",
    "description",
    "orderTimestamp",
    "orderUpdatedTimestamp",
    "forwardTransaction",
    "reverseTransaction",
    "lastFulfillmentDate",
    "orderMetadata",
];

/// Applies one upsert to `orders`, or says why not.
pub fn upsert(
    orders: &mut Vec<AcceptedOrder>,
    users: &[User],
    order: Value,
    now: i64,
) -> Result<(), OmsError> {
    let bad = |m: String| OmsError::new(22, m);
    let map = order
        .as_object()
        .ok_or_else(|| bad("the order must be an object".into()))?;
    if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("unknown field {k}")));
    }
    let text = |k: &str| -> Result<&str, OmsError> {
        map.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("{k} must be a non-empty string")))
    };
    let seconds = |k: &str| -> Result<i64, OmsError> {
        let v = map
            .get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(format!("{k} must be an integer")))?;
        if !(1_000_000_000..100_000_000_000).contains(&v) {
            return Err(bad(format!("{k} {v} is not a Unix time in seconds")));
        }
        Ok(v)
    };
    let amount = |k: &str| -> Result<f64, OmsError> {
        map.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("{k} must be a number")))
    };
    let order_id = text("orderId")?;
    let state = text("orderState")?;
    if !STATES.contains(&state) {
        return Err(bad(format!("unknown orderState {state}")));
    }
    let identity = text("identityToken")?;
    if !users.iter().any(|u| u.identity_token == identity) {
        return Err(OmsError::new(14, "unknown identityToken"));
    }
    let created = seconds("orderTimestamp")?;
    let updated = seconds("orderUpdatedTimestamp")?;
    let last = seconds("lastFulfillmentDate")?;
    if updated < created {
        return Err(bad("orderUpdatedTimestamp is before orderTimestamp".into()));
    }
    let forward = amount("forwardTransaction")?;
    let reverse = amount("reverseTransaction")?;
    if forward <= 0.0 {
        return Err(OmsError::new(
            21,
            "forwardTransaction must be more than zero",
        ));
    }
    if reverse > forward {
        return Err(OmsError::new(
            25,
            "reverseTransaction is more than forwardTransaction",
        ));
    }
    if reverse > 0.0 && state == "ORDER_CONFIRMED" {
        return Err(OmsError::new(26, "reverseTransaction on a confirmed order"));
    }
    match map.get("orderMetadata") {
        None => {}
        Some(Value::Object(m)) if !m.is_empty() && m.values().all(Value::is_string) => {}
        Some(_) => {
            return Err(bad(
                "orderMetadata must be a non-empty map of strings, or left out".into(),
            ));
        }
    }
    if let Some(d) = map.get("description")
        && !d.is_string()
    {
        return Err(bad("description must be a string".into()));
    }
    match orders
        .iter_mut()
        .find(|o| o.order_id == order_id && o.identity_token == identity)
    {
        None if state != "ORDER_CONFIRMED" => Err(OmsError::new(
            24,
            format!("{state} for an order never confirmed"),
        )),
        None => {
            orders.push(AcceptedOrder {
                order_id: order_id.to_string(),
                identity_token: identity.to_string(),
                states: vec![state.to_string()],
                latest: order.clone(),
            });
            Ok(())
        }
        Some(existing) => {
            if existing.states.iter().any(|s| s == state) {
                return Err(OmsError::new(23, "order state already exists"));
            }
            if existing.states.iter().any(|s| s != "ORDER_CONFIRMED") {
                return Err(OmsError::new(
                    24,
                    "the order is already in a terminal state",
                ));
            }
            let previous_last = existing
                .latest
                .get("lastFulfillmentDate")
                .and_then(Value::as_i64)
                .unwrap_or(last);
            if now > previous_last {
                return Err(OmsError::new(
                    24,
                    "the order's last fulfillment date has passed",
                ));
            }
            existing.states.push(state.to_string());
            existing.latest = order.clone();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Vec<User> {
        vec![User {
            identity_token: "IDT".into(),
            mobile: "9".into(),
            email: "e".into(),
        }]
    }

    fn order(state: &str, reverse: f64) -> Value {
        json!({"orderId": "O1", "orderState": state, "identityToken": "IDT",
            "orderTimestamp": 1_795_428_000_i64, "orderUpdatedTimestamp": 1_795_428_000_i64,
            "forwardTransaction": 647.82, "reverseTransaction": reverse,
            "lastFulfillmentDate": 1_796_032_800_i64})
    }

    #[test]
    fn the_rules_of_the_order_life() {
        let (mut orders, users, now) = (Vec::new(), user(), 1_795_428_100);
        let code = |r: Result<(), OmsError>| r.err().map(|e| e.code);
        assert_eq!(
            code(upsert(
                &mut orders,
                &users,
                order("ORDER_CANCELLED", 0.0),
                now
            )),
            Some(24)
        );
        assert_eq!(
            code(upsert(
                &mut orders,
                &users,
                order("ORDER_CONFIRMED", 1.0),
                now
            )),
            Some(26)
        );
        assert_eq!(
            code(upsert(
                &mut orders,
                &users,
                order("ORDER_CONFIRMED", 0.0),
                now
            )),
            None
        );
        assert_eq!(
            code(upsert(
                &mut orders,
                &users,
                order("ORDER_CONFIRMED", 0.0),
                now
            )),
            Some(23)
        );
        assert_eq!(
            code(upsert(
                &mut orders,
                &users,
                order("ORDER_CANCELLED", 700.0),
                now
            )),
            Some(25)
        );
        assert_eq!(
            code(upsert(
                &mut orders,
                &users,
                order("ORDER_CANCELLED", 647.82),
                now
            )),
            None
        );
        assert_eq!(
            code(upsert(
                &mut orders,
                &users,
                order("ORDER_FULFILLED", 0.0),
                now
            )),
            Some(24)
        );
        assert_eq!(orders[0].states, ["ORDER_CONFIRMED", "ORDER_CANCELLED"]);
        let mut o = order("ORDER_CONFIRMED", 0.0);
        o["forwardTransaction"] = json!(0);
        o["orderId"] = json!("O2");
        assert_eq!(code(upsert(&mut orders, &users, o, now)), Some(21));
        let mut o = order("ORDER_CONFIRMED", 0.0);
        o["orderTimestamp"] = json!(1_795_428_000_000_i64);
        assert_eq!(code(upsert(&mut orders, &users, o, now)), Some(22));
        let mut o = order("ORDER_CONFIRMED", 0.0);
        o["identityToken"] = json!("nobody");
        assert_eq!(code(upsert(&mut orders, &users, o, now)), Some(14));
    }
}
