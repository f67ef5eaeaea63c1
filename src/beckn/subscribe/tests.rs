use std::time::Duration;

use serde_json::json;

use super::*;
use crate::beckn::onboarding::EncryptionKey;
use crate::beckn::participant::{Onboarding, test_lab};

fn participant(dialect: RegistryDialect) -> Participant {
    let entity = json!({
        "gst": {"legal_entity_name": "Lab", "business_address": "Delhi", "city_code": ["std:011"], "gst_no": "07AAAAA0000A1Z5"},
        "pan": {"name_as_per_pan": "Lab", "pan_no": "AAAAA0000A", "date_of_incorporation": "01/01/2020"},
        "name_of_authorised_signatory": "A. Signatory",
        "email_id": "ops@lab.example",
        "mobile_no": "9999999999",
    });
    Participant {
        subscriber_uri: "https://lab.example/beckn".into(),
        key_id: Some("uk-1".into()),
        onboarding: Onboarding {
            encryption_key: Some(EncryptionKey::generate().unwrap()),
            ..Default::default()
        },
        registration: Some(Registration {
            registry_url: "https://registry.example".into(),
            dialect,
            request_id: "req-1".into(),
            kind: SubscriberType::Bpp,
            domain: "ONDC:AGR10".into(),
            city_codes: vec!["std:011".into()],
            country: "IND".into(),
            key_validity: Duration::from_secs(86_400),
            timeout: Duration::from_secs(5),
            ops_no: 2,
            msn: false,
            callback_url: "/beckn".into(),
            entity: Some(entity),
        }),
        ..test_lab()
    }
}

