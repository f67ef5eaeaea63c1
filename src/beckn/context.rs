//! Building the context of outgoing messages from the context of the request they answer.

use serde_json::{Value, json};

use super::ack::Rejection;
use super::action::Action;
use super::participant::Participant;

/// A message with its context: `{"context": context, "message": message}`, both moved in.
/// (`json!` would copy each value through `Serialize`: for a 20-item catalog, about a fifth
/// of what building the callback costs.)
pub fn envelope(context: Value, message: Value) -> Value {
    let mut body = serde_json::Map::with_capacity(2);
    body.insert("context".into(), context);
    body.insert("message".into(), message);
    Value::Object(body)
}

/// The context of the `on_*` answering `request_context`: same transaction and message ids,
/// the callback's action, this provider's id and URI, and `now` as its timestamp; `domain`
/// where the request named none.
pub fn callback_context(
    me: &Participant,
    domain: &str,
    action: Action,
    request_context: &Value,
    now: jiff::Timestamp,
) -> Value {
    let mut ctx = match request_context {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    ctx["action"] = json!(action.callback());
    ctx["bpp_id"] = json!(me.subscriber_id);
    ctx["bpp_uri"] = json!(me.subscriber_uri);
    ctx["timestamp"] = json!(rfc3339(now));
    if ctx.get("domain").is_none() {
        ctx["domain"] = json!(domain);
    }
    if ctx.get("version").is_none() {
        ctx["version"] = json!("1.1.0");
    }
    ctx
}

/// `at` in RFC 3339, UTC with milliseconds, as Beckn messages carry it.
pub fn rfc3339(at: jiff::Timestamp) -> String {
    format!("{:.3}", at)
}

/// When a request stops being valid: `timestamp + ttl`, if both are present and well formed.
///
/// The ttl is parsed as a full ISO 8601 duration, calendar units included: the schema accepts
/// `P1D` or `P1M`, and a fixed-length duration type would reject them. Calendar units are added
/// in UTC, where a day is always 24 hours. Received messages go through [`check_times`], which
/// refuses what this cannot compute.
pub fn expiry(context: &Value) -> Option<jiff::Timestamp> {
    let ts = parse_timestamp(context.get("timestamp")?.as_str()?)?;
    let ttl = parse_ttl(context.get("ttl")?.as_str()?)?;
    add_ttl(ts, ttl)
}

/// How far a received message's `timestamp` and `ttl` are trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimits {
    /// Longest `ttl` accepted; a message without a ttl is valid this long after its timestamp.
    pub max_ttl: std::time::Duration,
    /// How far `timestamp` may be ahead of this clock.
    pub skew: std::time::Duration,
}

impl Default for TimeLimits {
    fn default() -> Self {
        TimeLimits {
            max_ttl: DEFAULT_MAX_TTL,
            skew: DEFAULT_TIMESTAMP_SKEW,
        }
    }
}

/// Default longest `ttl` of a received message.
pub const DEFAULT_MAX_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Default tolerance for a received message's `timestamp` ahead of this clock.
pub const DEFAULT_TIMESTAMP_SKEW: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a received message's `timestamp` and `ttl` were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("context.timestamp is missing: the request's age cannot be judged")]
    NoTimestamp,
    #[error("context.timestamp `{0}` is not an RFC 3339 date-time with an offset")]
    Timestamp(String),
    #[error("context.ttl `{0}` cannot be read as a non-negative ISO 8601 duration")]
    Ttl(String),
    #[error("context.ttl `{ttl}` is longer than the {max} accepted")]
    TtlTooLong { ttl: String, max: String },
    #[error(
        "context.timestamp {timestamp} is {ahead_s}s ahead of this participant's clock (at most {skew_s}s tolerated)"
    )]
    Future {
        timestamp: String,
        ahead_s: i64,
        skew_s: u64,
    },
    #[error("the request expired at {0} (timestamp + ttl)")]
    Expired(String),
}

impl TimeError {
    /// The context field at fault.
    pub fn path(&self) -> &'static str {
        match self {
            TimeError::NoTimestamp | TimeError::Timestamp(_) | TimeError::Future { .. } => {
                "context.timestamp"
            }
            TimeError::Ttl(_) | TimeError::TtlTooLong { .. } | TimeError::Expired(_) => {
                "context.ttl"
            }
        }
    }
}

