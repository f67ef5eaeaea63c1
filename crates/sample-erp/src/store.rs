//! The in-memory books of both labs: orders, slot bookings, tickets, and the
//! counters that number them.
//!
//! Each operation validates everything before it changes anything, so a
//! refused request leaves the books exactly as they were. Callers hold one
//! lock around the whole [`Books`] for the duration of an operation; nothing
//! here awaits.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::civil::Date;

use crate::catalog::{self, Lab, Mode};
use crate::error::ErpError;
use crate::orders::{
    CancelRequest, Order, OrderRequest, OrderStatus, Payment, PaymentMode, PaymentStatus, Tracking,
};
use crate::quotes::{self, CURRENCY, Quote, QuoteRequest};
use crate::slots::{Slot, SlotBook};
use crate::support::{Feedback, FeedbackRequest, Ticket, TicketRequest};

/// Everything the ERP knows that can change.
#[derive(Debug)]
pub struct Books {
    labs: Vec<LabBook>,
}

impl Books {
    /// Empty books for every seeded lab.
    pub fn seeded() -> Books {
        Books {
            labs: catalog::labs().iter().map(LabBook::new).collect(),
        }
    }

    pub fn lab_mut(&mut self, code: &str) -> Result<&mut LabBook, ErpError> {
        self.labs
            .iter_mut()
            .find(|book| book.lab.code == code)
            .ok_or_else(|| ErpError::UnknownLab(code.to_owned()))
    }

    /// Every order of every lab, lab by lab, oldest first.
    pub fn orders(&self) -> Vec<Order> {
        self.labs
            .iter()
            .flat_map(|book| book.orders.values().cloned())
            .collect()
    }
}

/// The outcome of placing an order.
#[derive(Debug, Clone)]
pub struct Placed {
    pub order: Order,
    /// False when the client_ref was already known and nothing was created.
    pub created: bool,
}

/// One lab's books.
#[derive(Debug)]
pub struct LabBook {
    pub lab: &'static Lab,
    /// Keyed by order number, which is zero-padded, so iteration is in
    /// creation order.
    orders: BTreeMap<String, Order>,
    /// client_ref -> order number, for idempotent placement.
    by_client_ref: HashMap<String, String>,
    slots: SlotBook,
    tickets: Vec<Ticket>,
    counters: Counters,
}

/// Per-lab sequences behind order, quote, feedback and ticket numbers.
#[derive(Debug, Default)]
struct Counters {
    orders: u32,
    quotes: u32,
    feedback: u32,
    tickets: u32,
}

/// Increments `counter` and returns the new value.
fn next(counter: &mut u32) -> u32 {
    *counter += 1;
    *counter
}

