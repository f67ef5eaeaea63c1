//! A stand-in for Flipkart Ultra's partner APIs, strict like the real one, for the adapter's
//! demo and tests.
//!
//! - Every call must carry a `secureToken`: an RS256 JWT signed with the partner's key, `iss`
//!   the partner's client id, `iat` in the past, `exp` in the future, `exp - iat` at most
//!   1000 s. Anything else is refused with HTTP 401 and a numeric `status` (10-13).
//! - `GET /1/dummy` answers 200 to a good token.
//! - `GET /1/authorization/auth` exchanges a single-use grant token (see `POST /test/grants`)
//!   for the user's identity and access tokens, wrapped as `{"STATUS", "RESPONSE"}`; it wants
//!   the bare merchant id as `clientId` and the client secret.
//! - `POST /1/resource/bulk?accessToken=` answers the `user.mobile` and `user.email` scopes,
//!   with their fields swapped as Flipkart's own documentation shows them.
//! - `POST /3/oms` keeps orders by the rules: a known identity token (14), a state of the enum
//!   (22), `forwardTransaction` > 0 (21), `ORDER_CONFIRMED` first and nothing after a terminal
//!   state (24), a refund at most the amount paid (25) and only on a terminal state (26), a
//!   state already accepted answered with 23. Timestamps must be Unix seconds (22).
//!
//! Test hooks: `POST /test/grants` makes a user and a grant token, `GET /test/orders` lists
//! the accepted orders with their history, `POST /test/oms-faults` queues answers `/3/oms`
//! gives before the real ones (429 then 200, say).

mod oms;
mod token;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

pub use oms::{AcceptedOrder, OmsError};
pub use token::TokenCheck;

/// Who the partner is, as Flipkart knows it.
#[derive(Debug, Clone)]
pub struct StandInConfig {
    /// `merchant.app`: the `iss` of the partner's tokens.
    pub client_id: String,
    /// The bare merchant id the grant exchange wants as `clientId`.
    pub merchant_id: String,
    pub client_secret: String,
    /// The partner's RSA public key (PEM).
    pub public_key_pem: String,
}

/// The sample network's partner (flows/ultra.yaml's defaults). TEST-ONLY values.
pub const SAMPLE_CLIENT_ID: &str = "soilcare.farmerapp";
pub const SAMPLE_CLIENT_SECRET: &str = "test-only-ultra-secret";

impl StandInConfig {
    /// The sample partner, trusting `public_key_pem`.
    pub fn sample(public_key_pem: String) -> Self {
        StandInConfig {
            client_id: SAMPLE_CLIENT_ID.into(),
            merchant_id: SAMPLE_CLIENT_ID
                .split('.')
                .next()
                .unwrap_or_default()
                .into(),
            client_secret: SAMPLE_CLIENT_SECRET.into(),
            public_key_pem,
        }
    }
}

/// A user of the stand-in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub identity_token: String,
    pub mobile: String,
    pub email: String,
}

/// An answer queued by `POST /test/oms-faults`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CannedAnswer {
    pub http: u16,
    #[serde(default)]
    pub body: Value,
}

#[derive(Default)]
struct Books {
    users: Vec<User>,
    /// Grant token -> identity token; removed when used.
    grants: HashMap<String, String>,
    /// Access token -> identity token.
    access: HashMap<String, String>,
    orders: Vec<AcceptedOrder>,
    faults: VecDeque<CannedAnswer>,
    /// Every `/3/oms` call, with the answer's code (0 for a success).
    oms_calls: Vec<(String, String, i64)>,
}

/// The stand-in: cheap to clone, all clones share the books.
#[derive(Clone)]
pub struct UltraStandIn {
    config: Arc<StandInConfig>,
    tokens: Arc<token::TokenCheck>,
    books: Arc<Mutex<Books>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl UltraStandIn {
    /// Fails when the public key is not an RSA key in PEM.
    pub fn new(config: StandInConfig) -> Result<Self, String> {
        let tokens = token::TokenCheck::new(&config.client_id, config.public_key_pem.as_bytes())?;
        Ok(UltraStandIn {
            config: Arc::new(config),
            tokens: Arc::new(tokens),
            books: Arc::new(Mutex::new(Books::default())),
        })
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/1/dummy", get(dummy))
            .route("/1/authorization/auth", get(auth))
            .route("/1/resource/bulk", post(resources))
            .route("/3/oms", post(oms_upsert))
            .route("/test/grants", post(new_grant))
            .route("/test/orders", get(list_orders))
            .route("/test/oms-faults", post(queue_faults))
            .with_state(self.clone())
    }

    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "Ultra stand-in listening");
        }
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Makes a user (or finds the one with this mobile number) and a fresh grant token.
    pub fn grant(&self, mobile: &str, email: &str) -> (String, User) {
        let mut books = lock(&self.books);
        let user = match books.users.iter().find(|u| u.mobile == mobile) {
            Some(u) => u.clone(),
            None => {
                let u = User {
                    identity_token: format!("IDTKN{}", uuid::Uuid::new_v4().simple())
                        .to_uppercase(),
                    mobile: mobile.to_string(),
                    email: email.to_string(),
                };
                books.users.push(u.clone());
                u
            }
        };
        let grant = format!("GRANT-{}", uuid::Uuid::new_v4().simple());
        books
            .grants
            .insert(grant.clone(), user.identity_token.clone());
        (grant, user)
    }

    /// Registers a user Flipkart already knows (its identity token given), as a partner whose
    /// users signed in elsewhere would have.
    pub fn add_user(&self, user: User) {
        lock(&self.books).users.push(user);
    }

    /// The orders accepted so far, oldest first.
    pub fn orders(&self) -> Vec<AcceptedOrder> {
        lock(&self.books).orders.clone()
    }

    /// Every `/3/oms` call: order id, state, and the answer's code (0: accepted).
    pub fn oms_calls(&self) -> Vec<(String, String, i64)> {
        lock(&self.books).oms_calls.clone()
    }

    /// Queues answers `/3/oms` gives before the real ones.
    pub fn queue_oms_answers(&self, answers: impl IntoIterator<Item = CannedAnswer>) {
        lock(&self.books).faults.extend(answers);
    }

    /// The refusal of a call whose secureToken Ultra would not accept.
    fn check_token(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let token = headers
            .get("securetoken")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.tokens
            .check(token, now())
            .map_err(|(code, message)| Box::new(refuse(StatusCode::UNAUTHORIZED, code, &message)))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn refuse(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"status": code, "message": message}))).into_response()
}

