//! The operations console: a browser page served by the admin listener under `/console`,
//! and the JSON APIs it reads under `/console/api/` (one file per page's API).
//!
//! Protected like `/admin` (see `auth.rs`): the admin token when one is set, as a bearer or
//! through a session cookie, and a CSRF token on every POST. Its assets are built into the
//! binary (`assets.rs`).

pub mod assets;
pub mod auth;
pub mod outbox;
pub mod overview;
pub mod playground;
pub mod timeline;
pub mod transactions;

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::admin::Admin;
use auth::{Caller, Guard};

/// What the console's handlers share.
pub struct Console {
    pub admin: Arc<Admin>,
    pub guard: Guard,
}

/// The console's routes, to merge into the admin listener's router.
pub fn router(admin: Arc<Admin>) -> Router {
    let console = Arc::new(Console {
        guard: Guard::new(admin.token.clone()),
        admin,
    });
    let api = Router::new()
        .route("/console/api/session", get(session))
        .route("/console/api/overview", get(overview::overview))
        .route("/console/api/reload", post(overview::reload))
        .route("/console/api/transactions", get(transactions::list))
        .route("/console/api/events", get(transactions::events))
        .route(
            "/console/api/transactions/{flow}/{transaction_id}",
            get(timeline::timeline),
        )
        .route("/console/api/outbox", get(outbox::list))
        .route("/console/api/outbox/{id}/retry", post(outbox::retry))
        .route("/console/api/outbox/{id}/drop", post(outbox::drop_dead))
        .route("/console/api/playground/files", get(playground::files))
        .route("/console/api/playground/open", get(playground::open))
        .route("/console/api/playground/render", post(playground::render))
        .route("/console/api/playground/save", post(playground::save))
        .route_layer(middleware::from_fn_with_state(console.clone(), protect));
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/login", post(login))
        .route("/console/assets/{name}", get(asset))
        .merge(api)
        .layer(middleware::map_response(with_security_headers))
        .with_state(console)
}

async fn with_security_headers(mut response: Response) -> Response {
    for (name, value) in assets::security_headers() {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Refuses an API call from a stranger, and a POST without the caller's CSRF token.
async fn protect(State(console): State<Arc<Console>>, req: Request, next: Next) -> Response {
    let caller = console.guard.caller(req.headers());
    if caller == Caller::Stranger {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "the console needs the admin token: log in at /console, or send Authorization: Bearer <admin token>",
        );
    }
    if req.method() == Method::POST && !console.guard.csrf_ok(&caller, req.headers()) {
        return refusal(
            StatusCode::FORBIDDEN,
            "a console POST needs the page's CSRF token in X-Console-CSRF",
        );
    }
    next.run(req).await
}

/// A JSON error answer of the console's APIs.
pub fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    token: Option<String>,
}

/// The page, the login form for a stranger, or a `?token=` exchanged for a session cookie
/// (and dropped from the address at once).
async fn page(
    State(console): State<Arc<Console>>,
    Query(q): Query<PageQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(token) = q.token.filter(|_| console.guard.required()) {
        return signed_in(&console, &token);
    }
    match console.guard.caller(&headers) {
        Caller::Stranger => assets::login(None),
        caller => assets::index(&console.guard.csrf(&caller)),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(console): State<Arc<Console>>, Form(form): Form<LoginForm>) -> Response {
    signed_in(&console, &form.token)
}

fn signed_in(console: &Console, token: &str) -> Response {
    if !console.guard.required() {
        return Redirect::to("/console").into_response();
    }
    if !console.guard.token_matches(token) {
        return assets::login(Some("that is not the admin token"));
    }
    let id = console.guard.open_session();
    let mut r = Redirect::to("/console").into_response();
    if let Ok(v) = auth::Guard::cookie(&id).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn asset(Path(name): Path<String>) -> Response {
    assets::asset(&name)
}

/// The caller's CSRF token, for a client that talks to the APIs without the page.
async fn session(State(console): State<Arc<Console>>, headers: axum::http::HeaderMap) -> Response {
    let caller = console.guard.caller(&headers);
    Json(json!({"csrf": console.guard.csrf(&caller)})).into_response()
}
