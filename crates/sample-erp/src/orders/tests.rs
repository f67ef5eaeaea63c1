use super::*;
use crate::catalog;
use crate::quotes::{self, ItemRequest};

fn now() -> Timestamp {
    "2026-11-23T10:00:00+05:30"
        .parse()
        .expect("valid timestamp")
}

fn order(lab: &Lab, sku: &str, mode: Mode) -> Order {
    let pricing = quotes::price(
        lab,
        &[ItemRequest {
            sku: sku.into(),
            qty: 1,
        }],
        mode,
    )
    .expect("priced");
    let mut order = Order {
        order_no: format!("{}-000001", lab.code),
        lab_code: lab.code.into(),
        client_ref: "ref-1".into(),
        status: OrderStatus::Booked,
        items: pricing.lines,
        pickup_fee_paise: pricing.pickup_fee_paise,
        gst_paise: pricing.gst_paise,
        total_paise: pricing.total_paise,
        currency: "INR".into(),
        mode,
        slot: None,
        customer: Customer {
            name: "Asha Devi".into(),
            phone: "+91-98765-43210".into(),
            email: None,
            address: Some("Village Kapashera".into()),
            pincode: lab.pincode.into(),
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
        created_at: now(),
        updated_at: now(),
        history: Vec::new(),
    };
    order.record(OrderStatus::Booked, now(), "booked".into());
    order
}

fn gfsl() -> &'static Lab {
    catalog::lab("GFSL").expect("seeded")
}

fn kth() -> &'static Lab {
    catalog::lab("KTH").expect("seeded")
}

fn walk(lab: &Lab, order: &mut Order) -> Vec<OrderStatus> {
    let mut seen = vec![order.status];
    while !order.status.is_terminal() {
        order.advance(lab, None, now()).expect("advances");
        seen.push(order.status);
    }
    seen
}

#[test]
fn home_pickup_walks_the_whole_journey() {
    let mut order = order(gfsl(), "soil-npk-package", Mode::HomePickup);
    assert_eq!(walk(gfsl(), &mut order), journey(Mode::HomePickup));
    assert_eq!(order.history.len(), 6);
    assert_eq!(order.payment.status, PaymentStatus::Paid);
    assert_eq!(
        order.report_url.as_deref(),
        Some("https://reports.greenfield-labs.example/r/GFSL-000001.pdf")
    );
    assert!(
        order
            .recommendations
            .as_ref()
            .is_some_and(|r| !r.is_empty())
    );
}

#[test]
fn lab_drop_skips_the_agent() {
    let mut order = order(gfsl(), "soil-ph-ec", Mode::LabDrop);
    assert_eq!(
        walk(gfsl(), &mut order),
        [
            OrderStatus::Booked,
            OrderStatus::ReceivedAtLab,
            OrderStatus::Testing,
            OrderStatus::ReportReady
        ]
    );
    assert_eq!(order.agent, None);
    assert_eq!(order.tracking_url, None);
}

#[test]
fn virtual_consultation_gets_a_consultant() {
    let mut order = order(kth(), "soil-health-consult", Mode::Virtual);
    order.advance(kth(), None, now()).expect("advances");
    assert_eq!(order.status, OrderStatus::AgentAssigned);
    assert_eq!(
        order.agent.as_ref().map(|a| a.name.as_str()),
        Some("Dr. Meera Joshi")
    );
    order.advance(kth(), None, now()).expect("advances");
    assert_eq!(order.status, OrderStatus::ReportReady);
    assert_eq!(order.payment.status, PaymentStatus::Paid);
}

#[test]
fn agent_assignment_sets_agent_and_tracking_link() {
    let mut order = order(gfsl(), "soil-npk-package", Mode::HomePickup);
    order.advance(gfsl(), None, now()).expect("advances");
    assert_eq!(
        order.tracking_url.as_deref(),
        Some("https://track.greenfield-labs.example/t/GFSL-000001")
    );
    let tracking = order.tracking(gfsl());
    assert!(tracking.active);
    assert!(tracking.agent_location.is_some());
    assert_eq!(order.payment.status, PaymentStatus::Pending);
    order.advance(gfsl(), None, now()).expect("advances");
    assert_eq!(order.payment.status, PaymentStatus::Paid);
    assert!(!order.tracking(gfsl()).active);
}

