//! OAuth2 client credentials (RFC 6749 §4.4): a bearer token from the backend's token endpoint,
//! cached per backend until shortly before it expires.
//!
//! The cache sits behind an async mutex held across the token request, so concurrent calls
//! that find no fresh token wait for one request instead of each making their own
//! (single flight). A 401 from the backend retires the token it was sent with
//! ([`OAuth2ClientCredentials::forget`]); the transport then asks once more.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::backend::{BackendFailure, root_cause};
use crate::config::Secret;

/// Where the client's credentials go in the token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form fields.
    #[default]
    Body,
    /// `Authorization: Basic base64(client_id:client_secret)`, each form-urlencoded first
    /// (RFC 6749 §2.3.1), so a `:` or `%` in them reaches the server as given.
    Basic,
}

/// The longest default margin before a token's expiry at which it is renewed; shorter-lived
/// tokens are renewed at a tenth of their lifetime before expiry.
const DEFAULT_MARGIN: Duration = Duration::from_secs(30);

/// A token endpoint and the cached token it gave.
pub struct OAuth2ClientCredentials {
    pub token_url: String,
    pub client_id: Secret,
    pub client_secret: Secret,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
    /// Renew this long before expiry; default the smaller of 30 s and a tenth of the lifetime.
    pub margin: Option<Duration>,
    cache: Mutex<Option<Token>>,
}

struct Token {
    value: Secret,
    /// `None`: the endpoint gave no `expires_in`; kept until a 401.
    fresh_until: Option<Instant>,
}

impl std::fmt::Debug for OAuth2ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2ClientCredentials")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("client_auth", &self.client_auth)
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl OAuth2ClientCredentials {
    pub fn new(
        token_url: String,
        client_id: Secret,
        client_secret: Secret,
        scope: Option<String>,
        audience: Option<String>,
        client_auth: ClientAuth,
        margin: Option<Duration>,
    ) -> Self {
        OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            client_auth,
            margin,
            cache: Mutex::new(None),
        }
    }

    /// A fresh token: the cached one, or a new one from the token endpoint (one request however
    /// many callers ask at once).
    pub async fn token(
        &self,
        client: &reqwest::Client,
        backend: &str,
        timeout: Duration,
    ) -> Result<Secret, BackendFailure> {
        let mut slot = self.cache.lock().await;
        if let Some(token) = slot.as_ref()
            && token.fresh_until.is_none_or(|until| Instant::now() < until)
        {
            return Ok(token.value.clone());
        }
        *slot = None;
        let token = self.fetch(client, backend, timeout).await?;
        let value = token.value.clone();
        *slot = Some(token);
        Ok(value)
    }

    /// Retires `used` after the backend refused it, unless another caller already replaced it.
    pub async fn forget(&self, used: &Secret) {
        let mut slot = self.cache.lock().await;
        if slot.as_ref().is_some_and(|t| &t.value == used) {
            *slot = None;
        }
    }

    fn refused(&self, backend: &str, status: Option<u16>, detail: String) -> BackendFailure {
        // The URL without its query: nothing but the endpoint is named.
        let url = self.token_url.split('?').next().unwrap_or_default();
        let mut detail = detail;
        for secret in [&self.client_secret, &self.client_id] {
            if !secret.expose().is_empty() {
                detail = detail.replace(secret.expose(), "***");
            }
        }
        BackendFailure::TokenRefused {
            backend: backend.to_string(),
            token_url: url.to_string(),
            status,
            detail,
        }
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        backend: &str,
        timeout: Duration,
    ) -> Result<Token, BackendFailure> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        let mut rb = client
            .post(&self.token_url)
            .timeout(timeout)
            .header("accept", "application/json");
        match self.client_auth {
            ClientAuth::Body => {
                form.push(("client_id", self.client_id.expose()));
                form.push(("client_secret", self.client_secret.expose()));
            }
            ClientAuth::Basic => {
                let value = client_basic(&self.client_id, &self.client_secret);
                rb = rb.header("authorization", value.expose());
            }
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| self.refused(backend, None, e.to_string()))?;
        let started = Instant::now();
        let response = rb
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    format!("timed out after {timeout:?}")
                } else {
                    root_cause(&e)
                };
                self.refused(backend, None, why)
            })?;
        let status = response.status().as_u16();
        let text = response.bytes().await.unwrap_or_default();
        let json: Option<Value> = serde_json::from_slice(&text).ok();
        if !(200..300).contains(&status) {
            // Only the OAuth2 error code (`invalid_client`), never the body as a whole.
            let code = json
                .as_ref()
                .and_then(|j| j.get("error"))
                .and_then(Value::as_str)
                .map(|c| format!("error `{c}`"))
                .unwrap_or_else(|| "no OAuth2 error code".into());
            return Err(self.refused(backend, Some(status), code));
        }
        let Some(json) = json else {
            return Err(self.refused(backend, Some(status), "the answer is not JSON".into()));
        };
        let Some(value) = json.get("access_token").and_then(Value::as_str) else {
            return Err(self.refused(
                backend,
                Some(status),
                "the answer has no `access_token`".into(),
            ));
        };
        let lifetime = match json.get("expires_in") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.parse::<f64>().ok(),
            _ => None,
        }
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64);
        Ok(Token {
            value: Secret::new(value),
            fresh_until: lifetime.map(|l| started + l.saturating_sub(self.margin_for(l))),
        })
    }

    /// How long before the end of `lifetime` a token is renewed.
    pub fn margin_for(&self, lifetime: Duration) -> Duration {
        self.margin
            .unwrap_or_else(|| DEFAULT_MARGIN.min(lifetime / 10))
    }
}

