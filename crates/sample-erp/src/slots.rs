//! Appointment slots: three two-hour windows a day per lab, three bookings each.
//!
//! Slots are not stored: they are generated from the calendar on demand, and
//! only the booking counts are kept. A slot id spells out lab, date and start
//! time (`GFSL-2026-11-24-0900`), so any id can be checked without a table.
//! Times are India Standard Time (+05:30), the labs' only time zone.

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::Offset;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::catalog::{Lab, Mode};
use crate::error::ErpError;

/// Start times (hour, minute) of the daily slots.
pub const DAILY_STARTS: [(i8, i8); 3] = [(9, 0), (11, 0), (14, 0)];
/// How long a slot lasts.
pub const SLOT_LENGTH: SignedDuration = SignedDuration::from_hours(2);
/// Agents (or counter staff) can take this many bookings per slot.
pub const SLOT_CAPACITY: u32 = 3;
/// A listing without a date covers this many days, starting tomorrow so that
/// what is listed never depends on the hour the request comes in.
pub const LISTING_DAYS: i64 = 7;
/// Nothing can be booked further ahead than this.
pub const BOOKING_HORIZON_DAYS: i64 = 30;

/// India Standard Time, +05:30.
pub fn ist() -> Offset {
    Offset::from_seconds(5 * 3600 + 30 * 60).expect("+05:30 is a valid UTC offset")
}

/// Today's date in India.
pub fn today(now: Timestamp) -> Date {
    ist().to_datetime(now).date()
}

/// One bookable window, with its current occupancy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub slot_id: String,
    pub date: Date,
    #[serde(with = "ist_rfc3339")]
    pub start: Timestamp,
    #[serde(with = "ist_rfc3339")]
    pub end: Timestamp,
    pub mode: Mode,
    pub capacity: u32,
    pub booked: u32,
}

impl Slot {
    pub fn is_full(&self) -> bool {
        self.booked >= self.capacity
    }
}

/// Serializes timestamps with the +05:30 offset, as a lab's customer reads
/// them, rather than in UTC.
mod ist_rfc3339 {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&ts.display_with_offset(super::ist()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        Timestamp::deserialize(deserializer)
    }
}

/// The id of the slot of `lab` on `date` starting at `hour:minute`.
pub fn slot_id(lab: &str, date: Date, (hour, minute): (i8, i8)) -> String {
    format!("{lab}-{date}-{hour:02}{minute:02}")
}

/// Splits a slot id of `lab` into date and start time, if it is one.
fn parse_slot_id(lab: &str, id: &str) -> Option<(Date, (i8, i8))> {
    let rest = id.strip_prefix(lab)?.strip_prefix('-')?;
    let (date, time) = rest.rsplit_once('-')?;
    let date: Date = date.parse().ok()?;
    let start = DAILY_STARTS
        .into_iter()
        .find(|&(h, m)| time == format!("{h:02}{m:02}"))?;
    Some((date, start))
}

/// Booking counts of one lab's slots.
#[derive(Debug, Default)]
pub struct SlotBook {
    booked: HashMap<String, u32>,
}

impl SlotBook {
    /// The bookable slots of `date` (those still ahead of `now` and within
    /// the booking horizon); an empty list for any other day.
    pub fn day(
        &self,
        lab: &Lab,
        date: Date,
        mode: Mode,
        now: Timestamp,
    ) -> Result<Vec<Slot>, ErpError> {
        check_mode(lab, mode)?;
        let mut slots = Vec::new();
        for start in DAILY_STARTS {
            let slot = self.build(lab, date, start, mode)?;
            if is_bookable(&slot, now) {
                slots.push(slot);
            }
        }
        Ok(slots)
    }

    /// All slots of the next [`LISTING_DAYS`] days, tomorrow first.
    pub fn upcoming(&self, lab: &Lab, mode: Mode, now: Timestamp) -> Result<Vec<Slot>, ErpError> {
        let mut slots = Vec::new();
        let mut date = today(now);
        for _ in 0..LISTING_DAYS {
            date = date.tomorrow().map_err(internal)?;
            slots.extend(self.day(lab, date, mode, now)?);
        }
        Ok(slots)
    }

    /// The slot `id` if it exists, is bookable and has room.
    pub fn available(
        &self,
        lab: &Lab,
        id: &str,
        mode: Mode,
        now: Timestamp,
    ) -> Result<Slot, ErpError> {
        check_mode(lab, mode)?;
        let unknown = || ErpError::SlotUnavailable(format!("slot '{id}' does not exist"));
        let (date, start) = parse_slot_id(lab.code, id).ok_or_else(unknown)?;
        let slot = self.build(lab, date, start, mode).map_err(|_| unknown())?;
        if !is_bookable(&slot, now) {
            return Err(ErpError::SlotUnavailable(format!(
                "slot {id} is not open for booking"
            )));
        }
        if slot.is_full() {
            return Err(ErpError::SlotUnavailable(format!("slot {id} is full")));
        }
        Ok(slot)
    }

    /// Takes one place in slot `id`, returning the slot as booked.
    pub fn book(
        &mut self,
        lab: &Lab,
        id: &str,
        mode: Mode,
        now: Timestamp,
    ) -> Result<Slot, ErpError> {
        let mut slot = self.available(lab, id, mode, now)?;
        slot.booked += 1;
        self.booked.insert(slot.slot_id.clone(), slot.booked);
        Ok(slot)
    }

