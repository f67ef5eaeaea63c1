//! Beckn HTTP signatures (BECKN-006): BLAKE2b-512 digest of the exact body bytes, a signing
//! string over `(created)`, `(expires)` and the digest, and ed25519 over that string.
//!
//! Everything here is pure (besides a cache of decoded public keys): time is passed in, keys are
//! values. The trust stage decides which key to use and whether the signer is the one the
//! message claims.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest};
use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Why a signature header or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is malformed: {0}")]
    Malformed(String),
    #[error("signature algorithm must be ed25519, got `{0}`")]
    Algorithm(String),
    #[error("keyId algorithm `{key_id}` does not match algorithm `{algorithm}`")]
    AlgorithmMismatch { key_id: String, algorithm: String },
    #[error("signature headers must be `(created) (expires) digest`, got `{0}`")]
    Headers(String),
    #[error("signature was created in the future ({created}, now {now})")]
    Future { created: i64, now: i64 },
    #[error("signature expired at {expires} (now {now})")]
    Expired { expires: i64, now: i64 },
    #[error("signature lifetime from {created} to {expires} is longer than the {max}s accepted")]
    Lifetime {
        created: i64,
        expires: i64,
        max: i64,
    },
    #[error("signature does not match the body")]
    Mismatch,
    #[error("key is not a valid ed25519 key: {0}")]
    BadKey(String),
}

/// The headers a Beckn signature covers.
pub const SIGNED_HEADERS: &str = "(created) (expires) digest";

/// The string that is signed, `(created): C\n(expires): E\ndigest: BLAKE-512=D` with D the
/// base64 BLAKE2b-512 of `body`, built without a heap allocation: the digest is encoded
/// into the buffer itself (it is on the path of every message in and out).
pub(crate) struct SigningString {
    buf: [u8; SigningString::CAPACITY],
    len: usize,
}

impl SigningString {
    /// Two i64 of at most 20 characters each, 88 characters of base64 digest and 42 of
    /// labels: 170.
    const CAPACITY: usize = 176;

    pub(crate) fn new(created: i64, expires: i64, body: &[u8]) -> Self {
        use std::io::Write as _;
        let mut buf = [0u8; Self::CAPACITY];
        let mut at = std::io::Cursor::new(&mut buf[..]);
        // Cannot fail: the capacity covers the longest numbers.
        let _ = write!(
            at,
            "(created): {created}\n(expires): {expires}\ndigest: BLAKE-512="
        );
        let mut len = at.position() as usize;
        len += B64
            .encode_slice(Blake2b512::digest(body), &mut buf[len..])
            .unwrap_or(0);
        SigningString { buf, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A private signing key. Accepts base64 of a 32-byte seed or of the 64-byte libsodium form
/// (seed followed by the public key, which must match).
#[derive(Clone)]
pub struct PrivateKey(SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

impl PrivateKey {
    pub fn from_base64(b64: &str) -> Result<Self, SignatureError> {
        let bytes = B64
            .decode(b64.trim())
            .map_err(|e| SignatureError::BadKey(format!("not base64: {e}")))?;
        match bytes.len() {
            32 => {
                let seed: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SignatureError::BadKey("bad length".into()))?;
                Ok(PrivateKey(SigningKey::from_bytes(&seed)))
            }
            64 => {
                let pair: [u8; 64] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| SignatureError::BadKey("bad length".into()))?;
                SigningKey::from_keypair_bytes(&pair)
                    .map(PrivateKey)
                    .map_err(|_| {
                        SignatureError::BadKey("the public half does not match the seed".into())
                    })
            }
            n => Err(SignatureError::BadKey(format!(
                "expected 32 bytes (seed) or 64 bytes (seed and public key), got {n}"
            ))),
        }
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, SignatureError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SignatureError::BadKey(e.to_string()))?;
        Ok(PrivateKey(SigningKey::from_bytes(&seed)))
    }

    /// The 64-byte libsodium form (seed and public key), base64: what most Beckn tools store.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_keypair_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// base64 ed25519 signature of `message` itself (no digest): what a registry's site
    /// verification page carries for a subscription's `request_id`.
    pub fn sign_plain(&self, message: &[u8]) -> String {
        B64.encode(self.0.sign(message).to_bytes())
    }

    #[cfg(test)]
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Signature {
        self.0.sign(message)
    }

    /// The `Authorization` (or `X-Gateway-Authorization`) header value for `body`.
    pub fn sign(&self, body: &[u8], key_id: &str, created: i64, expires: i64) -> String {
        let s = SigningString::new(created, expires, body);
        let signature = B64.encode(self.0.sign(s.as_bytes()).to_bytes());
        format!(
            "Signature keyId=\"{key_id}|ed25519\",algorithm=\"ed25519\",created=\"{created}\",expires=\"{expires}\",headers=\"{SIGNED_HEADERS}\",signature=\"{signature}\""
        )
    }
}

/// A public verifying key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_base64(b64: &str) -> Result<Self, SignatureError> {
        let bytes = B64
            .decode(b64.trim())
            .map_err(|e| SignatureError::BadKey(format!("not base64: {e}")))?;
        let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            SignatureError::BadKey(format!("expected 32 bytes, got {}", bytes.len()))
        })?;
        VerifyingKey::from_bytes(&raw)
            .map(PublicKey)
            .map_err(|e| SignatureError::BadKey(e.to_string()))
    }

    /// Like [`PublicKey::from_base64`], remembering the keys it decoded: decoding a key
    /// decompresses a curve point, a sizeable part of checking a signature, and a network
    /// has few keys. Forgets them all past `KEY_CACHE` different keys.
    pub fn from_base64_cached(b64: &str) -> Result<Self, SignatureError> {
        const KEY_CACHE: usize = 4096;
        static KEYS: std::sync::LazyLock<std::sync::RwLock<HashMap<String, PublicKey>>> =
            std::sync::LazyLock::new(Default::default);
        if let Some(key) = KEYS.read().ok().and_then(|k| k.get(b64).copied()) {
            return Ok(key);
        }
        let key = Self::from_base64(b64)?;
        if let Ok(mut keys) = KEYS.write() {
            if keys.len() >= KEY_CACHE {
                keys.clear();
            }
            keys.insert(b64.to_string(), key);
        }
        Ok(key)
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    #[cfg(test)]
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.0
    }
}

