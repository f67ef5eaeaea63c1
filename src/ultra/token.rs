//! The `secureToken` every call to Ultra carries: an RS256 JWT with `iss` = the client id,
//! `iat` a little in the past (Flipkart's clock may lag ours) and `exp` = `iat` + the configured
//! lifetime. A token is reused until little of it is left, so a burst of OMS updates signs once.

use std::sync::Mutex;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// How far `iat` is set before now.
pub const BACKDATE_SECS: i64 = 10;
/// The shortest lifetime allowed: a token is issued `BACKDATE_SECS` old and must stay usable
/// for a call or two.
pub const MIN_LIFETIME_SECS: u64 = 30;
/// The longest `exp - iat` Ultra accepts.
pub const MAX_LIFETIME_SECS: u64 = 1000;
/// Default `exp - iat`: short, since one version of the docs allows only 100 s.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(90);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the Ultra private key is not an RSA key in PEM (PKCS#1 or PKCS#8): {0}")]
    BadKey(String),
    #[error("the secureToken cannot be signed: {0}")]
    Sign(String),
}

/// The claims of a secureToken.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
}

/// Mints secureTokens for one client id and keeps the current one.
pub struct TokenMinter {
    client_id: String,
    key: EncodingKey,
    lifetime_secs: i64,
    current: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenMinter")
            .field("client_id", &self.client_id)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl TokenMinter {
    /// `pem` is the private key; `lifetime` is capped by the caller's validation at 1000 s.
    pub fn new(client_id: &str, pem: &[u8], lifetime: Duration) -> Result<Self, TokenError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| TokenError::BadKey(e.to_string()))?;
        let minter = TokenMinter {
            client_id: client_id.to_string(),
            key,
            lifetime_secs: lifetime.as_secs().clamp(1, MAX_LIFETIME_SECS) as i64,
            current: Mutex::new(None),
        };
        // Sign once now, so a key that parses but cannot sign is reported when flows load.
        minter.mint(jiff::Timestamp::now().as_second())?;
        Ok(minter)
    }

    /// `exp - iat` of the tokens minted.
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_secs
    }

    /// The token to send at `now` (Unix seconds): the current one while more than a quarter of
    /// its life (at least 5 s) is left, else a new one.
    pub fn token(&self, now: i64) -> Result<String, TokenError> {
        let margin = (self.lifetime_secs / 4).max(5);
        if let Ok(current) = self.current.lock()
            && let Some((token, exp)) = current.as_ref()
            && *exp - now > margin
        {
            return Ok(token.clone());
        }
        let (token, exp) = self.mint(now)?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some((token.clone(), exp));
        }
        Ok(token)
    }

    fn mint(&self, now: i64) -> Result<(String, i64), TokenError> {
        let iat = now - BACKDATE_SECS;
        let claims = Claims {
            iss: self.client_id.clone(),
            iat,
            exp: iat + self.lifetime_secs,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const PEM: &str = include_str!("../../registry/ultra/partner.TEST-ONLY.pem");
    const PKCS8: &str = include_str!("../../registry/ultra/partner-pkcs8.TEST-ONLY.pem");
    const PUBLIC: &str = include_str!("../../registry/ultra/partner.pub.pem");

    fn decode(token: &str) -> Claims {
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap(),
            &v,
        )
        .unwrap()
        .claims
    }

    #[test]
    fn claims_follow_the_rules_and_tokens_are_reused() {
        let m = TokenMinter::new("soil.farmerapp", PEM.as_bytes(), DEFAULT_LIFETIME).unwrap();
        let now = 1_795_428_000;
        let t1 = m.token(now).unwrap();
        let c = decode(&t1);
        assert_eq!(c.iss, "soil.farmerapp");
        assert_eq!(c.iat, now - BACKDATE_SECS);
        assert_eq!(c.exp - c.iat, 90);
        // Reused while over a quarter of its life is left, renewed after.
        assert_eq!(m.token(now + 30).unwrap(), t1);
        let t2 = m.token(now + 70).unwrap();
        assert_ne!(t2, t1);
        assert_eq!(decode(&t2).iat, now + 70 - BACKDATE_SECS);
    }

    #[test]
    fn both_pem_forms_sign_and_garbage_is_refused() {
        let a = TokenMinter::new("x.y", PKCS8.as_bytes(), DEFAULT_LIFETIME).unwrap();
        assert_eq!(decode(&a.token(1_795_428_000).unwrap()).iss, "x.y");
        let lifetime = Duration::from_secs(5000);
        let capped = TokenMinter::new("x.y", PEM.as_bytes(), lifetime).unwrap();
        let c = decode(&capped.token(1_795_428_000).unwrap());
        assert_eq!(c.exp - c.iat, 1000);
        let err =
            TokenMinter::new("x.y", b"-----BEGIN NOTHING-----", DEFAULT_LIFETIME).unwrap_err();
        assert!(matches!(err, TokenError::BadKey(_)), "{err}");
    }
}
