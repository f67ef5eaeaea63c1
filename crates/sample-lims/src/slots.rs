//! Field-visit slots, in the lab's local time (`YYYY-MM-DDTHH:MM`, Asia/Kolkata, no offset:
//! the LIMS never says which zone it means, its staff just know), two hours each, three a
//! day for the next three days. One visit per slot.

use std::collections::HashSet;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use serde::Serialize;

/// The lab's zone.
pub const ZONE: &str = "Asia/Kolkata";
/// When visits start, local time.
const STARTS: [(i8, i8); 3] = [(9, 0), (11, 30), (15, 0)];
/// How long a visit window is, in minutes.
const WINDOW_MINUTES: i64 = 120;
/// Days ahead with slots, from tomorrow.
const DAYS: i64 = 3;

/// One visit window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// `SL-20261202-0900`.
    pub slot_ref: String,
    /// Local time, `2026-12-02T09:00`.
    pub starts: String,
    pub ends: String,
    pub open: bool,
}

/// The lab's local date today.
pub fn today() -> Date {
    let zone = TimeZone::get(ZONE).unwrap_or(TimeZone::UTC);
    jiff::Timestamp::now().to_zoned_datetime(zone).date()
}

fn local(at: DateTime) -> String {
    at.strftime("%Y-%m-%dT%H:%M").to_string()
}

/// The slots from the day after `today`, `taken` ones closed.
pub fn offered(today: Date, taken: &HashSet<String>) -> Vec<Slot> {
    let mut slots = Vec::new();
    for day in 1..=DAYS {
        let Ok(date) = today.checked_add(jiff::Span::new().days(day)) else {
            continue;
        };
        for (hour, minute) in STARTS {
            let Ok(time) = Time::new(hour, minute, 0, 0) else {
                continue;
            };
            let start = date.to_datetime(time);
            let Ok(end) = start.checked_add(jiff::Span::new().minutes(WINDOW_MINUTES)) else {
                continue;
            };
            let slot_ref = format!("SL-{}-{hour:02}{minute:02}", date.strftime("%Y%m%d"));
            slots.push(Slot {
                open: !taken.contains(&slot_ref),
                slot_ref,
                starts: local(start),
                ends: local(end),
            });
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_days_of_three_local_windows_from_tomorrow() {
        let today = Date::new(2026, 12, 1).unwrap();
        let taken = HashSet::from(["SL-20261202-1130".to_string()]);
        let slots = offered(today, &taken);
        assert_eq!(slots.len(), 9);
        assert_eq!(
            slots[0],
            Slot {
                slot_ref: "SL-20261202-0900".into(),
                starts: "2026-12-02T09:00".into(),
                ends: "2026-12-02T11:00".into(),
                open: true,
            }
        );
        assert!(!slots[1].open);
        assert_eq!(slots[1].ends, "2026-12-02T13:30");
        assert_eq!(slots[8].starts, "2026-12-04T15:00");
    }
}
