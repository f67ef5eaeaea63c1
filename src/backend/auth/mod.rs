//! How calls to a backend prove who is calling.
//!
//! Each kind is a variant of [`BackendAuth`], compiled from the flow file's `backends.<name>.auth`
//! (`compile/call.rs`), and asked for its credentials on every call ([`BackendAuth::credentials`])
//! rather than once at load, so that a kind whose credential changes (an OAuth2 token fetched and
//! renewed, a signature over each request) fits the same place. Credentials are [`Secret`]s:
//! never logged, never shown by `render` (which prints `***` in their place, see
//! [`BackendAuth::shown`]).

pub mod oauth2;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::BackendFailure;
use crate::config::Secret;

pub use oauth2::{ClientAuth, OAuth2ClientCredentials};
pub use signature::{HmacSignature, SignatureEncoding, SigningError};

/// One way of authenticating calls to a backend.
#[derive(Debug, Clone)]
pub enum BackendAuth {
    /// A key in a header of its own (`X-Api-Key: <key>`).
    Header { name: String, value: Secret },
    /// A key in a query parameter (`?api_key=<key>`).
    Query { name: String, value: Secret },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(<username>:<password>)`.
    Basic { username: Secret, password: Secret },
    /// A signature over each request, in a header.
    Hmac(Arc<HmacSignature>),
    /// A bearer token from an OAuth2 token endpoint (client credentials grant), cached.
    OAuth2(Arc<OAuth2ClientCredentials>),
}

/// The parts of a request a signature covers, as they are sent.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The URL's path, base URL's path included.
    pub path: &'a str,
    /// The URL's query string without `?` ("" when none).
    pub query: &'a str,
    /// The body as sent ("" when none).
    pub body: &'a [u8],
}

/// The headers a kind adds to one request (its query parameters: [`BackendAuth::query`]).
#[derive(Debug, Default)]
pub struct Credentials {
    pub headers: Vec<(String, Secret)>,
    /// The OAuth2 token used, so that a 401 can retire exactly this one.
    pub token: Option<Secret>,
}

impl BackendAuth {
    /// The query parameters a call carries (they are part of what a signature covers, so they
    /// are asked before [`BackendAuth::credentials`]).
    pub fn query(&self) -> Vec<(String, Secret)> {
        match self {
            BackendAuth::Query { name, value } => vec![(name.clone(), value.clone())],
            _ => Vec::new(),
        }
    }

    /// The headers a call carries; an OAuth2 backend's token is fetched (once for all
    /// concurrent callers) when none is cached or it is about to expire. `now`: the
    /// application clock's Unix seconds, which a signature covers.
    pub async fn credentials(
        &self,
        client: &reqwest::Client,
        backend: &str,
        timeout: Duration,
        parts: RequestParts<'_>,
        now: i64,
    ) -> Result<Credentials, BackendFailure> {
        let header = |name: &str, value: Secret| Credentials {
            headers: vec![(name.to_string(), value)],
            ..Default::default()
        };
        Ok(match self {
            BackendAuth::Header { name, value } => header(name, value.clone()),
            BackendAuth::Query { .. } => Credentials::default(),
            BackendAuth::Bearer(token) => header("Authorization", bearer(token)),
            BackendAuth::Basic { username, password } => {
                header("Authorization", basic(username, password))
            }
            BackendAuth::Hmac(signer) => Credentials {
                headers: signer
                    .sign(parts, now)
                    .map_err(|e| BackendFailure::Unreachable(format!("cannot sign: {e}")))?,
                ..Default::default()
            },
            BackendAuth::OAuth2(oauth) => {
                let token = oauth.token(client, backend, timeout).await?;
                Credentials {
                    headers: vec![("Authorization".into(), bearer(&token))],
                    token: Some(token),
                }
            }
        })
    }

    /// Every secret of this kind, so that a failure's text can be scrubbed of them.
    fn secrets(&self) -> Vec<&Secret> {
        match self {
            BackendAuth::Header { value, .. } | BackendAuth::Query { value, .. } => vec![value],
            BackendAuth::Bearer(token) => vec![token],
            BackendAuth::Basic { username, password } => vec![username, password],
            BackendAuth::Hmac(signer) => vec![&signer.key],
            BackendAuth::OAuth2(oauth) => vec![&oauth.client_id, &oauth.client_secret],
        }
    }

    /// `text` with every secret of this kind replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.secrets() {
            if !s.expose().is_empty() {
                out = out.replace(s.expose(), "***");
            }
        }
        out
    }

    /// How a dry run (`render`, `test`) shows this kind on a call: where the credential goes,
    /// with `***` for it. A dry run sends nothing, so no token is fetched and nothing is signed.
    pub fn shown(&self) -> String {
        match self {
            BackendAuth::Header { name, .. } => format!("{name}: ***"),
            BackendAuth::Query { name, .. } => format!("query {name}=***"),
            BackendAuth::Bearer(_) => "Authorization: Bearer ***".into(),
            BackendAuth::Basic { .. } => "Authorization: Basic ***".into(),
            BackendAuth::Hmac(signer) => format!("{}: *** (HMAC signature)", signer.header),
            BackendAuth::OAuth2(oauth) => format!(
                "Authorization: Bearer *** (OAuth2 token from {})",
                oauth.token_url
            ),
        }
    }
}

fn bearer(token: &Secret) -> Secret {
    Secret::new(format!("Bearer {}", token.expose()))
}

/// `Basic base64(user:password)` (RFC 7617).
pub(crate) fn basic(username: &Secret, password: &Secret) -> Secret {
    let pair = format!("{}:{}", username.expose(), password.expose());
    Secret::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_PARTS: RequestParts<'static> = RequestParts {
        method: "GET",
        path: "/",
        query: "",
        body: b"",
    };

    async fn headers(auth: &BackendAuth) -> Vec<(String, String)> {
        let client = reqwest::Client::new();
        let c = auth
            .credentials(&client, "erp", Duration::from_secs(1), NO_PARTS, 0)
            .await
            .unwrap();
        c.headers
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_string()))
            .collect()
    }

    #[tokio::test]
    async fn a_header_key_is_sent_as_given_and_a_bearer_token_after_its_scheme() {
        let key = BackendAuth::Header {
            name: "X-Api-Key".into(),
            value: Secret::new("k1"),
        };
        assert_eq!(headers(&key).await, [("X-Api-Key".into(), "k1".into())]);
        let bearer = BackendAuth::Bearer(Secret::new("t1"));
        assert_eq!(
            headers(&bearer).await,
            [("Authorization".into(), "Bearer t1".into())]
        );
        assert!(
            !format!("{bearer:?}").contains("t1"),
            "never in debug output"
        );
    }

    #[tokio::test]
    async fn basic_auth_encodes_user_and_password() {
        let auth = BackendAuth::Basic {
            username: Secret::new("Aladdin"),
            password: Secret::new("open sesame"),
        };
        // The example of RFC 7617.
        assert_eq!(
            headers(&auth).await,
            [(
                "Authorization".into(),
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()
            )]
        );
        assert!(!format!("{auth:?}").contains("sesame"));
        assert_eq!(auth.shown(), "Authorization: Basic ***");
    }

    #[tokio::test]
    async fn a_query_key_goes_to_the_query_not_the_headers() {
        let auth = BackendAuth::Query {
            name: "api_key".into(),
            value: Secret::new("q1"),
        };
        assert!(headers(&auth).await.is_empty());
        let q = auth.query();
        assert_eq!((q[0].0.as_str(), q[0].1.expose()), ("api_key", "q1"));
        assert_eq!(auth.shown(), "query api_key=***");
        assert_eq!(
            auth.scrub("GET /x?api_key=q1 failed"),
            "GET /x?api_key=*** failed"
        );
    }
}
