//! Backend auth against a stand-in ERP behind OAuth2 client credentials: a token endpoint
//! whose tokens expire when told, and a protected order API. The shipped GreenField flow is
//! compiled with its backend switched to OAuth2, and its `status` action run through the
//! engine with the real HTTP transport (`render` with live backends).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use beckn_adapter::backend::{BackendFailure, BackendRequest, HttpTransport, Transport};
use beckn_adapter::compile::{CompiledSet, Layout};
use beckn_adapter::dry_run::{RenderArgs, render};
use serde_json::json;

use crate::common::{bind, temp_tree};

const CLIENT_ID: &str = "lab-client";
const SECRET: &str = "s3cret-lab-client-pw";

/// The stand-in ERP: what it handed out and what it saw.
#[derive(Default)]
struct Erp {
    token_requests: AtomicUsize,
    /// Calls of the order API refused for their token.
    refused: AtomicUsize,
    /// The lifetime of the next tokens, in seconds.
    expires_in: AtomicU64,
    /// Valid tokens and when the ERP stops taking them.
    tokens: Mutex<HashMap<String, Instant>>,
    /// Every form the token endpoint received, to check its shape.
    forms: Mutex<Vec<HashMap<String, String>>>,
}

impl Erp {
    fn tokens_issued(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    /// Forgets every token, as an ERP does after a restart or a key rotation.
    fn revoke_all(&self) {
        self.tokens.lock().unwrap().clear();
    }
}

async fn token(State(erp): State<Arc<Erp>>, headers: HeaderMap, body: String) -> Response {
    // Slow enough that concurrent callers overlap.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n = erp.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
    erp.forms.lock().unwrap().push(form.clone());
    let form_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let from_body = match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Some(format!("{id}:{secret}")),
        _ => None,
    };
    let ok = form_type == "application/x-www-form-urlencoded"
        && form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && basic.or(from_body).as_deref() == Some(&format!("{CLIENT_ID}:{SECRET}"));
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let lifetime = erp.expires_in.load(Ordering::SeqCst);
    let value = format!("token-{n}");
    erp.tokens.lock().unwrap().insert(
        value.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    axum::Json(json!({"access_token": value, "token_type": "Bearer", "expires_in": lifetime}))
        .into_response()
}

async fn order(
    State(erp): State<Arc<Erp>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let valid = erp
        .tokens
        .lock()
        .unwrap()
        .get(&bearer)
        .is_some_and(|until| Instant::now() < *until);
    if !valid {
        erp.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "UNAUTHORIZED"})),
        )
            .into_response();
    }
    axum::Json(json!({
        "order_no": id, "lab_code": "GFSL", "status": "TESTING",
        "items": [{"sku": "soil-npk-package", "title": "Soil NPK Package", "qty": 1,
                   "unit_price_paise": 49900, "amount_paise": 49900}],
        "pickup_fee_paise": 0, "gst_paise": 8982, "total_paise": 58882, "currency": "INR",
        "mode": "LAB_DROP", "slot": null, "billing": null, "agent": null,
        "customer": {"name": "Asha Devi", "phone": "+91-98100-22222", "email": null,
                     "address": null, "pincode": "110081", "gps": null},
        "payment": {"status": "PENDING"}, "report_url": null, "tracking_url": null,
        "cancellation": null, "created_at": "2026-11-23T10:00:00Z",
        "updated_at": "2026-11-24T10:00:00Z"
    }))
    .into_response()
}

async fn start_erp(expires_in: u64) -> (Arc<Erp>, SocketAddr) {
    let erp = Arc::new(Erp::default());
    erp.expires_in.store(expires_in, Ordering::SeqCst);
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v1/labs/GFSL/orders/{id}", get(order))
        .with_state(erp.clone());
    let (listener, addr) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (erp, addr)
}

