//! The status-change log. Every status an order enters is one event, numbered in a single
//! sequence across labs; the webhook posts each, and `GET /api/v1/labs/{lab}/order-events`
//! lists a lab's events after a given number, for integrations that poll instead.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::ErpError;
use crate::orders::{Order, OrderStatus};

/// The event name of every status change.
pub const STATUS_CHANGED: &str = "order.status_changed";
/// Events per page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The most events one page holds.
pub const MAX_LIMIT: usize = 500;

/// One status change, as posted to the webhook and listed by the events endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEvent {
    /// Stable and unique (`EV-000042`): the same change always has the same id.
    pub event_id: String,
    /// The event's place in the log, across labs; `after` compares with it.
    pub seq: u64,
    pub event: &'static str,
    pub lab_code: String,
    pub order_no: String,
    pub client_ref: String,
    pub status: OrderStatus,
    /// When the order entered `status`.
    pub at: Timestamp,
    /// The order as of this change.
    pub order: Order,
}

/// Every status change since the ERP started, oldest first.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Vec<StatusEvent>,
}

/// The query of the events endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    /// Only events with a larger `seq` (default 0: from the start).
    pub after: Option<u64>,
    /// At most this many (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    pub limit: Option<usize>,
}

/// One page of a lab's events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventPage {
    pub events: Vec<StatusEvent>,
    /// What to pass as `after` next time: the last event's `seq`, or `after` itself when
    /// there was none.
    pub next: u64,
}

impl EventLog {
    /// Logs one event per order snapshot, in order, and returns them.
    pub fn record(&mut self, changes: &[Order]) -> Vec<StatusEvent> {
        let mut out = Vec::with_capacity(changes.len());
        for order in changes {
            let seq = self.events.len() as u64 + 1;
            let event = StatusEvent {
                event_id: format!("EV-{seq:06}"),
                seq,
                event: STATUS_CHANGED,
                lab_code: order.lab_code.clone(),
                order_no: order.order_no.clone(),
                client_ref: order.client_ref.clone(),
                status: order.status,
                at: order.updated_at,
                order: order.clone(),
            };
            self.events.push(event.clone());
            out.push(event);
        }
        out
    }

    /// Lab `lab`'s events after `query.after`, oldest first.
    pub fn page(&self, lab: &str, query: &EventQuery) -> Result<EventPage, ErpError> {
        let after = query.after.unwrap_or(0);
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ErpError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        // `seq` is the position in the log plus one, so the search can start there.
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        let events: Vec<StatusEvent> = self.events[start..]
            .iter()
            .filter(|e| e.lab_code == lab)
            .take(limit)
            .cloned()
            .collect();
        let next = events.last().map_or(after, |e| e.seq);
        Ok(EventPage { events, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{Customer, Payment, PaymentMode, PaymentStatus};

    fn order(lab: &str, no: u32, status: OrderStatus) -> Order {
        let now: Timestamp = "2026-11-23T10:00:00+05:30".parse().expect("timestamp");
        Order {
            order_no: format!("{lab}-{no:06}"),
            lab_code: lab.into(),
            client_ref: format!("txn-{lab}-{no}"),
            status,
            items: Vec::new(),
            pickup_fee_paise: 0,
            gst_paise: 0,
            total_paise: 0,
            currency: "INR".into(),
            mode: crate::catalog::Mode::LabDrop,
            slot: None,
            customer: Customer {
                name: "Asha Devi".into(),
                phone: "+91-98765-43210".into(),
                email: None,
                address: None,
                pincode: "411001".into(),
                gps: None,
            },
            billing: None,
            payment: Payment {
                mode: PaymentMode::CashOnCollection,
                status: PaymentStatus::Pending,
            },
            agent: None,
            report_url: None,
            recommendations: None,
            tracking_url: None,
            cancellation: None,
            feedback: None,
            created_at: now,
            updated_at: now,
            history: Vec::new(),
        }
    }

    fn query(after: u64, limit: usize) -> EventQuery {
        EventQuery {
            after: Some(after),
            limit: Some(limit),
        }
    }

    #[test]
    fn events_are_numbered_once_across_labs() {
        let mut log = EventLog::default();
        let first = log.record(&[
            order("KTH", 1, OrderStatus::ReceivedAtLab),
            order("GFSL", 1, OrderStatus::ReceivedAtLab),
        ]);
        let second = log.record(&[order("KTH", 1, OrderStatus::Testing)]);
        let ids: Vec<_> = first
            .iter()
            .chain(&second)
            .map(|e| e.event_id.as_str())
            .collect();
        assert_eq!(ids, ["EV-000001", "EV-000002", "EV-000003"]);
        assert_eq!(second[0].seq, 3);
        assert_eq!(second[0].event, STATUS_CHANGED);
        assert_eq!(second[0].client_ref, "txn-KTH-1");
    }

    #[test]
    fn pages_list_one_lab_after_the_cursor() {
        let mut log = EventLog::default();
        log.record(&[
            order("KTH", 1, OrderStatus::ReceivedAtLab),
            order("GFSL", 1, OrderStatus::ReceivedAtLab),
            order("KTH", 1, OrderStatus::Testing),
            order("KTH", 1, OrderStatus::ReportReady),
        ]);
        let page = log.page("KTH", &query(0, 2)).expect("page");
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 3]);
        assert_eq!(page.next, 3);
        let page = log.page("KTH", &query(page.next, 2)).expect("page");
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].status, OrderStatus::ReportReady);
        assert_eq!(page.next, 4);
        let empty = log.page("KTH", &query(4, 2)).expect("page");
        assert!(empty.events.is_empty());
        assert_eq!(empty.next, 4, "an empty page keeps the cursor");
        let beyond = log.page("KTH", &query(99, 2)).expect("page");
        assert_eq!((beyond.events.len(), beyond.next), (0, 99));
        let gfsl = log.page("GFSL", &EventQuery::default()).expect("page");
        assert_eq!(gfsl.events.len(), 1);
    }

    #[test]
    fn limits_are_bounded() {
        let log = EventLog::default();
        assert!(log.page("KTH", &query(0, 0)).is_err());
        assert!(log.page("KTH", &query(0, MAX_LIMIT + 1)).is_err());
        assert!(log.page("KTH", &query(0, MAX_LIMIT)).is_ok());
    }

    #[test]
    fn events_serialize_with_their_order() {
        let mut log = EventLog::default();
        let event = log.record(&[order("KTH", 7, OrderStatus::ReportReady)]);
        let json = serde_json::to_value(&event[0]).expect("serializes");
        assert_eq!(json["event_id"], "EV-000001");
        assert_eq!(json["event"], "order.status_changed");
        assert_eq!(json["status"], "REPORT_READY");
        assert_eq!(json["order"]["order_no"], "KTH-000007");
    }
}