impl LabBook {
    fn new(lab: &'static Lab) -> LabBook {
        LabBook {
            lab,
            orders: BTreeMap::new(),
            by_client_ref: HashMap::new(),
            slots: SlotBook::default(),
            tickets: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// The slots of `date`, or of the coming week when no date is given.
    pub fn slots(
        &self,
        date: Option<Date>,
        mode: Mode,
        now: Timestamp,
    ) -> Result<Vec<Slot>, ErpError> {
        match date {
            Some(date) => self.slots.day(self.lab, date, mode, now),
            None => self.slots.upcoming(self.lab, mode, now),
        }
    }

    pub fn quote(&mut self, request: &QuoteRequest, now: Timestamp) -> Result<Quote, ErpError> {
        let pricing = quotes::price(self.lab, &request.items, request.mode)?;
        if let Some(pincode) = request.pincode() {
            self.lab.check_pincode(pincode)?;
        }
        let slot = request
            .slot_id
            .as_deref()
            .map(|id| self.slots.available(self.lab, id, request.mode, now))
            .transpose()?;
        let quote_id = format!("Q-{}-{:06}", self.lab.code, next(&mut self.counters.quotes));
        Quote::new(quote_id, self.lab, request.mode, pricing, slot, now)
    }

    /// Places an order, or returns the one already placed with the same
    /// client_ref (whatever the rest of the request says), so that a caller
    /// retrying after a timeout never books twice.
    pub fn place_order(
        &mut self,
        request: OrderRequest,
        now: Timestamp,
    ) -> Result<Placed, ErpError> {
        if let Some(order) = self
            .by_client_ref
            .get(&request.client_ref)
            .and_then(|no| self.orders.get(no))
        {
            return Ok(Placed {
                order: order.clone(),
                created: false,
            });
        }
        validate(&request)?;
        let pricing = quotes::price(self.lab, &request.items, request.mode)?;
        self.lab.check_pincode(&request.customer.pincode)?;
        let slot = match request.slot_id.as_deref() {
            Some(id) => Some(self.slots.book(self.lab, id, request.mode, now)?),
            None => None,
        };
        let order_no = format!("{}-{:06}", self.lab.code, next(&mut self.counters.orders));
        let note = match &slot {
            Some(slot) => format!("booked for slot {}", slot.slot_id),
            None => "booked".to_owned(),
        };
        let mut order = Order {
            order_no: order_no.clone(),
            lab_code: self.lab.code.to_owned(),
            client_ref: request.client_ref.clone(),
            status: OrderStatus::Booked,
            items: pricing.lines,
            pickup_fee_paise: pricing.pickup_fee_paise,
            gst_paise: pricing.gst_paise,
            total_paise: pricing.total_paise,
            currency: CURRENCY.to_owned(),
            mode: request.mode,
            slot,
            customer: request.customer,
            billing: request.billing,
            payment: Payment {
                mode: request
                    .payment_mode
                    .unwrap_or(PaymentMode::CashOnCollection),
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
        };
        order.record(OrderStatus::Booked, now, note);
        self.by_client_ref
            .insert(request.client_ref, order_no.clone());
        self.orders.insert(order_no, order.clone());
        Ok(Placed {
            order,
            created: true,
        })
    }

    pub fn order(&self, order_no: &str) -> Result<&Order, ErpError> {
        self.orders
            .get(order_no)
            .ok_or_else(|| self.order_not_found(order_no))
    }

    fn order_mut(&mut self, order_no: &str) -> Result<&mut Order, ErpError> {
        let missing = self.order_not_found(order_no);
        self.orders.get_mut(order_no).ok_or(missing)
    }

    fn order_not_found(&self, order_no: &str) -> ErpError {
        ErpError::OrderNotFound {
            lab: self.lab.code.to_owned(),
            order_no: order_no.to_owned(),
        }
    }

    pub fn tracking(&self, order_no: &str) -> Result<Tracking, ErpError> {
        Ok(self.order(order_no)?.tracking(self.lab))
    }

    /// Cancels an order and frees its slot. Returns the order and whether it
    /// changed (it does not when it was already cancelled).
    pub fn cancel(
        &mut self,
        order_no: &str,
        request: &CancelRequest,
        now: Timestamp,
    ) -> Result<(Order, bool), ErpError> {
        let lab = self.lab;
        let order = self.order_mut(order_no)?;
        let changed = order.cancel(lab, request, now)?;
        let order = order.clone();
        if changed && let Some(slot) = &order.slot {
            self.slots.release(&slot.slot_id);
        }
        Ok((order, changed))
    }

    /// Moves an order forward (see [`Order::advance`]); returns a snapshot
    /// per status entered, the last being the order as it now is.
    pub fn advance(
        &mut self,
        order_no: &str,
        target: Option<OrderStatus>,
        now: Timestamp,
    ) -> Result<Vec<Order>, ErpError> {
        let lab = self.lab;
        self.order_mut(order_no)?.advance(lab, target, now)
    }

    pub fn feedback(
        &mut self,
        order_no: &str,
        request: &FeedbackRequest,
        now: Timestamp,
    ) -> Result<Feedback, ErpError> {
        // Check the order exists before spending a feedback number on it.
        self.order(order_no)?;
        let feedback_id = format!("FB-{}-{:06}", self.lab.code, self.counters.feedback + 1);
        let feedback = Feedback::new(feedback_id, order_no, request, now)?;
        self.counters.feedback += 1;
        let order = self.order_mut(order_no)?;
        order.feedback = Some(feedback.clone());
        order.updated_at = now;
        Ok(feedback)
    }

    pub fn open_ticket(
        &mut self,
        request: &TicketRequest,
        now: Timestamp,
    ) -> Result<Ticket, ErpError> {
        if let Some(order_no) = &request.order_no {
            self.order(order_no)?;
        }
        let ticket_no = format!("T-{}-{:06}", self.lab.code, self.counters.tickets + 1);
        let ticket = Ticket::open(ticket_no, self.lab, request, now)?;
        self.counters.tickets += 1;
        self.tickets.push(ticket.clone());
        Ok(ticket)
    }
}

/// Checks what pricing does not: who the customer is and where to go.
fn validate(request: &OrderRequest) -> Result<(), ErpError> {
    let blank = |field: &str| ErpError::BadRequest(format!("{field} must not be empty"));
    if request.client_ref.trim().is_empty() {
        return Err(blank("client_ref"));
    }
    if request.customer.name.trim().is_empty() {
        return Err(blank("customer.name"));
    }
    if request.customer.phone.trim().is_empty() {
        return Err(blank("customer.phone"));
    }
    if request.mode == Mode::HomePickup {
        if request.slot_id.is_none() {
            return Err(ErpError::BadRequest(
                "slot_id is required for HOME_PICKUP".into(),
            ));
        }
        if request
            .customer
            .address
            .as_deref()
            .is_none_or(|a| a.trim().is_empty())
        {
            return Err(ErpError::BadRequest(
                "customer.address is required for HOME_PICKUP".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::Customer;
    use crate::quotes::ItemRequest;
    use crate::slots;

    fn now() -> Timestamp {
        "2026-11-23T10:00:00+05:30"
            .parse()
            .expect("valid timestamp")
    }

    fn request(client_ref: &str, mode: Mode, slot_id: Option<String>) -> OrderRequest {
        OrderRequest {
            client_ref: client_ref.into(),
            items: vec![ItemRequest {
                sku: "soil-npk-package".into(),
                qty: 1,
            }],
            mode,
            slot_id,
            customer: Customer {
                name: "Asha Devi".into(),
                phone: "+91-98765-43210".into(),
                email: None,
                address: Some("Kapashera village".into()),
                pincode: "110037".into(),
                gps: None,
            },
            billing: None,
            payment_mode: None,
        }
    }

    fn first_slot() -> String {
        slots::slot_id(
            "GFSL",
            "2026-11-24".parse().expect("date"),
            slots::DAILY_STARTS[0],
        )
    }

    fn gfsl(books: &mut Books) -> &mut LabBook {
        books.lab_mut("GFSL").expect("seeded")
    }

    #[test]
    fn orders_are_numbered_per_lab() {
        let mut books = Books::seeded();
        let a = gfsl(&mut books)
            .place_order(request("a", Mode::LabDrop, None), now())
            .expect("placed");
        let b = gfsl(&mut books)
            .place_order(request("b", Mode::LabDrop, None), now())
            .expect("placed");
        assert_eq!(a.order.order_no, "GFSL-000001");
        assert_eq!(b.order.order_no, "GFSL-000002");
        assert_eq!(books.orders().len(), 2);
    }

    #[test]
    fn same_client_ref_returns_the_same_order_without_booking_again() {
        let mut books = Books::seeded();
        let book = gfsl(&mut books);
        let first = book
            .place_order(request("r", Mode::HomePickup, Some(first_slot())), now())
            .expect("placed");
        let again = book
            .place_order(request("r", Mode::HomePickup, Some(first_slot())), now())
            .expect("placed");
        assert!(first.created);
        assert!(!again.created);
        assert_eq!(first.order, again.order);
        let slot = book
            .slots
            .available(book.lab, &first_slot(), Mode::HomePickup, now())
            .expect("still room");
        assert_eq!(slot.booked, 1);
    }

    #[test]
    fn refused_orders_change_nothing() {
        let mut books = Books::seeded();
        let book = gfsl(&mut books);
        let mut far = request("x", Mode::HomePickup, Some(first_slot()));
        far.customer.pincode = "560001".into();
        assert_eq!(
            book.place_order(far, now()).map(|p| p.created),
            Err(ErpError::OutsideServiceArea("560001".into()))
        );
        let no_slot = request("y", Mode::HomePickup, None);
        assert!(book.place_order(no_slot, now()).is_err());
        assert!(books.orders().is_empty());
        let placed = gfsl(&mut books)
            .place_order(request("z", Mode::LabDrop, None), now())
            .expect("placed");
        assert_eq!(placed.order.order_no, "GFSL-000001");
    }

    #[test]
    fn cancelling_frees_the_slot() {
        let mut books = Books::seeded();
        let book = gfsl(&mut books);
        for n in 0..slots::SLOT_CAPACITY {
            book.place_order(
                request(&format!("r{n}"), Mode::HomePickup, Some(first_slot())),
                now(),
            )
            .expect("placed");
        }
        let full = book.place_order(request("late", Mode::HomePickup, Some(first_slot())), now());
        assert!(matches!(full, Err(ErpError::SlotUnavailable(_))));
        let cancel = CancelRequest {
            reason_code: "CHANGED_MIND".into(),
            note: None,
            by: None,
        };
        let (_, changed) = book.cancel("GFSL-000001", &cancel, now()).expect("cancels");
        assert!(changed);
        let (_, changed) = book
            .cancel("GFSL-000001", &cancel, now())
            .expect("idempotent");
        assert!(!changed);
        book.place_order(request("late", Mode::HomePickup, Some(first_slot())), now())
            .expect("room again");
        let full = book.place_order(
            request("later", Mode::HomePickup, Some(first_slot())),
            now(),
        );
        assert!(
            matches!(full, Err(ErpError::SlotUnavailable(_))),
            "a repeated cancel must not free the slot twice"
        );
    }

    #[test]
    fn feedback_and_tickets_need_a_known_order() {
        let mut books = Books::seeded();
        let book = gfsl(&mut books);
        let rating = FeedbackRequest {
            stars: 4,
            comment: None,
        };
        assert!(matches!(
            book.feedback("GFSL-999999", &rating, now()),
            Err(ErpError::OrderNotFound { .. })
        ));
        let ticket = TicketRequest {
            order_no: Some("GFSL-999999".into()),
            subject: "where is my report".into(),
            phone: None,
            email: None,
        };
        assert!(book.open_ticket(&ticket, now()).is_err());
        book.place_order(request("r", Mode::LabDrop, None), now())
            .expect("placed");
        let feedback = book
            .feedback("GFSL-000001", &rating, now())
            .expect("accepted");
        assert_eq!(feedback.feedback_id, "FB-GFSL-000001");
        assert_eq!(
            book.order("GFSL-000001").map(|o| o.feedback.clone()),
            Ok(Some(feedback))
        );
    }

    #[test]
    fn unknown_lab_is_not_found() {
        let mut books = Books::seeded();
        assert_eq!(
            books.lab_mut("XYZ").map(|b| b.lab.code),
            Err(ErpError::UnknownLab("XYZ".into()))
        );
    }
}