/// The client's Basic credentials as RFC 6749 §2.3.1 has them: id and secret each encoded
/// as `application/x-www-form-urlencoded` before they are joined and base64-encoded (plain
/// RFC 7617 Basic would split a secret at its `:`).
fn client_basic(client_id: &Secret, client_secret: &Secret) -> Secret {
    let encode = |s: &Secret| -> Secret {
        Secret::new(form_urlencoded::byte_serialize(s.expose().as_bytes()).collect::<String>())
    };
    super::basic(&encode(client_id), &encode(client_secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_client_credentials_are_form_urlencoded_before_base64() {
        use base64::Engine as _;
        let value = client_basic(&Secret::new("lab client:1"), &Secret::new("p:a%ss+w/rd"));
        let encoded = value
            .expose()
            .strip_prefix("Basic ")
            .expect("a Basic value");
        let pair = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(
            String::from_utf8(pair).unwrap(),
            "lab+client%3A1:p%3Aa%25ss%2Bw%2Frd"
        );
    }

    fn creds(margin: Option<Duration>) -> OAuth2ClientCredentials {
        OAuth2ClientCredentials::new(
            "http://127.0.0.1:9/token?tenant=x".into(),
            Secret::new("client-1"),
            Secret::new("s3cret"),
            None,
            None,
            ClientAuth::Body,
            margin,
        )
    }

    #[test]
    fn the_default_margin_is_a_tenth_of_the_lifetime_at_most_thirty_seconds() {
        let c = creds(None);
        assert_eq!(
            c.margin_for(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
        assert_eq!(
            c.margin_for(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        let set = creds(Some(Duration::from_millis(1900)));
        assert_eq!(
            set.margin_for(Duration::from_secs(2)),
            Duration::from_millis(1900)
        );
    }

    #[tokio::test]
    async fn an_unreachable_token_endpoint_is_named_without_the_secret() {
        let c = creds(None);
        let client = reqwest::Client::new();
        let failure = c
            .token(&client, "lab", Duration::from_secs(2))
            .await
            .unwrap_err();
        let text = failure.to_string();
        assert!(text.contains("lab"), "{text}");
        assert!(text.contains("http://127.0.0.1:9/token"), "{text}");
        assert!(!text.contains("tenant"), "{text}");
        assert!(
            !text.contains("s3cret") && !text.contains("client-1"),
            "{text}"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
