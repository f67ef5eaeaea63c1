//! Flipkart Ultra: secureTokens checked by an independent implementation, the sign-in of a
//! Flipkart user on the farmer app's client API, and the user's orders reported to the Ultra
//! stand-in's OMS (amounts, states, identity token; repeats sent once; 429 retried; code 21
//! a dead letter; an invalid mapping never sent but kept as a dead letter that `outbox retry`
//! maps again; a dead update holding back its order's later ones; a retry rebuilt with the
//! current mapping; orders of two labs with one id; the cancellation fee; optional order
//! times), and the personal data the store keeps once the work is done.

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use beckn_adapter::compile::Layout;
use beckn_adapter::demo::{NetworkOptions, SampleNetwork};
use serde_json::{Value, json};
use ultra_standin::CannedAnswer;

use crate::common::{repo, temp_tree};
use crate::durability::wait_until;

const GFSL: &str = "soil.greenfield-labs.example";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ultra_token.py");

async fn network_at(root: &std::path::Path) -> SampleNetwork {
    SampleNetwork::start(
        &Layout::from_flows_dir(root.join("flows")),
        NetworkOptions::default(),
    )
    .await
    .expect("the sample network starts")
}

/// Calls the farmer app's client API, as the user of `session` when given.
async fn call(net: &SampleNetwork, path: &str, session: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/{path}", net.client_api))
        .json(&body);
    if let Some(s) = session {
        req = req.header("X-Ultra-Session", s);
    }
    let resp = req.send().await.expect("client API reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Signs a new Flipkart user in; returns the session and the user's identity token.
async fn sign_in(net: &SampleNetwork, mobile: &str) -> (String, String) {
    let (grant, user) = net.ultra.grant(mobile, "asha@example.org");
    let (status, doc) = call(net, "ultra/sign-in", None, json!({"grantToken": grant})).await;
    assert_eq!(status, 200, "{doc}");
    (
        doc["session"].as_str().unwrap().to_string(),
        user.identity_token,
    )
}

/// Confirms a lab-drop soil test at GreenField as the user of `session`; returns the
/// transaction id and the on_confirm.
async fn confirm(net: &SampleNetwork, session: &str) -> (String, Value) {
    confirm_at(net, session, GFSL, "GFSL", "110012").await
}

/// Confirms a lab-drop soil test at the lab `bpp_id` (provider `provider`) from a farm at
/// `pincode`.
async fn confirm_at(
    net: &SampleNetwork,
    session: &str,
    bpp_id: &str,
    provider: &str,
    pincode: &str,
) -> (String, Value) {
    let txn = uuid::Uuid::new_v4().to_string();
    let (status, doc) = call(
        net,
        "confirm",
        Some(session),
        json!({"context": {"transaction_id": txn, "bpp_id": bpp_id},
            "message": {"order": {"provider": {"id": provider},
            "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
            "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": pincode, "address": "Pusa"},
                "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}}}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let on_confirm = doc["responses"][0].clone();
    assert!(on_confirm["message"]["order"]["id"].is_string(), "{doc}");
    (txn, on_confirm)
}

/// Cancels the order of `txn` as the user of `session`; returns the client API's answer.
async fn cancel(net: &SampleNetwork, session: &str, txn: &str, order_id: &str) -> (u16, Value) {
    call(
        net,
        "cancel",
        Some(session),
        json!({"context": {"transaction_id": txn},
            "message": {"order_id": order_id, "cancellation_reason_id": "001"}}),
    )
    .await
}

fn states(net: &SampleNetwork, order_id: &str) -> Vec<String> {
    net.ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .map(|o| o.states)
        .unwrap_or_default()
}

#[test]
fn secure_tokens_verify_with_an_independent_implementation() {
    let ready = Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        eprintln!("SKIPPED: python3 with the `cryptography` package is not available");
        return;
    }
    let pem = std::fs::read(repo().join("registry/ultra/partner.TEST-ONLY.pem")).unwrap();
    let public = repo().join("registry/ultra/partner.pub.pem");
    for lifetime in [90, 1000] {
        let minter = beckn_adapter::sinks::ultra::token::SecureTokenKey::new(
            "soilcare.farmerapp",
            &pem,
            Duration::from_secs(lifetime),
        )
        .unwrap();
        let now = jiff::Timestamp::now().as_second();
        let token = beckn_adapter::sinks::ultra::token::token_at(&minter, now).unwrap();
        let out = Command::new("python3")
            .args([
                SCRIPT,
                public.to_str().unwrap(),
                &token,
                "soilcare.farmerapp",
                &now.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(claims["iss"], "soilcare.farmerapp");
        assert!(claims["iat"].as_i64().unwrap() < now);
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            lifetime as i64
        );
        // Another issuer, or a token past its life, is refused by the same check.
        let out = Command::new("python3")
            .args([
                SCRIPT,
                public.to_str().unwrap(),
                &token,
                "other.app",
                &now.to_string(),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let later = now + lifetime as i64;
        let out = Command::new("python3")
            .args([
                SCRIPT,
                public.to_str().unwrap(),
                &token,
                "soilcare.farmerapp",
                &later.to_string(),
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}

#[tokio::test]
async fn ping_and_sign_in_exchange_the_grant_and_fetch_the_contact() {
    let net = network_at(&repo()).await;
    let set = net.flows.load();
    let conn = set.sinks.ultra("ultra").expect("the sample connection");
    beckn_adapter::sinks::ultra::api::ping(&reqwest::Client::new(), conn)
        .await
        .expect("the stand-in accepts the token");

    let (grant, user) = net.ultra.grant("+91-98100-22222", "asha@example.org");
    let (status, doc) = call(&net, "ultra/sign-in", None, json!({"grantToken": grant})).await;
    assert_eq!(status, 200, "{doc}");
    // read from whichever scope carries each field (the documented lists are swapped)
    assert_eq!(doc["user"]["mobile"], "+91-98100-22222");
    assert_eq!(doc["user"]["email"], "asha@example.org");
    let session = doc["session"].as_str().unwrap();
    let kept = net
        .services
        .outbox
        .store
        .sink_user(session)
        .await
        .unwrap()
        .expect("the user is kept");
    assert_eq!(kept.identity_token, user.identity_token);
    assert!(
        doc.to_string().find(&user.identity_token).is_none(),
        "the identity token stays with the adapter"
    );

    // a grant token is single-use; garbage and unknown sessions are told apart
    let (status, doc) = call(&net, "ultra/sign-in", None, json!({"grantToken": grant})).await;
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (502, Some("ultra_refused")),
        "{doc}"
    );
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("grant token"),
        "{doc}"
    );
    let (status, doc) = call(&net, "ultra/sign-in", None, json!({"grant": 1})).await;
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{doc}"
    );
    let (status, doc) = call(&net, "status", Some("no-such-session"), json!({})).await;
    assert_eq!(
        (status, doc["error"]["code"].as_str()),
        (401, Some("unknown_session")),
        "{doc}"
    );
}

#[tokio::test]
async fn a_confirmed_then_cancelled_order_reaches_ultra_once_per_state_with_its_amounts() {
    let net = network_at(&repo()).await;
    let (session, identity) = sign_in(&net, "+91-98100-33333").await;
    let (txn, on_confirm) = confirm(&net, &session).await;
    let order = &on_confirm["message"]["order"];
    let order_id = order["id"].as_str().unwrap().to_string();
    let paid: f64 = order["quote"]["price"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_until("ORDER_CONFIRMED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED"]
    })
    .await;
    let accepted = net
        .ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap();
    assert_eq!(accepted.identity_token, identity);
    assert_eq!(accepted.latest["forwardTransaction"].as_f64(), Some(paid));
    assert_eq!(accepted.latest["reverseTransaction"].as_f64(), Some(0.0));
    assert_eq!(
        accepted.latest["orderMetadata"]["beckn_transaction_id"],
        txn.as_str()
    );
    assert!(
        accepted.latest["description"]
            .as_str()
            .unwrap()
            .starts_with("Soil test: ")
    );

    // the same state again (two status calls: on_status says ACTIVE) is not sent again
    for _ in 0..2 {
        let (status, doc) = call(
            &net,
            "status",
            Some(&session),
            json!({"context": {"transaction_id": txn}, "message": {"order_id": order_id}}),
        )
        .await;
        assert_eq!(status, 200, "{doc}");
    }
    let (status, doc) = cancel(&net, &session, &txn, &order_id).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        doc["responses"][0]["message"]["order"]["status"], "CANCELLED",
        "{doc}"
    );
    wait_until("ORDER_CANCELLED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED", "ORDER_CANCELLED"]
    })
    .await;
    let accepted = net
        .ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap();
    assert_eq!(accepted.latest["forwardTransaction"].as_f64(), Some(paid));
    assert_eq!(
        accepted.latest["reverseTransaction"].as_f64(),
        Some(paid),
        "a full refund"
    );
    let calls: Vec<_> = net
        .ultra
        .oms_calls()
        .into_iter()
        .filter(|(id, _, _)| *id == order_id)
        .map(|(_, state, code)| (state, code))
        .collect();
    assert_eq!(
        calls,
        [
            ("ORDER_CONFIRMED".to_string(), 0),
            ("ORDER_CANCELLED".to_string(), 0)
        ],
        "each state sent once"
    );

    // an order of a user who did not sign in is not reported
    let before = net.ultra.oms_calls().len();
    let txn = uuid::Uuid::new_v4().to_string();
    let (status, _) = call(
        &net,
        "status",
        None,
        json!({"context": {"transaction_id": txn, "bpp_id": GFSL}, "message": {"order_id": order_id}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(net.ultra.oms_calls().len(), before);
}

#[tokio::test]
async fn rate_limits_are_retried_and_validation_refusals_are_dead_letters() {
    let net = network_at(&repo()).await;
    let (session, _) = sign_in(&net, "+91-98100-44444").await;
    net.ultra.queue_oms_answers([CannedAnswer {
        http: 429,
        body: json!({"status": 31, "message": "too many requests"}),
    }]);
    let (txn, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until(
        "ORDER_CONFIRMED after a 429",
        Duration::from_secs(10),
        || states(&net, &order_id) == ["ORDER_CONFIRMED"],
    )
    .await;
    let codes: Vec<i64> = net
        .ultra
        .oms_calls()
        .into_iter()
        .filter(|(id, _, _)| *id == order_id)
        .map(|(_, _, code)| code)
        .collect();
    assert_eq!(codes, [31, 0], "429 then accepted");

    net.ultra.queue_oms_answers([CannedAnswer {
        http: 400,
        body: json!({"status": 21, "message": "forwardTransaction must be positive"}),
    }]);
    let (status, _) = cancel(&net, &session, &txn, &order_id).await;
    assert_eq!(status, 200);
    let store = net.services.outbox.store.clone();
    let mut dead = Vec::new();
    for _ in 0..200 {
        dead = store.dead_letters(10).await.unwrap();
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].kind, "ultra");
    assert_eq!(dead[0].attempts, 1, "code 21 is not retried");
    assert_eq!(dead[0].message_id, format!("{order_id}/ORDER_CANCELLED"));
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("code 21") && error.contains("forwardTransaction must be positive"),
        "{error}"
    );
    assert_eq!(states(&net, &order_id), ["ORDER_CONFIRMED"]);
}

/// Log lines, captured for one test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_invalid_oms_order_is_never_sent_and_the_reason_is_logged_with_the_order_id() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test's runtime has one thread: the servers' tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let tree = temp_tree(&[
        "farmer-app.yaml",
        "ultra.yaml",
        "gateway.yaml",
        "greenfield-lab.yaml",
        "krishi-lab.yaml",
    ]);
    let template = tree.path().join("mappings/ultra/oms_order.j2");
    let text = std::fs::read_to_string(&template).unwrap();
    // a mapping mistake: nothing paid
    std::fs::write(
        &template,
        text.replace(
            "\"forwardTransaction\": {{ paid }}",
            "\"forwardTransaction\": 0",
        ),
    )
    .unwrap();
    let net = network_at(tree.path()).await;
    let (session, _) = sign_in(&net, "+91-98100-55555").await;
    let (_, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let text = || String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    wait_until("the refusal in the log", Duration::from_secs(10), || {
        text()
            .lines()
            .any(|l| l.contains("no OMS update sent") && l.contains(&order_id))
    })
    .await;
    let line = text()
        .lines()
        .find(|l| l.contains("no OMS update sent") && l.contains(&order_id))
        .unwrap()
        .to_string();
    assert!(line.contains("forwardTransaction"), "{line}");
    assert!(net.ultra.oms_calls().is_empty(), "no OMS call");
}

/// Moves a lab-drop order at the sample ERP to "report ready".
fn report_ready(net: &SampleNetwork, order_id: &str) {
    for _ in 0..3 {
        net.erp
            .advance("GFSL", order_id)
            .expect("lab drop: received, testing, report ready");
    }
}

#[tokio::test]
async fn a_report_ready_from_the_lab_erp_is_an_order_fulfilled_at_ultra() {
    let net = network_at(&repo()).await;
    let (session, _) = sign_in(&net, "+91-98100-66666").await;
    let (_, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    report_ready(&net, &order_id);
    wait_until("ORDER_FULFILLED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED", "ORDER_FULFILLED"]
    })
    .await;
    let order = net
        .ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap();
    let updated = order.latest["orderUpdatedTimestamp"].as_i64().unwrap();
    assert_eq!(
        order.latest["lastFulfillmentDate"].as_i64().unwrap() - updated,
        7 * 86_400,
        "the report date plus the 7-day dispute window"
    );
    assert_eq!(order.latest["reverseTransaction"].as_f64(), Some(0.0));
}

#[tokio::test]
async fn a_held_fulfilment_waits_for_its_last_fulfillment_date() {
    let tree = temp_tree(&[
        "farmer-app.yaml",
        "ultra.yaml",
        "gateway.yaml",
        "greenfield-lab.yaml",
        "krishi-lab.yaml",
    ]);
    let flow = tree.path().join("flows/farmer-app.yaml");
    let text = std::fs::read_to_string(&flow).unwrap();
    std::fs::write(&flow, format!("{text}  hold_fulfilled: true\n")).unwrap();
    let net = network_at(tree.path()).await;
    let (session, _) = sign_in(&net, "+91-98100-77777").await;
    let (_, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("ORDER_CONFIRMED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED"]
    })
    .await;
    report_ready(&net, &order_id);
    let store = net.services.outbox.store.clone();
    let week = 7 * 86_400_000;
    let mut due = None;
    for _ in 0..200 {
        due = store.next_due().await.unwrap();
        if due.is_some_and(|d| d > beckn_adapter::store::now_ms() + week - 2 * 3_600_000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let due = due.expect("the fulfilment is queued");
    assert!(
        due > beckn_adapter::store::now_ms() + week - 2 * 3_600_000,
        "held about a week, due {due}"
    );
    assert_eq!(
        states(&net, &order_id),
        ["ORDER_CONFIRMED"],
        "not sent before its date"
    );
}

#[tokio::test]
async fn a_signed_out_user_is_forgotten_and_sign_ins_past_the_retention_are_purged() {
    let net = network_at(&crate::common::repo()).await;
    let (session, _) = sign_in(&net, "+91-98100-66666").await;
    let search = json!({"crop": "wheat", "pincode": "110081", "collection": "home"});
    let (status, _) = call(&net, "search?mode=async", Some(&session), search.clone()).await;
    assert_eq!(status, 202, "a signed-in user's call is taken");
    let (status, doc) = call(&net, "ultra/sign-out", Some(&session), json!({})).await;
    assert_eq!((status, &doc["signed_out"]), (200, &json!(true)), "{doc}");
    let (status, doc) = call(&net, "search?mode=async", Some(&session), search.clone()).await;
    assert_eq!(
        (status, &doc["error"]["code"]),
        (401, &json!("unknown_session")),
        "{doc}"
    );
    let (status, doc) = call(&net, "ultra/sign-out", Some(&session), json!({})).await;
    assert_eq!(
        (status, &doc["error"]["code"]),
        (401, &json!("unknown_session")),
        "{doc}"
    );

    // The retention purge forgets users signed in before it, identity token and contact.
    let (old, _) = sign_in(&net, "+91-98100-55555").await;
    let store = net.services.outbox.store.clone();
    assert!(store.sink_user(&old).await.unwrap().is_some());
    store
        .purge(beckn_adapter::store::now_ms() + 1)
        .await
        .unwrap();
    assert!(store.sink_user(&old).await.unwrap().is_none());
    let (status, _) = call(&net, "search?mode=async", Some(&old), search).await;
    assert_eq!(status, 401);
}

/// Writes `file` with `from` replaced by `to`, loads the tree, and returns the rendered
/// diagnostics and the line (1-based) where `from` stood.
fn mistake(root: &std::path::Path, file: &str, from: &str, to: &str) -> (String, usize) {
    let path = root.join("flows").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(from, to)).unwrap();
    let loaded = beckn_adapter::compile::load(
        &Layout::from_flows_dir(root.join("flows")),
        &std::collections::HashMap::<String, String>::new(),
    );
    std::fs::write(&path, &text).unwrap();
    let errors = match loaded {
        Ok(_) => panic!("`{to}` in {file} is refused"),
        Err(d) => beckn_adapter::config::diagnostic::render_all(&d),
    };
    let line = text.lines().position(|l| l.contains(from)).unwrap() + 1;
    (errors, line)
}

#[test]
fn ultra_mistakes_are_reported_at_their_line() {
    let tree = temp_tree(&["farmer-app.yaml", "ultra.yaml"]);
    let (errors, line) = mistake(
        tree.path(),
        "ultra.yaml",
        "token_lifetime: 90s",
        "token_lifetime: 2000s",
    );
    assert!(errors.contains(&format!("ultra.yaml:{line}:")), "{errors}");
    assert!(errors.contains("from 30s to 1000s"), "{errors}");
    let (errors, line) = mistake(
        tree.path(),
        "farmer-app.yaml",
        "connection: ultra",
        "connection: ultr",
    );
    assert!(
        errors.contains(&format!("farmer-app.yaml:{line}:")),
        "{errors}"
    );
    assert!(
        errors.contains("no Ultra connection `ultr`") && errors.contains("did you mean `ultra`?"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_provider_reports_its_own_orders_with_the_identity_its_mapping_finds() {
    let tree = temp_tree(&[
        "farmer-app.yaml",
        "ultra.yaml",
        "gateway.yaml",
        "greenfield-lab.yaml",
        "krishi-lab.yaml",
    ]);
    let flow = tree.path().join("flows/greenfield-lab.yaml");
    let text = std::fs::read_to_string(&flow).unwrap();
    // The lab knows its Ultra customers by phone (here: one); the farmer app reports nothing.
    std::fs::write(
        &flow,
        format!(
            "{text}\nultra:\n  connection: ultra\n  order_template: ultra/oms_order.j2\n  on: [on_confirm, on_cancel]\n  \
             identity_token: \"'IDTKN-LAB-CUSTOMER' if message.order.fulfillments[0].customer.contact.phone == '+91-98100-22222' else none\"\n"
        ),
    )
    .unwrap();
    let app = tree.path().join("flows/farmer-app.yaml");
    let text = std::fs::read_to_string(&app).unwrap();
    let cut = text.find("\nultra:").unwrap();
    std::fs::write(&app, &text[..cut]).unwrap();
    let net = network_at(tree.path()).await;
    net.ultra.add_user(ultra_standin::User {
        identity_token: "IDTKN-LAB-CUSTOMER".into(),
        mobile: "+91-98100-22222".into(),
        email: "asha@example.org".into(),
    });
    let (_, on_confirm) = confirm(&net, "").await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until(
        "the lab's ORDER_CONFIRMED at Ultra",
        Duration::from_secs(10),
        || states(&net, &order_id) == ["ORDER_CONFIRMED"],
    )
    .await;
    let order = net
        .ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap();
    assert_eq!(order.identity_token, "IDTKN-LAB-CUSTOMER");
}

#[tokio::test]
async fn ultra_ping_says_whether_flipkart_accepts_the_token() {
    let pem = std::fs::read_to_string(repo().join("registry/ultra/partner.pub.pem")).unwrap();
    let standin =
        ultra_standin::UltraStandIn::new(ultra_standin::StandInConfig::sample(pem)).unwrap();
    let (listener, addr) = crate::common::bind().await;
    tokio::spawn(standin.serve(listener, std::future::pending()));
    let ping = |client_id: &'static str| {
        let url = format!("http://{addr}");
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
                .args(["ultra", "flows", "ping"])
                .current_dir(repo())
                .env("ULTRA_API_URL", &url)
                .env("ULTRA_CLIENT_ID", client_id)
                .output()
                .expect("run beckn-adapter ultra ping")
        })
    };
    let ok = ping("soilcare.farmerapp").await.unwrap();
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && stdout.starts_with("OK: "),
        "{stdout}"
    );
    let refused = ping("someone.else").await.unwrap();
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success());
    assert!(
        stdout.contains("FAILED") && stdout.contains("iss `someone.else` is not the client id"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hint: check that Flipkart holds the public half"),
        "{stdout}"
    );
}

#[test]
fn ultra_render_shows_the_oms_order_of_a_callback_offline() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
            .args(["ultra", "flows", "render", "--flow", "farmer-app"])
            .args(args)
            .current_dir(repo())
            .output()
            .expect("run beckn-adapter ultra render")
    };
    let out = run(&[
        "--callback",
        "flows/tests/data/farmer-app.on_cancel.yaml",
        "--identity-token",
        "IDT-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let order: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(order["orderId"], "GFSL-000002");
    assert_eq!(order["orderState"], "ORDER_CANCELLED");
    assert_eq!(order["identityToken"], "IDT-1");
    assert_eq!(order["forwardTransaction"].as_f64(), Some(1060.82));
    assert_eq!(order["reverseTransaction"].as_f64(), Some(1060.82));
    assert_eq!(order["orderTimestamp"], 1_795_428_000);
    assert_eq!(order["lastFulfillmentDate"], 1_795_428_900 + 7 * 86_400);

    // an order the rules refuse says why, and nothing else
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(repo().join("flows/tests/data/farmer-app.on_cancel.yaml")).unwrap();
    let free = dir.path().join("free.yaml");
    std::fs::write(&free, text.replace("value: \"1060.82\"", "value: \"0\"")).unwrap();
    let out = run(&["--callback", free.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("forwardTransaction"), "{stderr}");
}

#[tokio::test]
async fn an_order_first_seen_cancelled_is_confirmed_first() {
    // The farmer booked before signing in with Flipkart, then cancelled as a signed-in user.
    let net = network_at(&repo()).await;
    let (txn, on_confirm) = confirm(&net, "").await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (session, _) = sign_in(&net, "+91-98100-88888").await;
    let (status, doc) = cancel(&net, &session, &txn, &order_id).await;
    assert_eq!(status, 200, "{doc}");
    wait_until(
        "CONFIRMED then CANCELLED at Ultra",
        Duration::from_secs(10),
        || states(&net, &order_id) == ["ORDER_CONFIRMED", "ORDER_CANCELLED"],
    )
    .await;
}

/// A copy of the sample tree with `from` replaced by `to` in `file` (under the tree).
fn tree_with(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let tree = temp_tree(&[
        "farmer-app.yaml",
        "ultra.yaml",
        "gateway.yaml",
        "greenfield-lab.yaml",
        "krishi-lab.yaml",
    ]);
    for (file, from, to) in edits {
        edit(tree.path(), file, from, to);
    }
    tree
}

fn edit(root: &std::path::Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "`{from}` in {file}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// Runs `beckn-adapter outbox --store <url> <args>`; returns its status and stdout.
async fn outbox_cli(store_url: &str, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"));
    cmd.args(["outbox", "--store", store_url]).args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run beckn-adapter outbox"))
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The id of the dead letter whose message id starts with `prefix`, once there is one.
async fn dead_letter(net: &SampleNetwork, prefix: &str) -> beckn_adapter::store::DeadLetter {
    let store = net.services.outbox.store.clone();
    for _ in 0..200 {
        let dead = store.dead_letters(100).await.unwrap();
        if let Some(d) = dead.into_iter().find(|d| d.message_id.starts_with(prefix)) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no dead letter for {prefix}");
}

/// The lab's ERP order without `created_at` and `updated_at` (both optional in Beckn).
const NO_ORDER_TIMES: (&str, &str, &str) = (
    "mappings/soil/_common.j2",
    "],\n  \"created_at\": {{ o.created_at }},\n  \"updated_at\": {{ o.updated_at }}\n}",
    "]\n}",
);

#[tokio::test]
async fn an_order_without_updated_at_or_created_at_is_reported_to_ultra() {
    let tree = tree_with(&[NO_ORDER_TIMES]);
    let net = network_at(tree.path()).await;
    let (session, _) = sign_in(&net, "+91-98100-12121").await;
    let (_, on_confirm) = confirm(&net, &session).await;
    let order = &on_confirm["message"]["order"];
    assert!(order.get("updated_at").is_none() && order.get("created_at").is_none());
    let order_id = order["id"].as_str().unwrap().to_string();
    wait_until("ORDER_CONFIRMED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED"]
    })
    .await;
    let accepted = net
        .ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap();
    let stamped =
        jiff::Timestamp::now().as_second() - accepted.latest["orderTimestamp"].as_i64().unwrap();
    assert!(
        (0..60).contains(&stamped),
        "the callback's time stands in: {stamped}s ago"
    );
}

#[tokio::test]
async fn a_mapping_failure_of_an_order_event_is_a_dead_letter_that_outbox_retry_reports() {
    let broken = (
        "mappings/ultra/oms_order.j2",
        "\"orderTimestamp\": {{ created | epoch(unit) }}",
        "\"orderTimestamp\": {{ o.booked_at | epoch(unit) }}",
    );
    let tree = tree_with(&[broken]);
    let net = network_at(tree.path()).await;
    let (session, _) = sign_in(&net, "+91-98100-13131").await;
    let (_, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dead = dead_letter(&net, &format!("{order_id}/on_confirm/")).await;
    assert_eq!(dead.kind, "ultra");
    let (ok, listed) = outbox_cli(&net.store_url, &["list"]).await;
    assert!(ok, "{listed}");
    assert!(
        listed.contains(&format!("#{}", dead.id)) && listed.contains("o.booked_at"),
        "`outbox list` shows the event and why: {listed}"
    );
    assert!(net.ultra.oms_calls().is_empty());

    // The mapping is fixed and reloaded; `outbox retry` reports the order.
    edit(tree.path(), broken.0, broken.2, broken.1);
    net.reload().expect("the fixed flows load");
    let (ok, out) = outbox_cli(&net.store_url, &["retry", &dead.id.to_string()]).await;
    assert!(ok, "{out}");
    wait_until("ORDER_CONFIRMED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED"]
    })
    .await;
    let store = net.services.outbox.store.clone();
    wait_until_async("no dead letter left", || {
        let store = store.clone();
        async move { store.counts().await.unwrap().dead == 0 }
    })
    .await;
}

/// Waits (10 s at most) until the async `check` holds.
async fn wait_until_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_refused_order_confirmed_holds_back_later_states_and_a_retry_is_rebuilt_with_the_current_mapping()
 {
    let tree = tree_with(&[]);
    let net = network_at(tree.path()).await;
    let (session, _) = sign_in(&net, "+91-98100-14141").await;
    net.ultra.queue_oms_answers([CannedAnswer {
        http: 400,
        body: json!({"status": 21, "message": "forwardTransaction must be positive"}),
    }]);
    let (txn, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dead = dead_letter(&net, &format!("{order_id}/ORDER_CONFIRMED")).await;
    let (status, doc) = cancel(&net, &session, &txn, &order_id).await;
    assert_eq!(status, 200, "{doc}");
    let store = net.services.outbox.store.clone();
    // The lab's on_cancel is marked delivered only after the app filed it and queued the
    // cancellation for Ultra; until then it is pending (and due) too. Once only one message
    // is pending and nothing is due, that one is the cancellation, held back.
    wait_until_async(
        "only the cancellation left to send, and not due while the confirmation is dead",
        || {
            let store = store.clone();
            async move {
                let counts = store.counts().await.unwrap();
                counts.pending == 1 && counts.dead == 1 && store.next_due().await.unwrap().is_none()
            }
        },
    )
    .await;
    let sent: Vec<String> = net
        .ultra
        .oms_calls()
        .into_iter()
        .filter(|(id, _, _)| *id == order_id)
        .map(|(_, state, _)| state)
        .collect();
    assert_eq!(
        sent,
        ["ORDER_CONFIRMED"],
        "the cancellation waits behind the refused confirmation"
    );

    // A setting fixed (here: the description) is what the retried update carries.
    edit(
        tree.path(),
        "mappings/ultra/oms_order.j2",
        "\"Soil test: \"",
        "\"Soil testing: \"",
    );
    net.reload().expect("the flows load");
    let (ok, out) = outbox_cli(&net.store_url, &["retry", &dead.id.to_string()]).await;
    assert!(ok, "{out}");
    wait_until(
        "CONFIRMED then CANCELLED at Ultra",
        Duration::from_secs(10),
        || states(&net, &order_id) == ["ORDER_CONFIRMED", "ORDER_CANCELLED"],
    )
    .await;
    let accepted = net
        .ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap();
    assert!(
        accepted.latest["description"]
            .as_str()
            .unwrap()
            .starts_with("Soil testing: "),
        "{}",
        accepted.latest
    );
    let codes: Vec<i64> = net
        .ultra
        .oms_calls()
        .into_iter()
        .filter(|(id, _, _)| *id == order_id)
        .map(|(_, _, code)| code)
        .collect();
    assert_eq!(
        codes,
        [21, 0, 0],
        "no code 24: nothing overtook the confirmation"
    );
}

#[tokio::test]
async fn a_new_order_reusing_an_order_id_of_another_lab_in_a_new_transaction_is_reported() {
    // Both labs number their orders alike.
    let tree = tree_with(&[(
        "mappings/soil/_common.j2",
        "\"id\": {{ o.order_no }},",
        "\"id\": {{ o.order_no | replace(o.lab_code, \"LAB\") }},",
    )]);
    let net = network_at(tree.path()).await;
    let (asha, asha_identity) = sign_in(&net, "+91-98100-15151").await;
    let (_, first) = confirm_at(&net, &asha, GFSL, "GFSL", "110012").await;
    let order_id = first["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until(
        "the first lab's order at Ultra",
        Duration::from_secs(10),
        || states(&net, &order_id) == ["ORDER_CONFIRMED"],
    )
    .await;
    let (ravi, ravi_identity) = sign_in(&net, "+91-98100-16161").await;
    let (_, second) =
        confirm_at(&net, &ravi, "soil.krishitesthouse.example", "KTH", "411005").await;
    assert_eq!(second["message"]["order"]["id"], order_id.as_str());
    wait_until(
        "the second lab's order at Ultra",
        Duration::from_secs(10),
        || {
            net.ultra
                .orders()
                .iter()
                .filter(|o| o.order_id == order_id)
                .count()
                == 2
        },
    )
    .await;
    let mut users: Vec<String> = net
        .ultra
        .orders()
        .into_iter()
        .filter(|o| o.order_id == order_id)
        .map(|o| o.identity_token)
        .collect();
    users.sort();
    let mut want = vec![asha_identity, ravi_identity];
    want.sort();
    assert_eq!(users, want);
}

#[test]
fn a_cancellation_fee_is_kept_out_of_the_refund_reported_to_ultra() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(repo().join("flows/tests/data/farmer-app.on_cancel.yaml")).unwrap();
    // ₹50 as the lab's `cancellation` tag, and as a line of the quote's breakup.
    let tagged = text.replace(
        "    created_at:",
        "    tags:\n      - descriptor: { code: cancellation }\n        list:\n          - descriptor: { code: fee }\n            value: \"50.00\"\n    created_at:",
    );
    let in_breakup = text.replace(
        "      price: { currency: INR, value: \"1060.82\" }\n",
        "      price: { currency: INR, value: \"1060.82\" }\n      breakup:\n        - title: Soil Micronutrient Panel\n          price: { currency: INR, value: \"1010.82\" }\n        - title: Cancellation fee\n          price: { currency: INR, value: \"50.00\" }\n",
    );
    for (name, callback) in [("tagged", tagged), ("breakup", in_breakup)] {
        assert_ne!(callback, text);
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, callback).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
            .args(["ultra", "flows", "render", "--flow", "farmer-app"])
            .args([
                "--callback",
                file.to_str().unwrap(),
                "--identity-token",
                "IDT-1",
            ])
            .current_dir(repo())
            .output()
            .expect("run beckn-adapter ultra render");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let order: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            order["forwardTransaction"].as_f64(),
            Some(1060.82),
            "{name}"
        );
        assert_eq!(
            order["reverseTransaction"].as_f64(),
            Some(1010.82),
            "{name}"
        );
    }
}

#[tokio::test]
async fn personal_data_is_masked_at_rest_once_its_work_is_done() {
    let net = network_at(&repo()).await;
    let (session, identity) = sign_in(&net, "+91-98100-17171").await;
    let (_, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("ORDER_CONFIRMED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED"]
    })
    .await;
    let store = net.services.outbox.store.clone();
    wait_until_async("every message delivered", || {
        let store = store.clone();
        async move { store.counts().await.unwrap().pending == 0 }
    })
    .await;
    let path = net.store_url.strip_prefix("sqlite://").unwrap();
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let bodies = |sql: &str| -> Vec<String> {
        let mut stmt = db.prepare(sql).unwrap();
        stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| String::from_utf8_lossy(&b.unwrap()).to_string())
            .collect()
    };
    let logged = bodies("SELECT body FROM messages");
    assert!(
        logged.iter().any(|b| b.contains(&order_id)),
        "the log keeps the order"
    );
    let kept = [
        ("messages", logged),
        (
            "inbox",
            bodies("SELECT body FROM inbox WHERE state = 'done'"),
        ),
        (
            "outbox",
            bodies("SELECT body FROM outbox WHERE state = 'delivered'"),
        ),
        ("oms_events", bodies("SELECT body FROM oms_events")),
    ];
    for (table, bodies) in kept {
        for personal in [
            "Asha Devi",
            "+91-98100-22222",
            "\"Pusa\"",
            identity.as_str(),
        ] {
            assert!(
                !bodies.iter().any(|b| b.contains(personal)),
                "{personal} in {table}"
            );
        }
    }
}