/// A parsed `Signature keyId="…",algorithm="…",…` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub subscriber_id: String,
    pub unique_key_id: String,
    pub algorithm: String,
    pub created: i64,
    pub expires: i64,
    pub headers: String,
    pub signature: String,
    /// `signature`, decoded.
    pub signature_bytes: [u8; 64],
}

impl SignatureHeader {
    /// Reads a header value. The scheme is matched without regard to case (RFC 9110); a
    /// parameter given twice is refused rather than letting one of them win.
    pub fn parse(value: &str) -> Result<Self, SignatureError> {
        let malformed = |m: &str| SignatureError::Malformed(m.to_string());
        let value = value.trim();
        let (scheme, params) = value.split_once([' ', '\t']).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("Signature") {
            return Err(malformed("it must start with `Signature `"));
        }
        // The six parameters a Beckn signature has, read in place; any other is ignored, but
        // no name may be given twice.
        const NAMES: [&str; 6] = [
            "keyid",
            "algorithm",
            "created",
            "expires",
            "headers",
            "signature",
        ];
        let mut known: [Option<&str>; 6] = [None; 6];
        let mut others: Vec<&str> = Vec::new();
        let twice = |name: &str| {
            SignatureError::Malformed(format!("`{}` is given twice", name.to_ascii_lowercase()))
        };
        let mut rest = params.trim_start();
        while !rest.is_empty() {
            let (name, after) = rest
                .split_once('=')
                .ok_or_else(|| malformed("expected name=\"value\" pairs"))?;
            let after = after
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| malformed("values must be quoted"))?;
            let (val, tail) = after
                .split_once('"')
                .ok_or_else(|| malformed("unterminated quoted value"))?;
            let name = name.trim();
            match NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
                Some(i) if known[i].is_some() => return Err(twice(name)),
                Some(i) => known[i] = Some(val),
                None if others.iter().any(|o| o.eq_ignore_ascii_case(name)) => {
                    return Err(twice(name));
                }
                None => others.push(name),
            }
            rest = tail.trim_start();
            if let Some(next) = rest.strip_prefix(',') {
                rest = next.trim_start();
            } else if !rest.is_empty() {
                return Err(malformed("parameters must be separated by commas"));
            }
        }
        let get = |k: &str| {
            NAMES
                .iter()
                .position(|n| *n == k)
                .and_then(|i| known[i])
                .ok_or_else(|| SignatureError::Malformed(format!("missing `{k}`")))
        };
        let key_id = get("keyid")?;
        let mut parts = key_id.split('|');
        let (subscriber_id, unique_key_id, key_alg) =
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(s), Some(k), Some(a), None) if !s.is_empty() && !k.is_empty() => (s, k, a),
                _ => {
                    return Err(malformed(
                        "keyId must be subscriber_id|unique_key_id|algorithm",
                    ));
                }
            };
        let algorithm = get("algorithm")?;
        if algorithm != "ed25519" {
            return Err(SignatureError::Algorithm(algorithm.to_string()));
        }
        if key_alg != algorithm {
            return Err(SignatureError::AlgorithmMismatch {
                key_id: key_alg.to_string(),
                algorithm: algorithm.to_string(),
            });
        }
        let number = |k: &str| -> Result<i64, SignatureError> {
            get(k)?
                .parse()
                .map_err(|_| SignatureError::Malformed(format!("`{k}` must be a Unix time")))
        };
        let headers = get("headers")?;
        if !headers
            .split_whitespace()
            .eq(["(created)", "(expires)", "digest"])
        {
            return Err(SignatureError::Headers(headers.to_string()));
        }
        let signature = get("signature")?;
        // Decoded into a buffer with room for more than 64 bytes, so a longer one is told apart.
        let mut raw = [0u8; 96];
        let n = B64.decode_slice(signature, &mut raw).map_err(|e| match e {
            base64::DecodeSliceError::OutputSliceTooSmall => {
                SignatureError::Malformed("an ed25519 signature has 64 bytes, this one more".into())
            }
            base64::DecodeSliceError::DecodeError(_) => malformed("signature is not base64"),
        })?;
        let signature_bytes: [u8; 64] = raw[..n].try_into().map_err(|_| {
            SignatureError::Malformed(format!("an ed25519 signature has 64 bytes, this one {n}"))
        })?;
        let (created, expires) = (number("created")?, number("expires")?);
        if expires < created {
            return Err(malformed("`expires` is before `created`"));
        }
        Ok(SignatureHeader {
            subscriber_id: subscriber_id.to_string(),
            unique_key_id: unique_key_id.to_string(),
            algorithm: algorithm.to_string(),
            created,
            expires,
            headers: headers.to_string(),
            signature: signature.to_string(),
            signature_bytes,
        })
    }

    /// Checks the time window before any key is looked up: `created` at most `skew` seconds
    /// ahead of `now`, `expires` not passed, and `expires - created` at most `max_lifetime`
    /// seconds, so a signature cannot be made to last forever.
    pub fn check_times(
        &self,
        now: i64,
        skew: i64,
        max_lifetime: i64,
    ) -> Result<(), SignatureError> {
        if self.created > now.saturating_add(skew) {
            return Err(SignatureError::Future {
                created: self.created,
                now,
            });
        }
        if self.expires < now {
            return Err(SignatureError::Expired {
                expires: self.expires,
                now,
            });
        }
        if self
            .expires
            .checked_sub(self.created)
            .is_none_or(|lifetime| lifetime > max_lifetime)
        {
            return Err(SignatureError::Lifetime {
                created: self.created,
                expires: self.expires,
                max: max_lifetime,
            });
        }
        Ok(())
    }

    /// The signature over the raw `body` bytes, times aside.
    pub fn verify_signature(&self, body: &[u8], key: &PublicKey) -> Result<(), SignatureError> {
        let sig = Signature::from_bytes(&self.signature_bytes);
        let s = SigningString::new(self.created, self.expires, body);
        key.0
            .verify(s.as_bytes(), &sig)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// Like [`SignatureHeader::verify_signature`], checked in one batch with the signatures
    /// of the other messages being checked at the same time (see [`super::verify_batch`]).
    pub async fn verify_signature_batched(
        &self,
        body: &[u8],
        key: &PublicKey,
    ) -> Result<(), SignatureError> {
        let sig = Signature::from_bytes(&self.signature_bytes);
        let s = SigningString::new(self.created, self.expires, body);
        match super::verify_batch::verify(s, sig, key.0).await {
            true => Ok(()),
            false => Err(SignatureError::Mismatch),
        }
    }

    /// Checks the time window (allowing `skew` seconds of clock difference for `created`, with
    /// no bound on the lifetime) and the signature over the raw `body` bytes.
    pub fn verify(
        &self,
        body: &[u8],
        key: &PublicKey,
        now: i64,
        skew: i64,
    ) -> Result<(), SignatureError> {
        self.check_times(now, skew, i64::MAX)?;
        self.verify_signature(body, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// base64 BLAKE2b-512 of `body`, as the specification writes it.
    fn digest(body: &[u8]) -> String {
        B64.encode(Blake2b512::digest(body))
    }

    /// The string that is signed, as the specification writes it:
    /// `(created): C\n(expires): E\ndigest: BLAKE-512=D` (what [`SigningString`] builds in place).
    fn signing_string(created: i64, expires: i64, digest_b64: &str) -> String {
        format!("(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest_b64}")
    }

    // The published BECKN-006 example: a BAP's key pair, times and one-line request body.
    const PRIVATE: &str =
        "lP3sHA+9gileOkXYJXh4Jg8tK0gEEMbf9yCPnFpbldhrAY+NErqL9WD+Vav7TE5tyVXGXBle9ONZi2W7o144eQ==";
    const PUBLIC: &str = "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk=";
    const BODY: &str = r#"{"context":{"domain":"nic2004:60212","country":"IND","city":"Kochi","action":"search","core_version":"0.9.1","bap_id":"bap.stayhalo.in","bap_uri":"https://8f9f-49-207-209-131.ngrok.io/protocol/","transaction_id":"e6d9f908-1d26-4ff3-a6d1-3af3d3721054","message_id":"a2fe6d52-9fe4-4d1a-9d0b-dccb8b48522d","timestamp":"2022-01-04T09:17:55.971Z","ttl":"P1M"},"message":{"intent":{"fulfillment":{"start":{"location":{"gps":"10.108768, 76.347517"}},"end":{"location":{"gps":"10.102997, 76.353480"}}}}}}"#;
    const DIGEST: &str =
        "b6lf6lRgOweajukcvcLsagQ2T60+85kRh/Rd2bdS+TG/5ALebOEgDJfyCrre/1+BMu5nA94o4DT3pTFXuUg7sw==";
    const SIGNATURE: &str =
        "cjbhP0PFyrlSCNszJM1F/YmHDVAWsZqJUPzojnE/7TJU3fJ/rmIlgaUHEr5E0/2PIyf0tpSnWtT6cyNNlpmoAQ==";
    const CREATED: i64 = 1641287875;
    const EXPIRES: i64 = 1641291475;

    #[test]
    fn golden_vector() {
        assert_eq!(digest(BODY.as_bytes()), DIGEST);
        let key = PrivateKey::from_base64(PRIVATE).unwrap();
        assert_eq!(key.public_key().to_base64(), PUBLIC);
        let header = key.sign(
            BODY.as_bytes(),
            "example-bap.com|ae3ea24b-cfec-495e-81f8-044aaef164ac",
            CREATED,
            EXPIRES,
        );
        assert!(
            header.ends_with(&format!("signature=\"{SIGNATURE}\"")),
            "{header}"
        );
        let parsed = SignatureHeader::parse(&header).unwrap();
        assert_eq!(parsed.subscriber_id, "example-bap.com");
        assert_eq!(parsed.unique_key_id, "ae3ea24b-cfec-495e-81f8-044aaef164ac");
        let public = PublicKey::from_base64(PUBLIC).unwrap();
        parsed
            .verify(BODY.as_bytes(), &public, CREATED + 10, 5)
            .unwrap();
    }

    #[test]
    fn the_signing_string_is_built_in_place_for_any_times() {
        for (created, expires) in [(CREATED, EXPIRES), (i64::MIN, i64::MIN), (0, i64::MAX)] {
            assert_eq!(
                SigningString::new(created, expires, BODY.as_bytes()).as_bytes(),
                signing_string(created, expires, &digest(BODY.as_bytes())).as_bytes()
            );
        }
    }

    #[test]
    fn cached_keys_decode_like_fresh_ones_and_bad_ones_still_fail() {
        let fresh = PublicKey::from_base64(PUBLIC).unwrap();
        assert_eq!(PublicKey::from_base64_cached(PUBLIC).unwrap(), fresh);
        assert_eq!(PublicKey::from_base64_cached(PUBLIC).unwrap(), fresh);
        assert!(PublicKey::from_base64_cached("not a key").is_err());
        assert!(PublicKey::from_base64_cached("not a key").is_err());
    }

    #[test]
    fn seed_and_libsodium_forms_agree() {
        let full = PrivateKey::from_base64(PRIVATE).unwrap();
        let seed = B64.encode(&B64.decode(PRIVATE).unwrap()[..32]);
        let from_seed = PrivateKey::from_base64(&seed).unwrap();
        assert_eq!(from_seed.public_key(), full.public_key());
        assert_eq!(from_seed.to_base64(), PRIVATE);
    }

    #[test]
    fn rejections() {
        let key = PrivateKey::from_base64(PRIVATE).unwrap();
        let public = key.public_key();
        let header =
            SignatureHeader::parse(&key.sign(BODY.as_bytes(), "a.example|k1", 100, 200)).unwrap();
        assert_eq!(
            header.verify(b"{}", &public, 150, 5),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            header.verify(BODY.as_bytes(), &public, 201, 5),
            Err(SignatureError::Expired { .. })
        ));
        assert!(matches!(
            header.verify(BODY.as_bytes(), &public, 90, 5),
            Err(SignatureError::Future { .. })
        ));
        header.verify(BODY.as_bytes(), &public, 96, 5).unwrap();
        let other = PrivateKey::generate().unwrap().public_key();
        assert_eq!(
            header.verify(BODY.as_bytes(), &other, 150, 5),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            SignatureHeader::parse(
                r#"Signature keyId="a|k|rsa",algorithm="ed25519",created="1",expires="2",headers="(created) (expires) digest",signature="x""#
            ),
            Err(SignatureError::AlgorithmMismatch { .. })
        ));
        assert!(matches!(
            SignatureHeader::parse("Bearer x"),
            Err(SignatureError::Malformed(_))
        ));
        assert!(PrivateKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn header_reading_is_strict_but_the_scheme_has_no_case() {
        let key = PrivateKey::from_base64(PRIVATE).unwrap();
        let header = key.sign(BODY.as_bytes(), "a.example|k1", 100, 200);
        let lower = header.replacen("Signature", "signature", 1);
        assert_eq!(
            SignatureHeader::parse(&lower).unwrap(),
            SignatureHeader::parse(&header).unwrap()
        );
        let twice = header.replacen(",created=", ",created=\"99\",created=", 1);
        assert_eq!(
            SignatureHeader::parse(&twice),
            Err(SignatureError::Malformed("`created` is given twice".into()))
        );
        let short = header.replace("signature=\"", "signature=\"AAAA");
        assert!(matches!(
            SignatureHeader::parse(&short),
            Err(SignatureError::Malformed(_))
        ));
        assert!(SignatureHeader::parse(&header.replacen("Signature", "Signatures", 1)).is_err());
    }

    #[test]
    fn signature_lifetime_is_bounded() {
        let key = PrivateKey::from_base64(PRIVATE).unwrap();
        let at = |created: i64, expires: i64| {
            SignatureHeader::parse(&key.sign(BODY.as_bytes(), "a.example|k1", created, expires))
                .and_then(|h| h.check_times(1_000, 5, 3600))
        };
        assert_eq!(at(1_000, 4_600), Ok(()));
        assert!(matches!(
            at(1_000, 4_601),
            Err(SignatureError::Lifetime { .. })
        ));
        assert!(matches!(
            at(i64::MIN, i64::MAX),
            Err(SignatureError::Lifetime { .. })
        ));
        assert!(matches!(
            at(1_006, 1_100),
            Err(SignatureError::Future { .. })
        ));
        assert!(matches!(
            at(i64::MAX, i64::MAX),
            Err(SignatureError::Future { .. })
        ));
        assert_eq!(
            at(10, 20),
            Err(SignatureError::Expired {
                expires: 20,
                now: 1_000
            })
        );
    }
}