fn http(status: u16, body: &str) -> Answer {
    Answer::Http {
        status,
        content_type: Some("application/json".into()),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn a_core_request_carries_the_subscriber_object() {
    let me = participant(RegistryDialect::Core);
    let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let req = build_request(&me, now).unwrap();
    assert_eq!(req.url, "https://registry.example/subscribe");
    let b = &req.body;
    assert_eq!(b["subscriber_id"], "lab.example");
    assert_eq!(b["url"], "https://lab.example/beckn");
    assert_eq!(b["type"], "BPP");
    assert_eq!(b["key_id"], "uk-1");
    assert_eq!(b["location"]["city"]["code"], "std:011");
    assert_eq!(b["valid_until"], "2026-12-02T00:00:00Z");
    assert!(
        b["encr_public_key"]
            .as_str()
            .unwrap()
            .starts_with("MCowBQYDK2VuAyEA")
    );
    assert!(b["nonce"].is_string());
}

#[test]
fn an_ondc_request_carries_ops_no_entity_keys_and_participant() {
    let me = participant(RegistryDialect::Ondc);
    let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
    let b = build_request(&me, now).unwrap().body;
    assert_eq!(b["context"]["operation"]["ops_no"], 2);
    let m = &b["message"];
    assert_eq!(m["request_id"], "req-1");
    assert_eq!(m["timestamp"], "2026-12-01T00:00:00.000Z");
    assert_eq!(m["entity"]["subscriber_id"], "lab.example");
    assert_eq!(m["entity"]["unique_key_id"], "uk-1");
    assert_eq!(m["entity"]["callback_url"], "/beckn");
    assert_eq!(m["entity"]["country"], "IND");
    assert_eq!(m["entity"]["gst"]["gst_no"], "07AAAAA0000A1Z5");
    let kp = &m["entity"]["key_pair"];
    assert_eq!(
        kp["signing_public_key"],
        me.signing_key.as_ref().unwrap().public_key().to_base64()
    );
    assert_eq!(kp["valid_until"], "2026-12-02T00:00:00.000Z");
    let np = &m["network_participant"][0];
    assert_eq!(
        (np["subscriber_url"].as_str(), np["type"].as_str()),
        (Some("/beckn"), Some("sellerApp"))
    );
    assert_eq!(np["msn"], false);
    assert_eq!(np["city_code"], json!(["std:011"]));
}

#[test]
fn subscribing_without_keys_or_registration_says_what_is_missing() {
    let mut me = participant(RegistryDialect::Core);
    me.onboarding.encryption_key = None;
    let now = jiff::Timestamp::now();
    let err = build_request(&me, now).unwrap_err();
    assert!(err.to_string().contains("encryption_private_key"), "{err}");
    me.registration = None;
    assert_eq!(
        build_request(&me, now).unwrap_err(),
        SubscribeError::NotConfigured
    );
    let mut ondc = participant(RegistryDialect::Ondc);
    if let Some(r) = ondc.registration.as_mut() {
        r.entity = None;
    }
    assert!(
        build_request(&ondc, now)
            .unwrap_err()
            .to_string()
            .contains("subscription.entity")
    );
}

#[test]
fn the_subscriber_path_is_relative() {
    assert_eq!(
        ondc::subscriber_path("https://lab.example/beckn/"),
        "/beckn"
    );
    assert_eq!(ondc::subscriber_path("https://lab.example"), "/");
    assert_eq!(ondc::subscriber_path("http://127.0.0.1:7101/a/b"), "/a/b");
}

#[test]
fn answers_are_read_with_a_hint_for_each_known_refusal() {
    let ondc = |a: &Answer| interpret(RegistryDialect::Ondc, a);
    let ok = ondc(&http(
        200,
        r#"{"message":{"ack":{"status":"ACK"}},"error":null}"#,
    ));
    assert!(ok.accepted && ok.hint.is_none(), "{ok:?}");
    let cases = [
        (
            r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"POLICY-ERROR","code":"132","message":"Domain verification is failed"}}"#,
            Refusal::DomainNotVerified,
        ),
        (
            r#"{"message":{"ack":{"status":"NACK"}},"error":{"code":"129","message":"Encryption of challenge failed: on_subscribe answered wrong"}}"#,
            Refusal::ChallengeFailed,
        ),
        (
            r#"{"message":{"ack":{"status":"NACK"}},"error":{"code":"133","message":"Signing public key is invalid"}}"#,
            Refusal::WrongKey,
        ),
        (
            r#"{"message":{"ack":{"status":"NACK"}},"error":{"code":"156","message":"Subscriber already exists"}}"#,
            Refusal::AlreadySubscribed,
        ),
    ];
    for (body, want) in cases {
        let o = ondc(&http(200, body));
        assert!(!o.accepted);
        assert_eq!(o.refusal, Some(want), "{body}");
        assert!(o.hint.is_some() && o.said.contains("code"), "{o:?}");
    }
    let html = ondc(&Answer::Http {
        status: 200,
        content_type: Some("text/html".into()),
        body: b"<html><body>Welcome</body></html>".to_vec(),
    });
    assert_eq!(html.refusal, Some(Refusal::Html));
    let timeout = ondc(&Answer::TimedOut(Duration::from_secs(3)));
    assert_eq!(timeout.refusal, Some(Refusal::Timeout));
    assert!(timeout.hint.unwrap().contains("timeout"));
    let unknown = ondc(&http(200, r#"{"ok":true}"#));
    assert!(!unknown.accepted && unknown.said.contains("unknown shape"));
}

#[test]
fn core_answers_are_read() {
    let core = |a: &Answer| interpret(RegistryDialect::Core, a);
    assert!(core(&http(200, r#"{"status":"UNDER_SUBSCRIPTION"}"#)).accepted);
    let refused = core(&http(
        400,
        r#"{"error":{"code":"E1","message":"key_id already subscribed"}}"#,
    ));
    assert_eq!(refused.refusal, Some(Refusal::AlreadySubscribed));
    assert!(refused.said.contains("E1"), "{refused:?}");
    let text = core(&http(502, "Bad gateway"));
    assert!(!text.accepted && text.said.contains("not JSON"));
}
