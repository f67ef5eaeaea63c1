//! Signatures made by the adapter verify with an independent implementation (Python's hashlib
//! BLAKE2b and the `cryptography` package's ed25519), and the other way round; so does the
//! registry's X25519/AES-256-ECB challenge. Needs python3
//! with `cryptography` (CI installs it); without it the test says so and checks nothing.

use std::process::Command;

use beckn_adapter::beckn::onboarding::{EncryptionKey, EncryptionPublicKey};
use beckn_adapter::beckn::signing::{PrivateKey, SignatureHeader};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/beckn_signature.py"
);

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success())
}

fn python(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn signatures_interoperate_with_an_independent_implementation() {
    if !python_ready() {
        eprintln!("SKIPPED: python3 with the `cryptography` package is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    let body = br#"{"context":{"action":"on_search","domain":"agri.soil"},"message":{"catalog":{"descriptor":{"name":"Soil \"NPK\" lab"}}}}"#;
    std::fs::write(&body_path, body).unwrap();
    let body_file = body_path.to_str().unwrap();
    let key = PrivateKey::generate().unwrap();
    let public = key.public_key().to_base64();
    let now = jiff::Timestamp::now().as_second();

    // adapter signs, Python verifies
    let ours = key.sign(body, "soil.lab.example|k1", now, now + 60);
    let (ok, _) = python(&["verify", body_file, &public, &ours, &now.to_string()]);
    assert!(ok, "Python rejects the adapter's signature: {ours}");
    let tampered_path = dir.path().join("tampered.json");
    std::fs::write(&tampered_path, &body[..body.len() - 1]).unwrap();
    let (ok, _) = python(&[
        "verify",
        tampered_path.to_str().unwrap(),
        &public,
        &ours,
        &now.to_string(),
    ]);
    assert!(!ok, "Python must reject a changed body");

    // Python signs (with the 64-byte libsodium key form), the adapter verifies
    let (ok, theirs) = python(&[
        "sign",
        body_file,
        &key.to_base64(),
        "soil.lab.example|k1",
        &now.to_string(),
        &(now + 60).to_string(),
    ]);
    assert!(ok);
    let parsed = SignatureHeader::parse(&theirs).expect("Python's header parses");
    parsed
        .verify(body, &key.public_key(), now, 5)
        .expect("the adapter accepts Python's signature");
    assert!(parsed.verify(b"{}", &key.public_key(), now, 5).is_err());
    assert_eq!(theirs, ours, "both implementations produce the same header");
}

const CHALLENGE_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/ondc_challenge.py"
);

fn challenge_python(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(CHALLENGE_SCRIPT)
        .args(args)
        .output()
        .expect("python3 runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// The registry's challenge with Python's X25519 and AES in both directions: Python, as the
/// registry, encrypts for our public key and the adapter's `on_subscribe` answers it; the
/// adapter encrypts and Python decrypts; Python reads the DER form of our public key.
#[tokio::test]
async fn the_registry_challenge_interoperates_with_an_independent_implementation() {
    if !python_ready() {
        eprintln!("SKIPPED: python3 with the `cryptography` package is not available");
        return;
    }
    let (ok, pair) = challenge_python(&["keypair"]);
    assert!(ok, "Python makes a key pair");
    let (registry_private, registry_public_der) = pair.split_once(' ').expect("two keys");
    let ours = EncryptionKey::generate().unwrap();
    let our_der = ours.public_key().to_der_base64();

    // Python reads our DER public key as the X25519 key it is
    let (ok, raw) = challenge_python(&["parse-der", &our_der]);
    assert!(ok, "Python's load_der_public_key refuses {our_der}");
    assert_eq!(raw, ours.public_key().to_base64());

    // Python encrypts a challenge, the adapter's endpoint answers its plaintext
    let (net, _dir) = crate::onboarding::joining_network(registry_public_der, &ours).await;
    let plaintext = "ONDC challenge 7c0e5a1b ✓";
    let (ok, challenge) = challenge_python(&["encrypt", registry_private, &our_der, plaintext]);
    assert!(ok, "Python encrypts");
    let (status, answer) =
        crate::onboarding::on_subscribe(&net, serde_json::json!({ "challenge": challenge })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answer"], plaintext);

    // the adapter encrypts, Python decrypts
    let registry = EncryptionPublicKey::from_base64(registry_public_der).unwrap();
    let ours_encrypted = ours.encrypt_challenge(&registry, "from the adapter, 33 bytes long..");
    let (ok, decrypted) =
        challenge_python(&["decrypt", registry_private, &our_der, &ours_encrypted]);
    assert!(ok, "Python decrypts the adapter's ciphertext");
    assert_eq!(decrypted, "from the adapter, 33 bytes long..");
}
