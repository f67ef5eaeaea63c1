//! The two labs this ERP hosts and their test packages, seeded at start.
//!
//! The data is deliberately realistic (Soil Health Card parameters, Indian
//! pincodes and phone numbers, GST) so that the adapter's demo looks like a
//! real business, and deliberately *different* between the labs (prices,
//! modes, crops) so that a search across both labs returns distinguishable
//! results. Everything here is `'static`: the catalog never changes at run
//! time, only orders and slot bookings do.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ErpError;
use crate::orders::OrderStatus;

/// How a sample (or, for a consultation, the customer) reaches the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// An agent visits the farm and collects the sample, for a fee.
    HomePickup,
    /// The customer brings the sample to the lab's counter.
    LabDrop,
    /// No sample at all: advice by video call.
    Virtual,
}

impl Mode {
    /// The wire name, used in error messages so they match what callers sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::HomePickup => "HOME_PICKUP",
            Mode::LabDrop => "LAB_DROP",
            Mode::Virtual => "VIRTUAL",
        }
    }
}

impl FromStr for Mode {
    type Err = ErpError;

    fn from_str(text: &str) -> Result<Mode, ErpError> {
        [Mode::HomePickup, Mode::LabDrop, Mode::Virtual]
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                ErpError::BadRequest(format!(
                    "unknown mode '{text}': expected HOME_PICKUP, LAB_DROP or VIRTUAL"
                ))
            })
    }
}

/// When cancelling starts to cost money, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CancellationPolicy {
    /// Cancelling while the order is at this status or earlier is free.
    pub free_until_status: OrderStatus,
    /// Charged when cancelling after `free_until_status`.
    pub fee_paise: u64,
}

/// One orderable test (or consultation) of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub sku: &'static str,
    pub title: &'static str,
    pub summary: &'static str,
    /// What the lab measures, e.g. "Nitrogen (N)".
    pub parameters: &'static [&'static str],
    /// Price before GST, in paise (1/100 rupee) so that money stays integral.
    pub price_paise: u64,
    pub gst_percent: u64,
    pub turnaround_days: u32,
    /// Prerequisites the customer must meet before sampling.
    pub sample_instructions: &'static str,
    /// Crops the package is designed for; empty means it suits every crop.
    pub crops: &'static [&'static str],
    pub modes: &'static [Mode],
    pub cancellation_policy: CancellationPolicy,
    /// Canned advice printed on the report; internal, not part of the listing.
    #[serde(skip)]
    pub recommendations: &'static [&'static str],
}

impl Package {
    pub fn offers(&self, mode: Mode) -> bool {
        self.modes.contains(&mode)
    }

    /// Whether the package was designed for `crop` (case-insensitive).
    pub fn lists_crop(&self, crop: &str) -> bool {
        self.crops.iter().any(|c| c.eq_ignore_ascii_case(crop))
    }

    /// Case-insensitive substring search over the text a farmer would read.
    pub fn mentions(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        std::iter::once(self.title)
            .chain(std::iter::once(self.summary))
            .chain(self.parameters.iter().copied())
            .any(|text| text.to_lowercase().contains(&needle))
    }
}

/// A field agent (or, for consultations, an agronomist) the lab assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staff {
    pub name: &'static str,
    pub phone: &'static str,
}

/// How customers reach the lab's help desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Support {
    pub helpline: &'static str,
    pub email: &'static str,
    pub hours: &'static str,
}

