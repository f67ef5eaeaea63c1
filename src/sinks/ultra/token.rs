//! The `secureToken` every call to Ultra carries: an RS256 JWT with `iss` = the client id,
//! `iat` a little in the past (Flipkart's clock may lag ours) and `exp` = `iat` + the configured
//! lifetime. A token is reused until little of it is left, so a burst of OMS updates signs once.

pub use crate::compile::sinks::{
    Claims, DEFAULT_LIFETIME, MAX_LIFETIME_SECS, MIN_LIFETIME_SECS, SecureTokenKey, TokenError,
};

/// How far `iat` is set before now.
pub const BACKDATE_SECS: i64 = 10;

/// The token to send at `now` (Unix seconds): the current one while more than a quarter of its
/// life (at least 5 s) is left, else a new one.
pub fn token_at(key: &SecureTokenKey, now: i64) -> Result<String, TokenError> {
    let margin = (key.lifetime_secs() / 4).max(5);
    if let Ok(current) = key.current.lock()
        && let Some((token, exp)) = current.as_ref()
        && *exp - now > margin
    {
        return Ok(token.clone());
    }
    let (token, exp) = key.sign(now - BACKDATE_SECS)?;
    if let Ok(mut current) = key.current.lock() {
        *current = Some((token.clone(), exp));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    use std::time::Duration;

    const PEM: &str = include_str!("../../../registry/ultra/partner.TEST-ONLY.pem");
    const PKCS8: &str = include_str!("../../../registry/ultra/partner-pkcs8.TEST-ONLY.pem");
    const PUBLIC: &str = include_str!("../../../registry/ultra/partner.pub.pem");

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
        let m = SecureTokenKey::new("soil.farmerapp", PEM.as_bytes(), DEFAULT_LIFETIME).unwrap();
        let now = 1_795_428_000;
        let t1 = token_at(&m, now).unwrap();
        let c = decode(&t1);
        assert_eq!(c.iss, "soil.farmerapp");
        assert_eq!(c.iat, now - BACKDATE_SECS);
        assert_eq!(c.exp - c.iat, 90);
        // Reused while over a quarter of its life is left, renewed after.
        assert_eq!(token_at(&m, now + 30).unwrap(), t1);
        let t2 = token_at(&m, now + 70).unwrap();
        assert_ne!(t2, t1);
        assert_eq!(decode(&t2).iat, now + 70 - BACKDATE_SECS);
    }

    #[test]
    fn both_pem_forms_sign_and_garbage_is_refused() {
        let a = SecureTokenKey::new("x.y", PKCS8.as_bytes(), DEFAULT_LIFETIME).unwrap();
        assert_eq!(decode(&token_at(&a, 1_795_428_000).unwrap()).iss, "x.y");
        let lifetime = Duration::from_secs(5000);
        let capped = SecureTokenKey::new("x.y", PEM.as_bytes(), lifetime).unwrap();
        let c = decode(&token_at(&capped, 1_795_428_000).unwrap());
        assert_eq!(c.exp - c.iat, 1000);
        let err =
            SecureTokenKey::new("x.y", b"-----BEGIN NOTHING-----", DEFAULT_LIFETIME).unwrap_err();
        assert!(matches!(err, TokenError::BadKey(_)), "{err}");
    }
}
