//! The HTTP API: the token endpoint, the bearer-protected `/api`, and the lab's and tests'
//! controls (`/_lab`, `/_test`), which need no token.

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::SampleLims;
use crate::bookings::{BookingRequest, QuotationRequest};
use crate::catalog::{self, PageQuery};
use crate::error::LimsError;
use crate::oauth::{TokenForm, TokenRefusal, bearer, client_credentials};

/// The whole API, bound to `lims`'s state.
pub fn router(lims: SampleLims) -> Router {
    let api = Router::new()
        .route("/api/tests", get(tests))
        .route("/api/slots", get(slots))
        .route("/api/quotations", post(quote))
        .route("/api/bookings", post(book))
        .route("/api/bookings/{booking_no}", get(status))
        .route("/api/bookings/{booking_no}/cancel", post(cancel))
        .route("/api/bookings/{booking_no}/feedback", post(feedback))
        .route("/api/enquiries", post(enquiry))
        .route_layer(middleware::from_fn_with_state(lims.clone(), require_token))
        .route_layer(middleware::from_fn_with_state(lims.clone(), maintenance));
    Router::new()
        .route("/oauth/token", post(token))
        .route("/_lab/bookings/{booking_no}/advance", post(advance))
        .route("/_test/tokens", get(token_counts))
        .route("/_test/tokens/revoke", post(revoke))
        .merge(api)
        .fallback(|| async { LimsError::NoRoute })
        .with_state(lims)
}

/// Turns an extractor's rejection into the LIMS's fault shape.
fn invalid(text: String) -> LimsError {
    LimsError::Invalid(text)
}

async fn maintenance(
    State(lims): State<SampleLims>,
    request: Request,
    next: Next,
) -> Result<Response, LimsError> {
    if lims.down() {
        return Err(LimsError::Maintenance);
    }
    Ok(next.run(request).await)
}

async fn require_token(
    State(lims): State<SampleLims>,
    request: Request,
    next: Next,
) -> Result<Response, LimsError> {
    if !lims.admit(bearer(request.headers())) {
        return Err(LimsError::TokenInvalid);
    }
    Ok(next.run(request).await)
}

async fn token(
    State(lims): State<SampleLims>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    if form.grant_type.as_deref() != Some("client_credentials") {
        return TokenRefusal::UnsupportedGrantType.into_response();
    }
    match client_credentials(&headers, &form) {
        Some((id, secret)) if lims.is_client(&id, &secret) => {
            let (token, lifetime) = lims.issue_token();
            Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime}))
                .into_response()
        }
        _ => TokenRefusal::InvalidClient.into_response(),
    }
}

async fn tests(
    State(lims): State<SampleLims>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<catalog::Page>, LimsError> {
    let Query(query) = query.map_err(|e| invalid(e.body_text()))?;
    Ok(Json(catalog::page(&lims.catalog(), query)?))
}

async fn slots(State(lims): State<SampleLims>) -> Json<Value> {
    Json(
        json!({"zone_note": "times are local to the lab", "slots": lims.with_books(|b| b.slots())}),
    )
}

async fn quote(
    State(lims): State<SampleLims>,
    body: Result<Json<QuotationRequest>, JsonRejection>,
) -> Result<Response, LimsError> {
    let Json(request) = body.map_err(|e| invalid(e.body_text()))?;
    let catalog = lims.catalog();
    let quotation = lims.with_books(|b| b.quote(&catalog, &request))?;
    Ok((StatusCode::CREATED, Json(quotation)).into_response())
}

async fn book(
    State(lims): State<SampleLims>,
    body: Result<Json<BookingRequest>, JsonRejection>,
) -> Result<Response, LimsError> {
    let Json(request) = body.map_err(|e| invalid(e.body_text()))?;
    let booked = lims.with_books(|b| b.book(&request))?;
    tracing::info!(booking_no = %booked.booking_no, "LIMS booking made");
    Ok((
        StatusCode::CREATED,
        Json(json!({"booking_no": booked.booking_no, "state": booked.state})),
    )
        .into_response())
}

async fn status(
    State(lims): State<SampleLims>,
    Path(booking_no): Path<String>,
) -> Result<Json<Value>, LimsError> {
    let status = lims.with_books(|b| b.status(&booking_no))?;
    lims.count_status_call(); // once the state is read: a later move is a change
    Ok(Json(json!(status)))
}

async fn cancel(
    State(lims): State<SampleLims>,
    Path(booking_no): Path<String>,
) -> Result<Json<Value>, LimsError> {
    let status = lims.with_books(|b| b.cancel(&booking_no))?;
    Ok(Json(
        json!({"booking_no": status.booking_no, "state": status.state}),
    ))
}

#[derive(Debug, Deserialize)]
struct Score {
    score: i64,
}

async fn feedback(
    State(lims): State<SampleLims>,
    Path(booking_no): Path<String>,
    body: Result<Json<Score>, JsonRejection>,
) -> Result<Json<Value>, LimsError> {
    let Json(Score { score }) = body.map_err(|e| invalid(e.body_text()))?;
    let reference = lims.with_books(|b| b.feedback(&booking_no, score))?;
    Ok(Json(json!({"feedback_ref": reference})))
}

async fn enquiry(State(lims): State<SampleLims>) -> Json<Value> {
    let number = lims.with_books(|b| b.enquiry());
    Json(json!({
        "enquiry_no": number,
        "helpline": crate::HELPLINE,
        "email": crate::HELPDESK_EMAIL,
    }))
}

async fn advance(
    State(lims): State<SampleLims>,
    Path(booking_no): Path<String>,
) -> Result<Json<Value>, LimsError> {
    Ok(Json(json!(lims.advance(&booking_no)?)))
}

async fn token_counts(State(lims): State<SampleLims>) -> Json<Value> {
    Json(json!({"issued": lims.tokens_issued(), "refused": lims.calls_refused()}))
}

async fn revoke(State(lims): State<SampleLims>) -> StatusCode {
    lims.revoke_tokens();
    StatusCode::NO_CONTENT
}