impl From<TimeError> for Rejection {
    /// Expired and future-dated messages are stale (30022); a timestamp or ttl that cannot be
    /// read, or a ttl past the limit, is an invalid request (30000).
    fn from(e: TimeError) -> Self {
        match e {
            TimeError::Expired(expired_at) => Rejection::Stale { expired_at },
            TimeError::Future { .. } => Rejection::Untimely {
                path: e.path().to_string(),
                reason: e.to_string(),
            },
            _ => Rejection::Schema {
                path: e.path().to_string(),
                message: e.to_string(),
            },
        }
    }
}

/// Checks a received message's `timestamp` and `ttl` against `now`: both readable, the ttl
/// within `limits.max_ttl`, the timestamp at most `limits.skew` ahead, and `timestamp + ttl`
/// not passed. Returns when the message stops being valid.
pub fn check_times(
    context: &Value,
    limits: &TimeLimits,
    now: jiff::Timestamp,
) -> Result<jiff::Timestamp, TimeError> {
    let raw_ts = match context.get("timestamp") {
        None | Some(Value::Null) => return Err(TimeError::NoTimestamp),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(TimeError::Timestamp(other.to_string())),
    };
    let ts = parse_timestamp(raw_ts).ok_or_else(|| TimeError::Timestamp(raw_ts.to_string()))?;
    let max = jiff::SignedDuration::try_from(limits.max_ttl).unwrap_or(jiff::SignedDuration::MAX);
    let expires = match context.get("ttl") {
        None | Some(Value::Null) => ts.checked_add(max).unwrap_or(jiff::Timestamp::MAX),
        Some(Value::String(raw)) => {
            let ttl = parse_ttl(raw).ok_or_else(|| TimeError::Ttl(raw.clone()))?;
            let too_long = || TimeError::TtlTooLong {
                ttl: raw.clone(),
                max: friendly(limits.max_ttl),
            };
            let expires = add_ttl(ts, ttl).ok_or_else(too_long)?;
            if expires.duration_since(ts) > max {
                return Err(too_long());
            }
            expires
        }
        Some(other) => return Err(TimeError::Ttl(other.to_string())),
    };
    let ahead = ts.duration_since(now);
    let skew = jiff::SignedDuration::try_from(limits.skew).unwrap_or(jiff::SignedDuration::MAX);
    if ahead > skew {
        return Err(TimeError::Future {
            timestamp: raw_ts.to_string(),
            ahead_s: ahead.as_secs(),
            skew_s: limits.skew.as_secs(),
        });
    }
    if expires < now {
        return Err(TimeError::Expired(expires.to_string()));
    }
    Ok(expires)
}

/// `1d`, `2h 30m`: a limit as configuration writes it.
fn friendly(d: std::time::Duration) -> String {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    jiff::Span::new()
        .try_seconds(secs)
        .and_then(|s| {
            s.round(
                jiff::SpanRound::new()
                    .largest(jiff::Unit::Day)
                    .days_are_24_hours(),
            )
        })
        .map(|s| format!("{s:#}"))
        .unwrap_or_else(|_| format!("{secs}s"))
}

/// An RFC 3339 timestamp. RFC 3339 allows any number of fractional digits; past nanoseconds
/// they are dropped, so a precise sender is read rather than refused.
fn parse_timestamp(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(ts) = text.parse() {
        return Some(ts);
    }
    let dot = text.find('.')?;
    let digits = text[dot + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits <= 9 {
        return None;
    }
    let trimmed = format!("{}{}", &text[..dot + 10], &text[dot + 1 + digits..]);
    trimmed.parse().ok()
}

/// A non-negative ISO 8601 duration.
fn parse_ttl(text: &str) -> Option<jiff::Span> {
    let span: jiff::Span = text.parse().ok()?;
    (!span.is_negative()).then_some(span)
}

fn add_ttl(ts: jiff::Timestamp, ttl: jiff::Span) -> Option<jiff::Timestamp> {
    ts.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .checked_add(ttl)
        .ok()
        .map(|z| z.timestamp())
}

/// The first key given twice in `body`'s top-level object or anywhere inside its `context`,
/// as a JSON error with its position; None when there is none or `body` is not JSON (the
/// parse that follows reports that). Only `context` is walked key by key: it decides who the
/// message is from and to and which transaction it belongs to, and it is small; `message` is
/// skipped without building anything.
pub fn duplicate_key(body: &[u8]) -> Option<serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    match (KeyScan { at: None }).deserialize(&mut de) {
        Err(e) if e.is_data() => Some(e),
        _ => None,
    }
}

