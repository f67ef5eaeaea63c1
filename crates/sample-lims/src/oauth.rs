//! OAuth2 client credentials (RFC 6749 §4.4): `POST /oauth/token` hands out bearer tokens
//! that expire after the configured lifetime (seconds in the tests), and every `/api` call
//! must carry a live one. The counters let tests see how often a client asked for a token
//! and how often it came with a dead one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

/// The token request's form (`application/x-www-form-urlencoded`).
#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// Live tokens and what was handed out and refused.
#[derive(Debug, Default)]
pub struct TokenBook {
    live: HashMap<String, Instant>,
    /// Every token handed out, live or not (tests look for them where they must not be).
    handed_out: Vec<String>,
    issued: usize,
    refused: usize,
}

/// Why a token request got no token, as RFC 6749 §5.2 words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    UnsupportedGrantType,
    InvalidClient,
}

impl IntoResponse for TokenRefusal {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            TokenRefusal::UnsupportedGrantType => {
                (StatusCode::BAD_REQUEST, "unsupported_grant_type")
            }
            TokenRefusal::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
        };
        (status, Json(json!({"error": code}))).into_response()
    }
}

/// The client's credentials: HTTP Basic wins over the form's fields.
pub fn client_credentials(headers: &HeaderMap, form: &TokenForm) -> Option<(String, String)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(i, p)| (i.to_owned(), p.to_owned())));
    basic.or_else(|| Some((form.client_id.clone()?, form.client_secret.clone()?)))
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

impl TokenBook {
    /// A new token living `lifetime` from `now`.
    pub fn issue(&mut self, now: Instant, lifetime: Duration) -> String {
        self.live.retain(|_, until| now < *until);
        self.issued += 1;
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.live.insert(token.clone(), now + lifetime);
        self.handed_out.push(token.clone());
        token
    }

    /// Whether `token` is live at `now`; a refusal is counted.
    pub fn admit(&mut self, token: Option<&str>, now: Instant) -> bool {
        let ok = token
            .and_then(|t| self.live.get(t))
            .is_some_and(|until| now < *until);
        if !ok {
            self.refused += 1;
        }
        ok
    }

    /// Forgets every token, as after a key rotation.
    pub fn revoke_all(&mut self) {
        self.live.clear();
    }

    pub fn handed_out(&self) -> Vec<String> {
        self.handed_out.clone()
    }

    pub fn issued(&self) -> usize {
        self.issued
    }

    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Tokens still live at `now`.
    pub fn live(&self, now: Instant) -> usize {
        self.live.values().filter(|until| now < **until).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_lives_for_its_lifetime_and_no_longer() {
        let mut book = TokenBook::default();
        let t0 = Instant::now();
        let token = book.issue(t0, Duration::from_secs(2));
        assert!(book.admit(Some(&token), t0 + Duration::from_secs(1)));
        assert!(!book.admit(Some(&token), t0 + Duration::from_secs(2)));
        assert!(!book.admit(Some("guessed"), t0));
        assert!(!book.admit(None, t0));
        assert_eq!((book.issued(), book.refused()), (1, 3));
        assert_eq!(book.live(t0), 1);
        book.revoke_all();
        assert!(!book.admit(Some(&token), t0));
        assert_eq!(book.live(t0), 0);
    }

    #[test]
    fn basic_credentials_win_over_the_form() {
        let mut headers = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode("id-b:pw-b");
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        let form = TokenForm {
            grant_type: Some("client_credentials".into()),
            client_id: Some("id-f".into()),
            client_secret: Some("pw-f".into()),
        };
        assert_eq!(
            client_credentials(&headers, &form),
            Some(("id-b".into(), "pw-b".into()))
        );
        assert_eq!(
            client_credentials(&HeaderMap::new(), &form),
            Some(("id-f".into(), "pw-f".into()))
        );
        assert_eq!(
            client_credentials(&HeaderMap::new(), &TokenForm::default()),
            None
        );
    }
}
