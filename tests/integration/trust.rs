//! Signature verification on the provider: every way a signature can be wrong is refused with
//! 401, a NACK and a `WWW-Authenticate` (or `Proxy-Authenticate`) challenge, and a registry
//! outage does not lock out senders whose keys are already known.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use beckn_adapter::beckn::registry::{EmbeddedRegistry, LookupQuery};
use beckn_adapter::beckn::signing::PrivateKey;
use beckn_adapter::compile::RegistrySource;
use serde_json::{Value, json};

use crate::common::{
    BAP_KEY_ID, BAP_TEST_KEY, Network, bap_signature as common_signature, bind, load_flows, repo,
};

/// TEST-ONLY key of `retired-app.example`, whose registry entry is UNSUBSCRIBED.
const RETIRED_KEY: &str =
    "txiHY//rV1MBAY79fi6w2Fi7wuRIH9yXRFqoBPwmtXjO/3rHPKusL+02EiCgK5USQMpTfjubuze4ab0BZsf/TQ==";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn sign(key: &str, key_id: &str, body: &[u8], created: i64, expires: i64) -> String {
    PrivateKey::from_base64(key)
        .unwrap()
        .sign(body, key_id, created, expires)
}

struct Case {
    name: &'static str,
    /// Builds the Authorization header for the body.
    auth: fn(&[u8]) -> String,
    /// The `context.bap_id` the request claims.
    bap_id: &'static str,
    expect: &'static str,
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let net = Network::start().await;
    let cases = vec![
        Case {
            name: "a signed header value changed (expires extended)",
            auth: |b| {
                let expires = now() + 60;
                sign(BAP_TEST_KEY, BAP_KEY_ID, b, now(), expires).replace(
                    &format!("expires=\"{expires}\""),
                    &format!("expires=\"{}\"", expires + 600),
                )
            },
            bap_id: "farmer-app.example",
            expect: "does not match",
        },
        Case {
            name: "signed with a key that is not the registered one",
            auth: |b| {
                let other = PrivateKey::generate().unwrap().to_base64();
                sign(&other, BAP_KEY_ID, b, now(), now() + 60)
            },
            bap_id: "farmer-app.example",
            expect: "does not match",
        },
        Case {
            name: "unknown subscriber",
            auth: |b| sign(BAP_TEST_KEY, "stranger.example|k1", b, now(), now() + 60),
            bap_id: "stranger.example",
            expect: "unknown key stranger.example|k1",
        },
        Case {
            name: "expired signature",
            auth: |b| sign(BAP_TEST_KEY, BAP_KEY_ID, b, now() - 120, now() - 60),
            bap_id: "farmer-app.example",
            expect: "expired",
        },
        Case {
            name: "created in the future",
            auth: |b| sign(BAP_TEST_KEY, BAP_KEY_ID, b, now() + 600, now() + 660),
            bap_id: "farmer-app.example",
            expect: "in the future",
        },
        Case {
            name: "unsubscribed key",
            auth: |b| {
                sign(
                    RETIRED_KEY,
                    "retired-app.example|retired-key-1",
                    b,
                    now(),
                    now() + 60,
                )
            },
            bap_id: "retired-app.example",
            expect: "status UNSUBSCRIBED",
        },
    ];
    for case in cases {
        let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
        body["context"]["bap_id"] = json!(case.bap_id);
        let bytes = serde_json::to_vec(&body).unwrap();
        let auth = (case.auth)(&bytes);
        let resp = net
            .http
            .post(format!("{}/search", net.bpp_url))
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "[{}]", case.name);
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(
            challenge.as_deref(),
            Some(
                "Signature realm=\"soil.greenfield-labs.example\",headers=\"(created) (expires) digest\""
            ),
            "[{}]",
            case.name
        );
        let nack: Value = resp.json().await.unwrap();
        assert_eq!(nack["message"]["ack"]["status"], "NACK", "[{}]", case.name);
        assert_eq!(nack["error"]["code"], "30016", "[{}]", case.name);
        let message = nack["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(case.expect), "[{}] {message}", case.name);
    }
    // a bad gateway countersignature is challenged with Proxy-Authenticate
    let body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
    let bytes = serde_json::to_vec(&body).unwrap();
    let auth = sign(BAP_TEST_KEY, BAP_KEY_ID, &bytes, now(), now() + 60);
    let forged = sign(
        BAP_TEST_KEY,
        "gateway.soil.example|gateway-key-1",
        &bytes,
        now(),
        now() + 60,
    );
    let resp = net
        .http
        .post(format!("{}/search", net.bpp_url))
        .header("content-type", "application/json")
        .header("authorization", auth)
        .header("x-gateway-authorization", forged)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("proxy-authenticate"));
    assert_eq!(net.bap.count(), 0, "nothing refused was answered");
}