#[tokio::test]
async fn the_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(".adapter/store.db");
    let store = beckn_adapter::store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    store.counts().await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join(".adapter")), 0o700);
    for name in ["store.db", "store.db-wal", "store.db-shm"] {
        assert_eq!(
            mode(&dir.path().join(".adapter").join(name)),
            0o600,
            "{name}"
        );
    }
    // one created readable by others before is narrowed at open
    drop(store);
    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    beckn_adapter::store::open(&format!("sqlite://{}", old.display()))
        .await
        .unwrap();
    assert_eq!(mode(&old), 0o600);
}

#[tokio::test]
async fn a_cancellation_fee_charged_by_the_lab_is_kept_out_of_the_refund_at_ultra() {
    let net = network_at(&repo()).await;
    let (session, _) = sign_in(&net, "+91-98100-18181").await;
    let txn = uuid::Uuid::new_v4().to_string();
    let order = |slot_start: Option<&str>| {
        let mut stop = json!({"type": "start",
            "location": {"address": "Plot 7, Kanjhawala village", "area_code": "110081", "gps": "28.7370,77.0120"},
            "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}});
        if let Some(start) = slot_start {
            stop["time"] = json!({"range": {"start": start}});
        }
        json!({"provider": {"id": "GFSL"},
            "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
            "fulfillments": [{"type": "home", "stops": [stop]}],
            "billing": {"name": "Asha Devi", "phone": "+91-98100-22222"}})
    };
    let ask = |action: &'static str, order: Value| {
        let (net, session, txn) = (&net, &session, &txn);
        async move {
            let (status, doc) = call(
                net,
                action,
                Some(session),
                json!({"context": {"transaction_id": txn, "bpp_id": GFSL}, "message": {"order": order}}),
            )
            .await;
            assert_eq!(status, 200, "{doc}");
            doc["responses"][0].clone()
        }
    };
    let on_select = ask("select", order(None)).await;
    let slot = on_select["message"]["order"]["fulfillments"][0]["tags"][0]["list"][0]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("a slot on offer: {on_select}"))
        .to_string();
    let start = slot.split('/').next().unwrap().to_string();
    let on_confirm = ask("confirm", order(Some(&start))).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an order: {on_confirm}"))
        .to_string();
    let paid: f64 = on_confirm["message"]["order"]["quote"]["price"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    wait_until("ORDER_CONFIRMED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED"]
    })
    .await;
    // An agent is on the way: cancelling now costs the package's ₹50 fee.
    net.erp.advance("GFSL", &order_id).expect("agent assigned");
    let (status, doc) = cancel(&net, &session, &txn, &order_id).await;
    assert_eq!(status, 200, "{doc}");
    let fee = doc["responses"][0]["message"]["order"]["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["descriptor"]["code"] == "cancellation")
        .flat_map(|t| t["list"].as_array().cloned().unwrap_or_default())
        .find(|e| e["descriptor"]["code"] == "fee")
        .map(|e| e["value"].clone());
    assert_eq!(fee, Some(json!("50.00")), "{doc}");
    wait_until(
        "CONFIRMED then CANCELLED at Ultra",
        Duration::from_secs(10),
        || states(&net, &order_id) == ["ORDER_CONFIRMED", "ORDER_CANCELLED"],
    )
    .await;
    let accepted = net
        .ultra
        .orders()
        .into_iter()
        .find(|o| o.order_id == order_id)
        .unwrap();
    assert_eq!(accepted.latest["forwardTransaction"].as_f64(), Some(paid));
    let refund = accepted.latest["reverseTransaction"].as_f64().unwrap();
    assert!(
        (refund - (paid - 50.0)).abs() < 1e-9,
        "refund {refund} of {paid} paid"
    );
}

