//! The stand-in against a participant played here: its challenge answered (or not), its site
//! page signed (or not), and lookups in both dialects.

use aes::Aes256;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, KeyInit};
use axum::Json;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use x25519_dalek::{PublicKey, StaticSecret};

use super::*;

/// A participant: its keys, and whether it answers the challenge honestly and signs its page.
struct Participant {
    signing: SigningKey,
    encryption: StaticSecret,
    origin: String,
}

async fn participant(registry_public: &str, honest: bool, request_id: &str) -> Participant {
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let encryption = StaticSecret::from([9u8; 32]);
    let registry = crypto::x25519_public(registry_public).unwrap();
    let secret = encryption.clone();
    let page_key = signing.clone();
    let signed = if honest {
        request_id.to_string()
    } else {
        "something else".into()
    };
    let app = axum::Router::new()
        .route(
            "/beckn/on_subscribe",
            post(move |Json(body): Json<Value>| {
                let secret = secret.clone();
                async move {
                    let shared = secret.diffie_hellman(&registry);
                    let cipher = Aes256::new(GenericArray::from_slice(shared.as_bytes()));
                    let mut data = B64.decode(body["challenge"].as_str().unwrap()).unwrap();
                    for block in data.chunks_exact_mut(16) {
                        cipher.decrypt_block(GenericArray::from_mut_slice(block));
                    }
                    let pad = *data.last().unwrap() as usize;
                    data.truncate(data.len() - pad);
                    let mut answer = String::from_utf8(data).unwrap();
                    if !honest {
                        answer.push('x');
                    }
                    Json(json!({ "answer": answer }))
                }
            }),
        )
        .route(
            "/ondc-site-verification.html",
            get(move || {
                let sig = B64.encode(page_key.sign(signed.as_bytes()).to_bytes());
                async move {
                    format!("<html><head><meta name=\"ondc-site-verification\" content=\"{sig}\" /></head></html>")
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Participant {
        signing,
        encryption,
        origin,
    }
}

async fn start() -> (RegistryStandin, String) {
    let registry = RegistryStandin::new(Config::generate());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(registry.clone().serve(listener, std::future::pending()));
    (registry, url)
}

fn keys(p: &Participant) -> (String, String) {
    (
        B64.encode(p.signing.verifying_key().to_bytes()),
        x25519_der(&PublicKey::from(&p.encryption)),
    )
}

fn ondc_body(p: &Participant, request_id: &str) -> Value {
    let (signing, encryption) = keys(p);
    json!({
        "context": {"operation": {"ops_no": 2}},
        "message": {
            "request_id": request_id, "timestamp": "2026-12-01T00:00:00.000Z",
            "entity": {
                "gst": {"gst_no": "x"}, "pan": {"pan_no": "y"},
                "name_of_authorised_signatory": "A", "email_id": "a@b", "mobile_no": "1",
                "country": "IND", "subscriber_id": "lab.example", "unique_key_id": "uk-1",
                "callback_url": "/beckn",
                "key_pair": {"signing_public_key": signing, "encryption_public_key": encryption,
                    "valid_from": "2026-01-01T00:00:00.000Z", "valid_until": "2030-01-01T00:00:00.000Z"},
            },
            "network_participant": [{"subscriber_url": "/beckn", "domain": "ONDC:AGR10",
                "type": "sellerApp", "msn": false, "city_code": ["std:011"]}],
        },
    })
}

fn sign(key: &SigningKey, key_id: &str, body: &[u8]) -> String {
    let now = jiff::Timestamp::now().as_second();
    let digest = B64.encode(Blake2b512::digest(body));
    let s = format!(
        "(created): {now}\n(expires): {}\ndigest: BLAKE-512={digest}",
        now + 60
    );
    let sig = B64.encode(key.sign(s.as_bytes()).to_bytes());
    format!(
        "Signature keyId=\"{key_id}|ed25519\",algorithm=\"ed25519\",created=\"{now}\",expires=\"{}\",headers=\"(created) (expires) digest\",signature=\"{sig}\"",
        now + 60
    )
}

#[tokio::test]
async fn ondc_subscription_challenges_verifies_the_site_and_answers_signed_lookups() {
    let (registry, url) = start().await;
    let p = participant(&registry.encryption_public_key(), true, "req-1").await;
    registry.route_subscriber("lab.example", &p.origin);
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{url}/subscribe"))
        .json(&ondc_body(&p, "req-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["message"]["ack"]["status"], "ACK", "{answer}");
    let records = registry.records();
    assert_eq!(records[0].status, "SUBSCRIBED");
    assert_eq!(records[0].url, format!("{}/beckn", p.origin));
    assert_eq!(records[0].kind, "BPP");

    let body = br#"{"subscriber_id":"lab.example","ukId":"uk-1"}"#.to_vec();
    let unsigned = http
        .post(format!("{url}/v2.0/lookup"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let other = SigningKey::from_bytes(&[3u8; 32]);
    let forged = http
        .post(format!("{url}/v2.0/lookup"))
        .header("authorization", sign(&other, "lab.example|uk-1", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        401,
        "a signature by another key is refused"
    );
    let found: Value = http
        .post(format!("{url}/v2.0/lookup"))
        .header("authorization", sign(&p.signing, "lab.example|uk-1", &body))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found[0]["ukId"], "uk-1");
    assert_eq!(found[0]["status"], "SUBSCRIBED");
    assert_eq!(found[0]["signing_public_key"], keys(&p).0);
}

#[tokio::test]
async fn a_wrong_challenge_answer_or_site_signature_subscribes_nobody() {
    let (registry, url) = start().await;
    let liar = participant(&registry.encryption_public_key(), false, "req-1").await;
    registry.route_subscriber("lab.example", &liar.origin);
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{url}/subscribe"))
        .json(&ondc_body(&liar, "req-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["error"]["code"], codes::CHALLENGE_FAILED, "{answer}");
    assert!(registry.records().is_empty());

    // Honest about the challenge, but its page signs another request_id.
    let p = participant(&registry.encryption_public_key(), true, "req-other").await;
    registry.route_subscriber("lab.example", &p.origin);
    let answer: Value = http
        .post(format!("{url}/subscribe"))
        .json(&ondc_body(&p, "req-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["error"]["code"],
        codes::DOMAIN_NOT_VERIFIED,
        "{answer}"
    );
    assert!(registry.records().is_empty());
}

#[tokio::test]
async fn core_subscription_then_lookup_and_other_keys_under_the_same_uk_id_are_refused() {
    let (registry, url) = start().await;
    let p = participant(&registry.encryption_public_key(), true, "unused").await;
    let (signing, encryption) = keys(&p);
    let body = |signing: &str| {
        json!({"subscriber_id": "lab.example", "url": format!("{}/beckn", p.origin),
            "type": "BPP", "domain": "agri.soil", "key_id": "uk-1",
            "location": {"city": {"code": "std:011"}, "country": {"code": "IND"}},
            "signing_public_key": signing, "encr_public_key": encryption,
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z",
            "nonce": "n-1"})
    };
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{url}/subscribe"))
        .json(&body(&signing))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "UNDER_SUBSCRIPTION", "{answer}");
    let found: Value = http
        .post(format!("{url}/lookup"))
        .json(&json!({"subscriber_id": "lab.example", "unique_key_id": "uk-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found[0]["status"], "SUBSCRIBED");
    assert_eq!(found[0]["url"], format!("{}/beckn", p.origin));

    let other = B64.encode(
        SigningKey::from_bytes(&[5u8; 32])
            .verifying_key()
            .to_bytes(),
    );
    let answer: Value = http
        .post(format!("{url}/subscribe"))
        .json(&body(&other))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["error"]["code"],
        codes::ALREADY_SUBSCRIBED,
        "{answer}"
    );
    assert_eq!(
        registry.records()[0].signing_public_key,
        signing,
        "the record is kept"
    );
}

#[test]
fn the_site_verification_meta_tag_is_read() {
    let html =
        "<html><head><meta name=\"ondc-site-verification\" content=\"abc=\" /></head></html>";
    assert_eq!(
        subscribe::meta_content_for_tests(html, "ondc-site-verification").as_deref(),
        Some("abc=")
    );
    assert_eq!(
        subscribe::meta_content_for_tests("<html/>", "ondc-site-verification"),
        None
    );
}
