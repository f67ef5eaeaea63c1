//! Joining a registry, through the real app wiring: the `on_subscribe` challenge answered with
//! the flow's encryption key, the site verification page signed with its signing key, and
//! clear NACKs for a challenge that does not decrypt or keys that are missing.

use std::collections::HashMap;

use beckn_adapter::beckn::onboarding::EncryptionKey;
use beckn_adapter::beckn::signing::PrivateKey;
use serde_json::{Value, json};

use crate::common::{self, Network};

/// The greenfield-lab flow's test-only signing key (flows/greenfield-lab.yaml).
const GFSL_KEY: &str =
    "LCSMSdByg8/1LSAVrJ4aRhqCB928+yEI+5cDhdtjbSZ9K8ZJmBf5KZ2rCUKq7ORjFyEzLpsbs5GoVpUh5oFUxg==";

const REGISTRY_LINE: &str = "  registry: { source: \"${BECKN_REGISTRY:-registry/local.yaml}\" }\n";

/// A tree whose greenfield-lab flow's `network.registry` line is replaced by `network` (YAML
/// lines indented by two spaces).
pub fn tree_with_network(network: &str) -> tempfile::TempDir {
    let dir = common::temp_tree(&["greenfield-lab.yaml"]);
    let path = dir.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).unwrap();
    assert!(
        flow.contains(REGISTRY_LINE),
        "the flow's registry line moved"
    );
    std::fs::write(&path, flow.replace(REGISTRY_LINE, network)).unwrap();
    dir
}

/// The network lines of a flow joining a registry whose encryption public key is
/// `registry_public`, with our encryption key given as `our_key` (a YAML value).
fn joining(registry_public: &str, our_key: &str, request_id: &str) -> String {
    format!(
        "  registry:\n    source: registry/local.yaml\n    encryption_public_key: \"{registry_public}\"\n  encryption_private_key: {our_key}\n  subscription: {{ request_id: {request_id} }}\n"
    )
}

/// The sample network with greenfield-lab joining a registry whose key is `registry_public`,
/// our encryption key `ours` given through `GFSL_ENCRYPTION_KEY`.
pub async fn joining_network(
    registry_public: &str,
    ours: &EncryptionKey,
) -> (Network, tempfile::TempDir) {
    let dir = tree_with_network(&joining(
        registry_public,
        "{ env: GFSL_ENCRYPTION_KEY }",
        "2f1c9e6a-request-1",
    ));
    let env = HashMap::from([("GFSL_ENCRYPTION_KEY".to_string(), ours.to_pkcs8_base64())]);
    let net = Network::start_env(&dir.path().join("flows"), None, env).await;
    (net, dir)
}