async fn dummy(State(s): State<UltraStandIn>, headers: HeaderMap) -> Response {
    match s.check_token(&headers) {
        Ok(()) => Json(json!({"status": "OK"})).into_response(),
        Err(r) => *r,
    }
}

async fn auth(
    State(s): State<UltraStandIn>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = s.check_token(&headers) {
        return *r;
    }
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("clientId") != s.config.merchant_id || get("clientSecret") != s.config.client_secret {
        return refuse(
            StatusCode::UNAUTHORIZED,
            15,
            "unknown client id or wrong client secret",
        );
    }
    let mut books = lock(&s.books);
    let Some(identity) = books.grants.remove(get("grantToken")) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            15,
            "unknown or already used grant token",
        );
    };
    let access = format!("ACCESS-{}", uuid::Uuid::new_v4().simple());
    books.access.insert(access.clone(), identity.clone());
    Json(json!({
        "STATUS": "SUCCESS",
        "RESPONSE": {"identityToken": identity, "accessToken": access}
    }))
    .into_response()
}

async fn resources(
    State(s): State<UltraStandIn>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = s.check_token(&headers) {
        return *r;
    }
    let books = lock(&s.books);
    let token = q.get("accessToken").map(String::as_str).unwrap_or_default();
    let Some(user) = books
        .access
        .get(token)
        .and_then(|id| books.users.iter().find(|u| &u.identity_token == id))
    else {
        return refuse(StatusCode::UNAUTHORIZED, 14, "unknown access token");
    };
    let Ok(scopes) = serde_json::from_slice::<Vec<String>>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            22,
            "the body must be a list of scopes",
        );
    };
    let mut out = serde_json::Map::new();
    for scope in scopes {
        // The field lists are swapped, as in Flipkart's documentation.
        match scope.as_str() {
            "user.mobile" => out.insert(scope, json!({"email": user.email, "isVerified": true})),
            "user.email" => out.insert(
                scope,
                json!({"mobileNumber": user.mobile, "isVerified": true}),
            ),
            _ => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    22,
                    &format!("unknown scope {scope}"),
                );
            }
        };
    }
    Json(Value::Object(out)).into_response()
}

async fn oms_upsert(
    State(s): State<UltraStandIn>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = s.check_token(&headers) {
        return *r;
    }
    let mut guard = lock(&s.books);
    let books = &mut *guard;
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let ids = parsed
        .as_ref()
        .map(|v| {
            let t = |k: &str| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (t("orderId"), t("orderState"))
        })
        .unwrap_or_default();
    if let Some(canned) = books.faults.pop_front() {
        let code = canned
            .body
            .get("status")
            .and_then(Value::as_i64)
            .unwrap_or(-1);
        books.oms_calls.push((ids.0, ids.1, code));
        let status = StatusCode::from_u16(canned.http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, Json(canned.body)).into_response();
    }
    let result = match parsed {
        Ok(order) => oms::upsert(&mut books.orders, &books.users, order, now()),
        Err(e) => Err(OmsError::new(22, format!("the body is not JSON: {e}"))),
    };
    match result {
        Ok(()) => {
            books.oms_calls.push((ids.0, ids.1, 0));
            Json(json!({"status": "SUCCESS"})).into_response()
        }
        Err(e) => {
            books.oms_calls.push((ids.0, ids.1, e.code));
            refuse(StatusCode::BAD_REQUEST, e.code, &e.message)
        }
    }
}

#[derive(serde::Deserialize)]
struct GrantRequest {
    mobile: String,
    email: String,
}

async fn new_grant(State(s): State<UltraStandIn>, Json(req): Json<GrantRequest>) -> Response {
    let (grant, user) = s.grant(&req.mobile, &req.email);
    Json(json!({"grantToken": grant, "identityToken": user.identity_token})).into_response()
}

async fn list_orders(State(s): State<UltraStandIn>) -> Response {
    Json(json!({"orders": s.orders()})).into_response()
}

async fn queue_faults(
    State(s): State<UltraStandIn>,
    Json(answers): Json<Vec<CannedAnswer>>,
) -> Response {
    s.queue_oms_answers(answers);
    StatusCode::NO_CONTENT.into_response()
}
