//! `POST /subscribe` in both dialects: the body read (ONDC's has `context.operation` and
//! `message.entity`; core's is the subscriber object), the challenge sent and checked, the
//! ONDC site verification page checked, and the record made `SUBSCRIBED`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::codes;
use crate::crypto;
use crate::{Record, State};

/// A refusal: its code and what went wrong.
struct Refused(&'static str, String);

/// What a subscription asks for, whichever the dialect.
struct Application {
    dialect: &'static str,
    record: Record,
    /// Where the challenge goes.
    on_subscribe: String,
    /// ONDC: the `request_id` the site verification page signs, and where the page is.
    site: Option<(String, String)>,
}

pub(crate) async fn subscribe(
    AxumState(state): AxumState<Arc<State>>,
    body: axum::body::Bytes,
) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let ondc = parsed
        .as_ref()
        .is_ok_and(|v| v.get("context").is_some() && v.get("message").is_some());
    let outcome = match parsed {
        Err(e) => Err(Refused(codes::BAD_REQUEST, format!("not JSON: {e}"))),
        Ok(v) => {
            let app = if ondc {
                ondc_application(&state, &v)
            } else {
                core_application(&v)
            };
            match app {
                Ok(app) => admit(&state, app).await,
                Err(r) => Err(r),
            }
        }
    };
    match (outcome, ondc) {
        (Ok(()), true) => {
            Json(json!({"message": {"ack": {"status": "ACK"}}, "error": null})).into_response()
        }
        (Ok(()), false) => Json(json!({"status": "UNDER_SUBSCRIPTION"})).into_response(),
        (Err(Refused(code, message)), _) => {
            state.note(format!("subscription refused: {message}"));
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "message": {"ack": {"status": "NACK"}},
                    "error": {"type": "POLICY-ERROR", "code": code, "message": message},
                })),
            )
                .into_response()
        }
    }
}

fn text(v: &Value, pointer: &str) -> Result<String, Refused> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Refused(codes::BAD_REQUEST, format!("`{pointer}` is missing")))
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn core_application(v: &Value) -> Result<Application, Refused> {
    let url = text(v, "/url")?.trim_end_matches('/').to_string();
    let record = Record {
        subscriber_id: text(v, "/subscriber_id")?,
        unique_key_id: text(v, "/key_id").or_else(|_| text(v, "/unique_key_id"))?,
        kind: text(v, "/type")?.to_ascii_uppercase(),
        domain: text(v, "/domain")?,
        url: url.clone(),
        city: text(v, "/location/city/code").unwrap_or_else(|_| "*".into()),
        country: text(v, "/location/country/code").unwrap_or_else(|_| "*".into()),
        signing_public_key: text(v, "/signing_public_key")?,
        encr_public_key: text(v, "/encr_public_key")?,
        valid_from: text(v, "/valid_from")?,
        valid_until: text(v, "/valid_until")?,
        status: "INITIATED".into(),
        created: now(),
        updated: now(),
        dialect: "core",
    };
    Ok(Application {
        dialect: "core",
        record,
        on_subscribe: format!("{url}/on_subscribe"),
        site: None,
    })
}

fn ondc_application(state: &State, v: &Value) -> Result<Application, Refused> {
    let ops_no = v
        .pointer("/context/operation/ops_no")
        .and_then(Value::as_u64)
        .ok_or_else(|| {
            Refused(
                codes::BAD_REQUEST,
                "`context.operation.ops_no` is missing".into(),
            )
        })?;
    if ![1, 2, 4].contains(&ops_no) {
        return Err(Refused(
            codes::BAD_REQUEST,
            format!("ops_no {ops_no} is not supported"),
        ));
    }
    for field in [
        "gst",
        "pan",
        "name_of_authorised_signatory",
        "email_id",
        "mobile_no",
    ] {
        if v.pointer(&format!("/message/entity/{field}")).is_none() {
            return Err(Refused(
                codes::BAD_REQUEST,
                format!("`message.entity.{field}` is missing"),
            ));
        }
    }
    let subscriber_id = text(v, "/message/entity/subscriber_id")?;
    let origin = state.origin(&subscriber_id);
    let np = v.pointer("/message/network_participant/0").ok_or_else(|| {
        Refused(
            codes::BAD_REQUEST,
            "`message.network_participant` is empty".into(),
        )
    })?;
    let path = text(np, "/subscriber_url")?;
    let kind = match text(np, "/type")?.as_str() {
        "buyerApp" => "BAP",
        "sellerApp" => "BPP",
        "gateway" => "BG",
        other => {
            return Err(Refused(
                codes::BAD_REQUEST,
                format!("unknown type `{other}`"),
            ));
        }
    };
    let callback = text(v, "/message/entity/callback_url")?;
    let join = |p: &str| format!("{origin}{}", p.trim_end_matches('/'));
    let record = Record {
        subscriber_id,
        unique_key_id: text(v, "/message/entity/unique_key_id")?,
        kind: kind.into(),
        domain: text(np, "/domain")?,
        url: join(&path),
        city: np
            .pointer("/city_code/0")
            .and_then(Value::as_str)
            .unwrap_or("*")
            .into(),
        country: text(v, "/message/entity/country").unwrap_or_else(|_| "IND".into()),
        signing_public_key: text(v, "/message/entity/key_pair/signing_public_key")?,
        encr_public_key: text(v, "/message/entity/key_pair/encryption_public_key")?,
        valid_from: text(v, "/message/entity/key_pair/valid_from")?,
        valid_until: text(v, "/message/entity/key_pair/valid_until")?,
        status: "INITIATED".into(),
        created: now(),
        updated: now(),
        dialect: "ondc",
    };
    Ok(Application {
        dialect: "ondc",
        record,
        on_subscribe: format!("{}/on_subscribe", join(&callback)),
        site: Some((
            text(v, "/message/request_id")?,
            format!("{origin}/ondc-site-verification.html"),
        )),
    })
}

