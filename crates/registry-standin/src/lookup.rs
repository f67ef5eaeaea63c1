//! `POST /lookup` (core: open, answered with core field names) and `POST /v2.0/lookup`
//! (ONDC: signed by a subscribed participant, answered with ONDC field names). Both answer a
//! JSON array of the matching records.

use std::sync::Arc;

use axum::Json;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{Record, State, codes, crypto};

/// Whether `record` matches the query's fields (absent ones match anything).
fn matches(query: &Value, record: &Record) -> bool {
    let want = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| query.get(*n).and_then(Value::as_str))
    };
    let eq = |names: &[&str], have: &str| want(names).is_none_or(|w| w == have);
    let kind = want(&["type"]).map(|t| match t {
        "buyerApp" => "BAP",
        "sellerApp" => "BPP",
        "gateway" => "BG",
        other => other,
    });
    eq(&["subscriber_id"], &record.subscriber_id)
        && eq(&["ukId", "unique_key_id", "key_id"], &record.unique_key_id)
        && eq(&["domain"], &record.domain)
        && kind.is_none_or(|k| k.eq_ignore_ascii_case(&record.kind))
}

pub(crate) async fn core_lookup(
    AxumState(state): AxumState<Arc<State>>,
    Json(query): Json<Value>,
) -> Response {
    let found: Vec<Value> = state
        .records()
        .iter()
        .filter(|r| matches(&query, r))
        .map(|r| {
            json!({
                "subscriber_id": r.subscriber_id, "url": r.url, "type": r.kind,
                "domain": r.domain, "city": r.city, "country": r.country,
                "unique_key_id": r.unique_key_id, "signing_public_key": r.signing_public_key,
                "encr_public_key": r.encr_public_key, "valid_from": r.valid_from,
                "valid_until": r.valid_until, "status": r.status, "created": r.created,
                "updated": r.updated,
            })
        })
        .collect();
    state.note(format!("core lookup {query}: {} found", found.len()));
    Json(Value::Array(found)).into_response()
}

pub(crate) async fn ondc_lookup(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(why) = authorised(&state, &headers, &body) {
        state.note(format!("v2.0 lookup refused: {why}"));
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "message": {"ack": {"status": "NACK"}},
                "error": {"code": codes::UNAUTHORISED, "message": why},
            })),
        )
            .into_response();
    }
    let Ok(query) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": codes::BAD_REQUEST, "message": "not JSON"}})),
        )
            .into_response();
    };
    let found: Vec<Value> = state
        .records()
        .iter()
        .filter(|r| matches(&query, r))
        .map(|r| {
            json!({
                "subscriber_id": r.subscriber_id, "ukId": r.unique_key_id,
                "br_id": format!("br-{}-{}", r.subscriber_id, r.unique_key_id),
                "domain": r.domain, "type": r.kind, "city": r.city, "country": r.country,
                "signing_public_key": r.signing_public_key, "encr_public_key": r.encr_public_key,
                "valid_from": r.valid_from, "valid_until": r.valid_until,
                "created": r.created, "updated": r.updated, "status": r.status,
                "subscriber_url": r.url,
            })
        })
        .collect();
    state.note(format!("v2.0 lookup {query}: {} found", found.len()));
    Json(Value::Array(found)).into_response()
}

/// The request is signed, now, by a subscribed participant's registered key.
fn authorised(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("a v2.0 lookup must be signed (Authorization header)")?;
    let by = crypto::parse_authorization(value)?;
    let now = jiff::Timestamp::now().as_second();
    if by.created > now + 5 || by.expires < now {
        return Err(format!(
            "the signature is not valid now (created {}, expires {}, now {now})",
            by.created, by.expires
        ));
    }
    let key = state
        .records()
        .iter()
        .find(|r| {
            r.subscriber_id == by.subscriber_id
                && r.unique_key_id == by.unique_key_id
                && r.status == "SUBSCRIBED"
        })
        .map(|r| r.signing_public_key.clone())
        .ok_or_else(|| {
            format!(
                "{}|{} is not subscribed",
                by.subscriber_id, by.unique_key_id
            )
        })?;
    let key = crypto::ed25519_public(&key)?;
    if crypto::verify_body(&by, &key, body) {
        Ok(())
    } else {
        Err("the signature does not match the body".into())
    }
}
