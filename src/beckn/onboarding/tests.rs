use super::*;

/// Made with Python `cryptography`: our key (bytes 0..32, PKCS#8), the registry's public key
/// (private bytes 32..64, DER), and a challenge the registry encrypted for us.
const OUR_PKCS8: &str = "MC4CAQAwBQYDK2VuBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f";
const REGISTRY_DER: &str = "MCowBQYDK2VuAyEANYBy1jZYgNGu6jKa35EhODhR7SGijjt16WXQ0s0WYlQ=";
const CHALLENGE: &str = "P9QkK7TG/+atth9vf9I3lk/BWnq5WthTUl8xz6wCOYQ=";

#[test]
fn decrypts_a_challenge_made_by_an_independent_implementation() {
    let ours = EncryptionKey::from_base64(OUR_PKCS8).unwrap();
    let registry = EncryptionPublicKey::from_base64(REGISTRY_DER).unwrap();
    assert_eq!(
        ours.decrypt_challenge(&registry, CHALLENGE).unwrap(),
        "challenge-0e5b1d"
    );
}

#[test]
fn both_sides_agree_on_the_shared_key() {
    let ours = EncryptionKey::generate().unwrap();
    let registry = EncryptionKey::generate().unwrap();
    for text in [
        "",
        "a",
        "exactly sixteen!",
        "a longer challenge of several blocks ✓",
    ] {
        let challenge = registry.encrypt_challenge(&ours.public_key(), text);
        assert_eq!(
            ours.decrypt_challenge(&registry.public_key(), &challenge)
                .unwrap(),
            text
        );
    }
}

#[test]
fn keys_read_back_in_raw_and_der_forms() {
    let key = EncryptionKey::generate().unwrap();
    let public = key.public_key();
    let raw = EncryptionKey::from_base64(&key.to_base64()).unwrap();
    let der = EncryptionKey::from_base64(&key.to_pkcs8_base64()).unwrap();
    assert_eq!(raw.public_key(), public);
    assert_eq!(der.public_key(), public);
    assert!(public.to_der_base64().starts_with("MCowBQYDK2VuAyEA"));
    assert_eq!(
        EncryptionPublicKey::from_base64(&public.to_der_base64()).unwrap(),
        public
    );
    assert_eq!(
        EncryptionPublicKey::from_base64(&public.to_base64()).unwrap(),
        public
    );
}

#[test]
fn bad_keys_are_refused() {
    assert!(matches!(
        EncryptionKey::from_base64("not base64!"),
        Err(OnboardingError::BadKey(_))
    ));
    assert!(matches!(
        EncryptionPublicKey::from_base64(&B64.encode([0u8; 20])),
        Err(OnboardingError::BadKey(_))
    ));
    // An ed25519 SubjectPublicKeyInfo (OID 1.3.101.112) is not an X25519 key.
    let mut ed = SPKI_PREFIX.to_vec();
    ed[8] = 0x70;
    ed.extend_from_slice(&[1u8; 32]);
    assert!(EncryptionPublicKey::from_base64(&B64.encode(ed)).is_err());
}

#[test]
fn a_challenge_that_does_not_decrypt_is_an_error() {
    let ours = EncryptionKey::from_base64(OUR_PKCS8).unwrap();
    let stranger = EncryptionKey::generate().unwrap().public_key();
    assert!(matches!(
        ours.decrypt_challenge(&stranger, "%%%"),
        Err(OnboardingError::NotBase64(_))
    ));
    assert_eq!(
        ours.decrypt_challenge(&stranger, &B64.encode([1u8; 5])),
        Err(OnboardingError::NotBlocks(5))
    );
    assert_eq!(
        ours.decrypt_challenge(&stranger, ""),
        Err(OnboardingError::NotBlocks(0))
    );
    // With the wrong peer key the padding is (almost always) wrong; never a panic.
    let r = ours.decrypt_challenge(&stranger, CHALLENGE);
    assert!(
        matches!(r, Err(OnboardingError::Padding | OnboardingError::NotText)),
        "{r:?}"
    );
}

#[test]
fn the_site_verification_page_carries_the_signature_of_the_request_id() {
    let key = PrivateKey::generate().unwrap();
    let page = site_verification_page(&key, "req-42");
    let signature = key.sign_plain(b"req-42");
    assert!(page.contains(&format!(
        "<meta name=\"ondc-site-verification\" content=\"{signature}\" />"
    )));
}