#[tokio::test]
async fn an_unsolicited_on_cancel_of_a_known_order_is_filed_forwarded_and_reported() {
    use beckn_adapter::store::Disposition;
    let net = network_at(&repo()).await;
    let (session, _) = sign_in(&net, "+91-98100-66666").await;
    let (txn, on_confirm) = confirm(&net, &session).await;
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_until("ORDER_CONFIRMED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED"]
    })
    .await;

    // the lab cancels the order itself: an on_cancel no request asked for
    let mut order = on_confirm["message"]["order"].clone();
    order["status"] = json!("CANCELLED");
    order["updated_at"] = json!(jiff::Timestamp::now().to_string());
    let cancel_id = uuid::Uuid::new_v4().to_string();
    let body = crate::bap::callback(
        &net,
        "greenfield-lab",
        "on_cancel",
        &txn,
        &cancel_id,
        json!({ "order": order }),
    );
    let (status, ack) = crate::bap::post_signed(&net, "greenfield-lab", "on_cancel", &body).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["message"]["ack"]["status"], "ACK");

    let store = net.services.outbox.store.clone();
    let filed = store
        .callbacks_for_message("farmer-app", &cancel_id)
        .await
        .unwrap();
    assert_eq!(filed.len(), 1);
    assert_eq!(filed[0].disposition, Disposition::Unsolicited);
    let delivered = net
        .app
        .wait_for(Duration::from_secs(10), |d| {
            d.envelope["message_id"] == cancel_id.as_str()
        })
        .await
        .expect("the lab's cancellation reaches the app's webhook");
    assert_eq!(delivered.envelope["event"], "unsolicited");
    wait_until("ORDER_CANCELLED at Ultra", Duration::from_secs(10), || {
        states(&net, &order_id) == ["ORDER_CONFIRMED", "ORDER_CANCELLED"]
    })
    .await;

    // from another lab than the transaction's: still refused
    let stray = crate::bap::callback(
        &net,
        "krishi-lab",
        "on_cancel",
        &txn,
        &uuid::Uuid::new_v4().to_string(),
        json!({ "order": on_confirm["message"]["order"].clone() }),
    );
    let (status, nack) = crate::bap::post_signed(&net, "krishi-lab", "on_cancel", &stray).await;
    assert_eq!(
        (status, nack["error"]["code"].as_str()),
        (400, Some("30000")),
        "{nack}"
    );
}
