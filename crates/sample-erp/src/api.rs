//! The REST API: routes, authentication and thin handlers.
//!
//! Handlers only translate between HTTP and the books: they parse input with
//! the extractors of [`crate::extract`] (so bad input is a JSON 400), call
//! one operation on the shared state under its lock, announce status changes,
//! and pick the status code. Business rules live in the other modules.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::SampleErp;
use crate::catalog::{self, Lab, LabSummary, Mode, Package, PackageHit, PackageQuery};
use crate::error::ErpError;
use crate::events::{EventPage, EventQuery};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::faults::{self, Fault, FaultSpec};
use crate::orders::{CancelRequest, Order, OrderRequest, OrderStatus, Tracking};
use crate::quotes::{Quote, QuoteRequest};
use crate::slots::Slot;
use crate::support::{Feedback, FeedbackRequest, Ticket, TicketRequest};

/// The header every lab and control call must carry.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The whole API, bound to `erp`'s state.
pub fn router(erp: SampleErp) -> Router {
    let labs = Router::new()
        .route("/api/v1/labs/{lab}/profile", get(profile))
        .route("/api/v1/labs/{lab}/packages", get(packages))
        .route("/api/v1/labs/{lab}/packages/{sku}", get(package))
        .route("/api/v1/labs/{lab}/slots", get(slots))
        .route("/api/v1/labs/{lab}/quotes", post(quote))
        .route("/api/v1/labs/{lab}/orders", post(place_order))
        .route("/api/v1/labs/{lab}/orders/{order_no}", get(order))
        .route(
            "/api/v1/labs/{lab}/orders/{order_no}/tracking",
            get(tracking),
        )
        .route("/api/v1/labs/{lab}/orders/{order_no}/cancel", post(cancel))
        .route(
            "/api/v1/labs/{lab}/orders/{order_no}/feedback",
            post(feedback),
        )
        .route(
            "/api/v1/labs/{lab}/orders/{order_no}/advance",
            post(advance),
        )
        .route("/api/v1/labs/{lab}/tickets", post(open_ticket))
        .route("/api/v1/labs/{lab}/order-events", get(order_events))
        .route_layer(middleware::from_fn_with_state(erp.clone(), require_api_key))
        // Added last, so it runs first: a faulty ERP fails before it checks keys.
        .route_layer(middleware::from_fn_with_state(erp.clone(), faults::inject));
    let control = Router::new()
        .route(
            "/api/v1/faults",
            get(current_fault).put(set_fault).delete(clear_fault),
        )
        .route_layer(middleware::from_fn_with_state(erp.clone(), require_api_key));
    Router::new()
        .route("/api/v1/health", get(health))
        .merge(labs)
        .merge(control)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(erp)
}

async fn require_api_key(
    State(erp): State<SampleErp>,
    request: Request,
    next: Next,
) -> Result<Response, ErpError> {
    let given = request
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|value| value.to_str().ok());
    if given == Some(erp.api_key()) {
        Ok(next.run(request).await)
    } else {
        Err(ErpError::Unauthorized)
    }
}

async fn no_route(method: Method, uri: Uri) -> ErpError {
    ErpError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ErpError {
    ErpError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

fn find_lab(code: &str) -> Result<&'static Lab, ErpError> {
    catalog::lab(code).ok_or_else(|| ErpError::UnknownLab(code.to_owned()))
}

async fn profile(ApiPath(lab): ApiPath<String>) -> Result<Json<&'static Lab>, ErpError> {
    find_lab(&lab).map(Json)
}

#[derive(Debug, Serialize)]
struct PackageList {
    lab: LabSummary,
    packages: Vec<PackageHit>,
}

async fn packages(
    ApiPath(lab): ApiPath<String>,
    ApiQuery(query): ApiQuery<PackageQuery>,
) -> Result<Json<PackageList>, ErpError> {
    let lab = find_lab(&lab)?;
    Ok(Json(PackageList {
        lab: lab.summary(),
        packages: lab.search(&query)?,
    }))
}

async fn package(
    ApiPath((lab, sku)): ApiPath<(String, String)>,
) -> Result<Json<&'static Package>, ErpError> {
    let lab = find_lab(&lab)?;
    lab.package(&sku)
        .map(Json)
        .ok_or_else(|| ErpError::PackageNotFound {
            lab: lab.code.to_owned(),
            sku,
        })
}

#[derive(Debug, Deserialize)]
struct SlotQuery {
    date: Option<String>,
    mode: Option<String>,
}

#[derive(Debug, Serialize)]
struct SlotList {
    slots: Vec<Slot>,
}

async fn slots(
    State(erp): State<SampleErp>,
    ApiPath(lab): ApiPath<String>,
    ApiQuery(query): ApiQuery<SlotQuery>,
) -> Result<Json<SlotList>, ErpError> {
    let date = match query.date.as_deref().filter(|d| !d.is_empty()) {
        Some(text) => Some(text.parse::<Date>().map_err(|_| {
            ErpError::BadRequest(format!("bad date '{text}': expected YYYY-MM-DD"))
        })?),
        None => None,
    };
    let mode = match query.mode.as_deref().filter(|m| !m.is_empty()) {
        Some(text) => text.parse()?,
        None => Mode::HomePickup,
    };
    let slots = erp.with_lab(&lab, |book| book.slots(date, mode, Timestamp::now()))?;
    Ok(Json(SlotList { slots }))
}

