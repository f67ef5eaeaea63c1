//! Quotations, bookings and their states, feedback and enquiries: the LIMS's books.
//!
//! A booking answers with as little as its vendor thought necessary: creating one returns
//! only `{"booking_no", "state"}`, and its status endpoint the state and when it changed.
//! Whatever else a client wants to show later (the tests, the price, the slot) it has to
//! keep itself.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{Collection, LabTest, rupees};
use crate::error::LimsError;
use crate::slots;

/// A field visit's charge, in paise.
pub const VISIT_CHARGE_PAISE: u64 = 15_000;
/// GST, in percent.
const TAX_PERCENT: u64 = 18;

/// Where a booking is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingState {
    Booked,
    SampleCollected,
    InAnalysis,
    ReportReady,
    Cancelled,
}

impl BookingState {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingState::Booked => "BOOKED",
            BookingState::SampleCollected => "SAMPLE_COLLECTED",
            BookingState::InAnalysis => "IN_ANALYSIS",
            BookingState::ReportReady => "REPORT_READY",
            BookingState::Cancelled => "CANCELLED",
        }
    }

    /// The state the lab moves a booking to next, if any.
    pub fn next(self) -> Option<BookingState> {
        match self {
            BookingState::Booked => Some(BookingState::SampleCollected),
            BookingState::SampleCollected => Some(BookingState::InAnalysis),
            BookingState::InAnalysis => Some(BookingState::ReportReady),
            BookingState::ReportReady | BookingState::Cancelled => None,
        }
    }
}

/// `POST /api/quotations`.
#[derive(Debug, Clone, Deserialize)]
pub struct QuotationRequest {
    pub tests: Vec<QuotedTest>,
    pub collection: Collection,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuotedTest {
    pub test_code: String,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// A priced quotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quotation {
    pub quotation_no: String,
    pub collection: Collection,
    pub lines: Vec<QuotationLine>,
    pub visit_charge: String,
    pub tax: String,
    pub total: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotationLine {
    pub test_code: String,
    pub name: String,
    pub count: u32,
    pub unit_price: String,
    pub amount: String,
}

/// `POST /api/bookings`.
#[derive(Debug, Clone, Deserialize)]
pub struct BookingRequest {
    pub quotation_no: String,
    pub slot_ref: Option<String>,
    pub farmer: Farmer,
    /// The caller's own reference; a second booking under it returns the first.
    pub client_reference: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Farmer {
    pub name: Option<String>,
    pub mobile: Option<String>,
    pub village: Option<String>,
    pub pin: Option<String>,
}

/// What the LIMS says about a booking: little.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookingStatus {
    pub booking_no: String,
    pub state: BookingState,
    /// Local time of the last change.
    pub changed_at: String,
}

/// One booking, as the lab keeps it.
#[derive(Debug, Clone)]
pub struct Booking {
    pub booking_no: String,
    pub quotation_no: String,
    pub slot_ref: Option<String>,
    pub state: BookingState,
    pub changed_at: String,
    pub client_reference: Option<String>,
    pub farmer: Farmer,
}

/// The books: every quotation, booking, feedback and enquiry.
#[derive(Debug, Default)]
pub struct Books {
    quotations: HashMap<String, Quotation>,
    bookings: Vec<Booking>,
    taken: HashSet<String>,
    feedback: usize,
    enquiries: usize,
}

fn paise(amount: &str) -> u64 {
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, "0"));
    let whole: u64 = whole.parse().unwrap_or(0);
    let frac: u64 = format!("{frac:0<2}")[..2].parse().unwrap_or(0);
    whole * 100 + frac
}

