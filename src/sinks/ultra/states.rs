//! The states of an order at Ultra's OMS and the order in which they may follow each other:
//! the rule the store's ledger asks inside the commit that queues an update.

use crate::store::LedgerQueued;
use crate::store::ledger::StateRule;

/// The outbox sequence key of an order's OMS updates: they are sent one at a time, in order.
pub fn sequence_key(
    connection: &str,
    provider: &str,
    transaction_id: &str,
    order_id: &str,
) -> String {
    format!("ultra:{connection}:{provider}:{transaction_id}:{order_id}")
}

/// The states of an order at Ultra's OMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OmsState {
    Confirmed,
    Fulfilled,
    Cancelled,
}

impl OmsState {
    pub fn as_str(self) -> &'static str {
        match self {
            OmsState::Confirmed => "ORDER_CONFIRMED",
            OmsState::Fulfilled => "ORDER_FULFILLED",
            OmsState::Cancelled => "ORDER_CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<OmsState> {
        match s {
            "ORDER_CONFIRMED" => Some(OmsState::Confirmed),
            "ORDER_FULFILLED" => Some(OmsState::Fulfilled),
            "ORDER_CANCELLED" => Some(OmsState::Cancelled),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        self != OmsState::Confirmed
    }
}

/// Whether an update in `state` replaces the order's ORDER_FULFILLED while that is still held
/// back for its `lastFulfillmentDate` (Ultra has not heard of it): a cancellation or return
/// during the hold drops the held update and goes out in its place.
pub fn replaces_a_held_fulfilment(state: &str) -> bool {
    OmsState::parse(state) == Some(OmsState::Cancelled)
}

/// Why `next` may not follow the states an order already reported, if it may not: the first
/// update is `ORDER_CONFIRMED`, and nothing follows a terminal state.
pub fn sequence_problem(reported: &[OmsState], next: OmsState) -> Option<String> {
    if let Some(terminal) = reported.iter().find(|s| s.is_terminal()) {
        return Some(format!(
            "the order is already {}; nothing may follow it",
            terminal.as_str()
        ));
    }
    if next.is_terminal() && !reported.contains(&OmsState::Confirmed) {
        return Some(format!(
            "{} before ORDER_CONFIRMED: Ultra takes the confirmation first",
            next.as_str()
        ));
    }
    None
}

/// Whether `state` may be queued for an order that reported `reported` (oldest first, as
/// stored): None if so, else why not (a repeat, or a state that may not follow). The stores
/// ask this ([`OMS_STATES`]) inside the transaction that queues the update.
pub fn refusal(reported: &[String], state: &str) -> Option<LedgerQueued> {
    let Some(next) = OmsState::parse(state) else {
        return Some(LedgerQueued::OutOfOrder(format!(
            "`{state}` is not an OMS state"
        )));
    };
    if reported.iter().any(|s| s == state) {
        return Some(LedgerQueued::Repeat);
    }
    let states: Vec<_> = reported.iter().filter_map(|s| OmsState::parse(s)).collect();
    sequence_problem(&states, next).map(LedgerQueued::OutOfOrder)
}

/// Ultra's rule for the store's ledger.
pub struct OmsStates;

/// The rule OMS updates are queued under.
pub static OMS_STATES: OmsStates = OmsStates;

impl StateRule for OmsStates {
    fn refusal(&self, reported: &[String], state: &str) -> Option<LedgerQueued> {
        refusal(reported, state)
    }

    fn replaces_held(&self, state: &str) -> Option<&'static str> {
        replaces_a_held_fulfilment(state).then_some(OmsState::Fulfilled.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_comes_first_and_terminal_states_end_the_order() {
        use OmsState::*;
        assert_eq!(sequence_problem(&[], Confirmed), None);
        assert_eq!(sequence_problem(&[Confirmed], Cancelled), None);
        assert!(
            sequence_problem(&[], Fulfilled)
                .unwrap()
                .contains("before ORDER_CONFIRMED")
        );
        assert!(
            sequence_problem(&[Confirmed, Cancelled], Fulfilled)
                .unwrap()
                .contains("already ORDER_CANCELLED")
        );
        let reported = ["ORDER_CONFIRMED".to_string()];
        assert_eq!(
            refusal(&reported, "ORDER_CONFIRMED"),
            Some(LedgerQueued::Repeat)
        );
        assert_eq!(refusal(&reported, "ORDER_CANCELLED"), None);
        assert!(matches!(
            refusal(&[], "ORDER_FULFILLED"),
            Some(LedgerQueued::OutOfOrder(_))
        ));
        assert!(matches!(
            refusal(&[], "ORDER_SHIPPED"),
            Some(LedgerQueued::OutOfOrder(_))
        ));
    }
}
