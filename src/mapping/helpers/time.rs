//! Local date-times in a named time zone and RFC 3339 instants, both ways, and durations.
//!
//! ERPs often speak local wall-clock time without an offset (`2026-12-02T09:00` in the lab's
//! zone) while Beckn speaks RFC 3339. Zone rules come from the system's tz database, or from the
//! copy bundled into the binary when the machine has none.

use jiff::civil::DateTime;
use jiff::fmt::temporal::{Pieces, PiecesOffset};
use jiff::tz::{Offset, TimeZone};
use jiff::{Span, Timestamp, ZonedDateTime};

use super::HelperError;

/// The default format of [`rfc3339_to_local`]: what ERPs without offsets usually expect.
pub const LOCAL_FORMAT: &str = "%Y-%m-%dT%H:%M";

fn zone(helper: &'static str, name: &str) -> Result<TimeZone, HelperError> {
    TimeZone::get(name)
        .map_err(|e| HelperError::new(helper, name, format!("is not a time zone: {e}")))
}

/// `2026-12-02T09:00` in `Asia/Kolkata` -> `2026-12-02T09:00:00+05:30`: the instant of a local
/// date-time, written with the zone's offset at that moment (the wall time stays readable and
/// the instant is exact). A time skipped or repeated by a daylight-saving change is resolved
/// as RFC 5545 does (`compatible`: a skipped time moves forward, a repeated one takes the first).
pub fn local_to_rfc3339(local: &str, tz: &str) -> Result<String, HelperError> {
    const NAME: &str = "local_to_rfc3339";
    let tz = zone(NAME, tz)?;
    let pieces = Pieces::parse(local.trim()).map_err(|e| {
        HelperError::new(
            NAME,
            local,
            format!("is not a local date-time (YYYY-MM-DDTHH:MM): {e}"),
        )
    })?;
    if pieces.offset().is_some() {
        return Err(HelperError::new(
            NAME,
            local,
            "already has an offset; give the local date-time without one",
        ));
    }
    let dt: DateTime = local.trim().parse().map_err(|e| {
        HelperError::new(
            NAME,
            local,
            format!("is not a local date-time (YYYY-MM-DDTHH:MM): {e}"),
        )
    })?;
    let zoned = dt
        .to_zoned_datetime(tz)
        .map_err(|e| HelperError::new(NAME, local, format!("cannot be placed in the zone: {e}")))?;
    Ok(zoned
        .timestamp()
        .display_with_offset(zoned.offset())
        .to_string())
}

/// `2026-12-02T03:30:00Z` -> `2026-12-02T09:00` in `Asia/Kolkata`: an instant as local time,
/// formatted with strftime directives (default [`LOCAL_FORMAT`]).
pub fn rfc3339_to_local(
    instant: &str,
    tz: &str,
    format: Option<&str>,
) -> Result<String, HelperError> {
    const NAME: &str = "rfc3339_to_local";
    let tz = zone(NAME, tz)?;
    let ts = timestamp(NAME, instant)?;
    let format = format.unwrap_or(LOCAL_FORMAT);
    let zoned: ZonedDateTime = ts.to_zoned_datetime(tz);
    jiff::fmt::strtime::format(format, &zoned)
        .map_err(|e| HelperError::new(NAME, format, format!("is not a usable format: {e}")))
}

/// `2026-12-02T09:00:00+05:30` plus `PT2H` (or `2h`) -> `2026-12-02T11:00:00+05:30`: an
/// RFC 3339 instant moved by an ISO 8601 or friendly duration (`1d 2h`, `-30m`), written with
/// the offset it came with. Days are 24 hours at that offset.
pub fn add_duration(instant: &str, duration: &str) -> Result<String, HelperError> {
    const NAME: &str = "add_duration";
    let ts = timestamp(NAME, instant)?;
    let offset = match Pieces::parse(instant.trim()).ok().and_then(|p| p.offset()) {
        Some(PiecesOffset::Numeric(n)) => n.offset(),
        _ => Offset::UTC,
    };
    let span: Span = duration.trim().parse().map_err(|e| {
        HelperError::new(
            NAME,
            duration,
            format!("is not a duration (PT2H, 2h, P1D): {e}"),
        )
    })?;
    let moved = ts
        .to_zoned_datetime(TimeZone::fixed(offset))
        .checked_add(span)
        .map_err(|e| {
            HelperError::new(
                NAME,
                duration,
                format!("cannot be added to `{instant}`: {e}"),
            )
        })?;
    Ok(if offset == Offset::UTC {
        moved.timestamp().to_string()
    } else {
        moved.timestamp().display_with_offset(offset).to_string()
    })
}