/// POSTs `body` to the flow's `on_subscribe`; the status and the JSON answer.
pub async fn on_subscribe(net: &Network, body: Value) -> (u16, Value) {
    let response = net
        .http
        .post(format!("{}/on_subscribe", net.bpp_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn nack_message(body: &Value) -> String {
    assert_eq!(body["message"]["ack"]["status"], "NACK", "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn onboarding_the_registry_s_challenge_is_answered() {
    let registry = EncryptionKey::generate().unwrap();
    let ours = EncryptionKey::generate().unwrap();
    let (net, _dir) = joining_network(&registry.public_key().to_der_base64(), &ours).await;
    let challenge = registry.encrypt_challenge(&ours.public_key(), "a9f3-challenge-text");
    let (status, body) = on_subscribe(
        &net,
        json!({"subscriber_id": "soil.greenfield-labs.example", "challenge": challenge}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"answer": "a9f3-challenge-text"}));
}

#[tokio::test]
async fn onboarding_a_challenge_that_does_not_decrypt_is_a_clear_400() {
    let registry = EncryptionKey::generate().unwrap();
    let ours = EncryptionKey::generate().unwrap();
    let (net, _dir) = joining_network(&registry.public_key().to_base64(), &ours).await;
    // encrypted for someone else
    let stranger = EncryptionKey::generate().unwrap();
    let wrong = registry.encrypt_challenge(&stranger.public_key(), "not for us");
    for (body, expected) in [
        (json!({"challenge": wrong}), "does not decrypt"),
        (json!({"challenge": "%%% not base64"}), "not base64"),
        (json!({"challenge": "AAAA"}), "16-byte"),
        (json!({"answer": "no challenge"}), "challenge"),
        (json!({"challenge": 42}), "challenge"),
    ] {
        let (status, answer) = on_subscribe(&net, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let message = nack_message(&answer);
        assert!(message.contains(expected), "{body} -> {message}");
    }
    // still answers a good one afterwards
    let good = registry.encrypt_challenge(&ours.public_key(), "ok");
    let (status, answer) = on_subscribe(&net, json!({"challenge": good})).await;
    assert_eq!((status, answer), (200, json!({"answer": "ok"})));
}

#[tokio::test]
async fn onboarding_without_keys_the_challenge_is_refused_with_what_is_missing() {
    let net = Network::start().await;
    let registry = EncryptionKey::generate().unwrap();
    let challenge = registry.encrypt_challenge(&registry.public_key(), "x");
    let (status, answer) = on_subscribe(&net, json!({"challenge": challenge})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        nack_message(&answer).contains("network.encryption_private_key"),
        "{answer}"
    );
    // no subscription: no page
    let response = net
        .http
        .get(format!("{}/ondc-site-verification.html", net.bpp_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(nack_message(&body).contains("network.subscription.request_id"));
}

#[tokio::test]
async fn onboarding_the_site_verification_page_carries_the_signed_request_id() {
    let registry = EncryptionKey::generate().unwrap();
    let ours = EncryptionKey::generate().unwrap();
    let (net, _dir) = joining_network(&registry.public_key().to_der_base64(), &ours).await;
    let response = net
        .http
        .get(format!("{}/ondc-site-verification.html", net.bpp_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    let key = PrivateKey::from_base64(GFSL_KEY).unwrap();
    let expected = key.sign_plain(b"2f1c9e6a-request-1");
    assert!(
        page.contains(&format!(
            "<meta name=\"ondc-site-verification\" content=\"{expected}\" />"
        )),
        "{page}"
    );
}

#[tokio::test]
async fn onboarding_keys_come_from_a_file_or_a_command() {
    let registry = EncryptionKey::generate().unwrap();
    let ours = EncryptionKey::generate().unwrap();
    let registry_public = registry.public_key().to_der_base64();
    // the encryption key from a file, the signing key from a command's output
    let dir = tree_with_network(&joining(
        &registry_public,
        "{ file: secrets/encryption.key }",
        "req-2",
    ));
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("secrets/encryption.key"),
        format!("{}\n", ours.to_base64()),
    )
    .unwrap();
    let path = dir.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).unwrap();
    let signing_line = flow
        .lines()
        .find(|l| l.trim_start().starts_with("signing_private_key:"))
        .unwrap()
        .to_string();
    let flow = flow.replace(
        &signing_line,
        &format!("  signing_private_key: {{ command: [printf, \"%s\", \"{GFSL_KEY}\"] }}"),
    );
    std::fs::write(&path, flow).unwrap();
    let net = Network::start_tree(&dir.path().join("flows"), None).await;

    let challenge = registry.encrypt_challenge(&ours.public_key(), "from a file");
    let (status, answer) = on_subscribe(&net, json!({"challenge": challenge})).await;
    assert_eq!((status, answer), (200, json!({"answer": "from a file"})));
    let page = net
        .http
        .get(format!("{}/ondc-site-verification.html", net.bpp_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = PrivateKey::from_base64(GFSL_KEY).unwrap();
    assert!(page.contains(&key.sign_plain(b"req-2")), "{page}");
}

/// The diagnostics of loading `dir`'s flows, rendered.
fn load_errors(dir: &tempfile::TempDir) -> String {
    let layout = beckn_adapter::compile::Layout::from_flows_dir(dir.path().join("flows"));
    match beckn_adapter::compile::load(&layout, &HashMap::<String, String>::new()) {
        Ok(_) => panic!("the flows load"),
        Err(d) => beckn_adapter::config::diagnostic::render_all(&d),
    }
}

#[test]
fn onboarding_keys_that_cannot_be_read_are_load_errors() {
    let registry = EncryptionKey::generate()
        .unwrap()
        .public_key()
        .to_der_base64();
    for (our_key, expected) in [
        (
            "{ command: [sh, -c, \"echo leaked; echo vault: permission denied >&2; exit 2\"] }",
            "vault: permission denied",
        ),
        (
            "{ env: NOT_SET_ANYWHERE_42 }",
            "`NOT_SET_ANYWHERE_42` is not set",
        ),
        ("{ file: secrets/missing.key }", "cannot read the key file"),
        ("{ file: a.key, env: B }", "exactly one of"),
        ("\"bm90IGEga2V5\"", "encryption key is not valid"),
        ("{ fil: a.key }", "where to read it"),
    ] {
        let dir = tree_with_network(&joining(&registry, our_key, "req-3"));
        let errors = load_errors(&dir);
        assert!(errors.contains(expected), "{our_key}:\n{errors}");
        assert!(
            errors.contains("encryption_private_key"),
            "{our_key}:\n{errors}"
        );
        assert!(!errors.contains("leaked"), "{errors}");
    }
    let dir = tree_with_network(&joining("AAAA", "{ env: X }", "req-3"));
    assert!(load_errors(&dir).contains("encryption_public_key"));
}
