//! The registry's side of the cryptography: the challenge encrypted for a subscriber (X25519 of
//! the registry's key and the subscriber's, AES-256-ECB, PKCS#7, base64), and ed25519
//! verification of a site verification page and of a signed lookup (Beckn's BLAKE2b-512
//! signing string). Written apart from the adapter's own code on purpose: the stand-in checks
//! the adapter, it must not share its mistakes.

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};

/// DER prefix of an X25519 SubjectPublicKeyInfo (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
];

/// An X25519 public key from base64 of its DER form or its raw 32 bytes.
pub fn x25519_public(b64: &str) -> Result<PublicKey, String> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let raw: &[u8] = match bytes.len() {
        32 => &bytes,
        44 if bytes.starts_with(&SPKI_PREFIX) => &bytes[12..],
        n => return Err(format!("{n} bytes: not an X25519 public key")),
    };
    let raw: [u8; 32] = raw.try_into().map_err(|_| "bad length".to_string())?;
    Ok(PublicKey::from(raw))
}

/// base64 DER SubjectPublicKeyInfo of `key`.
pub fn x25519_der(key: &PublicKey) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(key.as_bytes());
    B64.encode(der)
}

/// `plaintext` encrypted for the holder of `peer`'s private key.
pub fn encrypt_challenge(ours: &StaticSecret, peer: &PublicKey, plaintext: &str) -> String {
    let shared = ours.diffie_hellman(peer);
    let cipher = Aes256::new(GenericArray::from_slice(shared.as_bytes()));
    let mut data = plaintext.as_bytes().to_vec();
    let pad = 16 - data.len() % 16;
    data.extend(std::iter::repeat_n(pad as u8, pad));
    for block in data.chunks_exact_mut(16) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    B64.encode(data)
}

/// An ed25519 public key from base64 of its 32 bytes.
pub fn ed25519_public(b64: &str) -> Result<VerifyingKey, String> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let raw: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("{} bytes: not an ed25519 public key", bytes.len()))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| e.to_string())
}

/// Whether `signature_b64` is `key`'s signature of `message`.
pub fn verify_plain(key: &VerifyingKey, message: &[u8], signature_b64: &str) -> bool {
    let Ok(bytes) = B64.decode(signature_b64.trim()) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// The parts of a Beckn `Authorization: Signature …` header a registry checks.
#[derive(Debug, PartialEq, Eq)]
pub struct SignedBy {
    pub subscriber_id: String,
    pub unique_key_id: String,
    pub created: i64,
    pub expires: i64,
    pub signature: String,
}

/// Reads a `Signature keyId="sub|uk|ed25519",created=..,expires=..,signature=".."` header.
pub fn parse_authorization(value: &str) -> Result<SignedBy, String> {
    let params = value
        .trim()
        .strip_prefix("Signature")
        .ok_or("the Authorization header is not a Beckn signature")?;
    let field = |name: &str| {
        params.split(',').find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
    };
    let key_id = field("keyId").ok_or("no keyId")?;
    let mut parts = key_id.split('|');
    let (Some(sub), Some(uk)) = (parts.next(), parts.next()) else {
        return Err("keyId is not subscriber_id|ukId|ed25519".into());
    };
    let number = |name: &str| {
        field(name)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or(format!("no numeric `{name}`"))
    };
    Ok(SignedBy {
        subscriber_id: sub.to_string(),
        unique_key_id: uk.to_string(),
        created: number("created")?,
        expires: number("expires")?,
        signature: field("signature").ok_or("no signature")?,
    })
}

/// Whether `by` signed `body` with `key` (Beckn: BLAKE2b-512 digest in the signing string).
pub fn verify_body(by: &SignedBy, key: &VerifyingKey, body: &[u8]) -> bool {
    let digest = B64.encode(Blake2b512::digest(body));
    let signing = format!(
        "(created): {}\n(expires): {}\ndigest: BLAKE-512={digest}",
        by.created, by.expires
    );
    verify_plain(key, signing.as_bytes(), &by.signature)
}
