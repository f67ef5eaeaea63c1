//! The order document and its life cycle.
//!
//! An order walks a fixed journey that depends on how the sample reaches the
//! lab (see [`journey`]); every step is recorded in its history and some steps
//! have side effects a customer can see: an agent and a tracking link when
//! one is assigned, payment when cash changes hands, a report link and advice
//! when the report is ready. Cancelling is a separate exit with its own rules
//! ([`Order::cancel`]).

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::catalog::{Lab, Mode, Staff};
use crate::error::ErpError;
use crate::quotes::{ItemRequest, Line};
use crate::slots::Slot;
use crate::support::Feedback;

/// Where an order stands. Declared in journey order, so `<` means "earlier".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Booked,
    AgentAssigned,
    SampleCollected,
    ReceivedAtLab,
    Testing,
    /// Terminal: the job is done.
    ReportReady,
    /// Terminal: the job was called off.
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Booked => "BOOKED",
            OrderStatus::AgentAssigned => "AGENT_ASSIGNED",
            OrderStatus::SampleCollected => "SAMPLE_COLLECTED",
            OrderStatus::ReceivedAtLab => "RECEIVED_AT_LAB",
            OrderStatus::Testing => "TESTING",
            OrderStatus::ReportReady => "REPORT_READY",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::ReportReady | OrderStatus::Cancelled)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The statuses an order of `mode` passes through, first to last.
///
/// A sample dropped at the counter needs no agent; a video consultation has a
/// consultant instead of an agent and no sample at all.
pub fn journey(mode: Mode) -> &'static [OrderStatus] {
    use OrderStatus::*;
    match mode {
        Mode::HomePickup => &[
            Booked,
            AgentAssigned,
            SampleCollected,
            ReceivedAtLab,
            Testing,
            ReportReady,
        ],
        Mode::LabDrop => &[Booked, ReceivedAtLab, Testing, ReportReady],
        Mode::Virtual => &[Booked, AgentAssigned, ReportReady],
    }
}

/// The step at which the customer hands over cash: to the agent at pickup,
/// at the counter on drop-off, to the consultant once advice is given.
fn payment_step(mode: Mode) -> OrderStatus {
    match mode {
        Mode::HomePickup => OrderStatus::SampleCollected,
        Mode::LabDrop => OrderStatus::ReceivedAtLab,
        Mode::Virtual => OrderStatus::ReportReady,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentMode {
    CashOnCollection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Pending,
    Paid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub mode: PaymentMode,
    pub status: PaymentStatus,
}

/// Who the sample is collected from (or who the consultant calls).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub phone: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Required for home pickup: it is where the agent goes.
    #[serde(default)]
    pub address: Option<String>,
    pub pincode: String,
    /// "lat,lng", if the caller knows the field's location.
    #[serde(default)]
    pub gps: Option<String>,
}

/// Who the invoice is made out to, when not the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Billing {
    pub name: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

/// The field agent (or consultant) in charge of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub name: String,
    pub phone: String,
}

impl From<Staff> for Agent {
    fn from(staff: Staff) -> Agent {
        Agent {
            name: staff.name.to_owned(),
            phone: staff.phone.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelledBy {
    Customer,
    Lab,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub reason_code: String,
    pub note: Option<String>,
    pub fee_paise: u64,
    pub refund_paise: u64,
    pub cancelled_at: Timestamp,
    pub by: CancelledBy,
}

/// One line of an order's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub status: OrderStatus,
    pub at: Timestamp,
    pub note: String,
}

/// A booked job, as the lab's back office sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// `<LAB>-<6-digit sequence>`, e.g. `GFSL-000001`.
    pub order_no: String,
    pub lab_code: String,
    /// The caller's own id for the order; placing the same one twice is a no-op.
    pub client_ref: String,
    pub status: OrderStatus,
    pub items: Vec<Line>,
    pub pickup_fee_paise: u64,
    pub gst_paise: u64,
    pub total_paise: u64,
    pub currency: String,
    pub mode: Mode,
    pub slot: Option<Slot>,
    pub customer: Customer,
    pub billing: Option<Billing>,
    pub payment: Payment,
    pub agent: Option<Agent>,
    pub report_url: Option<String>,
    /// Advice printed on the report, set with `report_url`.
    pub recommendations: Option<Vec<String>>,
    pub tracking_url: Option<String>,
    pub cancellation: Option<Cancellation>,
    pub feedback: Option<Feedback>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub history: Vec<HistoryEntry>,
}

/// Body of `POST /orders`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrderRequest {
    pub client_ref: String,
    pub items: Vec<ItemRequest>,
    pub mode: Mode,
    pub slot_id: Option<String>,
    pub customer: Customer,
    pub billing: Option<Billing>,
    /// Only cash on collection exists; accepted so callers can be explicit.
    pub payment_mode: Option<PaymentMode>,
}