/// The GreenField flow with its ERP behind OAuth2 at `addr`; `secret` is the client secret
/// the flow is given. Returns the tree (kept alive by the caller) and the compiled set.
fn lab_flow(
    addr: SocketAddr,
    client_auth: &str,
    secret: &str,
) -> (tempfile::TempDir, Layout, CompiledSet) {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let file = tree.path().join("flows/greenfield-lab.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let key_auth =
        r#"    auth: { header: X-Api-Key, value: "${GFSL_ERP_API_KEY:-sample-erp-key}" }"#;
    assert!(
        text.contains(key_auth),
        "the shipped flow's auth line moved"
    );
    let oauth = format!(
        r#"    auth:
      oauth2_client_credentials:
        token_url: "${{LAB_TOKEN_URL}}"
        client_id: {CLIENT_ID}
        client_secret: "${{LAB_CLIENT_SECRET}}"
        scope: orders
        client_auth: {client_auth}
        refresh_margin: 1900ms"#
    );
    std::fs::write(&file, text.replace(key_auth, &oauth)).unwrap();
    std::fs::write(
        tree.path().join("status.yaml"),
        "message: { order_id: GFSL-000042 }\n",
    )
    .unwrap();
    let env: HashMap<String, String> = [
        (
            "GFSL_ERP_URL".to_string(),
            format!("http://{addr}/api/v1/labs/GFSL"),
        ),
        (
            "LAB_TOKEN_URL".to_string(),
            format!("http://{addr}/oauth/token"),
        ),
        ("LAB_CLIENT_SECRET".to_string(), secret.to_string()),
    ]
    .into();
    let layout = Layout::from_flows_dir(tree.path().join("flows"));
    let set = match beckn_adapter::compile::load(&layout, &env) {
        Ok(set) => set,
        Err(d) => panic!("{}", beckn_adapter::config::diagnostic::render_all(&d)),
    };
    (tree, layout, set)
}

fn status_args(root: &Path, fixtures: Option<&str>) -> RenderArgs {
    RenderArgs {
        flow: "greenfield-lab".into(),
        action: "status".into(),
        request: root.join("status.yaml"),
        fixtures: fixtures.map(|f| root.join(f)),
    }
}

/// Runs the `status` action through the engine against the stand-in; its printout.
async fn status_live(
    root: &Path,
    layout: &Layout,
    set: &CompiledSet,
    http: &HttpTransport,
) -> String {
    render(layout, set, &status_args(root, None), Some(http))
        .await
        .expect("render runs")
}

fn answered(printout: &str) -> bool {
    printout.contains("-> HTTP 200") && printout.contains("\"code\": \"TESTING\"")
}

#[tokio::test]
async fn a_token_is_fetched_once_reused_and_renewed_after_a_401_and_after_expiry() {
    let (erp, addr) = start_erp(60).await;
    let (tree, layout, set) = lab_flow(addr, "basic", SECRET);
    let http = HttpTransport::new();
    for _ in 0..3 {
        let out = status_live(tree.path(), &layout, &set, &http).await;
        assert!(answered(&out), "{out}");
    }
    assert_eq!(erp.tokens_issued(), 1, "one token for three runs");
    let form = erp.forms.lock().unwrap()[0].clone();
    assert_eq!(form.get("scope").map(String::as_str), Some("orders"));
    assert!(
        !form.contains_key("client_secret"),
        "basic client auth keeps the secret out of the form"
    );

    // The ERP forgets its tokens: the next call is refused once, renews, and goes through.
    erp.revoke_all();
    let out = status_live(tree.path(), &layout, &set, &http).await;
    assert!(answered(&out), "{out}");
    assert_eq!(erp.refused.load(Ordering::SeqCst), 1);
    assert_eq!(erp.tokens_issued(), 2);

    // Tokens now live 2 s and the flow renews 1.9 s before expiry: renewed without a 401.
    erp.expires_in.store(2, Ordering::SeqCst);
    erp.revoke_all();
    let out = status_live(tree.path(), &layout, &set, &http).await;
    assert!(answered(&out), "{out}");
    assert_eq!(erp.tokens_issued(), 3);
    let refused = erp.refused.load(Ordering::SeqCst);
    let started = Instant::now();
    while erp.tokens_issued() < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no renewal before expiry"
        );
        let out = status_live(tree.path(), &layout, &set, &http).await;
        assert!(answered(&out), "{out}");
    }
    assert_eq!(
        erp.refused.load(Ordering::SeqCst),
        refused,
        "renewed ahead of expiry, not after a refusal"
    );
}

