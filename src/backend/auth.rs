//! How calls to a backend prove who is calling.
//!
//! Each kind is a variant of [`BackendAuth`], compiled from the flow file's `backends.<name>.auth`
//! (`compile/call.rs`), and asked for its header on every call ([`BackendAuth::header`]) rather
//! than once at load, so that a kind whose credential changes (a token fetched and renewed) fits
//! the same place. Credentials are [`Secret`]s: never logged, never shown by `render`.

use crate::config::Secret;

/// One way of authenticating calls to a backend.
#[derive(Debug, Clone)]
pub enum BackendAuth {
    /// A key in a header of its own (`X-Api-Key: <key>`).
    Header { name: String, value: Secret },
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
}

impl BackendAuth {
    /// The header name and value a call carries.
    pub fn header(&self) -> (&str, Secret) {
        match self {
            BackendAuth::Header { name, value } => (name, value.clone()),
            BackendAuth::Bearer(token) => (
                "Authorization",
                Secret::new(format!("Bearer {}", token.expose())),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_key_is_sent_as_given_and_a_bearer_token_after_its_scheme() {
        let key = BackendAuth::Header {
            name: "X-Api-Key".into(),
            value: Secret::new("k1"),
        };
        let (name, value) = key.header();
        assert_eq!((name, value.expose()), ("X-Api-Key", "k1"));
        let bearer = BackendAuth::Bearer(Secret::new("t1"));
        let (name, value) = bearer.header();
        assert_eq!((name, value.expose()), ("Authorization", "Bearer t1"));
        assert!(
            !format!("{bearer:?}").contains("t1"),
            "never in debug output"
        );
    }
}
