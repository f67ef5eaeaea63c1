//! Requests answered with a NACK, kept for the console's transactions list and timeline.
//!
//! Anyone can cause a NACK (a bad signature, a fuzzer's garbage), so what is kept is bounded
//! three ways: each record is small (its body masked as the message log masks it, then cut to
//! [`MAX_BODY`]; its texts cut too), the table keeps only the newest [`MAX_KEPT`] records
//! (each insert deletes what falls beyond), and retention purges them with the message log.
//! How often they are written is bounded by the caller ([`NackBudget`]).

use std::sync::Mutex;
use std::time::Instant;

use futures::future::BoxFuture;
use serde::Serialize;

use super::backend::{Backend, Work, done};
use super::{StoreResult, sql};
use crate::beckn::redact;

/// The most of a NACKed body kept (bytes of its masked form).
pub const MAX_BODY: usize = 4096;
/// The most of a header summary kept; a longer one is replaced by a note.
pub const MAX_HEADERS: usize = 2048;
/// The most of an id, a claimed sender or an error message kept.
pub const MAX_TEXT: usize = 300;
/// The most NACK records kept at once (the newest).
pub const MAX_KEPT: i64 = 10_000;

/// A NACKed request as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NackRecord {
    pub flow: String,
    /// The role of the flow that refused it (`bpp`, `bap`, `gateway`).
    pub role: String,
    pub action: String,
    pub transaction_id: String,
    pub message_id: String,
    /// Who the request said it came from (unverified when the signature was refused).
    pub counterpart: String,
    /// The Beckn error code.
    pub code: String,
    /// The HTTP status of the NACK.
    pub status: u16,
    pub error: String,
    pub path: Option<String>,
    /// Headers as JSON, signatures summarised, secrets masked.
    pub headers: String,
    /// The body masked as the message log masks it, cut to [`MAX_BODY`] bytes (then no
    /// longer JSON); a body that is not JSON is a note of its size.
    pub body: String,
    /// The size of the body as received.
    pub body_bytes: i64,
}

impl NackRecord {
    /// A record of a refused request whose raw `body` and `headers` summary (see
    /// `redact::headers_json`) are as received: masks and bounds everything kept.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        flow: &str,
        role: &str,
        action: &str,
        ids: (&str, &str, &str),
        (code, status, error, path): (&str, u16, &str, Option<&str>),
        headers: String,
        body: &[u8],
    ) -> Self {
        let (transaction_id, message_id, counterpart) = ids;
        let masked = redact::personal_fields()
            .mask(body)
            .filter(|m| serde_json::from_slice::<serde::de::IgnoredAny>(m).is_ok())
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .unwrap_or_else(|| format!("<{} bytes, not JSON>", body.len()));
        let headers = if headers.len() > MAX_HEADERS {
            format!(
                r#"{{"note":"{} bytes of headers, not kept"}}"#,
                headers.len()
            )
        } else {
            headers
        };
        NackRecord {
            flow: cut(flow, MAX_TEXT),
            role: role.to_string(),
            action: cut(action, MAX_TEXT),
            transaction_id: cut(transaction_id, MAX_TEXT),
            message_id: cut(message_id, MAX_TEXT),
            counterpart: cut(counterpart, MAX_TEXT),
            code: cut(code, 16),
            status,
            error: cut(error, MAX_TEXT),
            path: path.map(|p| cut(p, MAX_TEXT)),
            headers,
            body: cut(&masked, MAX_BODY),
            body_bytes: body.len() as i64,
        }
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    text[..text.floor_char_boundary(max)].to_string()
}

/// Recording NACKed requests.
pub trait NackStore: Send + Sync {
    /// Keeps `nack`, dropping the oldest records beyond [`MAX_KEPT`] in the same commit.
    fn record_nack(&self, nack: NackRecord) -> BoxFuture<'_, StoreResult<()>>;
}

impl<B: Backend> NackStore for B {
    fn record_nack(&self, n: NackRecord) -> BoxFuture<'_, StoreResult<()>> {
        let now = self.clock().now_ms();
        let insert = vec![
            n.flow.into(),
            n.role.into(),
            n.action.into(),
            n.transaction_id.into(),
            n.message_id.into(),
            n.counterpart.into(),
            n.code.into(),
            i64::from(n.status).into(),
            n.error.into(),
            n.path.into(),
            n.headers.into(),
            n.body.into(),
            n.body_bytes.into(),
            now.into(),
        ];
        let work = Work::Execute(vec![
            (sql::INSERT_NACK, insert),
            (sql::TRIM_NACKS, vec![MAX_KEPT.into()]),
        ]);
        Box::pin(done(self, work))
    }
}

/// How many NACK records a process writes: a burst of [`NackBudget::BURST`], then
/// [`NackBudget::PER_SECOND`] a second. NACKs beyond are answered and counted in the
/// metrics as ever, but not stored, so a flood of refused requests costs the store a
/// bounded number of writes.
pub struct NackBudget {
    state: Mutex<(f64, Instant)>,
}

impl NackBudget {
    pub const BURST: f64 = 50.0;
    pub const PER_SECOND: f64 = 10.0;

    pub fn new() -> Self {
        NackBudget {
            state: Mutex::new((Self::BURST, Instant::now())),
        }
    }

    /// Whether one more record may be written now (and if so, it is counted).
    pub fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let (tokens, last) = *state;
        let refilled = (tokens
            + now.saturating_duration_since(last).as_secs_f64() * Self::PER_SECOND)
            .min(Self::BURST);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            true
        } else {
            *state = (refilled, now);
            false
        }
    }
}

impl Default for NackBudget {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How long the budget takes to refill from empty.
    fn refill_time() -> Duration {
        Duration::from_secs_f64(NackBudget::BURST / NackBudget::PER_SECOND)
    }

    #[test]
    fn a_burst_is_recorded_then_only_the_refill_rate() {
        let budget = NackBudget::new();
        let start = Instant::now();
        let taken = (0..1000).filter(|_| budget.take_at(start)).count();
        assert_eq!(taken, NackBudget::BURST as usize);
        let later = start + Duration::from_secs(1);
        let taken = (0..1000).filter(|_| budget.take_at(later)).count();
        assert_eq!(taken, NackBudget::PER_SECOND as usize);
        assert!(budget.take_at(start + Duration::from_secs(1) + refill_time()));
    }

    #[test]
    fn a_record_is_masked_and_bounded() {
        let big = format!(
            r#"{{"context":{{"transaction_id":"t1"}},"message":{{"order":{{"billing":{{"phone":"9999999999"}}}},"pad":"{}"}}}}"#,
            "x".repeat(100_000)
        );
        let r = NackRecord::new(
            "lab",
            "bpp",
            "init",
            ("t1", &"m".repeat(5000), "bap"),
            ("10001", 401, "bad signature", None),
            "x".repeat(10_000),
            big.as_bytes(),
        );
        assert!(!r.body.contains("9999999999"), "{}", &r.body[..200]);
        assert_eq!(r.body.len(), MAX_BODY);
        assert_eq!(r.message_id.len(), MAX_TEXT);
        assert!(r.headers.len() < 100, "{}", r.headers);
        assert_eq!(r.body_bytes, big.len() as i64);
        let r = NackRecord::new(
            "lab",
            "bpp",
            "init",
            ("", "", ""),
            ("10000", 400, "malformed", None),
            "{}".into(),
            b"\xff\xfe not json",
        );
        assert_eq!(r.body, "<11 bytes, not JSON>");
    }
}