#[tokio::test]
async fn a_concurrent_burst_makes_one_token_request() {
    let (erp, addr) = start_erp(60).await;
    let (_tree, _layout, set) = lab_flow(addr, "body", SECRET);
    let flow = set.flow("greenfield-lab").unwrap().clone();
    let backend = flow.backends.get("erp").unwrap().clone();
    let http = Arc::new(HttpTransport::new());
    let calls = (0..16).map(|i| {
        let (http, backend) = (http.clone(), backend.clone());
        tokio::spawn(async move {
            let request = BackendRequest {
                method: "GET".into(),
                path: format!("/orders/GFSL-{i:06}"),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                form: None,
                text: None,
            };
            http.send(&backend, "order", request).await
        })
    });
    for call in futures::future::join_all(calls).await {
        let answer = call.unwrap().expect("the call goes through");
        assert_eq!(answer.body["status"], "TESTING");
    }
    assert_eq!(erp.tokens_issued(), 1, "one token request for the burst");
    assert_eq!(erp.refused.load(Ordering::SeqCst), 0);
    let form = erp.forms.lock().unwrap()[0].clone();
    assert_eq!(
        form.get("client_id").map(String::as_str),
        Some(CLIENT_ID),
        "body client auth sends the credentials as form fields"
    );
}

#[tokio::test]
async fn no_secret_in_a_dry_run_nor_in_a_refused_token_request() {
    let (erp, addr) = start_erp(60).await;
    // A dry run answers from fixtures: no token is fetched, the credential shows as ***.
    let (tree, layout, set) = lab_flow(addr, "body", SECRET);
    std::fs::write(
        tree.path().join("erp.json"),
        r#"{"order": {"status": 404, "body": {"error": "NOT_FOUND"}}}"#,
    )
    .unwrap();
    let out = render(
        &layout,
        &set,
        &status_args(tree.path(), Some("erp.json")),
        None,
    )
    .await
    .expect("render runs");
    assert!(
        out.contains(&format!(
            "Authorization: Bearer *** (OAuth2 token from http://{addr}/oauth/token)"
        )),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");
    assert_eq!(erp.tokens_issued(), 0, "a dry run fetches no token");

    // A wrong secret: the failure names the backend, the endpoint and its status, not the secret.
    let wrong = "wrong-s3cret-value";
    let (tree, layout, set) = lab_flow(addr, "body", wrong);
    let out = status_live(tree.path(), &layout, &set, &HttpTransport::new()).await;
    assert!(
        out.contains(&format!(
            "got no access token for backend `erp` from http://{addr}/oauth/token: HTTP 401, error `invalid_client`"
        )),
        "{out}"
    );
    assert!(!out.contains(wrong) && !out.contains(SECRET), "{out}");
    let backend = set.flow("greenfield-lab").unwrap().backends["erp"].clone();
    let failure = HttpTransport::new()
        .send(
            &backend,
            "order",
            BackendRequest {
                method: "GET".into(),
                path: "/orders/GFSL-000042".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                form: None,
                text: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &failure,
            BackendFailure::TokenRefused {
                status: Some(401),
                ..
            }
        ),
        "{failure:?}"
    );
    for text in [
        failure.to_string(),
        format!("{failure:?}"),
        format!("{backend:?}"),
    ] {
        assert!(!text.contains(wrong), "{text}");
    }
    assert_eq!(
        erp.tokens_issued(),
        2,
        "one refused request per attempt, no more"
    );
}

/// What the signing stand-in saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    content_type: String,
    body: String,
    signature: String,
    timestamp: String,
    authorization: String,
}

