//! After-sales: customer ratings and help-desk tickets.
//!
//! Both are small records; they live here rather than in `orders` because a
//! ticket need not concern an order at all.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::catalog::Lab;
use crate::error::ErpError;

/// Body of `POST /orders/{order_no}/feedback`.
#[derive(Debug, Clone, Deserialize)]
pub struct FeedbackRequest {
    /// Signed so that out-of-range values get a clear message rather than a
    /// JSON type error.
    pub stars: i64,
    pub comment: Option<String>,
}

/// A customer's rating of an order; a later rating replaces an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    pub feedback_id: String,
    pub order_no: String,
    pub stars: u8,
    pub comment: Option<String>,
    pub received_at: Timestamp,
}

impl Feedback {
    pub fn new(
        feedback_id: String,
        order_no: &str,
        request: &FeedbackRequest,
        now: Timestamp,
    ) -> Result<Feedback, ErpError> {
        let stars = u8::try_from(request.stars)
            .ok()
            .filter(|stars| (1..=5).contains(stars))
            .ok_or_else(|| {
                ErpError::BadRequest(format!(
                    "stars must be between 1 and 5, got {}",
                    request.stars
                ))
            })?;
        Ok(Feedback {
            feedback_id,
            order_no: order_no.to_owned(),
            stars,
            comment: request.comment.clone(),
            received_at: now,
        })
    }
}

/// Body of `POST /tickets`.
#[derive(Debug, Clone, Deserialize)]
pub struct TicketRequest {
    pub order_no: Option<String>,
    pub subject: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TicketStatus {
    Open,
}

/// A help-desk ticket, with the ways to chase it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ticket {
    pub ticket_no: String,
    pub status: TicketStatus,
    pub order_no: Option<String>,
    pub subject: String,
    /// How the customer asked to be reached back, if they said.
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub helpline: &'static str,
    pub email: &'static str,
    pub support_url: String,
    pub created_at: Timestamp,
}

impl Ticket {
    pub fn open(
        ticket_no: String,
        lab: &'static Lab,
        request: &TicketRequest,
        now: Timestamp,
    ) -> Result<Ticket, ErpError> {
        let subject = request.subject.trim();
        if subject.is_empty() {
            return Err(ErpError::BadRequest("subject must not be empty".into()));
        }
        Ok(Ticket {
            support_url: format!("https://{}/support/{ticket_no}", lab.domain),
            ticket_no,
            status: TicketStatus::Open,
            order_no: request.order_no.clone(),
            subject: subject.to_owned(),
            contact_phone: request.phone.clone(),
            contact_email: request.email.clone(),
            helpline: lab.support.helpline,
            email: lab.support.email,
            created_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn now() -> Timestamp {
        Timestamp::UNIX_EPOCH
    }

    #[test]
    fn stars_must_be_one_to_five() {
        for stars in [1, 5] {
            let request = FeedbackRequest {
                stars,
                comment: None,
            };
            assert!(Feedback::new("FB-1".into(), "GFSL-000001", &request, now()).is_ok());
        }
        for stars in [0, 6, -1, 300] {
            let request = FeedbackRequest {
                stars,
                comment: None,
            };
            let result = Feedback::new("FB-1".into(), "GFSL-000001", &request, now());
            assert!(matches!(result, Err(ErpError::BadRequest(_))), "{stars}");
        }
    }

    #[test]
    fn tickets_point_to_the_lab_help_desk() {
        let lab = catalog::lab("KTH").expect("seeded");
        let request = TicketRequest {
            order_no: None,
            subject: " Report not received ".into(),
            phone: None,
            email: None,
        };
        let ticket = Ticket::open("T-KTH-000001".into(), lab, &request, now()).expect("opens");
        assert_eq!(ticket.subject, "Report not received");
        assert_eq!(ticket.helpline, lab.support.helpline);
        assert_eq!(
            ticket.support_url,
            "https://krishitesthouse.example/support/T-KTH-000001"
        );
    }

    #[test]
    fn blank_subject_is_refused() {
        let lab = catalog::lab("KTH").expect("seeded");
        let request = TicketRequest {
            order_no: None,
            subject: "  ".into(),
            phone: None,
            email: None,
        };
        assert!(Ticket::open("T-1".into(), lab, &request, now()).is_err());
    }
}
