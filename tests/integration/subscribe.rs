//! Subscribing through the real app wiring with the stand-in registry, in both dialects:
//! `POST /admin/flows/<name>/subscribe` -> the registry's challenge answered by the running
//! flow -> (ONDC) its site verification page checked -> SUBSCRIBED -> lookups return our keys
//! -> a search signed by another participant, subscribed the same way, verified against the
//! registry and ACKed. And the ways it goes wrong: a challenge that does not decrypt, a
//! registry answering HTML or never answering, a lookup answer of unknown shape; each a clear
//! error, and no file written.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::{get, post};
use beckn_adapter::beckn::context::TimeLimits;
use beckn_adapter::beckn::onboarding::{
    EncryptionKey, EncryptionPublicKey, site_verification_page,
};
use beckn_adapter::beckn::participant::{Onboarding, Participant};
use beckn_adapter::beckn::registry::{
    LookupDialect, LookupQuery, LookupSigner, RegistryError, RegistrySource, SubscriberType,
};
use beckn_adapter::beckn::signing::PrivateKey;
use beckn_adapter::beckn::subscribe::{self, Registration, RegistryDialect};
use beckn_adapter::beckn::trust::RegistryPool;
use registry_standin::{Config, RegistryStandin};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{self, BAP_ID, BAP_TEST_KEY, GFSL_ID, Network};
use crate::onboarding::tree_with_network;

/// The greenfield-lab flow's test-only signing key (flows/greenfield-lab.yaml).
const GFSL_KEY: &str =
    "LCSMSdByg8/1LSAVrJ4aRhqCB928+yEI+5cDhdtjbSZ9K8ZJmBf5KZ2rCUKq7ORjFyEzLpsbs5GoVpUh5oFUxg==";

const ENTITY: &str = "    entity:\n      gst: { legal_entity_name: GreenField Soil Labs, business_address: New Delhi, gst_no: 07AAAAA0000A1Z5 }\n      pan: { name_as_per_pan: GreenField Soil Labs, pan_no: AAAAA0000A, date_of_incorporation: 01/01/2020 }\n      name_of_authorised_signatory: A. Signatory\n      email_id: ops@greenfield-labs.example\n      mobile_no: \"9999999999\"\n";

/// The network lines of greenfield-lab subscribing with the registry at `${TEST_REGISTRY}`.
fn subscribing(dialect: RegistryDialect, registry_public: &str, timeout: &str) -> String {
    let ondc = match dialect {
        RegistryDialect::Ondc => format!("    domain: \"ONDC:AGR10\"\n{ENTITY}"),
        RegistryDialect::Core => String::new(),
    };
    format!(
        "  registry:\n    source: \"${{TEST_REGISTRY}}\"\n    dialect: {}\n    encryption_public_key: \"{registry_public}\"\n    timeout: 2s\n  encryption_private_key: {{ env: GFSL_ENCRYPTION_KEY }}\n  subscription:\n    request_id: gfsl-subscription-1\n    city_codes: [\"std:011\"]\n    timeout: {timeout}\n{ondc}",
        dialect.as_str()
    )
}

/// The sample network with greenfield-lab subscribing to the registry at `registry_url`.
async fn network(
    dialect: RegistryDialect,
    registry_url: &str,
    registry_public: &str,
    timeout: &str,
) -> (Network, tempfile::TempDir) {
    let dir = tree_with_network(&subscribing(dialect, registry_public, timeout));
    let ours = EncryptionKey::generate().unwrap();
    let env = HashMap::from([
        ("GFSL_ENCRYPTION_KEY".to_string(), ours.to_pkcs8_base64()),
        ("TEST_REGISTRY".to_string(), registry_url.to_string()),
    ]);
    let net = Network::start_env(&dir.path().join("flows"), None, env).await;
    (net, dir)
}

async fn start_registry() -> (RegistryStandin, String) {
    let registry = RegistryStandin::new(Config::generate());
    let (listener, addr) = common::bind().await;
    tokio::spawn(registry.clone().serve(listener, std::future::pending()));
    (registry, format!("http://{addr}"))
}