fn timestamp(helper: &'static str, instant: &str) -> Result<Timestamp, HelperError> {
    instant
        .trim()
        .parse()
        .map_err(|e| HelperError::new(helper, instant, format!("is not an RFC 3339 time: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_become_instants_with_their_offset() {
        assert_eq!(
            local_to_rfc3339("2026-12-02T09:00", "Asia/Kolkata").unwrap(),
            "2026-12-02T09:00:00+05:30"
        );
        assert_eq!(
            local_to_rfc3339("2026-07-01T09:30:15", "Europe/Berlin").unwrap(),
            "2026-07-01T09:30:15+02:00"
        );
        assert_eq!(
            local_to_rfc3339("2026-12-02T09:00", "UTC").unwrap(),
            "2026-12-02T09:00:00+00:00"
        );
    }

    #[test]
    fn instants_become_local_times() {
        assert_eq!(
            rfc3339_to_local("2026-12-02T03:30:00Z", "Asia/Kolkata", None).unwrap(),
            "2026-12-02T09:00"
        );
        assert_eq!(
            rfc3339_to_local(
                "2026-12-02T09:00:00+05:30",
                "Asia/Kolkata",
                Some("%d/%m/%Y %H:%M")
            )
            .unwrap(),
            "02/12/2026 09:00"
        );
    }

    #[test]
    fn round_trip_keeps_the_wall_time() {
        let instant = local_to_rfc3339("2026-03-29T00:59", "Europe/London").unwrap();
        assert_eq!(
            rfc3339_to_local(&instant, "Europe/London", None).unwrap(),
            "2026-03-29T00:59"
        );
    }

    #[test]
    fn durations_in_either_notation() {
        assert_eq!(
            add_duration("2026-12-02T09:00:00+05:30", "PT2H").unwrap(),
            "2026-12-02T11:00:00+05:30"
        );
        assert_eq!(
            add_duration("2026-12-02T03:30:00Z", "2h").unwrap(),
            "2026-12-02T05:30:00Z"
        );
        assert_eq!(
            add_duration("2026-12-31T23:00:00Z", "P1D").unwrap(),
            "2027-01-01T23:00:00Z"
        );
        assert_eq!(
            add_duration("2026-12-02T03:30:00Z", "-30m").unwrap(),
            "2026-12-02T03:00:00Z"
        );
    }

    #[test]
    fn errors_name_the_bad_input() {
        let e = local_to_rfc3339("2026-12-02T09:00", "Mars/Olympus").unwrap_err();
        assert_eq!(
            (e.helper, e.input.as_str()),
            ("local_to_rfc3339", "Mars/Olympus")
        );
        let e = local_to_rfc3339("tomorrow", "Asia/Kolkata").unwrap_err();
        assert_eq!(e.input, "tomorrow");
        let e = local_to_rfc3339("2026-12-02T09:00+05:30", "Asia/Kolkata").unwrap_err();
        assert!(e.reason.contains("offset"), "{e}");
        let e = rfc3339_to_local("2026-12-02T09:00", "Asia/Kolkata", None).unwrap_err();
        assert!(
            e.to_string()
                .contains("`2026-12-02T09:00` is not an RFC 3339 time"),
            "{e}"
        );
        let e = add_duration("2026-12-02T03:30:00Z", "two hours").unwrap_err();
        assert_eq!(e.input, "two hours");
    }

    #[test]
    fn the_bundled_database_knows_the_zones() {
        let db = jiff::tz::TimeZoneDatabase::bundled();
        assert!(db.get("Asia/Kolkata").is_ok());
    }
}