/// Where a value is, as a chain of borrowed steps, written out only when a key repeats.
struct At<'a> {
    parent: Option<&'a At<'a>>,
    step: Step<'a>,
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl At<'_> {
    fn render(&self) -> String {
        let mut out = self.parent.map(At::render).unwrap_or_default();
        match self.step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
        out
    }
}

/// Walks a JSON value refusing repeated keys: at the top level (`at` None) it descends only
/// into `context`; inside it into everything.
struct KeyScan<'p> {
    at: Option<&'p At<'p>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for KeyScan<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyScan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.at {
            None => while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {},
            Some(parent) => {
                for i in 0.. {
                    let here = At {
                        parent: Some(parent),
                        step: Step::Index(i),
                    };
                    if seq
                        .next_element_seed(KeyScan { at: Some(&here) })?
                        .is_none()
                    {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Objects here are small: a list compares faster than a hash set is built; past a
        // few keys a set takes over, so a crafted object with many keys stays linear.
        const LIST: usize = 16;
        let mut few: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        let mut many: Option<std::collections::HashSet<std::borrow::Cow<'de, str>>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let here = At {
                parent: self.at,
                step: Step::Key(&key),
            };
            let repeated = match &many {
                Some(set) => set.contains(&key),
                None => few.contains(&key),
            };
            if repeated {
                return Err(serde::de::Error::custom(format!(
                    "`{}` is given twice; a key must appear once",
                    here.render()
                )));
            }
            if self.at.is_some() || key == "context" {
                map.next_value_seed(KeyScan { at: Some(&here) })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
            match &mut many {
                Some(set) => {
                    set.insert(key);
                }
                None if few.len() < LIST => few.push(key),
                None => {
                    let mut set: std::collections::HashSet<_> = few.drain(..).collect();
                    set.insert(key);
                    many = Some(set);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_is_the_context_then_the_message() {
        let body = envelope(
            json!({"action": "on_search"}),
            json!({"catalog": {"items": [1]}}),
        );
        assert_eq!(
            body.to_string(),
            r#"{"context":{"action":"on_search"},"message":{"catalog":{"items":[1]}}}"#
        );
    }

    #[test]
    fn expiry_adds_ttl() {
        let ctx = json!({"timestamp": "2026-01-01T10:00:00Z", "ttl": "PT30S"});
        assert_eq!(expiry(&ctx).unwrap().to_string(), "2026-01-01T10:00:30Z");
        assert!(expiry(&json!({"timestamp": "x", "ttl": "PT30S"})).is_none());
    }

    #[test]
    fn expiry_takes_calendar_units() {
        let at = |ttl: &str| {
            expiry(&json!({"timestamp": "2026-01-31T10:00:00+05:30", "ttl": ttl}))
                .map(|t| t.to_string())
        };
        assert_eq!(at("P1D").as_deref(), Some("2026-02-01T04:30:00Z"));
        assert_eq!(at("P1DT2H").as_deref(), Some("2026-02-01T06:30:00Z"));
        assert_eq!(at("P1W").as_deref(), Some("2026-02-07T04:30:00Z"));
        assert_eq!(at("P1M").as_deref(), Some("2026-02-28T04:30:00Z"));
        assert!(at("soon").is_none());
    }

    fn at(timestamp: &str, ttl: Option<&str>, now: &str) -> Result<String, TimeError> {
        let mut ctx = json!({"timestamp": timestamp});
        if let Some(ttl) = ttl {
            ctx["ttl"] = json!(ttl);
        }
        check_times(&ctx, &TimeLimits::default(), now.parse().unwrap()).map(|t| t.to_string())
    }

    #[test]
    fn ten_fractional_digits_are_read_not_skipped() {
        assert_eq!(
            at(
                "2026-01-01T10:00:00.1234567891Z",
                Some("PT30S"),
                "2026-01-01T10:00:10Z"
            ),
            Ok("2026-01-01T10:00:30.123456789Z".into())
        );
        assert!(matches!(
            at(
                "2026-01-01T10:00:00.1234567891Z",
                Some("PT30S"),
                "2026-01-08T10:00:00Z"
            ),
            Err(TimeError::Expired(_))
        ));
    }

    #[test]
    fn a_ttl_past_the_limit_is_refused_even_when_unrepresentable() {
        let now = "2026-01-01T10:00:00Z";
        assert!(matches!(
            at("2001-01-01T00:00:00Z", Some("P20000Y"), now),
            Err(TimeError::Ttl(_) | TimeError::TtlTooLong { .. })
        ));
        assert!(matches!(
            at("2001-01-01T00:00:00Z", Some("P9000Y"), now),
            Err(TimeError::TtlTooLong { .. })
        ));
        assert!(matches!(
            at("2026-01-01T09:59:00Z", Some("P2D"), now),
            Err(TimeError::TtlTooLong { .. })
        ));
        assert!(at("2026-01-01T09:59:00Z", Some("P1D"), now).is_ok());
        assert_eq!(friendly(DEFAULT_MAX_TTL), "1d");
        assert_eq!(friendly(std::time::Duration::from_secs(5400)), "1h 30m");
    }

    #[test]
    fn future_timestamps_beyond_the_skew_are_refused() {
        let now = "2026-01-01T10:00:00Z";
        assert!(matches!(
            at("2026-01-02T10:00:00Z", Some("PT30S"), now),
            Err(TimeError::Future { .. })
        ));
        assert!(at("2026-01-01T10:00:04Z", Some("PT30S"), now).is_ok());
    }

    #[test]
    fn unreadable_or_missing_times_are_refused() {
        let now = "2026-01-01T10:00:00Z";
        assert_eq!(
            at("yesterday", Some("PT30S"), now),
            Err(TimeError::Timestamp("yesterday".into()))
        );
        assert_eq!(
            at("2026-01-01T10:00:00Z", Some("soon"), now),
            Err(TimeError::Ttl("soon".into()))
        );
        assert_eq!(
            at("2026-01-01T10:00:00Z", Some("-PT30S"), now),
            Err(TimeError::Ttl("-PT30S".into()))
        );
        assert_eq!(
            check_times(
                &json!({"ttl": "PT30S"}),
                &TimeLimits::default(),
                now.parse().unwrap()
            ),
            Err(TimeError::NoTimestamp)
        );
        // without a ttl, the longest accepted one applies
        assert!(at("2026-01-01T09:00:00Z", None, now).is_ok());
        assert!(matches!(
            at("2025-12-30T09:00:00Z", None, now),
            Err(TimeError::Expired(_))
        ));
    }

    #[test]
    fn keys_given_twice_in_the_context_are_found() {
        let found = |body: &str| duplicate_key(body.as_bytes()).map(|e| e.to_string());
        assert!(found(r#"{"context":{"bap_id":"a"},"message":{"x":1}}"#).is_none());
        let twice = found(r#"{"context":{"bap_id":"a","bap_id":"b"},"message":{}}"#).unwrap();
        assert!(twice.contains("`context.bap_id` is given twice"), "{twice}");
        // the escaped spelling is the same key
        assert!(found(r#"{"context":{"bap_id":"a","bap\u005fid":"b"}}"#).is_some());
        assert!(found(r#"{"context":{},"context":{}}"#).is_some());
        assert!(found(r#"{"context":{"location":{"city":{"code":"a","code":"b"}}}}"#).is_some());
        // `message` is not walked; non-JSON and non-objects are left to the parser
        assert!(found(r#"{"context":{},"message":{"a":1,"a":2}}"#).is_none());
        assert!(found("not json").is_none());
        assert!(found("[1,2]").is_none());
        // past the short list, a set finds the repeat
        let mut many: String = (0..100).map(|i| format!("\"k{i}\":{i},")).collect();
        many.push_str("\"k7\":0");
        let long = found(&format!(r#"{{"context":{{{many}}}}}"#)).unwrap();
        assert!(long.contains("`context.k7` is given twice"), "{long}");
        let arrays = found(r#"{"context":{"a":[{"x":1},{"x":1,"x":2}]}}"#).unwrap();
        assert!(
            arrays.contains("`context.a[1].x` is given twice"),
            "{arrays}"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_millis() {
        let s = rfc3339(jiff::Timestamp::now());
        assert!(s.ends_with('Z') && s.contains('.'), "{s}");
        assert!(s.parse::<jiff::Timestamp>().is_ok());
    }
}