async fn quote(
    State(erp): State<SampleErp>,
    ApiPath(lab): ApiPath<String>,
    ApiJson(request): ApiJson<QuoteRequest>,
) -> Result<Json<Quote>, ErpError> {
    erp.with_lab(&lab, |book| book.quote(&request, Timestamp::now()))
        .map(Json)
}

/// 201 for a new order, 200 when the client_ref was already used.
/// An `Idempotency-Key` already used for an order at this lab answers that order (200), so a
/// caller that repeats the call books once.
async fn place_order(
    State(erp): State<SampleErp>,
    ApiPath(lab): ApiPath<String>,
    headers: axum::http::HeaderMap,
    ApiJson(request): ApiJson<OrderRequest>,
) -> Result<(StatusCode, Json<Order>), ErpError> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &key
        && let Some(order_no) = erp.placed_under(&lab, key)
    {
        let order = erp.with_lab(&lab, |book| book.order(&order_no).cloned())?;
        return Ok((StatusCode::OK, Json(order)));
    }
    let placed = erp.with_lab(&lab, |book| book.place_order(request, Timestamp::now()))?;
    if let Some(key) = &key {
        erp.note_placed(&lab, key, &placed.order.order_no);
    }
    if placed.created {
        tracing::info!(order_no = %placed.order.order_no, client_ref = %placed.order.client_ref, "order placed");
        Ok((StatusCode::CREATED, Json(placed.order)))
    } else {
        Ok((StatusCode::OK, Json(placed.order)))
    }
}

async fn order(
    State(erp): State<SampleErp>,
    ApiPath((lab, order_no)): ApiPath<(String, String)>,
) -> Result<Json<Order>, ErpError> {
    erp.with_lab(&lab, |book| book.order(&order_no).cloned())
        .map(Json)
}

async fn tracking(
    State(erp): State<SampleErp>,
    ApiPath((lab, order_no)): ApiPath<(String, String)>,
) -> Result<Json<Tracking>, ErpError> {
    erp.with_lab(&lab, |book| book.tracking(&order_no))
        .map(Json)
}

async fn cancel(
    State(erp): State<SampleErp>,
    ApiPath((lab, order_no)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<CancelRequest>,
) -> Result<Json<Order>, ErpError> {
    let (order, changed) = erp.with_lab(&lab, |book| {
        book.cancel(&order_no, &request, Timestamp::now())
    })?;
    if changed {
        erp.announce(vec![order.clone()]);
    }
    Ok(Json(order))
}

async fn feedback(
    State(erp): State<SampleErp>,
    ApiPath((lab, order_no)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<FeedbackRequest>,
) -> Result<(StatusCode, Json<Feedback>), ErpError> {
    let feedback = erp.with_lab(&lab, |book| {
        book.feedback(&order_no, &request, Timestamp::now())
    })?;
    Ok((StatusCode::CREATED, Json(feedback)))
}

async fn open_ticket(
    State(erp): State<SampleErp>,
    ApiPath(lab): ApiPath<String>,
    ApiJson(request): ApiJson<TicketRequest>,
) -> Result<(StatusCode, Json<Ticket>), ErpError> {
    let ticket = erp.with_lab(&lab, |book| book.open_ticket(&request, Timestamp::now()))?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

/// Status changes of the lab's orders after the `after` cursor, oldest first:
/// `{"events": [...], "next": N}`, each event as the webhook posts it.
async fn order_events(
    State(erp): State<SampleErp>,
    ApiPath(lab): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> Result<Json<EventPage>, ErpError> {
    erp.events(&lab, query.after, query.limit).map(Json)
}

/// Optional body of the admin `advance` call.
#[derive(Debug, Default, Deserialize)]
struct AdvanceRequest {
    to: Option<OrderStatus>,
}

/// Admin: moves an order to its next status, or forward to `to`. The body
/// is optional, so it is read raw rather than through [`ApiJson`], which
/// would insist on one.
async fn advance(
    State(erp): State<SampleErp>,
    ApiPath((lab, order_no)): ApiPath<(String, String)>,
    body: Bytes,
) -> Result<Json<Order>, ErpError> {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        AdvanceRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ErpError::BadRequest(format!("bad advance request: {e}")))?
    };
    erp.advance_to(&lab, &order_no, request.to).map(Json)
}

async fn current_fault(State(erp): State<SampleErp>) -> Json<Option<FaultSpec>> {
    Json(erp.fault().map(FaultSpec::from))
}

async fn set_fault(
    State(erp): State<SampleErp>,
    ApiJson(spec): ApiJson<FaultSpec>,
) -> Result<Json<FaultSpec>, ErpError> {
    let fault = Fault::try_from(spec)?;
    erp.set_fault(Some(fault));
    Ok(Json(FaultSpec::from(fault)))
}

async fn clear_fault(State(erp): State<SampleErp>) -> StatusCode {
    erp.set_fault(None);
    StatusCode::NO_CONTENT
}