/// A lab: its public profile plus its package catalog and staff roster.
///
/// Serializes to the `/profile` document; the catalog and staff are served
/// by their own endpoints or stay internal.
#[derive(Debug, Serialize)]
pub struct Lab {
    #[serde(rename = "lab_code")]
    pub code: &'static str,
    #[serde(rename = "lab_name")]
    pub name: &'static str,
    pub address: &'static str,
    pub city: &'static str,
    pub city_std_code: &'static str,
    pub pincode: &'static str,
    /// "lat,lng" in decimal degrees.
    pub gps: &'static str,
    pub phone: &'static str,
    pub email: &'static str,
    pub modes: &'static [Mode],
    pub home_pickup_fee_paise: u64,
    /// Every pincode starting with this prefix is served.
    pub serviceable_pincode_prefix: &'static str,
    pub support: Support,
    /// The lab's web domain; tracking, report and support links hang off it.
    #[serde(skip)]
    pub domain: &'static str,
    #[serde(skip)]
    pub agents: &'static [Staff],
    #[serde(skip)]
    pub consultants: &'static [Staff],
    #[serde(skip)]
    pub packages: &'static [Package],
}

impl Lab {
    pub fn package(&self, sku: &str) -> Option<&'static Package> {
        self.packages.iter().find(|p| p.sku == sku)
    }

    pub fn serves(&self, pincode: &str) -> bool {
        pincode.starts_with(self.serviceable_pincode_prefix)
    }

    /// Refuses malformed pincodes and those outside the service area.
    pub fn check_pincode(&self, pincode: &str) -> Result<(), ErpError> {
        check_pincode_format(pincode)?;
        if self.serves(pincode) {
            Ok(())
        } else {
            Err(ErpError::OutsideServiceArea(pincode.to_owned()))
        }
    }

    /// The packages matching every filter of `query`.
    ///
    /// A pincode outside the service area is not an error here: the lab
    /// simply has nothing to offer there, which is what a searcher should see.
    pub fn search(&'static self, query: &PackageQuery) -> Result<Vec<PackageHit>, ErpError> {
        let filter = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let mode = filter(&query.mode).map(|m| m.parse::<Mode>()).transpose()?;
        if let Some(pincode) = filter(&query.pincode) {
            check_pincode_format(&pincode)?;
            if !self.serves(&pincode) {
                return Ok(Vec::new());
            }
        }
        let crop = filter(&query.crop);
        let text = filter(&query.q);
        let hits = self
            .packages
            .iter()
            .filter(|p| mode.is_none_or(|mode| p.offers(mode)))
            .filter(|p| text.as_deref().is_none_or(|text| p.mentions(text)))
            .filter_map(|package| {
                let relevance = match crop.as_deref() {
                    None => Relevance::Exact,
                    Some(crop) if package.lists_crop(crop) => Relevance::Exact,
                    Some(_) if package.crops.is_empty() => Relevance::Related,
                    Some(_) => return None,
                };
                Some(PackageHit { package, relevance })
            })
            .collect();
        Ok(hits)
    }

    /// The lab-side fields that accompany a package listing.
    pub fn summary(&'static self) -> LabSummary {
        LabSummary {
            lab_code: self.code,
            lab_name: self.name,
            city: self.city,
            pincode: self.pincode,
            gps: self.gps,
            phone: self.phone,
        }
    }
}

/// Query string of the package listing; every filter is optional and an
/// empty value counts as absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PackageQuery {
    pub crop: Option<String>,
    pub pincode: Option<String>,
    pub mode: Option<String>,
    pub q: Option<String>,
}

/// How well a package fits the crop searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Relevance {
    /// Designed for the crop (or no crop was asked for).
    Exact,
    /// A general test that suits every crop, including this one.
    Related,
}

/// A package in a listing, marked with its relevance.
#[derive(Debug, Clone, Serialize)]
pub struct PackageHit {
    #[serde(flatten)]
    pub package: &'static Package,
    #[serde(rename = "match")]
    pub relevance: Relevance,
}

/// Indian pincodes are six digits, the first not zero.
fn check_pincode_format(pincode: &str) -> Result<(), ErpError> {
    let well_formed = pincode.len() == 6
        && pincode.bytes().all(|b| b.is_ascii_digit())
        && !pincode.starts_with('0');
    if well_formed {
        Ok(())
    } else {
        Err(ErpError::BadRequest(format!(
            "bad pincode '{pincode}': expected 6 digits"
        )))
    }
}

