//! The transactions page's API: a list, newest first, filtered; and a stream of server-sent
//! events telling the page when anything was logged or the outbox moved, so it reloads what
//! it shows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;

use super::{Console, refusal};
use crate::store::{ChangeMark, TransactionFilter};

/// How often the event stream looks for changes: a page refresh cadence, not a hot path.
const LOOK_EVERY: Duration = Duration::from_millis(700);

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    transaction_id: String,
    #[serde(default)]
    order_id: String,
    #[serde(default)]
    subscriber: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
    /// RFC 3339 or Unix ms.
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    limit: Option<usize>,
}

pub async fn list(State(console): State<Arc<Console>>, Query(q): Query<ListQuery>) -> Response {
    let (from, to) = match (instant(&q.from), instant(&q.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return refusal(StatusCode::BAD_REQUEST, &e),
    };
    let filter = TransactionFilter {
        transaction_id: q.transaction_id.trim().to_string(),
        order_id: q.order_id.trim().to_string(),
        subscriber: q.subscriber.trim().to_string(),
        action: q.action.trim().to_string(),
        outcome: q.outcome.trim().to_string(),
        from,
        to,
        limit: q.limit.unwrap_or(100),
    };
    match console.admin.store.transactions(&filter).await {
        Ok(list) => Json(json!({"transactions": list})).into_response(),
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// A time given as RFC 3339 (`2026-12-01T10:00:00Z`, or a `datetime-local` value, read as
/// UTC) or Unix milliseconds; empty: none.
fn instant(text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(Some(ms));
    }
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(t.as_millisecond()));
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt).ok())
        .map(|t| Some(t.as_millisecond()))
        .ok_or_else(|| format!("`{text}` is not a time (RFC 3339 or Unix milliseconds)"))
}

/// `change` events, each time the store's change mark moves (and one at once).
pub async fn events(
    State(console): State<Arc<Console>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let store = console.admin.store.clone();
    let stream = futures::stream::unfold((store, None::<ChangeMark>), |(store, last)| async move {
        loop {
            let mark = store.change_mark().await.unwrap_or_default();
            if last != Some(mark) {
                let event = Event::default()
                    .event("change")
                    .json_data(mark)
                    .unwrap_or_default();
                return Some((Ok(event), (store, Some(mark))));
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::instant;

    #[test]
    fn times_are_read_as_rfc3339_local_or_milliseconds() {
        assert_eq!(instant(""), Ok(None));
        assert_eq!(instant("1000"), Ok(Some(1000)));
        assert_eq!(instant("1970-01-01T00:00:01Z"), Ok(Some(1000)));
        assert_eq!(instant("1970-01-01T00:00:02"), Ok(Some(2000)));
        assert!(instant("yesterday").is_err());
    }
}