#[tokio::test]
async fn known_keys_outlive_a_registry_outage() {
    // A registry server the test can stop, serving the sample registry file.
    let (listener, addr) = bind().await;
    let env_for_file = HashMap::new();
    let set = load_flows(&repo().join("flows"), &env_for_file);
    let Some(RegistrySource::Embedded(file)) = set
        .flow("soil-gateway")
        .and_then(|f| f.participant.registry.clone())
    else {
        panic!("the sample gateway has the registry file");
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let registry: Arc<EmbeddedRegistry> = file;
    let served = registry.clone();
    let app = Router::new().route(
        "/lookup",
        post(move |axum::Json(q): axum::Json<LookupQuery>| {
            let r = served.clone();
            async move { axum::Json(r.find(&q)) }
        }),
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    let registry_url = format!("http://{addr}");
    let net = Network::start_env(
        &repo().join("flows"),
        None,
        HashMap::from([("BECKN_REGISTRY".to_string(), registry_url)]),
    )
    .await;
    // the farmer app's bap_uri must be the one in the registry file
    let registered_bap = registry.find(&LookupQuery::key("farmer-app.example", "farmer-app-key-1"))
        [0]
    .url
    .clone();
    let send = |bap_id: &'static str, key: &'static str, key_id: &'static str| {
        let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
        body["context"]["bap_id"] = json!(bap_id);
        body["context"]["bap_uri"] = json!(registered_bap);
        let bytes = serde_json::to_vec(&body).unwrap();
        let auth = sign(key, key_id, &bytes, now(), now() + 60);
        let req = net
            .http
            .post(format!("{}/search", net.bpp_url))
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(bytes);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, ack) = send("farmer-app.example", BAP_TEST_KEY, BAP_KEY_ID).await;
    assert_eq!(status, 200, "{ack}");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let (status, ack) = send("farmer-app.example", BAP_TEST_KEY, BAP_KEY_ID).await;
    assert_eq!(status, 200, "a known key is still accepted: {ack}");
    let (status, nack) = send(
        "retired-app.example",
        RETIRED_KEY,
        "retired-app.example|retired-key-1",
    )
    .await;
    assert_eq!(status, 401, "{nack}");
    let message = nack["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot check the key of retired-app.example")
            && message.contains("registry unreachable"),
        "{message}"
    );
}

