//! Checking a partner's secureToken the way Ultra does.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The longest `exp - iat` accepted.
const MAX_LIFETIME: i64 = 1000;

#[derive(Debug, serde::Deserialize)]
struct Claims {
    iss: String,
    iat: i64,
    exp: i64,
}

/// Verifies secureTokens of one partner.
pub struct TokenCheck {
    client_id: String,
    key: DecodingKey,
}

impl TokenCheck {
    pub fn new(client_id: &str, public_pem: &[u8]) -> Result<Self, String> {
        let key = DecodingKey::from_rsa_pem(public_pem)
            .map_err(|e| format!("the partner's public key is not an RSA PEM key: {e}"))?;
        Ok(TokenCheck {
            client_id: client_id.to_string(),
            key,
        })
    }

    /// Ok, or the Ultra status code and why.
    pub fn check(&self, token: &str, now: i64) -> Result<(), (i64, String)> {
        if token.is_empty() {
            return Err((10, "the secureToken header is missing".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| (11, format!("the secureToken is not a JWT: {e}")))?;
        if header.alg != Algorithm::RS256 {
            return Err((
                11,
                format!("the secureToken is signed with {:?}, not RS256", header.alg),
            ));
        }
        let mut validation = Validation::new(Algorithm::RS256);
        // The claims are checked below, by Ultra's rules and with its messages.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &validation)
            .map_err(|e| {
                (
                    11,
                    format!("the secureToken's signature does not verify: {e}"),
                )
            })?
            .claims;
        if claims.iss != self.client_id {
            return Err((12, format!("iss `{}` is not the client id", claims.iss)));
        }
        if claims.iat > now {
            return Err((12, "iat is in the future".into()));
        }
        if claims.exp <= now {
            return Err((13, "the secureToken has expired".into()));
        }
        if claims.exp - claims.iat > MAX_LIFETIME {
            return Err((
                12,
                format!(
                    "exp - iat is {} s, more than {MAX_LIFETIME}",
                    claims.exp - claims.iat
                ),
            ));
        }
        Ok(())
    }
}
