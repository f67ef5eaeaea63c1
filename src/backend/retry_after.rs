//! `Retry-After` (RFC 9110 §10.2.3): how long a receiver that answered 429 or 503 asks to be
//! left alone. Read from ERPs, Beckn receivers, app webhooks and order sinks alike, so every retry
//! waits at least that long, within the deadline of what is being sent.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The wait a response asks for: only on 429 and 503, and only when its `Retry-After` is
/// delay-seconds or an HTTP date (one in the past asks for no wait), a date read against
/// `now`. Anything else: None.
pub fn asked(status: u16, headers: &HeaderMap, now: jiff::Timestamp) -> Option<Duration> {
    if !matches!(status, 429 | 503) {
        return None;
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse(value, now)
}

/// `value` as a wait from `now`: `120` (seconds) or `Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long numbers are read as "very long": the deadline decides.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX / 4)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let wait = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(wait.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now: jiff::Timestamp = "2015-10-21T07:27:00Z".parse().unwrap();
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past asks for no wait"
        );
        assert_eq!(parse("soon", now), None);
        assert_eq!(parse("-5", now), None);
        assert_eq!(parse("", now), None);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(
            asked(429, &headers, jiff::Timestamp::now()),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            asked(503, &headers, jiff::Timestamp::now()),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            asked(500, &headers, jiff::Timestamp::now()),
            None,
            "only 429 and 503 ask"
        );
        assert_eq!(asked(429, &HeaderMap::new(), jiff::Timestamp::now()), None);
    }
}
