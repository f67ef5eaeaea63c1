//! Pricing: order lines, home-pickup fee, GST and totals, and the quote
//! document that shows them before anything is booked.
//!
//! Orders are priced by the same function as quotes, so a quote and the order
//! placed from it always agree. Money is integral paise throughout; GST is
//! computed once over the whole bill and rounded half-up to the paisa, as an
//! invoice would show it.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::catalog::{Lab, Mode};
use crate::error::ErpError;
use crate::orders::PaymentMode;
use crate::slots::Slot;

pub const CURRENCY: &str = "INR";
/// GST on the home-pickup fee (a service, like the tests themselves).
pub const PICKUP_GST_PERCENT: u64 = 18;
/// A farmer orders for a handful of fields, not a warehouse; the cap also
/// keeps the arithmetic far from overflow.
pub const MAX_QTY: i64 = 99;
/// How long a quoted price is honoured.
pub const QUOTE_VALIDITY: SignedDuration = SignedDuration::from_mins(15);

/// One requested item, as sent by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRequest {
    pub sku: String,
    /// Signed so that a zero or negative quantity is reported as such rather
    /// than as a JSON type error.
    pub qty: i64,
}

/// One priced line of a quote or order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub title: String,
    pub qty: u32,
    pub unit_price_paise: u64,
    pub amount_paise: u64,
}

/// The money side of a quote or order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    pub lines: Vec<Line>,
    pub pickup_fee_paise: u64,
    pub gst_paise: u64,
    pub total_paise: u64,
}

/// Prices `items` for delivery by `mode`, refusing unknown skus, silly
/// quantities and modes a package is not offered in.
pub fn price(lab: &Lab, items: &[ItemRequest], mode: Mode) -> Result<Pricing, ErpError> {
    if items.is_empty() {
        return Err(ErpError::BadRequest("items must not be empty".into()));
    }
    let mut lines = Vec::with_capacity(items.len());
    // Sum of amount x rate, in hundredths of a paisa, so that GST is rounded
    // once over the bill rather than per line.
    let mut gst_hundredths = 0;
    for item in items {
        let package = lab
            .package(&item.sku)
            .ok_or_else(|| ErpError::UnknownSku(item.sku.clone()))?;
        let qty = u32::try_from(item.qty)
            .ok()
            .filter(|qty| (1..=MAX_QTY).contains(&i64::from(*qty)))
            .ok_or_else(|| {
                ErpError::BadRequest(format!(
                    "qty for '{}' must be between 1 and {MAX_QTY}, got {}",
                    item.sku, item.qty
                ))
            })?;
        if !package.offers(mode) {
            return Err(ErpError::BadRequest(format!(
                "package '{}' is not offered as {}",
                package.sku,
                mode.as_str()
            )));
        }
        let amount = package.price_paise * u64::from(qty);
        gst_hundredths += amount * package.gst_percent;
        lines.push(Line {
            sku: package.sku.to_owned(),
            title: package.title.to_owned(),
            qty,
            unit_price_paise: package.price_paise,
            amount_paise: amount,
        });
    }
    let pickup_fee_paise = match mode {
        Mode::HomePickup => lab.home_pickup_fee_paise,
        Mode::LabDrop | Mode::Virtual => 0,
    };
    gst_hundredths += pickup_fee_paise * PICKUP_GST_PERCENT;
    let gst_paise = (gst_hundredths + 50) / 100;
    let total_paise =
        lines.iter().map(|l| l.amount_paise).sum::<u64>() + pickup_fee_paise + gst_paise;
    Ok(Pricing {
        lines,
        pickup_fee_paise,
        gst_paise,
        total_paise,
    })
}

/// What a quote request may say about the customer; only the pincode matters
/// for pricing, the rest is accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct QuoteCustomer {
    pub pincode: Option<String>,
}

/// Body of `POST /quotes`.
#[derive(Debug, Clone, Deserialize)]
pub struct QuoteRequest {
    pub items: Vec<ItemRequest>,
    pub mode: Mode,
    pub pincode: Option<String>,
    pub slot_id: Option<String>,
    pub customer: Option<QuoteCustomer>,
}

impl QuoteRequest {
    /// The pincode to check: the explicit one, else the customer's.
    pub fn pincode(&self) -> Option<&str> {
        self.pincode
            .as_deref()
            .or_else(|| self.customer.as_ref()?.pincode.as_deref())
    }
}

/// How and to whom the customer pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PaymentTerms {
    pub mode: PaymentMode,
    pub collected_by: &'static str,
}

/// The labs take cash when the sample is collected; nothing is prepaid.
pub const PAYMENT_TERMS: PaymentTerms = PaymentTerms {
    mode: PaymentMode::CashOnCollection,
    collected_by: "LAB",
};

