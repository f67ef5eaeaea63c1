//! The journey's part at Bhoomi Soil Labs, the lab on the sample LIMS: a field visit booked
//! in a transaction of its own and followed by asking, since the LIMS announces nothing.

use serde_json::{Value, json};

use super::Journey;
use crate::demo::DemoError;
use crate::demo::network::LIMS_FLOW;
use crate::demo::timeline::tag_values;

/// The lab on the sample LIMS, its provider id, the test booked there and the farm it is for.
pub(super) const LIMS_PROVIDER: &str = "bhoomi-blr";
pub(super) const LIMS_TEST: &str = "BH-SOIL-MICRO";
const LIMS_FARM: (&str, &str) = ("Family farm, Kodihalli, Doddaballapur", "561203");

impl Journey<'_, '_> {
    /// Books a test at the LIMS-backed lab in a transaction of its own and follows it: the
    /// LIMS announces nothing, so the farmer asks.
    pub(super) async fn book_at_the_lims(&mut self) -> Result<(), DemoError> {
        let bhoomi = self.subscriber_of(LIMS_FLOW);
        if bhoomi.is_empty() {
            return Err(self.fail(
                "LIMS",
                format!("the demo needs the sample flow `{LIMS_FLOW}`"),
            ));
        }
        let items = json!([{"id": LIMS_TEST, "quantity": {"selected": {"count": 1}}}]);
        let selected = self
            .call(
                "select (LIMS)",
                "select",
                "sync",
                json!({"context": {"bpp_id": bhoomi},
                       "message": {"order": lims_order(&items, None)}}),
            )
            .await?;
        let transaction_id = selected["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let on_select = self.answer("select (LIMS)", &selected)?;
        let slots = tag_values(
            &on_select["message"]["order"]["fulfillments"][0]["tags"],
            "collection-slots",
            None,
        );
        let Some((_, slot)) = slots.first() else {
            return Err(self.fail("select (LIMS)", "on_select offers no field visit"));
        };
        let slot_start = slot.split('/').next().unwrap_or_default().to_string();
        let order = lims_order(&items, Some(&slot_start));
        for action in ["init", "confirm"] {
            let name = format!("{action} (LIMS)");
            let doc = self
                .call(
                    &name,
                    action,
                    "sync",
                    json!({"context": {"transaction_id": transaction_id}, "message": {"order": order}}),
                )
                .await?;
            self.answer(&name, &doc)?;
        }
        let booking = self.net.lims.bookings();
        let Some(booking_no) = booking.last().map(|b| b.booking_no.clone()) else {
            return Err(self.fail("confirm (LIMS)", "the LIMS holds no booking"));
        };

        // The field officer takes the sample: only the LIMS knows.
        self.step += 1;
        let moved = self
            .net
            .lims
            .advance(&booking_no)
            .map_err(|e| self.fail("LIMS", e.to_string()))?;
        let lab = self.timeline.name(&bhoomi);
        self.timeline.line(
            Some(self.step),
            "LIMS",
            &format!(
                "{lab} moves {booking_no} on to {} (no webhook, no event feed)",
                moved.state.as_str()
            ),
        );
        let status = self
            .call(
                "status (LIMS)",
                "status",
                "sync",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"order_id": booking_no}}),
            )
            .await?;
        let on_status = self.answer("status (LIMS)", &status)?;
        let state =
            &on_status["message"]["order"]["fulfillments"][0]["state"]["descriptor"]["code"];
        if state != "SAMPLE-COLLECTED" {
            return Err(self.fail(
                "status (LIMS)",
                format!("the order is {state}, not SAMPLE-COLLECTED"),
            ));
        }
        let track = self
            .call(
                "track (LIMS)",
                "track",
                "sync",
                json!({"context": {"transaction_id": transaction_id},
                       "message": {"order_id": booking_no}}),
            )
            .await?;
        self.answer("track (LIMS)", &track)?;

        // The booking is in the farmer's "My Orders" on Flipkart too.
        self.ultra_orders(&[(booking_no.as_str(), &["ORDER_CONFIRMED"][..])])
            .await
    }
}

/// The order at the LIMS-backed lab: a field visit at the family's farm near Bengaluru,
/// optionally at a time it offered, with billing details.
fn lims_order(items: &Value, visit_start: Option<&str>) -> Value {
    let (address, pincode) = LIMS_FARM;
    let mut stop = json!({
        "type": "start",
        "location": {"address": address, "area_code": pincode},
        "contact": {"phone": "+91-98100-22222"},
        "person": {"name": "Asha Devi"}
    });
    if let Some(start) = visit_start {
        stop["time"] = json!({"range": {"start": start}});
    }
    json!({
        "provider": {"id": LIMS_PROVIDER},
        "items": items,
        "fulfillments": [{"type": "home", "stops": [stop]}],
        "billing": {"name": "Asha Devi", "phone": "+91-98100-22222", "address": address},
        "payments": [{"collected_by": "BPP", "type": "ON-FULFILLMENT"}]
    })
}
