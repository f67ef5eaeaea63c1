//! Ultra's token and user APIs: `GET /1/dummy` (does Flipkart accept our secureToken?), the
//! grant exchange (`GET /1/authorization/auth`) and the user's contact
//! (`POST /1/resource/bulk`). Bodies may come wrapped as `{"STATUS": ..., "RESPONSE": {...}}`.

use serde_json::{Value, json};

use super::UltraConnection;
use super::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum UltraError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("Ultra at {url} cannot be reached: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Ultra refused {call} (HTTP {status}): {message}")]
    Refused {
        call: &'static str,
        status: u16,
        message: String,
    },
    #[error("Ultra's answer to {call} is not understood: {detail}")]
    BadAnswer { call: &'static str, detail: String },
}

/// The tokens a grant token is exchanged for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Stable per user: the user's key at Ultra's OMS.
    pub identity_token: String,
    pub access_token: String,
}

/// What Ultra tells of a user.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Contact {
    pub mobile: Option<String>,
    pub email: Option<String>,
}

/// `GET /1/dummy`: Ok when Flipkart accepts the secureToken.
pub async fn ping(http: &reqwest::Client, conn: &UltraConnection) -> Result<(), UltraError> {
    let url = format!("{}/1/dummy", conn.api_url);
    let resp = send(conn, "ping", http.get(&url), &url).await?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = resp.bytes().await.unwrap_or_default();
    Err(refused("the secureToken", status, &body))
}

/// Exchanges an app's single-use grant token for the user's identity and access tokens.
pub async fn exchange_grant(
    http: &reqwest::Client,
    conn: &UltraConnection,
    grant_token: &str,
) -> Result<Grant, UltraError> {
    const CALL: &str = "the grant exchange";
    let url = format!("{}/1/authorization/auth", conn.api_url);
    // reqwest's `query` URL-encodes each value: secrets with `+` or `/` arrive intact.
    let req = http.get(&url).query(&[
        ("grantToken", grant_token),
        ("clientId", conn.merchant_id.as_str()),
        ("clientSecret", conn.client_secret.expose()),
    ]);
    let body = json_answer(conn, "auth", CALL, req, &url).await?;
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match (text("identityToken"), text("accessToken")) {
        (Some(identity_token), Some(access_token)) => Ok(Grant {
            identity_token,
            access_token,
        }),
        _ => Err(UltraError::BadAnswer {
            call: CALL,
            detail: "no identityToken and accessToken in the answer".into(),
        }),
    }
}

/// Fetches the user's mobile number and email. The documented field lists of the two scopes
/// are swapped, so each field is read from whichever scope carries it.
pub async fn fetch_contact(
    http: &reqwest::Client,
    conn: &UltraConnection,
    access_token: &str,
) -> Result<Contact, UltraError> {
    const CALL: &str = "the user's contact";
    let url = format!("{}/1/resource/bulk", conn.api_url);
    let req = http
        .post(&url)
        .query(&[("accessToken", access_token)])
        .json(&json!(["user.mobile", "user.email"]));
    let body = json_answer(conn, "resource", CALL, req, &url).await?;
    let scopes: Vec<&Value> = match &body {
        Value::Object(map) => map.values().collect(),
        _ => Vec::new(),
    };
    let find = |field: &str| {
        scopes
            .iter()
            .find_map(|s| s.get(field).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(Contact {
        mobile: find("mobileNumber"),
        email: find("email"),
    })
}

async fn send(
    conn: &UltraConnection,
    call: &str,
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<reqwest::Response, UltraError> {
    let _turn = conn.limiter.acquire().await;
    let token = super::secure_token(conn)?;
    let sent = req
        .header("secureToken", token)
        .timeout(conn.timeout)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let result = if resp.status().is_success() {
                "accepted"
            } else {
                "refused"
            };
            crate::telemetry::sink_called(super::SINK, &conn.name, call, result);
            Ok(resp)
        }
        Err(e) => {
            crate::telemetry::sink_called(super::SINK, &conn.name, call, "unreachable");
            Err(UltraError::Unreachable {
                url: url.to_string(),
                reason: crate::backend::root_cause(&e),
            })
        }
    }
}

/// Sends, and reads a 2xx JSON answer, unwrapped from `{"STATUS", "RESPONSE"}` when wrapped.
async fn json_answer(
    conn: &UltraConnection,
    metric: &str,
    call: &'static str,
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<Value, UltraError> {
    let resp = send(conn, metric, req, url).await?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    if !(200..300).contains(&status) {
        return Err(refused(call, status, &body));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| UltraError::BadAnswer {
        call,
        detail: format!("not JSON: {e}"),
    })?;
    Ok(match value {
        Value::Object(mut map) if map.contains_key("RESPONSE") => {
            map.remove("RESPONSE").unwrap_or(Value::Null)
        }
        other => other,
    })
}

fn refused(call: &'static str, status: u16, body: &[u8]) -> UltraError {
    UltraError::Refused {
        call,
        status,
        message: answer_message(body),
    }
}

/// Flipkart's explanation in an error body, or the start of the body.
pub fn answer_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    parsed
        .as_ref()
        .and_then(|v| {
            ["message", "errorMessage", "error", "description"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
        })
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned())
}