/// A priced offer, valid for [`QUOTE_VALIDITY`]. Quotes are not stored: an
/// order is re-priced from the catalog when placed.
#[derive(Debug, Clone, Serialize)]
pub struct Quote {
    pub quote_id: String,
    pub lab_code: &'static str,
    pub mode: Mode,
    pub lines: Vec<Line>,
    pub pickup_fee_paise: u64,
    pub gst_paise: u64,
    pub total_paise: u64,
    pub currency: &'static str,
    pub valid_until: Timestamp,
    pub slot: Option<Slot>,
    pub payment_terms: PaymentTerms,
}

impl Quote {
    pub fn new(
        quote_id: String,
        lab: &'static Lab,
        mode: Mode,
        pricing: Pricing,
        slot: Option<Slot>,
        now: Timestamp,
    ) -> Result<Quote, ErpError> {
        let valid_until = now
            .checked_add(QUOTE_VALIDITY)
            .map_err(|e| ErpError::Internal(format!("cannot compute quote expiry: {e}")))?;
        Ok(Quote {
            quote_id,
            lab_code: lab.code,
            mode,
            lines: pricing.lines,
            pickup_fee_paise: pricing.pickup_fee_paise,
            gst_paise: pricing.gst_paise,
            total_paise: pricing.total_paise,
            currency: CURRENCY,
            valid_until,
            slot,
            payment_terms: PAYMENT_TERMS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn item(sku: &str, qty: i64) -> ItemRequest {
        ItemRequest {
            sku: sku.into(),
            qty,
        }
    }

    fn lab(code: &str) -> &'static Lab {
        catalog::lab(code).expect("seeded lab")
    }

    #[test]
    fn home_pickup_adds_the_fee_and_gst_on_it() {
        let pricing = price(
            lab("GFSL"),
            &[item("soil-npk-package", 2)],
            Mode::HomePickup,
        )
        .expect("priced");
        assert_eq!(pricing.lines[0].amount_paise, 99800);
        assert_eq!(pricing.pickup_fee_paise, 5000);
        // 18% of (99800 + 5000) = 18864
        assert_eq!(pricing.gst_paise, 18864);
        assert_eq!(pricing.total_paise, 99800 + 5000 + 18864);
    }

    #[test]
    fn lab_drop_has_no_pickup_fee() {
        let pricing =
            price(lab("KTH"), &[item("soil-npk-package", 1)], Mode::LabDrop).expect("priced");
        assert_eq!(pricing.pickup_fee_paise, 0);
        assert_eq!(pricing.gst_paise, 8100);
        assert_eq!(pricing.total_paise, 53100);
    }

    #[test]
    fn gst_is_rounded_to_the_nearest_paisa() {
        // 18% of 24999 = 4499.82 -> 4500
        let down = price(lab("GFSL"), &[item("soil-ph-ec", 1)], Mode::LabDrop).expect("priced");
        assert_eq!(down.gst_paise, 4500);
        // 18% of 19975 = 3595.5 -> 3596 (half rounds up)
        let half = price(
            lab("KTH"),
            &[item("water-irrigation-test", 1)],
            Mode::LabDrop,
        )
        .expect("priced");
        assert_eq!(half.gst_paise, 3596);
        // Rounded once over the bill: 2 x 3595.5 = 7191 exactly.
        let twice = price(
            lab("KTH"),
            &[item("water-irrigation-test", 2)],
            Mode::LabDrop,
        )
        .expect("priced");
        assert_eq!(twice.gst_paise, 7191);
    }

    #[test]
    fn unknown_sku_is_named() {
        let err = price(lab("GFSL"), &[item("soil-gold", 1)], Mode::LabDrop).unwrap_err();
        assert_eq!(err, ErpError::UnknownSku("soil-gold".into()));
    }

    #[test]
    fn quantities_outside_range_are_refused() {
        for qty in [0, -1, MAX_QTY + 1] {
            let err =
                price(lab("GFSL"), &[item("soil-npk-package", qty)], Mode::LabDrop).unwrap_err();
            assert!(matches!(err, ErpError::BadRequest(_)), "{qty}");
        }
    }

    #[test]
    fn modes_not_offered_by_a_package_are_refused() {
        let err = price(lab("GFSL"), &[item("soil-ph-ec", 1)], Mode::HomePickup).unwrap_err();
        assert!(matches!(err, ErpError::BadRequest(m) if m.contains("HOME_PICKUP")));
        let err = price(lab("KTH"), &[item("soil-health-consult", 1)], Mode::LabDrop).unwrap_err();
        assert!(matches!(err, ErpError::BadRequest(_)));
    }

    #[test]
    fn empty_item_list_is_refused() {
        assert!(matches!(
            price(lab("GFSL"), &[], Mode::LabDrop),
            Err(ErpError::BadRequest(_))
        ));
    }

    #[test]
    fn quote_pincode_falls_back_to_the_customer() {
        let request: QuoteRequest = serde_json::from_value(serde_json::json!({
            "items": [{"sku": "soil-npk-package", "qty": 1}],
            "mode": "LAB_DROP",
            "customer": {"name": "Asha", "pincode": "110034"}
        }))
        .expect("valid request");
        assert_eq!(request.pincode(), Some("110034"));
    }
}
