//! An HMAC signature over each request, for backends that sign rather than hand out tokens.
//!
//! The string to sign is a minijinja template over `method`, `path`, `query`, `body` and
//! `timestamp` (Unix seconds), so each backend's own recipe (`{{ method }}\n{{ path }}\n{{
//! timestamp }}\n{{ body }}`) is written in the flow file; the MAC is HMAC-SHA256 with the
//! backend's key, hex or base64, in one header, and the timestamp in another when the backend
//! asks for it.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::RequestParts;
use crate::config::Secret;

/// How the MAC is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// Why a signer could not be built or a string to sign not rendered.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SigningError(String);

/// A compiled signature recipe.
pub struct HmacSignature {
    /// Header carrying the MAC.
    pub header: String,
    pub(super) key: Secret,
    pub encoding: SignatureEncoding,
    /// Header carrying the timestamp that was signed, if the backend wants it.
    pub timestamp_header: Option<String>,
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for HmacSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSignature")
            .field("header", &self.header)
            .field("key", &self.key)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

const TEMPLATE: &str = "string_to_sign";

impl HmacSignature {
    /// Compiles `string_to_sign`; a syntax error is returned (for `check` to locate).
    pub fn new(
        header: String,
        key: Secret,
        string_to_sign: &str,
        encoding: SignatureEncoding,
        timestamp_header: Option<String>,
    ) -> Result<Self, SigningError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // The string to sign is text, byte for byte: no escaping.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_template_owned(TEMPLATE, string_to_sign.to_string())
            .map_err(|e| SigningError(e.to_string()))?;
        Ok(HmacSignature {
            header,
            key,
            encoding,
            timestamp_header,
            env,
        })
    }

    /// The string to sign for `parts` at `timestamp` (Unix seconds).
    pub fn string_to_sign(
        &self,
        parts: RequestParts<'_>,
        timestamp: i64,
    ) -> Result<String, SigningError> {
        let template = self
            .env
            .get_template(TEMPLATE)
            .map_err(|e| SigningError(e.to_string()))?;
        template
            .render(minijinja::context! {
                method => parts.method,
                path => parts.path,
                query => parts.query,
                body => String::from_utf8_lossy(parts.body),
                timestamp => timestamp,
            })
            .map_err(|e| SigningError(e.to_string()))
    }

    /// The headers of a signed request: the MAC, and the timestamp if asked for.
    pub fn sign(
        &self,
        parts: RequestParts<'_>,
        timestamp: i64,
    ) -> Result<Vec<(String, Secret)>, SigningError> {
        let text = self.string_to_sign(parts, timestamp)?;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .map_err(|e| SigningError(e.to_string()))?;
        mac.update(text.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let value = match self.encoding {
            SignatureEncoding::Hex => hex::encode(bytes),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        let mut out = vec![(self.header.clone(), Secret::new(value))];
        if let Some(h) = &self.timestamp_header {
            out.push((h.clone(), Secret::new(timestamp.to_string())));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_rendered_string_with_hmac_sha256() {
        let signer = HmacSignature::new(
            "X-Signature".into(),
            Secret::new("key"),
            "{{ method }}\n{{ path }}?{{ query }}\n{{ timestamp }}\n{{ body }}",
            SignatureEncoding::Hex,
            Some("X-Timestamp".into()),
        )
        .unwrap();
        let parts = RequestParts {
            method: "POST",
            path: "/api/orders",
            query: "a=1",
            body: br#"{"x":1}"#,
        };
        assert_eq!(
            signer.string_to_sign(parts, 1700000000).unwrap(),
            "POST\n/api/orders?a=1\n1700000000\n{\"x\":1}"
        );
        let headers = signer.sign(parts, 1700000000).unwrap();
        // Independently: HMAC-SHA256("key", that string).
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"POST\n/api/orders?a=1\n1700000000\n{\"x\":1}");
        assert_eq!(headers[0].0, "X-Signature");
        assert_eq!(
            headers[0].1.expose(),
            hex::encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            (headers[1].0.as_str(), headers[1].1.expose()),
            ("X-Timestamp", "1700000000")
        );
        assert!(!format!("{signer:?}").contains("key\""));
    }

    #[test]
    fn a_broken_template_is_refused_when_built_and_an_unknown_name_when_signing() {
        let broken = HmacSignature::new(
            "X-Sig".into(),
            Secret::new("k"),
            "{{ method",
            SignatureEncoding::Base64,
            None,
        );
        assert!(broken.is_err());
        let unknown = HmacSignature::new(
            "X-Sig".into(),
            Secret::new("k"),
            "{{ nonce }}",
            SignatureEncoding::Base64,
            None,
        )
        .unwrap();
        let parts = RequestParts {
            method: "GET",
            path: "/",
            query: "",
            body: b"",
        };
        assert!(unknown.sign(parts, 1).is_err());
    }
}
