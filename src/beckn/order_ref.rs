//! Which orders a request acts on. An order belongs to the buyer app that placed it, so a
//! provider answers `status`, `track`, `cancel`, `update`, `rating` and `support` about an order
//! only for that buyer app; these are the places Beckn 1.1.0 names the order in.

use serde_json::Value;

use super::action::Action;
use super::error::ErrorCode;

/// The order ids `message` of `action` refers to (empty: the action names no order).
pub fn referenced_orders(action: Action, message: &Value) -> Vec<&str> {
    let text = |pointer: &str| message.pointer(pointer).and_then(Value::as_str);
    match action {
        Action::Status | Action::Track | Action::Cancel => text("/order_id").into_iter().collect(),
        Action::Update => text("/order/id").into_iter().collect(),
        // A rating of an order (or of its fulfilment, which names no order id of its own and
        // so is judged by the transaction alone).
        Action::Rating => message
            .get("ratings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| r.get("rating_category").and_then(Value::as_str) == Some("Order"))
            .filter_map(|r| r.get("id").and_then(Value::as_str))
            .collect(),
        Action::Support => text("/support/ref_id")
            .or_else(|| text("/support/order_id"))
            .into_iter()
            .collect(),
        Action::Search | Action::Select | Action::Init | Action::Confirm => Vec::new(),
    }
}

/// The code answering an order action about an order the sender did not place: the one an
/// unknown order gets, so the answer says nothing about whether the order exists.
pub fn unknown_order_code(action: Action) -> ErrorCode {
    match action {
        Action::Rating => ErrorCode::EntityToRateNotFound,
        _ => ErrorCode::OrderNotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn order_ids_are_found_where_beckn_puts_them() {
        let m = json!({"order_id": "O1"});
        assert_eq!(referenced_orders(Action::Status, &m), ["O1"]);
        assert_eq!(referenced_orders(Action::Cancel, &m), ["O1"]);
        assert_eq!(referenced_orders(Action::Track, &m), ["O1"]);
        assert_eq!(
            referenced_orders(Action::Update, &json!({"order": {"id": "O2"}})),
            ["O2"]
        );
        let ratings = json!({"ratings": [
            {"rating_category": "Provider", "id": "GFSL", "value": "5"},
            {"rating_category": "Order", "id": "O3", "value": "4"}
        ]});
        assert_eq!(referenced_orders(Action::Rating, &ratings), ["O3"]);
        assert_eq!(
            referenced_orders(Action::Support, &json!({"support": {"ref_id": "O4"}})),
            ["O4"]
        );
        assert!(referenced_orders(Action::Support, &json!({"support": {}})).is_empty());
        assert!(referenced_orders(Action::Confirm, &json!({"order": {"id": "O5"}})).is_empty());
    }
}