/// The subset of a lab profile shown next to its packages.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LabSummary {
    pub lab_code: &'static str,
    pub lab_name: &'static str,
    pub city: &'static str,
    pub pincode: &'static str,
    pub gps: &'static str,
    pub phone: &'static str,
}

/// Looks a lab up by its code (exact match, as it appears in URLs).
pub fn lab(code: &str) -> Option<&'static Lab> {
    LABS.iter().find(|lab| lab.code == code)
}

/// Both labs, in a stable order.
pub fn labs() -> &'static [Lab] {
    &LABS
}

/// A package is free to cancel until it has been handed to an agent.
const FREE_WHILE_BOOKED: OrderStatus = OrderStatus::Booked;

static LABS: [Lab; 2] = [
    Lab {
        code: "GFSL",
        name: "GreenField Soil Labs",
        address: "Plot 14, Pusa Road, near IARI campus, New Delhi",
        city: "New Delhi",
        city_std_code: "std:011",
        pincode: "110012",
        gps: "28.6369,77.1617",
        phone: "+91-11-40001234",
        email: "care@greenfield-labs.example",
        modes: &[Mode::HomePickup, Mode::LabDrop],
        home_pickup_fee_paise: 5000,
        serviceable_pincode_prefix: "1100",
        support: Support {
            helpline: "1800-11-4000",
            email: "care@greenfield-labs.example",
            hours: "Mon-Sat 09:00-18:00 IST",
        },
        domain: "greenfield-labs.example",
        agents: &[
            Staff {
                name: "Ramesh Kumar",
                phone: "+91-98100-11111",
            },
            Staff {
                name: "Sunita Verma",
                phone: "+91-98100-22222",
            },
        ],
        consultants: &[],
        packages: &GFSL_PACKAGES,
    },
    Lab {
        code: "KTH",
        name: "Krishi Test House",
        address: "21 Agriculture College Road, Shivajinagar, Pune",
        city: "Pune",
        city_std_code: "std:020",
        pincode: "411005",
        gps: "18.5308,73.8475",
        phone: "+91-20-26001234",
        email: "help@krishitesthouse.example",
        modes: &[Mode::LabDrop, Mode::HomePickup, Mode::Virtual],
        home_pickup_fee_paise: 7500,
        serviceable_pincode_prefix: "4110",
        support: Support {
            helpline: "1800-20-4000",
            email: "help@krishitesthouse.example",
            hours: "Mon-Sat 08:30-17:30 IST",
        },
        domain: "krishitesthouse.example",
        agents: &[
            Staff {
                name: "Prakash Patil",
                phone: "+91-98220-11111",
            },
            Staff {
                name: "Anjali Deshmukh",
                phone: "+91-98220-22222",
            },
        ],
        consultants: &[Staff {
            name: "Dr. Meera Joshi",
            phone: "+91-98220-33333",
        }],
        packages: &KTH_PACKAGES,
    },
];

const SOIL_SAMPLING: &str = "Collect 500 g of soil from 8-10 spots across the field at 15 cm depth; \
mix, air-dry in shade and pack in a clean cloth bag; apply no fertiliser for 2 weeks before sampling.";