/// POSTs the admin subscribe of `flow`; the status and the JSON answer.
async fn admin_subscribe(net: &Network, flow: &str) -> (u16, Value) {
    let response = net
        .http
        .post(format!(
            "http://{}/admin/flows/{flow}/subscribe",
            net.admin_addr
        ))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Another participant, the farmer app, played here: it answers its own challenge and serves
/// its site page, and tells the test of every callback it receives.
struct Farmer {
    participant: Participant,
    url: String,
    callbacks: mpsc::UnboundedReceiver<Value>,
}

async fn farmer(dialect: RegistryDialect, registry_url: &str, registry_public: &str) -> Farmer {
    let encryption = EncryptionKey::generate().unwrap();
    let registry_key = EncryptionPublicKey::from_base64(registry_public).unwrap();
    let signing = PrivateKey::from_base64(BAP_TEST_KEY).unwrap();
    let (tx, callbacks) = mpsc::unbounded_channel();
    let answer_key = encryption.clone();
    let page = site_verification_page(&signing, "farmer-subscription-1");
    let app = axum::Router::new()
        .route(
            "/on_subscribe",
            post(move |Json(body): Json<Value>| {
                let key = answer_key.clone();
                async move {
                    let challenge = body["challenge"].as_str().unwrap_or_default();
                    let answer = key.decrypt_challenge(&registry_key, challenge).unwrap();
                    Json(json!({ "answer": answer }))
                }
            }),
        )
        .route(
            "/ondc-site-verification.html",
            get(move || {
                let page = page.clone();
                async move { page }
            }),
        )
        .route(
            "/{action}",
            post(move |Json(body): Json<Value>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(body);
                    Json(json!({"message": {"ack": {"status": "ACK"}}}))
                }
            }),
        );
    let (listener, addr) = common::bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}");
    let entity = json!({"gst": {"legal_entity_name": "Farmer App", "business_address": "Pune",
        "city_code": ["std:020"], "gst_no": "27AAAAA0000A1Z5"},
        "pan": {"name_as_per_pan": "Farmer App", "pan_no": "AAAAA0000B", "date_of_incorporation": "01/01/2021"},
        "name_of_authorised_signatory": "F. Signatory", "email_id": "ops@farmer.example", "mobile_no": "8888888888"});
    let participant = Participant {
        subscriber_id: BAP_ID.into(),
        subscriber_uri: url.clone(),
        key_id: Some("farmer-app-key-1".into()),
        signing_key: Some(signing),
        next_key: None,
        verify_signatures: true,
        signature_skew: 5,
        signature_validity: 60,
        max_signature_lifetime: 3600,
        time_limits: TimeLimits {
            max_ttl: Duration::from_secs(60),
            skew: Duration::from_secs(5),
        },
        registry: None,
        onboarding: Onboarding {
            encryption_key: Some(encryption),
            registry_encryption_key: Some(registry_key),
            request_id: Some("farmer-subscription-1".into()),
        },
        registration: Some(Registration {
            registry_url: registry_url.into(),
            dialect,
            request_id: "farmer-subscription-1".into(),
            kind: SubscriberType::Bap,
            domain: "agri.soil".into(),
            city_codes: vec!["std:011".into()],
            country: "IND".into(),
            key_validity: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            ops_no: 1,
            msn: false,
            callback_url: "/".into(),
            entity: Some(entity),
        }),
    };
    Farmer {
        participant,
        url,
        callbacks,
    }
}

/// The whole round in `dialect`: both subscribe, lookups return the keys, and the farmer's
/// signed search is verified by the lab against the registry and answered at its registered URL.
async fn subscribe_round_trip(dialect: RegistryDialect) {
    let (registry, registry_url) = start_registry().await;
    let public = registry.encryption_public_key();
    let (net, _dir) = network(dialect, &registry_url, &public, "10s").await;
    registry.route_subscriber(GFSL_ID, &net.bpp_url);

    let (status, answer) = admin_subscribe(&net, "greenfield-lab").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"]["accepted"], true, "{answer}");
    assert_eq!(answer["dialect"], dialect.as_str());
    let events = registry.events().join("\n");
    assert!(
        events.contains(&format!("challenge answered by {GFSL_ID}")),
        "{events}"
    );
    if dialect == RegistryDialect::Ondc {
        assert!(
            events.contains(&format!("site of {GFSL_ID} verified")),
            "{events}"
        );
    }
    let gfsl_public = PrivateKey::from_base64(GFSL_KEY)
        .unwrap()
        .public_key()
        .to_base64();
    let lab = registry
        .records()
        .into_iter()
        .find(|r| r.subscriber_id == GFSL_ID)
        .expect("the lab is recorded");
    assert_eq!(lab.status, "SUBSCRIBED");
    assert_eq!(lab.signing_public_key, gfsl_public);
    assert_eq!(lab.url, net.bpp_url);

    // Subscribing again with the same keys is answered the same way and records nothing twice.
    let (status, again) = admin_subscribe(&net, "greenfield-lab").await;
    assert_eq!(status, 200, "{again}");
    let labs = registry
        .records()
        .into_iter()
        .filter(|r| r.subscriber_id == GFSL_ID)
        .count();
    assert_eq!(labs, 1, "a repeated subscription is one record");

    // The lab's own registry source (signed v2.0 lookups for ONDC) finds its keys.
    let set = net.flows.load_full();
    let flow = set.flow("greenfield-lab").unwrap();
    let source = flow.participant.registry.as_ref().unwrap();
    let found = net
        .services
        .registries
        .lookup(source, LookupQuery::key(GFSL_ID, "gfsl-key-1"))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].signing_public_key, gfsl_public);
    assert!(found[0].is_valid_at(jiff::Timestamp::now()));

    // The farmer app subscribes the same way.
    let mut farmer = farmer(dialect, &registry_url, &public).await;
    registry.route_subscriber(BAP_ID, &farmer.url);
    let (_, outcome) = subscribe::subscribe(&farmer.participant, jiff::Timestamp::now())
        .await
        .unwrap();
    assert!(outcome.accepted, "{outcome:?}");

    // Its signed search is verified against the registry and answered at its registered URL.
    let transaction_id = uuid::Uuid::new_v4().to_string();
    let mut body = net.request("search", &transaction_id, json!({"intent": {}}));
    body["context"]["bap_uri"] = json!(farmer.url);
    let (status, ack) = net
        .post_raw(
            "search",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
    let callback = tokio::time::timeout(Duration::from_secs(10), farmer.callbacks.recv())
        .await
        .expect("on_search within 10s")
        .expect("a callback");
    assert_eq!(callback["context"]["action"], "on_search", "{callback}");
    assert_eq!(
        callback["context"]["transaction_id"],
        transaction_id.as_str()
    );
    let events = registry.events().join("\n");
    let lookup = match dialect {
        RegistryDialect::Core => "core lookup",
        RegistryDialect::Ondc => "v2.0 lookup",
    };
    assert!(events.contains(lookup), "{events}");
    assert!(!events.contains("lookup refused"), "{events}");
}