#[test]
fn jumping_records_every_step() {
    let mut order = order(gfsl(), "soil-npk-package", Mode::HomePickup);
    let snapshots = order
        .advance(gfsl(), Some(OrderStatus::Testing), now())
        .expect("jumps");
    let statuses: Vec<_> = snapshots.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        [
            OrderStatus::AgentAssigned,
            OrderStatus::SampleCollected,
            OrderStatus::ReceivedAtLab,
            OrderStatus::Testing
        ]
    );
    assert_eq!(order.history.len(), 5);
}

#[test]
fn backwards_sideways_and_terminal_moves_are_refused() {
    let mut order = order(gfsl(), "soil-ph-ec", Mode::LabDrop);
    let sideways = order.advance(gfsl(), Some(OrderStatus::AgentAssigned), now());
    assert!(matches!(sideways, Err(ErpError::InvalidTransition(_))));
    order
        .advance(gfsl(), Some(OrderStatus::Testing), now())
        .expect("jumps");
    let backwards = order.advance(gfsl(), Some(OrderStatus::ReceivedAtLab), now());
    assert!(matches!(backwards, Err(ErpError::InvalidTransition(_))));
    let same = order.advance(gfsl(), Some(OrderStatus::Testing), now());
    assert!(matches!(same, Err(ErpError::InvalidTransition(_))));
    order.advance(gfsl(), None, now()).expect("advances");
    let terminal = order.advance(gfsl(), None, now());
    assert!(matches!(terminal, Err(ErpError::InvalidTransition(_))));
}

fn cancel_request() -> CancelRequest {
    CancelRequest {
        reason_code: "CHANGED_MIND".into(),
        note: None,
        by: None,
    }
}

#[test]
fn cancelling_while_booked_is_free() {
    let mut order = order(gfsl(), "soil-npk-package", Mode::HomePickup);
    assert_eq!(order.cancel(gfsl(), &cancel_request(), now()), Ok(true));
    let cancellation = order.cancellation.as_ref().expect("filled");
    assert_eq!(cancellation.fee_paise, 0);
    assert_eq!(cancellation.refund_paise, 0);
    assert_eq!(cancellation.by, CancelledBy::Customer);
    assert_eq!(order.status, OrderStatus::Cancelled);
}

#[test]
fn cancelling_after_agent_assignment_costs_the_package_fee() {
    let mut order = order(gfsl(), "soil-full-health-card", Mode::HomePickup);
    order.advance(gfsl(), None, now()).expect("advances");
    order
        .cancel(gfsl(), &cancel_request(), now())
        .expect("cancels");
    assert_eq!(
        order.cancellation.as_ref().map(|c| c.fee_paise),
        Some(10000)
    );
}

#[test]
fn cancelling_is_idempotent_and_refused_once_collected() {
    let mut order = order(gfsl(), "soil-npk-package", Mode::HomePickup);
    order
        .cancel(gfsl(), &cancel_request(), now())
        .expect("cancels");
    let before = order.clone();
    assert_eq!(order.cancel(gfsl(), &cancel_request(), now()), Ok(false));
    assert_eq!(order, before);

    let mut collected = self::order(gfsl(), "soil-npk-package", Mode::HomePickup);
    collected
        .advance(gfsl(), Some(OrderStatus::SampleCollected), now())
        .expect("jumps");
    let err = collected.cancel(gfsl(), &cancel_request(), now());
    assert_eq!(
        err,
        Err(ErpError::CannotCancel {
            order_no: "GFSL-000001".into(),
            status: OrderStatus::SampleCollected
        })
    );
}

#[test]
fn gps_parsing_is_strict() {
    assert_eq!(
        LatLng::parse("28.6, 77.1"),
        Some(LatLng {
            lat: 28.6,
            lng: 77.1
        })
    );
    assert_eq!(LatLng::parse("28.6"), None);
    assert_eq!(LatLng::parse("95,10"), None);
}

#[test]
fn statuses_serialize_in_screaming_case() {
    let json = serde_json::to_value(OrderStatus::ReceivedAtLab).expect("serializes");
    assert_eq!(json, "RECEIVED_AT_LAB");
    assert_eq!(OrderStatus::AgentAssigned.to_string(), "AGENT_ASSIGNED");
}