/// A signed form POST, a Basic-authenticated call and a query key, each as the backend gets it.
#[tokio::test]
async fn signatures_basic_and_query_keys_reach_the_backend_as_documented() {
    use axum::extract::OriginalUri;
    use beckn_adapter::backend::Backend;
    use beckn_adapter::backend::auth::{BackendAuth, HmacSignature, SignatureEncoding};
    use beckn_adapter::config::Secret;
    use hmac::{KeyInit, Mac};

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        move |OriginalUri(uri): OriginalUri, headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                seen.lock().unwrap().push(Seen {
                    path_and_query: uri.to_string(),
                    content_type: h("content-type"),
                    body,
                    signature: h("x-signature"),
                    timestamp: h("x-timestamp"),
                    authorization: h("authorization"),
                });
                axum::Json(json!({"ok": true}))
            }
        }
    };
    let app = Router::new().route("/api/{*rest}", axum::routing::any(record));
    let (listener, addr) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let backend = |auth: BackendAuth| Backend {
        name: "erp".into(),
        base_url: format!("http://{addr}/api"),
        auth: Some(auth),
        headers: Vec::new(),
        timeout: Duration::from_secs(3),
        retry: None,
        error_code: None,
        idempotency_header: None,
    };
    let request = |form: Option<Vec<(String, String)>>| BackendRequest {
        method: "POST".into(),
        path: "/bookings".into(),
        query: vec![("lab".into(), "GFSL".into())],
        headers: Vec::new(),
        body: None,
        form,
        text: None,
    };
    let signer = HmacSignature::new(
        "X-Signature".into(),
        Secret::new("hmac-key"),
        "{{ method }}\n{{ path }}?{{ query }}\n{{ timestamp }}\n{{ body }}",
        SignatureEncoding::Hex,
        Some("X-Timestamp".into()),
    )
    .unwrap();
    let http = HttpTransport::new();
    let form = vec![
        ("patient".to_string(), "Asha Devi".to_string()),
        ("test".to_string(), "SOIL-NPK".to_string()),
    ];
    http.send(
        &backend(BackendAuth::Hmac(Arc::new(signer))),
        "book",
        request(Some(form)),
    )
    .await
    .expect("the signed call goes through");
    http.send(
        &backend(BackendAuth::Basic {
            username: Secret::new("lab"),
            password: Secret::new("pw"),
        }),
        "book",
        request(None),
    )
    .await
    .expect("the Basic call goes through");
    http.send(
        &backend(BackendAuth::Query {
            name: "api_key".into(),
            value: Secret::new("qk"),
        }),
        "book",
        request(None),
    )
    .await
    .expect("the keyed call goes through");

    let seen = seen.lock().unwrap().clone();
    let signed = &seen[0];
    assert_eq!(signed.path_and_query, "/api/bookings?lab=GFSL");
    assert_eq!(signed.content_type, "application/x-www-form-urlencoded");
    assert_eq!(signed.body, "patient=Asha+Devi&test=SOIL-NPK");
    let to_sign = format!(
        "POST\n/api/bookings?lab=GFSL\n{}\n{}",
        signed.timestamp, signed.body
    );
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"hmac-key").unwrap();
    mac.update(to_sign.as_bytes());
    assert_eq!(signed.signature, hex::encode(mac.finalize().into_bytes()));
    assert!(
        signed
            .timestamp
            .parse::<i64>()
            .is_ok_and(|t| t > 1_700_000_000)
    );

    let basic = &seen[1];
    assert_eq!(basic.authorization, "Basic bGFiOnB3", "base64(lab:pw)");
    assert_eq!(basic.body, "", "no body without one");

    assert_eq!(seen[2].path_and_query, "/api/bookings?lab=GFSL&api_key=qk");
    assert_eq!(seen[2].authorization, "");
}