/// Checks the keys, the challenge and (ONDC) the site, then records the subscriber.
async fn admit(state: &State, app: Application) -> Result<(), Refused> {
    let mut record = app.record;
    let signing = crypto::ed25519_public(&record.signing_public_key).map_err(|e| {
        Refused(
            codes::BAD_KEY,
            format!("signing public key is invalid: {e}"),
        )
    })?;
    let encryption = crypto::x25519_public(&record.encr_public_key).map_err(|e| {
        Refused(
            codes::BAD_KEY,
            format!("encryption public key is invalid: {e}"),
        )
    })?;
    let clash = state.records().iter().any(|r| {
        r.subscriber_id == record.subscriber_id
            && r.unique_key_id == record.unique_key_id
            && r.status == "SUBSCRIBED"
            && (r.signing_public_key != record.signing_public_key
                || r.encr_public_key != record.encr_public_key)
    });
    if clash {
        return Err(Refused(
            codes::ALREADY_SUBSCRIBED,
            format!(
                "{}|{} is already subscribed with other keys",
                record.subscriber_id, record.unique_key_id
            ),
        ));
    }
    state.note(format!(
        "{} subscription of {} ({}, {}) received",
        app.dialect, record.subscriber_id, record.kind, record.domain
    ));
    let plaintext = uuid::Uuid::new_v4().to_string();
    let challenge = crypto::encrypt_challenge(&state.secret, &encryption, &plaintext);
    state.note(format!(
        "challenge sent to {} at {}",
        record.subscriber_id, app.on_subscribe
    ));
    let answer = state
        .client
        .post(&app.on_subscribe)
        .timeout(state.timeout)
        .json(&json!({"subscriber_id": record.subscriber_id, "challenge": challenge}))
        .send()
        .await
        .map_err(|e| {
            Refused(
                codes::CHALLENGE_FAILED,
                format!("on_subscribe challenge failed: {e}"),
            )
        })?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() || body.get("answer").and_then(Value::as_str) != Some(&plaintext) {
        return Err(Refused(
            codes::CHALLENGE_FAILED,
            format!("on_subscribe challenge failed: HTTP {status}, {body}"),
        ));
    }
    state.note(format!("challenge answered by {}", record.subscriber_id));
    if let Some((request_id, page_url)) = &app.site {
        verify_site(state, &signing, request_id, page_url).await?;
        state.note(format!("site of {} verified", record.subscriber_id));
    }
    record.status = "SUBSCRIBED".into();
    let mut records = state.records();
    match records.iter_mut().find(|r| {
        r.subscriber_id == record.subscriber_id && r.unique_key_id == record.unique_key_id
    }) {
        Some(existing) => {
            record.created = existing.created.clone();
            *existing = record.clone();
        }
        None => records.push(record.clone()),
    }
    drop(records);
    state.note(format!(
        "{}|{} SUBSCRIBED",
        record.subscriber_id, record.unique_key_id
    ));
    Ok(())
}

/// The page's `ondc-site-verification` meta tag must be the signature of `request_id`.
async fn verify_site(
    state: &State,
    key: &ed25519_dalek::VerifyingKey,
    request_id: &str,
    page_url: &str,
) -> Result<(), Refused> {
    let failed = |why: String| {
        Refused(
            codes::DOMAIN_NOT_VERIFIED,
            format!("domain verification failed: {why}"),
        )
    };
    let page = state
        .client
        .get(page_url)
        .timeout(state.timeout)
        .send()
        .await
        .map_err(|e| failed(format!("{page_url}: {e}")))?;
    if !page.status().is_success() {
        return Err(failed(format!(
            "{page_url} answered HTTP {}",
            page.status()
        )));
    }
    let html = page.text().await.map_err(|e| failed(e.to_string()))?;
    let signature = meta_content(&html, "ondc-site-verification")
        .ok_or_else(|| failed(format!("{page_url} has no ondc-site-verification meta tag")))?;
    if crypto::verify_plain(key, request_id.as_bytes(), &signature) {
        Ok(())
    } else {
        Err(failed(
            "the page's signature is not the request_id's".into(),
        ))
    }
}

/// The `content` of `<meta name="{name}" content="...">`.
fn meta_content(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let content = tag.split("content=\"").nth(1)?;
    Some(content.split('"').next()?.to_string())
}

#[cfg(test)]
pub(crate) fn meta_content_for_tests(html: &str, name: &str) -> Option<String> {
    meta_content(html, name)
}
