//! The test catalog, served a page at a time (`GET /api/tests?page=N&per_page=M`, answered
//! `{"data": [...], "meta": {"page", "pages", "per_page", "total"}}`), with prices as decimal
//! rupee strings ("1250.00"), the way this LIMS's vendor wrote them.

use serde::{Deserialize, Serialize};

use crate::error::LimsError;

/// Most tests on one page; a bigger `per_page` is cut to this.
pub const MAX_PER_PAGE: usize = 50;
/// `per_page` when the caller names none.
pub const DEFAULT_PER_PAGE: usize = 10;

/// How a sample reaches the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Collection {
    /// A field officer takes the sample at the farm, in a booked slot.
    FieldVisit,
    /// The farmer brings the sample to the lab's counter.
    WalkIn,
}

/// One orderable test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabTest {
    pub test_code: String,
    pub name: String,
    pub description: String,
    /// `SOIL` or `WATER`.
    pub matrix: String,
    /// Rupees, two decimals.
    pub price: String,
    pub currency: String,
    /// Hours from the sample's arrival to its report.
    pub tat_hours: u32,
    pub analytes: Vec<String>,
    pub collection: Vec<Collection>,
}

/// One page of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    pub data: Vec<LabTest>,
    pub meta: PageMeta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageMeta {
    pub page: usize,
    pub pages: usize,
    pub per_page: usize,
    pub total: usize,
}

/// `?page=&per_page=`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PageQuery {
    pub page: Option<usize>,
    pub per_page: Option<usize>,
}

/// Paise as a rupee string: 125000 -> "1250.00".
pub fn rupees(paise: u64) -> String {
    format!("{}.{:02}", paise / 100, paise % 100)
}

fn test(
    code: &str,
    name: &str,
    description: &str,
    paise: u64,
    tat_hours: u32,
    analytes: &[&str],
    walk_in_only: bool,
) -> LabTest {
    let matrix = if code.starts_with("BH-WATER") {
        "WATER"
    } else {
        "SOIL"
    };
    LabTest {
        test_code: code.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        matrix: matrix.to_owned(),
        price: rupees(paise),
        currency: "INR".to_owned(),
        tat_hours,
        analytes: analytes.iter().map(|a| (*a).to_owned()).collect(),
        collection: if walk_in_only {
            vec![Collection::WalkIn]
        } else {
            vec![Collection::FieldVisit, Collection::WalkIn]
        },
    }
}

/// The catalog the LIMS starts with: seven tests.
pub fn seeded() -> Vec<LabTest> {
    vec![
        test(
            "BH-SOIL-NPK",
            "Soil NPK",
            "Available nitrogen, phosphorus and potassium",
            125_000,
            72,
            &["N", "P", "K"],
            false,
        ),
        test(
            "BH-SOIL-SHC",
            "Soil health card, 12 parameters",
            "The government soil health card panel",
            180_000,
            96,
            &[
                "pH", "EC", "OC", "N", "P", "K", "S", "Zn", "Fe", "Cu", "Mn", "B",
            ],
            false,
        ),
        test(
            "BH-SOIL-MICRO",
            "Soil micronutrients",
            "Zinc, iron, copper, manganese and boron",
            145_050,
            96,
            &["Zn", "Fe", "Cu", "Mn", "B"],
            false,
        ),
        test(
            "BH-SOIL-OC",
            "Organic carbon",
            "Walkley-Black organic carbon",
            60_000,
            48,
            &["OC"],
            false,
        ),
        test(
            "BH-SOIL-PH",
            "Soil pH and EC",
            "Reaction and salinity",
            35_000,
            24,
            &["pH", "EC"],
            true,
        ),
        test(
            "BH-WATER-IRR",
            "Irrigation water quality",
            "Salinity, sodicity and boron of irrigation water",
            90_000,
            48,
            &["EC", "SAR", "RSC", "B"],
            true,
        ),
        test(
            "BH-SOIL-HM",
            "Heavy metals screen",
            "Lead, cadmium, arsenic and chromium",
            275_000,
            120,
            &["Pb", "Cd", "As", "Cr"],
            false,
        ),
    ]
}

/// `count` more tests (`BH-EXTRA-0001`...), for catalogs longer than a client may page.
pub fn extra(from: usize, count: usize) -> Vec<LabTest> {
    (from..from + count)
        .map(|n| {
            test(
                &format!("BH-EXTRA-{n:04}"),
                &format!("Research panel {n}"),
                "A panel of the lab's research programme",
                50_000 + 100 * n as u64,
                168,
                &["custom"],
                true,
            )
        })
        .collect()
}

/// Page `query.page` (from 1) of `tests`.
pub fn page(tests: &[LabTest], query: PageQuery) -> Result<Page, LimsError> {
    let page = query.page.unwrap_or(1);
    if page == 0 {
        return Err(LimsError::Invalid("page starts at 1".into()));
    }
    let per_page = query
        .per_page
        .unwrap_or(DEFAULT_PER_PAGE)
        .clamp(1, MAX_PER_PAGE);
    let total = tests.len();
    let pages = total.div_ceil(per_page).max(1);
    let data = tests
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .cloned()
        .collect();
    Ok(Page {
        data,
        meta: PageMeta {
            page,
            pages,
            per_page,
            total,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_catalog_once_in_order() {
        let tests = seeded();
        let mut seen = Vec::new();
        for n in 1..=3 {
            let p = page(
                &tests,
                PageQuery {
                    page: Some(n),
                    per_page: Some(3),
                },
            )
            .unwrap();
            assert_eq!(p.meta.pages, 3);
            assert_eq!(p.meta.total, 7);
            seen.extend(p.data.into_iter().map(|t| t.test_code));
        }
        let all: Vec<String> = tests.into_iter().map(|t| t.test_code).collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn a_page_past_the_end_is_empty_and_page_zero_is_refused() {
        let tests = seeded();
        let past = page(
            &tests,
            PageQuery {
                page: Some(9),
                per_page: Some(3),
            },
        )
        .unwrap();
        assert!(past.data.is_empty());
        assert!(matches!(
            page(
                &tests,
                PageQuery {
                    page: Some(0),
                    per_page: None
                }
            ),
            Err(LimsError::Invalid(_))
        ));
    }

    #[test]
    fn prices_are_rupee_strings_with_two_decimals() {
        assert_eq!(rupees(125_000), "1250.00");
        assert_eq!(rupees(145_050), "1450.50");
        assert_eq!(rupees(5), "0.05");
        assert_eq!(seeded()[2].price, "1450.50");
        assert_eq!(extra(1, 2)[1].test_code, "BH-EXTRA-0002");
    }
}