/// Sends a fresh search signed with `auth(bytes)`; returns the HTTP status and the answer.
async fn send_search(net: &Network, auth: impl Fn(&[u8]) -> String) -> (u16, Value) {
    let body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
    let bytes = serde_json::to_vec(&body).unwrap();
    let resp = net
        .http
        .post(format!("{}/search", net.bpp_url))
        .header("content-type", "application/json")
        .header("authorization", auth(&bytes))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn signature_scheme_is_matched_case_insensitively() {
    let net = Network::start().await;
    for scheme in ["signature", "SIGNATURE", "sIgNaTuRe"] {
        let (status, answer) = send_search(&net, |b| {
            let header = sign(BAP_TEST_KEY, BAP_KEY_ID, b, now(), now() + 60);
            header.replacen("Signature", scheme, 1)
        })
        .await;
        assert_eq!(status, 200, "[{scheme}] {answer}");
        assert_eq!(answer["message"]["ack"]["status"], "ACK", "[{scheme}]");
    }
    let (status, answer) = send_search(&net, |b| {
        sign(BAP_TEST_KEY, BAP_KEY_ID, b, now(), now() + 60).replacen("Signature", "Signatures", 1)
    })
    .await;
    assert_eq!(status, 401, "another scheme is still refused: {answer}");
}

#[tokio::test]
async fn signature_lifetime_is_bounded_and_created_may_not_be_in_the_future() {
    let net = Network::start().await;
    type Case = (&'static str, fn(&[u8]) -> String, &'static str);
    let cases: Vec<Case> = vec![
        (
            "valid for two hours",
            |b| sign(BAP_TEST_KEY, BAP_KEY_ID, b, now(), now() + 7200),
            "is longer than the 3600s accepted",
        ),
        (
            "created at i64::MIN, expires at i64::MAX",
            |b| sign(BAP_TEST_KEY, BAP_KEY_ID, b, i64::MIN, i64::MAX),
            "is longer than the 3600s accepted",
        ),
        (
            "created a minute ahead",
            |b| sign(BAP_TEST_KEY, BAP_KEY_ID, b, now() + 60, now() + 120),
            "in the future",
        ),
        (
            "expires before created",
            |b| sign(BAP_TEST_KEY, BAP_KEY_ID, b, now() + 60, now() - 60),
            "`expires` is before `created`",
        ),
    ];
    for (name, auth, says) in cases {
        let (status, nack) = send_search(&net, auth).await;
        assert_eq!(status, 401, "[{name}] {nack}");
        assert_eq!(nack["error"]["code"], "30016", "[{name}]");
        let message = nack["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "[{name}] {message}");
    }
    // an hour, as Beckn signing libraries make them, is accepted
    let (status, answer) = send_search(&net, |b| {
        sign(BAP_TEST_KEY, BAP_KEY_ID, b, now(), now() + 3600)
    })
    .await;
    assert_eq!(status, 200, "{answer}");
}

/// A registry stand-in on loopback serving the sample registry file and counting lookups.
async fn counting_registry() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let set = load_flows(&repo().join("flows"), &HashMap::new());
    let Some(RegistrySource::Embedded(file)) = set
        .flow("soil-gateway")
        .and_then(|f| f.participant.registry.clone())
    else {
        panic!("the sample gateway has the registry file");
    };
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let app = Router::new().route(
        "/lookup",
        post(move |axum::Json(q): axum::Json<LookupQuery>| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let found = file.find(&q);
            async move { axum::Json(found) }
        }),
    );
    let (listener, addr) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn unknown_keys_cost_bounded_registry_lookups() {
    let (registry_url, lookups) = counting_registry().await;
    let net = Network::start_env(
        &repo().join("flows"),
        None,
        HashMap::from([("BECKN_REGISTRY".to_string(), registry_url)]),
    )
    .await;
    let count = || lookups.load(std::sync::atomic::Ordering::SeqCst);
    // the farmer app's key and callback URL are looked up once
    let registered_bap = {
        let set = load_flows(&repo().join("flows"), &HashMap::new());
        let Some(RegistrySource::Embedded(file)) = set
            .flow("soil-gateway")
            .and_then(|f| f.participant.registry.clone())
        else {
            panic!("the sample gateway has the registry file");
        };
        file.find(&LookupQuery::key("farmer-app.example", "farmer-app-key-1"))[0]
            .url
            .clone()
    };
    let farmer = |net: &Network| {
        let mut body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
        body["context"]["bap_uri"] = json!(registered_bap);
        let bytes = serde_json::to_vec(&body).unwrap();
        net.http
            .post(format!("{}/search", net.bpp_url))
            .header("content-type", "application/json")
            .header("authorization", common_signature(&bytes))
            .body(bytes)
    };
    let resp = farmer(&net).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let warm = count();
    assert!(warm >= 1);

    // malformed or out-of-window headers with fresh key ids: refused before any lookup
    for i in 0..200 {
        let key_id = format!("stranger-{i}.example|k{i}");
        let (status, _) = send_search(&net, |b| match i % 4 {
            0 => sign(BAP_TEST_KEY, &key_id, b, now(), now() + 7200),
            1 => sign(BAP_TEST_KEY, &key_id, b, now() - 120, now() - 60),
            2 => sign(BAP_TEST_KEY, &key_id, b, now(), now() + 60)
                .replace("signature=\"", "signature=\"!"),
            _ => sign(BAP_TEST_KEY, &key_id, b, now(), now() + 60)
                .replace(",algorithm=", ",algorithm=\"ed25519\",algorithm="),
        })
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(count(), warm, "no lookup for a header refused on its own");

    // one unknown key, again and again: one lookup, the answer is remembered, and asked again
    // once (a key published since would be found), not again within 10s
    for _ in 0..50 {
        let (status, _) = send_search(&net, |b| {
            sign(BAP_TEST_KEY, "stranger.example|k1", b, now(), now() + 60)
        })
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        count(),
        warm + 2,
        "an unknown key is looked up once, and once again"
    );

    // well-formed headers with a fresh key id each: lookups bounded per second
    let started = std::time::Instant::now();
    let mut limited = 0;
    for i in 0..1000 {
        let key_id = format!("stranger-{i}.example|fresh-{i}");
        let (status, nack) =
            send_search(&net, |b| sign(BAP_TEST_KEY, &key_id, b, now(), now() + 60)).await;
        assert_eq!(status, 401);
        assert_eq!(nack["error"]["code"], "30016");
        if nack["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limited to 20 a second"))
        {
            limited += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent = count() - warm - 2;
    let bound = 20.0 + 20.0 * elapsed + 1.0;
    eprintln!("1000 fresh key ids in {elapsed:.2}s: {sent} lookups, {limited} refused unasked");
    assert!(
        (sent as f64) <= bound,
        "{sent} lookups in {elapsed:.2}s (bound {bound:.0})"
    );
    assert_eq!(sent + limited, 1000);

    // the farmer app, known already, is not held up
    let resp = farmer(&net).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}
