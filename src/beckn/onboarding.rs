//! Joining a network: the X25519 encryption keys a registry knows a participant by, the
//! `on_subscribe` challenge it sends to prove the participant holds them, and the site
//! verification page that proves the participant owns its domain.
//!
//! The challenge follows ONDC's registry: the shared key is the X25519 agreement of our
//! encryption private key and the registry's encryption public key, used as an AES-256 key in
//! ECB mode with PKCS#7 padding; the challenge and its plaintext travel as base64.
//! Everything here is pure: keys are values, nothing is read or sent.

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use x25519_dalek::{PublicKey, StaticSecret};

use super::signing::PrivateKey;

/// The DER prefix of an X25519 SubjectPublicKeyInfo (RFC 8410: SEQUENCE { SEQUENCE { OID
/// 1.3.101.110 }, BIT STRING of 32 bytes }); the raw key follows it. ONDC's registry publishes
/// and expects public encryption keys in this form.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

/// The DER prefix of an X25519 PKCS#8 private key (RFC 8410: version 0, the same algorithm,
/// an OCTET STRING holding an OCTET STRING of 32 bytes), as ONDC's key tools write it.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
];

const BLOCK: usize = 16;

/// Why a key, a challenge or an answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnboardingError {
    #[error("encryption key is not valid: {0}")]
    BadKey(String),
    #[error("challenge is not base64: {0}")]
    NotBase64(String),
    #[error("challenge is {0} bytes long, not a whole number of 16-byte AES blocks")]
    NotBlocks(usize),
    #[error(
        "challenge does not decrypt with our encryption key and the registry's public key (bad padding)"
    )]
    Padding,
    #[error("decrypted challenge is not UTF-8 text")]
    NotText,
    #[error("generating a key: {0}")]
    Random(String),
}

/// Our X25519 encryption private key.
#[derive(Clone)]
pub struct EncryptionKey(StaticSecret);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(***)")
    }
}

/// The 32 key bytes of `b64`: the raw key, or its DER form (`prefix` and the key) named `der`.
fn key_bytes(b64: &str, prefix: &[u8], der: &str) -> Result<[u8; 32], OnboardingError> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|e| OnboardingError::BadKey(format!("not base64: {e}")))?;
    let der_len = prefix.len() + 32;
    let raw = match bytes.len() {
        32 => &bytes[..],
        n if n == der_len && bytes.starts_with(prefix) => &bytes[prefix.len()..],
        n => {
            return Err(OnboardingError::BadKey(format!(
                "{n} bytes: expected 32 raw bytes or a {der_len}-byte {der}"
            )));
        }
    };
    raw.try_into()
        .map_err(|_| OnboardingError::BadKey("bad length".into()))
}

/// base64 of a key's DER form: `prefix` and the key's bytes.
fn der_base64(prefix: &[u8], key: &[u8]) -> String {
    let mut der = prefix.to_vec();
    der.extend_from_slice(key);
    B64.encode(der)
}

impl EncryptionKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, OnboardingError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| OnboardingError::Random(e.to_string()))?;
        Ok(EncryptionKey(StaticSecret::from(bytes)))
    }

    /// base64 of the raw 32 bytes or of the PKCS#8 DER form (`MC4CAQAwBQYDK2Vu…`).
    pub fn from_base64(b64: &str) -> Result<Self, OnboardingError> {
        let raw = key_bytes(b64, &PKCS8_PREFIX, "X25519 PKCS#8 DER key")?;
        Ok(EncryptionKey(StaticSecret::from(raw)))
    }

    /// base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    /// base64 of the PKCS#8 DER form.
    pub fn to_pkcs8_base64(&self) -> String {
        der_base64(&PKCS8_PREFIX, &self.0.to_bytes())
    }

    pub fn public_key(&self) -> EncryptionPublicKey {
        EncryptionPublicKey(PublicKey::from(&self.0))
    }

    /// The AES-256 key shared with the holder of `peer`'s private key.
    fn shared_cipher(&self, peer: &EncryptionPublicKey) -> Aes256 {
        let shared = self.0.diffie_hellman(&peer.0);
        Aes256::new(GenericArray::from_slice(shared.as_bytes()))
    }

    /// The plaintext of `challenge` (base64 AES-256-ECB, PKCS#7) sent by the holder of `peer`.
    pub fn decrypt_challenge(
        &self,
        peer: &EncryptionPublicKey,
        challenge: &str,
    ) -> Result<String, OnboardingError> {
        let mut data = B64
            .decode(challenge.trim())
            .map_err(|e| OnboardingError::NotBase64(e.to_string()))?;
        if data.is_empty() || data.len() % BLOCK != 0 {
            return Err(OnboardingError::NotBlocks(data.len()));
        }
        let cipher = self.shared_cipher(peer);
        for block in data.chunks_exact_mut(BLOCK) {
            cipher.decrypt_block(GenericArray::from_mut_slice(block));
        }
        let pad = usize::from(*data.last().unwrap_or(&0));
        if pad == 0 || pad > BLOCK || !data[data.len() - pad..].iter().all(|&b| b == pad as u8) {
            return Err(OnboardingError::Padding);
        }
        data.truncate(data.len() - pad);
        String::from_utf8(data).map_err(|_| OnboardingError::NotText)
    }

    /// `plaintext` encrypted for the holder of `peer`'s private key, as a registry sends a
    /// challenge: base64 AES-256-ECB with PKCS#7 padding.
    pub fn encrypt_challenge(&self, peer: &EncryptionPublicKey, plaintext: &str) -> String {
        let mut data = plaintext.as_bytes().to_vec();
        let pad = BLOCK - data.len() % BLOCK;
        data.extend(std::iter::repeat_n(pad as u8, pad));
        let cipher = self.shared_cipher(peer);
        for block in data.chunks_exact_mut(BLOCK) {
            cipher.encrypt_block(GenericArray::from_mut_slice(block));
        }
        B64.encode(data)
    }
}

/// An X25519 public encryption key (ours, or a registry's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionPublicKey(PublicKey);

impl EncryptionPublicKey {
    /// base64 of the DER SubjectPublicKeyInfo (`MCowBQYDK2VuAyEA…`, as registries publish it)
    /// or of the raw 32 bytes.
    pub fn from_base64(b64: &str) -> Result<Self, OnboardingError> {
        let raw = key_bytes(b64, &SPKI_PREFIX, "X25519 DER public key")?;
        Ok(EncryptionPublicKey(PublicKey::from(raw)))
    }

    /// base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    /// base64 of the DER SubjectPublicKeyInfo: the form ONDC's registry expects.
    pub fn to_der_base64(&self) -> String {
        der_base64(&SPKI_PREFIX, self.0.as_bytes())
    }
}

/// The page a registry fetches from `https://<subscriber_id>/ondc-site-verification.html`:
/// its meta tag carries the ed25519 signature of the subscription's `request_id`.
pub fn site_verification_page(signing_key: &PrivateKey, request_id: &str) -> String {
    let signature = signing_key.sign_plain(request_id.as_bytes());
    format!(
        "<html>\n  <head>\n    <meta name=\"ondc-site-verification\" content=\"{signature}\" />\n  </head>\n  <body>ONDC Site Verification Page</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests;