fn now_local() -> String {
    let zone = jiff::tz::TimeZone::get(slots::ZONE).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::now()
        .to_zoned_datetime(zone)
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

impl Books {
    /// Prices `request` against `catalog`.
    pub fn quote(
        &mut self,
        catalog: &[LabTest],
        request: &QuotationRequest,
    ) -> Result<Quotation, LimsError> {
        if request.tests.is_empty() {
            return Err(LimsError::Invalid(
                "a quotation needs at least one test".into(),
            ));
        }
        let mut lines = Vec::new();
        let mut net = 0;
        for wanted in &request.tests {
            let test = catalog
                .iter()
                .find(|t| t.test_code == wanted.test_code)
                .ok_or_else(|| LimsError::UnknownTest(wanted.test_code.clone()))?;
            if !test.collection.contains(&request.collection) {
                return Err(LimsError::Invalid(format!(
                    "{} is for walk-in samples only",
                    test.test_code
                )));
            }
            let count = wanted.count.max(1);
            let amount = paise(&test.price) * u64::from(count);
            net += amount;
            lines.push(QuotationLine {
                test_code: test.test_code.clone(),
                name: test.name.clone(),
                count,
                unit_price: test.price.clone(),
                amount: rupees(amount),
            });
        }
        let visit = match request.collection {
            Collection::FieldVisit => VISIT_CHARGE_PAISE,
            Collection::WalkIn => 0,
        };
        let tax = (net + visit) * TAX_PERCENT / 100;
        let quotation = Quotation {
            quotation_no: format!("QT-{:05}", self.quotations.len() + 1),
            collection: request.collection,
            lines,
            visit_charge: rupees(visit),
            tax: rupees(tax),
            total: rupees(net + visit + tax),
            currency: "INR".into(),
        };
        self.quotations
            .insert(quotation.quotation_no.clone(), quotation.clone());
        Ok(quotation)
    }

    /// Books a quotation; the same `client_reference` again returns the first booking.
    pub fn book(&mut self, request: &BookingRequest) -> Result<BookingStatus, LimsError> {
        if let Some(reference) = &request.client_reference
            && let Some(b) = self
                .bookings
                .iter()
                .find(|b| b.client_reference.as_ref() == Some(reference))
        {
            return Ok(status_of(b));
        }
        let quotation = self
            .quotations
            .get(&request.quotation_no)
            .ok_or_else(|| LimsError::UnknownQuotation(request.quotation_no.clone()))?;
        let slot_ref = match (quotation.collection, &request.slot_ref) {
            (Collection::FieldVisit, None) => return Err(LimsError::SlotRequired),
            (Collection::FieldVisit, Some(slot)) => {
                let known = slots::offered(slots::today(), &HashSet::new())
                    .iter()
                    .any(|s| &s.slot_ref == slot);
                if !known {
                    return Err(LimsError::UnknownSlot(slot.clone()));
                }
                if self.taken.contains(slot) {
                    return Err(LimsError::SlotTaken(slot.clone()));
                }
                Some(slot.clone())
            }
            (Collection::WalkIn, _) => None,
        };
        if let Some(slot) = &slot_ref {
            self.taken.insert(slot.clone());
        }
        let booking = Booking {
            booking_no: format!("BHM-{:06}", self.bookings.len() + 1),
            quotation_no: request.quotation_no.clone(),
            slot_ref,
            state: BookingState::Booked,
            changed_at: now_local(),
            client_reference: request.client_reference.clone(),
            farmer: request.farmer.clone(),
        };
        let status = status_of(&booking);
        self.bookings.push(booking);
        Ok(status)
    }

    fn booking_mut(&mut self, booking_no: &str) -> Result<&mut Booking, LimsError> {
        self.bookings
            .iter_mut()
            .find(|b| b.booking_no == booking_no)
            .ok_or_else(|| LimsError::UnknownBooking(booking_no.to_owned()))
    }

    pub fn status(&self, booking_no: &str) -> Result<BookingStatus, LimsError> {
        self.bookings
            .iter()
            .find(|b| b.booking_no == booking_no)
            .map(status_of)
            .ok_or_else(|| LimsError::UnknownBooking(booking_no.to_owned()))
    }

    /// Cancels a booking whose sample is not yet in analysis; its slot opens again.
    pub fn cancel(&mut self, booking_no: &str) -> Result<BookingStatus, LimsError> {
        let booking = self.booking_mut(booking_no)?;
        match booking.state {
            BookingState::Booked | BookingState::SampleCollected => {}
            state => {
                return Err(LimsError::NotCancellable {
                    booking_no: booking_no.to_owned(),
                    state: state.as_str().to_owned(),
                });
            }
        }
        booking.state = BookingState::Cancelled;
        booking.changed_at = now_local();
        let status = status_of(booking);
        if let Some(slot) = booking.slot_ref.clone() {
            self.taken.remove(&slot);
        }
        Ok(status)
    }

    /// Moves a booking to its next state, as the lab's staff do.
    pub fn advance(&mut self, booking_no: &str) -> Result<BookingStatus, LimsError> {
        let booking = self.booking_mut(booking_no)?;
        let next = booking
            .state
            .next()
            .ok_or_else(|| LimsError::AlreadyClosed(booking_no.to_owned()))?;
        booking.state = next;
        booking.changed_at = now_local();
        Ok(status_of(booking))
    }

    /// Records a 1-5 score of a booking.
    pub fn feedback(&mut self, booking_no: &str, score: i64) -> Result<String, LimsError> {
        self.booking_mut(booking_no)?;
        if !(1..=5).contains(&score) {
            return Err(LimsError::BadScore(score));
        }
        self.feedback += 1;
        Ok(format!("FB-{:04}", self.feedback))
    }

    /// Opens an enquiry; its number.
    pub fn enquiry(&mut self) -> String {
        self.enquiries += 1;
        format!("ENQ-{:04}", self.enquiries)
    }

    pub fn slots(&self) -> Vec<slots::Slot> {
        slots::offered(slots::today(), &self.taken)
    }

    pub fn bookings(&self) -> Vec<Booking> {
        self.bookings.clone()
    }
}

fn status_of(b: &Booking) -> BookingStatus {
    BookingStatus {
        booking_no: b.booking_no.clone(),
        state: b.state,
        changed_at: b.changed_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn quotation(books: &mut Books, collection: Collection) -> Quotation {
        let request = QuotationRequest {
            tests: vec![QuotedTest {
                test_code: "BH-SOIL-NPK".into(),
                count: 2,
            }],
            collection,
        };
        books.quote(&catalog::seeded(), &request).unwrap()
    }

    fn booking(quotation_no: &str, slot: Option<String>, reference: &str) -> BookingRequest {
        BookingRequest {
            quotation_no: quotation_no.into(),
            slot_ref: slot,
            farmer: Farmer::default(),
            client_reference: Some(reference.into()),
        }
    }

    #[test]
    fn a_field_visit_quotation_adds_the_visit_and_gst() {
        let mut books = Books::default();
        let q = quotation(&mut books, Collection::FieldVisit);
        assert_eq!(q.lines[0].amount, "2500.00");
        assert_eq!(q.visit_charge, "150.00");
        assert_eq!(q.tax, "477.00");
        assert_eq!(q.total, "3127.00");
        let walk_in = quotation(&mut books, Collection::WalkIn);
        assert_eq!(walk_in.total, "2950.00");
        assert_ne!(q.quotation_no, walk_in.quotation_no);
    }

    #[test]
    fn a_slot_is_booked_once_and_opens_again_on_cancel() {
        let mut books = Books::default();
        let slot = books.slots()[0].slot_ref.clone();
        let q1 = quotation(&mut books, Collection::FieldVisit);
        let q2 = quotation(&mut books, Collection::FieldVisit);
        let first = books
            .book(&booking(&q1.quotation_no, Some(slot.clone()), "t1"))
            .unwrap();
        assert_eq!(first.state, BookingState::Booked);
        assert_eq!(
            books.book(&booking(&q2.quotation_no, Some(slot.clone()), "t2")),
            Err(LimsError::SlotTaken(slot.clone()))
        );
        assert!(!books.slots()[0].open);
        books.cancel(&first.booking_no).unwrap();
        assert!(books.slots()[0].open);
        assert!(
            books
                .book(&booking(&q2.quotation_no, Some(slot), "t2"))
                .is_ok()
        );
    }

    #[test]
    fn a_repeated_reference_returns_the_first_booking() {
        let mut books = Books::default();
        let q = quotation(&mut books, Collection::WalkIn);
        let a = books
            .book(&booking(&q.quotation_no, None, "txn-1"))
            .unwrap();
        let b = books
            .book(&booking(&q.quotation_no, None, "txn-1"))
            .unwrap();
        assert_eq!(a.booking_no, b.booking_no);
        assert_eq!(books.bookings().len(), 1);
    }

    #[test]
    fn states_move_forward_and_analysis_cannot_be_cancelled() {
        let mut books = Books::default();
        let q = quotation(&mut books, Collection::WalkIn);
        let b = books.book(&booking(&q.quotation_no, None, "t")).unwrap();
        assert_eq!(
            books.advance(&b.booking_no).unwrap().state,
            BookingState::SampleCollected
        );
        assert_eq!(
            books.advance(&b.booking_no).unwrap().state,
            BookingState::InAnalysis
        );
        assert!(matches!(
            books.cancel(&b.booking_no),
            Err(LimsError::NotCancellable { .. })
        ));
        assert_eq!(
            books.advance(&b.booking_no).unwrap().state,
            BookingState::ReportReady
        );
        assert_eq!(
            books.advance(&b.booking_no),
            Err(LimsError::AlreadyClosed(b.booking_no.clone()))
        );
    }

    #[test]
    fn field_visits_need_a_known_slot_and_scores_are_1_to_5() {
        let mut books = Books::default();
        let q = quotation(&mut books, Collection::FieldVisit);
        assert_eq!(
            books.book(&booking(&q.quotation_no, None, "a")),
            Err(LimsError::SlotRequired)
        );
        assert!(matches!(
            books.book(&booking(&q.quotation_no, Some("SL-1".into()), "b")),
            Err(LimsError::UnknownSlot(_))
        ));
        let w = quotation(&mut books, Collection::WalkIn);
        let b = books.book(&booking(&w.quotation_no, None, "c")).unwrap();
        assert_eq!(
            books.feedback(&b.booking_no, 6),
            Err(LimsError::BadScore(6))
        );
        assert_eq!(books.feedback(&b.booking_no, 4).unwrap(), "FB-0001");
    }
}