/// Body of `POST /orders/{order_no}/cancel`.
#[derive(Debug, Clone, Deserialize)]
pub struct CancelRequest {
    pub reason_code: String,
    pub note: Option<String>,
    /// Defaults to the customer, the usual canceller.
    pub by: Option<CancelledBy>,
}

/// Where the agent is, as far as the customer can see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracking {
    pub order_no: String,
    pub tracking_url: Option<String>,
    /// True only while an agent (or consultant) is assigned and on the way.
    pub active: bool,
    pub agent: Option<Agent>,
    pub agent_location: Option<LatLng>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

impl LatLng {
    /// Parses "lat,lng"; `None` for anything else.
    pub fn parse(text: &str) -> Option<LatLng> {
        let (lat, lng) = text.split_once(',')?;
        let lat: f64 = lat.trim().parse().ok()?;
        let lng: f64 = lng.trim().parse().ok()?;
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng))
            .then_some(LatLng { lat, lng })
    }
}

impl Order {
    /// The status after the current one on this order's journey, if any.
    pub fn next_status(&self) -> Option<OrderStatus> {
        let path = journey(self.mode);
        let here = path.iter().position(|&s| s == self.status)?;
        path.get(here + 1).copied()
    }

    /// Moves the order forward: one step, or up to `target` step by step so
    /// that every side effect and history line happens as in real life.
    /// Returns a snapshot after each step, for change notifications.
    pub fn advance(
        &mut self,
        lab: &Lab,
        target: Option<OrderStatus>,
        now: Timestamp,
    ) -> Result<Vec<Order>, ErpError> {
        if self.status.is_terminal() {
            return Err(ErpError::InvalidTransition(format!(
                "order {} is {} and cannot move any more",
                self.order_no, self.status
            )));
        }
        let target = match target {
            Some(target) => target,
            None => self.next_status().ok_or_else(|| {
                ErpError::Internal(format!("order {} has no next status", self.order_no))
            })?,
        };
        let path = journey(self.mode);
        let here = path.iter().position(|&s| s == self.status);
        let there = path.iter().position(|&s| s == target);
        let (here, there) = match (here, there) {
            (Some(here), Some(there)) if there > here => (here, there),
            (_, None) => {
                return Err(ErpError::InvalidTransition(format!(
                    "a {} order never reaches {target}",
                    self.mode.as_str()
                )));
            }
            _ => {
                return Err(ErpError::InvalidTransition(format!(
                    "order {} is already {}; cannot go to {target}",
                    self.order_no, self.status
                )));
            }
        };
        let mut snapshots = Vec::with_capacity(there - here);
        for &status in &path[here + 1..=there] {
            self.enter(lab, status, now);
            snapshots.push(self.clone());
        }
        Ok(snapshots)
    }

    /// Enters `status` with its side effects.
    fn enter(&mut self, lab: &Lab, status: OrderStatus, now: Timestamp) {
        let note = match status {
            OrderStatus::AgentAssigned => {
                let agent = self.pick_agent(lab);
                let note = match self.mode {
                    Mode::Virtual => format!("consultant {} assigned", agent.name),
                    _ => format!("agent {} assigned", agent.name),
                };
                self.agent = Some(agent);
                self.tracking_url =
                    Some(format!("https://track.{}/t/{}", lab.domain, self.order_no));
                note
            }
            OrderStatus::SampleCollected => "sample collected from the field".to_owned(),
            OrderStatus::ReceivedAtLab => "sample received at the lab".to_owned(),
            OrderStatus::Testing => "testing started".to_owned(),
            OrderStatus::ReportReady => {
                self.report_url = Some(format!(
                    "https://reports.{}/r/{}.pdf",
                    lab.domain, self.order_no
                ));
                self.recommendations = Some(self.advice(lab));
                match self.mode {
                    Mode::Virtual => "consultation done; advice sent".to_owned(),
                    _ => "report ready".to_owned(),
                }
            }
            OrderStatus::Booked | OrderStatus::Cancelled => status.as_str().to_lowercase(),
        };
        let note = if status == payment_step(self.mode) {
            self.payment.status = PaymentStatus::Paid;
            format!("{note}; cash received")
        } else {
            note
        };
        self.record(status, now, note);
    }

