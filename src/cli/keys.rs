//! `keys` and `sign`: a new signing key pair and encryption key pair with their registry entry,
//! and the Beckn `Authorization` header of a body.

use anyhow::Context;

use beckn_adapter::beckn::onboarding::EncryptionKey;
use beckn_adapter::beckn::signing::PrivateKey;

/// `keys`: prints a new ed25519 signing key pair, a new X25519 encryption key pair (the public
/// key also in the DER form ONDC's registry expects) and a ready registry entry.
pub fn generate(
    subscriber_id: &str,
    key_id: &str,
    kind: &str,
    url: &str,
    domain: &str,
) -> anyhow::Result<()> {
    let key = PrivateKey::generate().context("generating a key")?;
    let public = key.public_key().to_base64();
    println!("signing_public_key:  {public}");
    println!("signing_private_key: {}", key.to_base64());
    let encryption = EncryptionKey::generate().context("generating an encryption key")?;
    let encryption_public = encryption.public_key();
    println!("encryption_public_key:  {}", encryption_public.to_base64());
    println!(
        "encryption_public_key (DER, for ONDC's registry): {}",
        encryption_public.to_der_base64()
    );
    println!("encryption_private_key: {}", encryption.to_pkcs8_base64());
    println!(
        "  (keep the private keys secret: give them to the adapter through an environment variable, a file or a command)"
    );
    println!();
    println!("# registry entry");
    println!("- subscriber_id: {subscriber_id}");
    println!("  type: {}", kind.to_ascii_uppercase());
    println!("  url: {url}");
    println!("  domain: {domain}");
    println!("  unique_key_id: {key_id}");
    println!("  signing_public_key: {public}");
    println!("  encr_public_key: {}", encryption_public.to_der_base64());
    println!("  valid_from: {}", jiff::Timestamp::now());
    println!("  status: SUBSCRIBED");
    Ok(())
}

/// `sign`: prints the `Authorization` header for the body read from standard input.
pub fn sign(key: &str, key_id: &str, validity: i64) -> anyhow::Result<()> {
    use std::io::Read;
    let key = PrivateKey::from_base64(key).context("reading the private key")?;
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .context("reading the body from standard input")?;
    // Signed for use now, by the system's clock.
    let now = jiff::Timestamp::now().as_second();
    println!("{}", key.sign(&body, key_id, now, now + validity));
    Ok(())
}