static GFSL_PACKAGES: [Package; 5] = [
    Package {
        sku: "soil-npk-package",
        title: "Soil NPK Package",
        summary: "Primary nutrients and soil reaction, for a season's fertiliser plan.",
        parameters: &["Nitrogen (N)", "Phosphorus (P)", "Potassium (K)", "pH"],
        price_paise: 49900,
        gst_percent: 18,
        turnaround_days: 3,
        sample_instructions: SOIL_SAMPLING,
        crops: &[],
        modes: &[Mode::HomePickup, Mode::LabDrop],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 5000,
        },
        recommendations: &[
            "Apply 50 kg/acre urea in two splits",
            "Apply 25 kg/acre DAP at sowing",
        ],
    },
    Package {
        sku: "soil-micronutrient-panel",
        title: "Soil Micronutrient Panel",
        summary: "Zinc, iron, manganese, copper and boron: the usual hidden hunger of cereals.",
        parameters: &[
            "Zinc (Zn)",
            "Iron (Fe)",
            "Manganese (Mn)",
            "Copper (Cu)",
            "Boron (B)",
        ],
        price_paise: 89900,
        gst_percent: 18,
        turnaround_days: 5,
        sample_instructions: SOIL_SAMPLING,
        crops: &["Wheat", "Rice", "Maize"],
        modes: &[Mode::HomePickup, Mode::LabDrop],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 5000,
        },
        recommendations: &[
            "Apply 20 kg/acre zinc sulphate before transplanting",
            "Spray 0.5% ferrous sulphate if leaves yellow between veins",
        ],
    },
    Package {
        sku: "soil-full-health-card",
        title: "Full Soil Health Card",
        summary: "All 12 Soil Health Card parameters with crop-wise fertiliser doses.",
        parameters: &[
            "Nitrogen (N)",
            "Phosphorus (P)",
            "Potassium (K)",
            "Sulphur (S)",
            "Zinc (Zn)",
            "Iron (Fe)",
            "Copper (Cu)",
            "Manganese (Mn)",
            "Boron (B)",
            "pH",
            "Electrical Conductivity (EC)",
            "Organic Carbon (OC)",
        ],
        price_paise: 149900,
        gst_percent: 18,
        turnaround_days: 7,
        sample_instructions: SOIL_SAMPLING,
        crops: &[],
        modes: &[Mode::HomePickup, Mode::LabDrop],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 10000,
        },
        recommendations: &[
            "Apply 2 t/acre farmyard manure to raise organic carbon",
            "Apply 20 kg/acre zinc sulphate once every three seasons",
            "Reduce urea by 10% on account of high nitrogen",
        ],
    },
    Package {
        sku: "soil-ph-ec",
        title: "Soil pH & EC Quick Test",
        summary: "Acidity and salt content in one working day; bring the sample to the counter.",
        parameters: &["pH", "Electrical Conductivity (EC)"],
        // A promotional price that is not a round number, on purpose: its
        // GST (4499.82 paise) exercises rounding.
        price_paise: 24999,
        gst_percent: 18,
        turnaround_days: 1,
        sample_instructions: "Collect 250 g of soil from the root zone; air-dry in shade; no fertiliser for 2 weeks.",
        crops: &["Rice", "Sugarcane"],
        modes: &[Mode::LabDrop],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 0,
        },
        recommendations: &["Soil reaction is neutral; no liming or gypsum needed"],
    },
    Package {
        sku: "soil-salinity-sodicity",
        title: "Salinity & Sodicity Panel",
        summary: "Exchangeable sodium and gypsum requirement for saline or sodic (usar) land.",
        parameters: &[
            "pH",
            "Electrical Conductivity (EC)",
            "Exchangeable Sodium Percentage (ESP)",
            "Gypsum requirement",
        ],
        price_paise: 69900,
        gst_percent: 18,
        turnaround_days: 4,
        sample_instructions: SOIL_SAMPLING,
        crops: &["Rice", "Wheat", "Cotton"],
        modes: &[Mode::HomePickup, Mode::LabDrop],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 5000,
        },
        recommendations: &[
            "Apply 2 t/acre gypsum before the monsoon",
            "Leach salts with one heavy irrigation before sowing",
        ],
    },
];