    /// Gives a place back, e.g. when an order is cancelled.
    pub fn release(&mut self, id: &str) {
        if let Some(count) = self.booked.get_mut(id) {
            *count = count.saturating_sub(1);
        }
    }

    fn build(&self, lab: &Lab, date: Date, start: (i8, i8), mode: Mode) -> Result<Slot, ErpError> {
        let out_of_range = |_| ErpError::BadRequest(format!("date {date} is out of range"));
        let starts_at = ist()
            .to_timestamp(date.at(start.0, start.1, 0, 0))
            .map_err(out_of_range)?;
        let ends_at = starts_at.checked_add(SLOT_LENGTH).map_err(out_of_range)?;
        let id = slot_id(lab.code, date, start);
        let booked = self.booked.get(&id).copied().unwrap_or(0);
        Ok(Slot {
            slot_id: id,
            date,
            start: starts_at,
            end: ends_at,
            mode,
            capacity: SLOT_CAPACITY,
            booked,
        })
    }
}

fn check_mode(lab: &Lab, mode: Mode) -> Result<(), ErpError> {
    if lab.modes.contains(&mode) {
        Ok(())
    } else {
        Err(ErpError::BadRequest(format!(
            "lab {} does not offer {}",
            lab.code,
            mode.as_str()
        )))
    }
}

fn is_bookable(slot: &Slot, now: Timestamp) -> bool {
    let horizon = now.checked_add(SignedDuration::from_hours(24 * BOOKING_HORIZON_DAYS));
    slot.start > now && horizon.is_ok_and(|horizon| slot.start <= horizon)
}

fn internal(error: jiff::Error) -> ErpError {
    ErpError::Internal(format!("calendar arithmetic failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn gfsl() -> &'static Lab {
        catalog::lab("GFSL").expect("GFSL is seeded")
    }

    /// 2026-11-23 10:00 IST, a fixed "now" so the tests read like a calendar.
    fn now() -> Timestamp {
        "2026-11-23T10:00:00+05:30"
            .parse()
            .expect("valid timestamp")
    }

    #[test]
    fn upcoming_lists_three_slots_a_day_for_a_week_from_tomorrow() {
        let slots = SlotBook::default()
            .upcoming(gfsl(), Mode::HomePickup, now())
            .expect("slots");
        assert_eq!(slots.len(), 21);
        assert_eq!(slots[0].slot_id, "GFSL-2026-11-24-0900");
        assert_eq!(slots[2].slot_id, "GFSL-2026-11-24-1400");
        assert_eq!(slots[20].slot_id, "GFSL-2026-11-30-1400");
        assert!(slots.iter().all(|s| s.capacity == 3 && s.booked == 0));
    }

    #[test]
    fn slots_serialize_in_india_time() {
        let slots = SlotBook::default()
            .day(
                gfsl(),
                "2026-11-24".parse().expect("date"),
                Mode::LabDrop,
                now(),
            )
            .expect("slots");
        let json = serde_json::to_value(&slots[1]).expect("serializes");
        assert_eq!(json["start"], "2026-11-24T11:00:00+05:30");
        assert_eq!(json["end"], "2026-11-24T13:00:00+05:30");
        assert_eq!(json["date"], "2026-11-24");
        assert_eq!(json["mode"], "LAB_DROP");
        let back: Slot = serde_json::from_value(json).expect("round-trips");
        assert_eq!(back, slots[1]);
    }

    #[test]
    fn today_lists_only_slots_still_ahead() {
        let slots = SlotBook::default()
            .day(gfsl(), today(now()), Mode::HomePickup, now())
            .expect("slots");
        let ids: Vec<_> = slots.iter().map(|s| s.slot_id.as_str()).collect();
        assert_eq!(ids, ["GFSL-2026-11-23-1100", "GFSL-2026-11-23-1400"]);
    }

    #[test]
    fn booking_fills_a_slot_and_release_frees_it() {
        let mut book = SlotBook::default();
        let id = "GFSL-2026-11-24-0900";
        for expected in 1..=SLOT_CAPACITY {
            let slot = book
                .book(gfsl(), id, Mode::HomePickup, now())
                .expect("room left");
            assert_eq!(slot.booked, expected);
        }
        let full = book.book(gfsl(), id, Mode::HomePickup, now());
        assert!(matches!(full, Err(ErpError::SlotUnavailable(_))));
        book.release(id);
        assert!(book.book(gfsl(), id, Mode::HomePickup, now()).is_ok());
    }

    #[test]
    fn malformed_foreign_and_past_ids_are_unavailable() {
        let book = SlotBook::default();
        for id in [
            "nonsense",
            "KTH-2026-11-24-0900",
            "GFSL-2026-11-24-1000",
            "GFSL-2026-13-40-0900",
            "GFSL-2026-11-23-0900",
            "GFSL-2027-06-01-0900",
        ] {
            let result = book.available(gfsl(), id, Mode::HomePickup, now());
            assert!(
                matches!(result, Err(ErpError::SlotUnavailable(_))),
                "{id}: {result:?}"
            );
        }
    }

    #[test]
    fn modes_the_lab_lacks_are_refused() {
        let result = SlotBook::default().upcoming(gfsl(), Mode::Virtual, now());
        assert!(matches!(result, Err(ErpError::BadRequest(_))));
    }
}