#[tokio::test]
async fn subscribe_core_dialect_challenge_lookup_and_a_verified_search() {
    subscribe_round_trip(RegistryDialect::Core).await;
}

#[tokio::test]
async fn subscribe_ondc_dialect_challenge_site_signed_lookup_and_a_verified_search() {
    subscribe_round_trip(RegistryDialect::Ondc).await;
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn subscribe_a_challenge_that_does_not_decrypt_is_refused_and_nothing_is_written() {
    let (registry, registry_url) = start_registry().await;
    // The flow believes in another registry key: the challenge does not decrypt.
    let wrong = EncryptionKey::generate()
        .unwrap()
        .public_key()
        .to_der_base64();
    let (net, dir) = network(RegistryDialect::Ondc, &registry_url, &wrong, "10s").await;
    registry.route_subscriber(GFSL_ID, &net.bpp_url);
    let before = snapshot(dir.path());
    let (status, answer) = admin_subscribe(&net, "greenfield-lab").await;
    assert_eq!(status, 502, "{answer}");
    let outcome = &answer["outcome"];
    assert_eq!(outcome["refusal"], "challenge_failed", "{answer}");
    assert!(
        outcome["said"].as_str().unwrap().contains("1030"),
        "{answer}"
    );
    assert!(
        outcome["hint"]
            .as_str()
            .unwrap()
            .contains("encryption_public_key")
    );
    assert!(registry.records().is_empty());
    assert_eq!(snapshot(dir.path()), before, "no file changed");
}

/// A registry that answers every call with `page` as HTML, or never answers (`None`).
async fn bad_registry(page: Option<&'static str>) -> String {
    let app = axum::Router::new().fallback(move || async move {
        match page {
            Some(html) => (
                [(axum::http::header::CONTENT_TYPE, "text/html")],
                html.to_string(),
            ),
            None => std::future::pending().await,
        }
    });
    let (listener, addr) = common::bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn subscribe_a_registry_answering_html_or_never_is_a_clear_refusal() {
    let public = EncryptionKey::generate()
        .unwrap()
        .public_key()
        .to_der_base64();
    let html = bad_registry(Some("<html><body>Sign in to the portal</body></html>")).await;
    let (net, dir) = network(RegistryDialect::Core, &html, &public, "10s").await;
    let before = snapshot(dir.path());
    let (status, answer) = admin_subscribe(&net, "greenfield-lab").await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["outcome"]["refusal"], "html", "{answer}");
    assert!(
        answer["outcome"]["said"]
            .as_str()
            .unwrap()
            .contains("Sign in")
    );
    assert_eq!(snapshot(dir.path()), before);

    let silent = bad_registry(None).await;
    let (net, dir) = network(RegistryDialect::Ondc, &silent, &public, "1s").await;
    let before = snapshot(dir.path());
    let (status, answer) = admin_subscribe(&net, "greenfield-lab").await;
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["outcome"]["refusal"], "timeout", "{answer}");
    assert!(
        answer["outcome"]["hint"]
            .as_str()
            .unwrap()
            .contains("timeout")
    );
    assert_eq!(snapshot(dir.path()), before);

    let (status, answer) = admin_subscribe(&net, "no-such-flow").await;
    assert_eq!(status, 404, "{answer}");
}