static KTH_PACKAGES: [Package; 5] = [
    Package {
        sku: "soil-npk-package",
        title: "Soil NPK Package",
        summary: "Nitrogen, phosphorus and potassium with a fertiliser schedule in Marathi or English.",
        parameters: &["Nitrogen (N)", "Phosphorus (P)", "Potassium (K)"],
        price_paise: 45000,
        gst_percent: 18,
        turnaround_days: 4,
        sample_instructions: SOIL_SAMPLING,
        crops: &[],
        modes: &[Mode::LabDrop, Mode::HomePickup],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 7500,
        },
        recommendations: &[
            "Apply 40 kg/acre urea in three splits",
            "Apply 50 kg/acre single super phosphate at planting",
        ],
    },
    Package {
        sku: "water-irrigation-test",
        title: "Irrigation Water Quality Test",
        summary: "Is your well or canal water safe for drip and for salt-sensitive crops?",
        parameters: &[
            "pH",
            "Electrical Conductivity (EC)",
            "Sodium Adsorption Ratio (SAR)",
            "Residual Sodium Carbonate (RSC)",
            "Chloride (Cl)",
            "Boron (B)",
        ],
        // Ends in 75 paise on purpose: 18% of it is exactly half a paisa
        // (3595.5), which exercises round-half-up.
        price_paise: 19975,
        gst_percent: 18,
        turnaround_days: 2,
        sample_instructions: "Run the pump for 10 minutes, then fill a clean 1 litre plastic bottle to the brim; \
deliver within 48 hours.",
        crops: &["Grapes", "Pomegranate", "Sugarcane"],
        modes: &[Mode::LabDrop, Mode::HomePickup],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 5000,
        },
        recommendations: &[
            "Water is fit for drip irrigation",
            "Flush drip laterals monthly to prevent salt clogging",
        ],
    },
    Package {
        sku: "soil-sugarcane-panel",
        title: "Sugarcane Soil Nutrient Profile",
        summary: "Macro- and micronutrients that decide cane tonnage and sugar recovery.",
        parameters: &[
            "Nitrogen (N)",
            "Phosphorus (P)",
            "Potassium (K)",
            "Sulphur (S)",
            "Zinc (Zn)",
            "Iron (Fe)",
            "Organic Carbon (OC)",
        ],
        price_paise: 99900,
        gst_percent: 18,
        turnaround_days: 6,
        sample_instructions: SOIL_SAMPLING,
        crops: &["Sugarcane"],
        modes: &[Mode::LabDrop, Mode::HomePickup],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 7500,
        },
        recommendations: &[
            "Apply 100 kg/acre urea in four splits up to 120 days",
            "Apply 10 kg/acre zinc sulphate at planting",
            "Trash-mulch the ratoon to build organic carbon",
        ],
    },
    Package {
        sku: "soil-organic-carbon-texture",
        title: "Organic Carbon & Soil Texture",
        summary: "Organic matter and sand/silt/clay split, to plan irrigation and manuring.",
        parameters: &[
            "Organic Carbon (OC)",
            "Sand / Silt / Clay (%)",
            "Bulk density",
            "Water holding capacity",
        ],
        price_paise: 64900,
        gst_percent: 18,
        turnaround_days: 5,
        sample_instructions: SOIL_SAMPLING,
        crops: &[],
        modes: &[Mode::LabDrop, Mode::HomePickup],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 5000,
        },
        recommendations: &[
            "Soil is clay loam: irrigate lightly and often",
            "Incorporate green manure (dhaincha) before kharif",
        ],
    },
    Package {
        sku: "soil-health-consult",
        title: "Soil Health Consultation (video call)",
        summary: "A 30-minute video call with an agronomist who reads your existing soil report.",
        parameters: &[
            "Review of existing soil report",
            "Fertiliser schedule",
            "Crop-specific advice",
        ],
        price_paise: 29900,
        gst_percent: 18,
        turnaround_days: 1,
        sample_instructions: "No sample needed. Keep your latest soil report and recent fertiliser bills at hand for the call.",
        crops: &[],
        modes: &[Mode::Virtual],
        cancellation_policy: CancellationPolicy {
            free_until_status: FREE_WHILE_BOOKED,
            fee_paise: 10000,
        },
        recommendations: &[
            "Switch to neem-coated urea to cut nitrogen losses",
            "Re-test soil after two seasons",
        ],
    },
];

#[cfg(test)]
mod tests;