    /// Agents take orders in turn, by order number; consultations go to a
    /// consultant when the lab has one.
    fn pick_agent(&self, lab: &Lab) -> Agent {
        let roster = match self.mode {
            Mode::Virtual if !lab.consultants.is_empty() => lab.consultants,
            _ => lab.agents,
        };
        let turn = self
            .order_no
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1)
            .saturating_sub(1);
        roster
            .get(turn % roster.len().max(1))
            .copied()
            .map(Agent::from)
            .unwrap_or_else(|| Agent {
                name: format!("{} field desk", lab.name),
                phone: lab.phone.to_owned(),
            })
    }

    /// The report's advice: each ordered package's canned recommendations.
    fn advice(&self, lab: &Lab) -> Vec<String> {
        let mut advice: Vec<String> = Vec::new();
        for line in &self.items {
            let Some(package) = lab.package(&line.sku) else {
                continue;
            };
            for tip in package.recommendations {
                if !advice.iter().any(|a| a == tip) {
                    advice.push((*tip).to_owned());
                }
            }
        }
        advice
    }

    /// Cancels the order if its status still allows it.
    ///
    /// Free while `BOOKED` (each package's `free_until_status`); once an agent
    /// is assigned, the highest cancellation fee among the ordered packages is
    /// due, since one visit is wasted whatever was ordered. Nothing is
    /// refunded unless cash was already paid. Cancelling a cancelled order
    /// changes nothing and returns `Ok(false)`.
    pub fn cancel(
        &mut self,
        lab: &Lab,
        request: &CancelRequest,
        now: Timestamp,
    ) -> Result<bool, ErpError> {
        match self.status {
            OrderStatus::Cancelled => return Ok(false),
            OrderStatus::Booked | OrderStatus::AgentAssigned => {}
            status => {
                return Err(ErpError::CannotCancel {
                    order_no: self.order_no.clone(),
                    status,
                });
            }
        }
        if request.reason_code.trim().is_empty() {
            return Err(ErpError::BadRequest("reason_code must not be empty".into()));
        }
        let fee_paise = self.cancellation_fee(lab);
        let refund_paise = match self.payment.status {
            PaymentStatus::Paid => self.total_paise.saturating_sub(fee_paise),
            PaymentStatus::Pending => 0,
        };
        let by = request.by.unwrap_or(CancelledBy::Customer);
        self.cancellation = Some(Cancellation {
            reason_code: request.reason_code.clone(),
            note: request.note.clone(),
            fee_paise,
            refund_paise,
            cancelled_at: now,
            by,
        });
        let who = match by {
            CancelledBy::Customer => "customer",
            CancelledBy::Lab => "lab",
        };
        self.record(
            OrderStatus::Cancelled,
            now,
            format!("cancelled by {who}: {}", request.reason_code),
        );
        Ok(true)
    }

    /// What cancelling now would cost.
    pub fn cancellation_fee(&self, lab: &Lab) -> u64 {
        self.items
            .iter()
            .filter_map(|line| lab.package(&line.sku))
            .filter(|p| self.status > p.cancellation_policy.free_until_status)
            .map(|p| p.cancellation_policy.fee_paise)
            .max()
            .unwrap_or(0)
    }

    /// The customer-facing tracking view.
    pub fn tracking(&self, lab: &Lab) -> Tracking {
        let active = self.status == OrderStatus::AgentAssigned;
        // A pickup agent is shown halfway between lab and field; a consultant
        // does not travel.
        let agent_location = (active && self.mode == Mode::HomePickup)
            .then(|| LatLng::parse(lab.gps))
            .flatten()
            .map(
                |lab_at| match self.customer.gps.as_deref().and_then(LatLng::parse) {
                    Some(field) => LatLng {
                        lat: (lab_at.lat + field.lat) / 2.0,
                        lng: (lab_at.lng + field.lng) / 2.0,
                    },
                    None => lab_at,
                },
            );
        Tracking {
            order_no: self.order_no.clone(),
            tracking_url: self.tracking_url.clone(),
            active,
            agent: self.agent.clone(),
            agent_location,
        }
    }

    /// Sets the status and appends it to the history.
    pub(crate) fn record(&mut self, status: OrderStatus, now: Timestamp, note: String) {
        self.status = status;
        self.updated_at = now;
        self.history.push(HistoryEntry {
            status,
            at: now,
            note,
        });
    }
}

#[cfg(test)]
mod tests;