/// A registry whose v2.0 lookup answers `body`.
async fn lookup_answering(body: Value) -> String {
    let app = axum::Router::new().route(
        "/v2.0/lookup",
        post(move || {
            let body = body.clone();
            async move { Json(body) }
        }),
    );
    let (listener, addr) = common::bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn subscribe_lookup_answers_of_unknown_shape_html_or_none_are_errors_never_cached_as_valid() {
    let pool = RegistryPool::default();
    let signer = Arc::new(LookupSigner {
        subscriber_id: GFSL_ID.into(),
        key_id: "gfsl-key-1".into(),
        key: PrivateKey::from_base64(GFSL_KEY).unwrap(),
        validity: 60,
    });
    let source = |url: String| RegistrySource::Remote {
        url,
        dialect: LookupDialect::Ondc(signer.clone()),
        cache_ttl: Duration::from_secs(600),
        negative_cache_ttl: Duration::from_secs(600),
        timeout: Duration::from_millis(500),
        max_lookups_per_second: 100,
        refresh_unknown_key_every: Duration::from_secs(10),
    };
    let query = || LookupQuery::key(BAP_ID, "farmer-app-key-1");
    let odd = source(lookup_answering(json!({"result": "ok", "subscribers": []})).await);
    for _ in 0..2 {
        let err = pool.lookup(&odd, query()).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::BadAnswer(m) if m.contains("JSON array")),
            "{err}"
        );
    }
    let html = source(bad_registry(Some("<!doctype html><html>Maintenance</html>")).await);
    let err = pool.lookup(&html, query()).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::BadAnswer(m) if m.contains("HTML")),
        "{err}"
    );
    let silent = source(bad_registry(None).await);
    let err = pool.lookup(&silent, query()).await.unwrap_err();
    assert_eq!(err, RegistryError::TimedOut(Duration::from_millis(500)));
}

#[tokio::test]
async fn subscribe_command_prints_the_refusal_with_its_hint_and_fails() {
    let public = EncryptionKey::generate()
        .unwrap()
        .public_key()
        .to_der_base64();
    let html = bad_registry(Some("<html><body>Sign in to the portal</body></html>")).await;
    let dir = tree_with_network(&subscribing(RegistryDialect::Core, &public, "5s"));
    let flow_file = dir.path().join("flows/greenfield-lab.yaml");
    let before = snapshot(dir.path());
    let ours = EncryptionKey::generate().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .arg("subscribe")
        .arg(&flow_file)
        .env("TEST_REGISTRY", &html)
        .env("GFSL_ENCRYPTION_KEY", ours.to_pkcs8_base64())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "greenfield-lab ({GFSL_ID}) -> {html}/subscribe [core]"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused: HTTP 200, an HTML page"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hint: the registry answered an HTML page"),
        "{stdout}"
    );
    assert!(stderr.contains("1 subscription(s) refused"), "{stderr}");
    assert_eq!(snapshot(dir.path()), before, "no file changed");

    // A flow without a subscription has nothing to send, and says so.
    let plain = common::temp_tree(&["greenfield-lab.yaml"]);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .arg("subscribe")
        .arg(plain.path().join("flows"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no flow to subscribe"), "{stderr}");
}

#[test]
fn subscribe_ondc_settings_that_cannot_work_are_reported_by_check() {
    let public = EncryptionKey::generate()
        .unwrap()
        .public_key()
        .to_der_base64();
    let lines = subscribing(RegistryDialect::Ondc, &public, "5s")
        .replace(ENTITY, "    ops_no: 3\n")
        .replace(
            "  encryption_private_key: { env: GFSL_ENCRYPTION_KEY }\n",
            "",
        );
    let dir = tree_with_network(&lines);
    let env = HashMap::from([(
        "TEST_REGISTRY".to_string(),
        "https://registry.example".to_string(),
    )]);
    let layout = beckn_adapter::compile::Layout::from_flows_dir(dir.path().join("flows"));
    let Err(diagnostics) = beckn_adapter::compile::load(&layout, &env) else {
        panic!("an ONDC subscription without entity or encryption key compiled");
    };
    let text = beckn_adapter::config::diagnostic::render_all(&diagnostics);
    for expected in [
        "ops_no 3 is not one ONDC's registry takes",
        "ONDC's registry needs the entity",
        "subscribing needs `encryption_private_key`",
        "greenfield-lab.yaml:",
    ] {
        assert!(text.contains(expected), "{expected} missing in:\n{text}");
    }
}
