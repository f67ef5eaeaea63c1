//! Bad input, as one table: every case sends something wrong to a running adapter and states
//! the documented outcome, either a synchronous NACK (HTTP status, Beckn code, error path,
//! wording) or an ACK followed by an `on_*` callback carrying a Beckn error.
//!
//! The cases share three networks: the shipped flows with a healthy (or deliberately faulty)
//! sample ERP, the shipped flows pointing at an ERP that is down, and a copy of the tree with
//! broken mappings. After the table each network must still serve a valid search; nothing may
//! panic, and a NACKed request must never produce a callback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sample_erp::Fault;
use serde_json::{Value, json};

use crate::common::{self, GFSL_ID, Network};

/// The flow's default `validation.max_body_bytes`.
const ONE_MIB: usize = 1 << 20;

/// A well-formed signature header whose window spans all of time (its signature bytes are
/// never looked at: the lifetime is refused first).
const ETERNAL_SIGNATURE: &str = concat!(
    r#"Signature keyId="farmer-app.example|farmer-app-key-1|ed25519",algorithm="ed25519","#,
    r#"created="-9223372036854775808",expires="9223372036854775807","#,
    r#"headers="(created) (expires) digest","#,
    r#"signature="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==""#
);

/// A signature header naming `created` twice.
const CREATED_TWICE: &str = concat!(
    r#"Signature keyId="farmer-app.example|farmer-app-key-1|ed25519",algorithm="ed25519","#,
    r#"created="1",created="2",expires="9999999999","#,
    r#"headers="(created) (expires) digest","#,
    r#"signature="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==""#
);

/// The table. Each case names what it sends and what must come back.
fn cases() -> Vec<Case> {
    use Net::{Broken, ErpDown};
    let valid_search = || json!({"intent": {"fulfillment": {"type": "home"}}});
    let cancel = |id: &str| json!({"order_id": id, "cancellation_reason_id": "FARMER-UNAVAILABLE"});
    vec![
        // --- the endpoint ---------------------------------------------------------------
        beckn("unknown endpoint /foo", "search", valid_search())
            .at("/foo")
            .nack(404, "30000", None, "`foo` is not a Beckn action"),
        beckn("unknown nested path /foo/bar", "search", valid_search())
            .at("/foo/bar")
            .nack(404, "30000", None, "`foo/bar` is not a Beckn action"),
        beckn("action the flow does not serve (/update)", "update", json!({"order": {}}))
            .nack(404, "40001", None, "does not support `update`"),
        // --- transport ------------------------------------------------------------------
        beckn("content type text/plain", "search", valid_search())
            .content_type(Some("text/plain"))
            .nack(415, "30000", None, "must be application/json, got `text/plain`"),
        beckn("content type missing", "search", valid_search())
            .content_type(None)
            .nack(415, "30000", None, "no Content-Type header"),
        beckn("body over the 1 MiB limit (1.1 MiB)", "search", valid_search())
            .edit(|b| {
                let padding = "x".repeat(ONE_MIB + ONE_MIB / 10);
                b["message"]["intent"]["descriptor"] = json!({"name": padding});
            })
            .nack(413, "30000", None, "larger than 1048576 bytes"),
        // --- signatures (checked on the raw bytes, before they are parsed) ----------------
        beckn("unsigned request", "search", valid_search())
            .signed(Sign::No)
            .nack(401, "30016", None, "missing Authorization header"),
        beckn("Authorization that is not a Beckn signature", "search", valid_search())
            .signed(Sign::Header("Bearer 0123456789abcdef"))
            .nack(401, "30016", None, "must start with `Signature `"),
        beckn("body changed after it was signed", "search", valid_search())
            .signed(Sign::BeforeEdit)
            .edit(|b| b["message"]["intent"]["fulfillment"]["type"] = json!("lab"))
            .nack(401, "30016", None, "signature does not match the body"),
        beckn("signature lifetime unbounded: created i64::MIN, expires i64::MAX", "search", valid_search())
            .signed(Sign::Header(ETERNAL_SIGNATURE))
            .nack(401, "30016", None, "is longer than the 3600s accepted"),
        beckn("signature parameter given twice (created)", "search", valid_search())
            .signed(Sign::Header(CREATED_TWICE))
            .nack(401, "30016", None, "`created` is given twice"),
        beckn("signed by the farmer app, claiming another bap_id", "search", valid_search())
            .edit(|b| b["context"]["bap_id"] = json!("other-app.example"))
            .nack(401, "30016", Some("context.bap_id"), "the signer is farmer-app.example but context.bap_id is other-app.example"),
        // --- JSON -----------------------------------------------------------------------
        raw("malformed JSON: truncated", "search", br#"{"context": {"action": "search""#)
            .nack(400, "30000", None, "malformed JSON at line 1 column 31: EOF while parsing an object"),
        raw("malformed JSON: trailing garbage", "search", br#"{"context": {}} }garbage"#)
            .nack(400, "30000", None, "trailing characters"),
        raw("malformed JSON: empty body", "search", b"")
            .nack(400, "30000", None, "EOF while parsing"),
        raw("malformed JSON: not UTF-8", "search", b"{\"context\": \"\xff\xfe\"}")
            .nack(400, "30000", None, "invalid unicode"),
        raw("malformed JSON: nested 100k deep", "search", &[b'['; 100_000])
            .nack(400, "30000", None, "recursion limit exceeded"),
        raw("JSON that is not an object (array)", "search", b"[1, 2, 3]")
            .nack(400, "30000", None, "is not of type \"object\""),
        raw("JSON that is not an object (string)", "search", br#""search""#)
            .nack(400, "30000", None, "is not of type \"object\""),
        raw("context key given twice (bap_id), signed as sent", "search",
            br#"{"context":{"bap_id":"farmer-app.example","bap_id":"other-app.example"},"message":{}}"#)
            .nack(400, "30000", None, "`context.bap_id` is given twice"),
        // --- context --------------------------------------------------------------------
        beckn("context.action differs from the endpoint", "search", valid_search())
            .edit(|b| b["context"]["action"] = json!("select"))
            .nack(400, "30000", Some("context.action"), "`select` but this is the /search endpoint"),
        beckn("context missing", "search", valid_search())
            .edit(|b| remove(b, "context"))
            .nack(400, "30000", None, "\"context\" is a required property"),
        beckn("context not an object", "search", valid_search())
            .edit(|b| b["context"] = json!("agri.soil"))
            .nack(400, "30000", Some("context"), "is not of type \"object\""),
        beckn("message missing on select", "select", json!({}))
            .edit(|b| remove(b, "message"))
            .nack(400, "30000", None, "\"message\" is a required property"),
        beckn("transaction_id not a UUID", "search", valid_search())
            .edit(|b| b["context"]["transaction_id"] = json!("txn-0001"))
            .nack(400, "30000", Some("context.transaction_id"), "is not a \"uuid\""),
        beckn("message_id not a UUID", "search", valid_search())
            .edit(|b| b["context"]["message_id"] = json!("msg 1"))
            .nack(400, "30000", Some("context.message_id"), "is not a \"uuid\""),
        beckn("transaction_id a UUID but not v4", "search", valid_search())
            .edit(|b| b["context"]["transaction_id"] = json!("6f1c6b1e-8a7d-11ef-9f0e-2d1b3a4c5d6e"))
            .nack(400, "30000", Some("context.transaction_id"), "does not match"),
        beckn("version 1.0.0", "search", valid_search())
            .edit(|b| b["context"]["version"] = json!("1.0.0"))
            .nack(400, "30000", Some("context.version"), "\"1.1.0\" was expected"),
        beckn("domain retail", "search", valid_search())
            .edit(|b| b["context"]["domain"] = json!("retail"))
            .nack(400, "30000", Some("context.domain"), "\"agri.soil\" was expected"),
        beckn("timestamp not RFC 3339", "search", valid_search())
            .edit(|b| b["context"]["timestamp"] = json!("yesterday at noon"))
            .nack(400, "30000", Some("context.timestamp"), "is not a \"date-time\""),
        beckn("ttl not an ISO 8601 duration", "search", valid_search())
            .edit(|b| b["context"]["ttl"] = json!("30 seconds"))
            .nack(400, "30000", Some("context.ttl"), "is not a \"duration\""),
        beckn("ttl missing", "search", valid_search())
            .edit(|b| remove(&mut b["context"], "ttl"))
            .nack(400, "30000", Some("context"), "\"ttl\" is a required property"),
        beckn("expired: sent an hour ago with ttl PT30S", "search", valid_search())
            .edit(|b| {
                let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
                b["context"]["timestamp"] = json!(hour_ago.to_string());
            })
            .nack(400, "30022", Some("context.ttl"), "the request expired at"),
        beckn("expired: sent two days ago with ttl P1D", "search", valid_search())
            .edit(|b| {
                let two_days_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(48);
                b["context"]["timestamp"] = json!(two_days_ago.to_string());
                b["context"]["ttl"] = json!("P1D");
            })
            .nack(400, "30022", Some("context.ttl"), "the request expired at"),
        beckn("expired a week ago, timestamp with 10 fractional digits, ttl PT30S", "search", valid_search())
            .edit(|b| {
                let week_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(7 * 24);
                let whole = week_ago.strftime("%Y-%m-%dT%H:%M:%S");
                b["context"]["timestamp"] = json!(format!("{whole}.1234567891Z"));
            })
            .nack(400, "30022", Some("context.ttl"), "the request expired at"),
        beckn("ttl P20000Y from a 2001 timestamp", "search", valid_search())
            .edit(|b| {
                b["context"]["timestamp"] = json!("2001-01-01T00:00:00Z");
                b["context"]["ttl"] = json!("P20000Y");
            })
            .nack(400, "30000", Some("context.ttl"), "context.ttl `P20000Y`"),
        beckn("ttl P2D, longer than the 1 day accepted", "search", valid_search())
            .edit(|b| b["context"]["ttl"] = json!("P2D"))
            .nack(400, "30000", Some("context.ttl"), "is longer than the 1d accepted"),
        beckn("timestamp a day in the future", "search", valid_search())
            .edit(|b| {
                let tomorrow = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
                b["context"]["timestamp"] = json!(tomorrow.to_string());
            })
            .nack(400, "30022", Some("context.timestamp"), "ahead of this participant's clock (at most 5s tolerated)"),
        beckn("bpp_id of another provider", "status", json!({"order_id": "GFSL-000001"}))
            .edit(|b| b["context"]["bpp_id"] = json!("soil.other-lab.example"))
            .nack(400, "30000", Some("context.bpp_id"), "addressed to `soil.other-lab.example`"),
        beckn("bap_uri https on another domain than bap_id", "search", valid_search())
            .edit(|b| b["context"]["bap_uri"] = json!("https://evil.example.com/beckn"))
            .nack(400, "30000", Some("context.bap_uri"), "`evil.example.com` is not on the domain of bap_id `farmer-app.example`"),
        beckn("bap_uri not the one registered for the farmer app", "search", valid_search())
            .edit(|b| b["context"]["bap_uri"] = json!("http://127.0.0.1:9/beckn"))
            .nack(400, "30000", Some("context.bap_uri"), "is not the URL registered for farmer-app.example"),
        beckn("bap_uri plain http off loopback", "search", valid_search())
            .edit(|b| b["context"]["bap_uri"] = json!("http://farmer-app.example/beckn"))
            .nack(400, "30000", Some("context.bap_uri"), "must be an https URL"),
        // --- message: domain rules ------------------------------------------------------
        beckn("search fulfillment type drone", "search", json!({"intent": {"fulfillment": {"type": "drone"}}}))
            .nack(400, "30000", Some("message.intent.fulfillment.type"), "\"drone\" is not one of"),
        beckn("search payment collected_by BAP", "search", json!({"intent": {"payment": {"collected_by": "BAP"}}}))
            .nack(400, "30000", Some("message.intent.payment.collected_by"), "\"BPP\" was expected"),
        beckn("rating category outside the core enum", "rating", json!({"ratings": [{"rating_category": "Farm", "id": "GFSL-000001", "value": "4"}]}))
            .nack(400, "30000", Some("message.ratings[0].rating_category"), "\"Farm\" is not one of"),
        // --- the flow answers with an error in its callback -----------------------------
        beckn("select an unknown item", "select", order_of("soil-unobtainium", "lab"))
            .callback("30004", "unknown sku 'soil-unobtainium'"),
        beckn("select with no items", "select", json!({"order": {"provider": {"id": "GFSL"}, "items": []}}))
            .callback("30004", "names no test package"),
        beckn("init home pickup without a slot", "init", order_of("soil-npk-package", "home"))
            .callback("30000", "home collection needs a slot"),
        beckn("status of an order that does not exist", "status", json!({"order_id": "GFSL-999999"}))
            .callback("30010", "order GFSL-999999 not found"),
        beckn("order id that climbs out of the ERP path", "status", json!({"order_id": ".."}))
            .callback("30010", "order .. not found"),
        beckn("cancel an order already in TESTING", "cancel", cancel("$ORDER"))
            .given(Setup::Order { advance: 2 })
            .callback("50001", "can no longer be cancelled"),
        beckn("rating value out of range", "rating", json!({"ratings": [{"rating_category": "Order", "id": "GFSL-000001", "value": "9"}]}))
            .callback("30015", "rating value must be 1 to 5, got 9"),
        beckn("rating of an order that does not exist", "rating", json!({"ratings": [{"rating_category": "Order", "id": "GFSL-999999", "value": "4"}]}))
            .callback("30014", "order GFSL-999999 not found"),
        beckn("select for another provider with this lab's item", "select", json!({"order": {"provider": {"id": "KTH"},
                "items": [{"id": "soil-npk-package"}], "fulfillments": [{"type": "lab"}]}}))
            .callback("30001", "provider 'KTH' is not offered here"),
        beckn("select without a provider", "select", json!({"order": {"items": [{"id": "soil-npk-package"}], "fulfillments": [{"type": "lab"}]}}))
            .callback("30001", "order.provider.id is missing"),
        beckn("order without a fulfillment type", "init", json!({"order": {"provider": {"id": "GFSL"},
                "items": [{"id": "soil-npk-package"}], "fulfillments": [{"stops": [{"location": {"area_code": "110081"}}]}]}}))
            .callback("30008", "order.fulfillments[0].type is missing"),
        beckn("rating of an item, not the order", "rating", json!({"ratings": [{"rating_category": "Item", "id": "soil-npk-package", "value": "4"}]}))
            .callback("50003", "this lab takes ratings of an Order"),
        // --- the ERP misbehaves ---------------------------------------------------------
        beckn("ERP answers HTML", "search", valid_search())
            .given(Setup::Fault(Fault::Html))
            .callback("31001", "unavailable"),
        beckn("ERP answers garbage JSON", "status", json!({"order_id": "GFSL-000001"}))
            .given(Setup::Fault(Fault::Garbage))
            .callback("31001", "unavailable"),
        beckn("ERP answers 500", "cancel", cancel("GFSL-000001"))
            .given(Setup::Fault(Fault::ServerError))
            .callback("31001", "unavailable"),
        beckn("ERP down (closed port)", "search", valid_search())
            .on(ErpDown)
            .callback("31001", "unavailable"),
        beckn("ERP down on a non-idempotent action", "select", order_of("soil-npk-package", "lab"))
            .on(ErpDown)
            .callback("31001", "unavailable"),
        beckn("ERP slower than the backend timeout", "select", order_of("soil-npk-package", "lab"))
            .on(Broken)
            .given(Setup::Fault(Fault::Slow(Duration::from_secs(2))))
            .callback("31001", "unavailable"),
        // --- broken mappings (see `broken_tree`) ----------------------------------------
        beckn("reply template runs out of fuel", "track", json!({"order_id": "$ORDER"}))
            .on(Broken)
            .given(Setup::Order { advance: 0 })
            .callback("31001", "could not build a response"),
        beckn("rhai script loops forever", "rating", json!({"ratings": [{"rating_category": "Order", "id": "GFSL-000001", "value": "4"}]}))
            .on(Broken)
            .callback("31001", "could not build a response"),
    ]
}

#[tokio::test]
async fn bad_input_table() {
    let panics = count_panics_on_this_thread();
    let table = cases();
    assert!(table.len() >= 25, "only {} cases", table.len());

    let tree = broken_tree();
    let mut shipped = Running::new(Network::start().await);
    let mut down = Running::new(Network::start_with(Some(closed_port_url())).await);
    let mut broken = Running::new(Network::start_tree(&tree.path().join("flows"), None).await);
    // The premises of the cases: the default size limit, an ERP-down network that really
    // points away from its own (healthy) ERP, and the short timeout of the broken tree.
    let erp = |running: &Running| {
        let set = running.net.flows.load();
        let flow = set
            .flow("greenfield-lab")
            .expect("greenfield-lab flow")
            .clone();
        let backend = flow.backends.get("erp").expect("erp backend").clone();
        (flow.max_body_bytes, backend)
    };
    assert_eq!(
        erp(&shipped).0,
        ONE_MIB,
        "the size case assumes the default limit"
    );
    let down_url = erp(&down).1.base_url;
    assert!(
        !down_url.contains(&down.net.erp_addr.to_string()),
        "{down_url}"
    );
    assert_eq!(erp(&broken).1.timeout, Duration::from_millis(300));

    for case in &table {
        let running = match case.net {
            Net::Shipped => &mut shipped,
            Net::ErpDown => &mut down,
            Net::Broken => &mut broken,
        };
        check(running, case).await;
    }

    // Every network keeps serving, and NACKed requests never produced a callback.
    for running in [&mut shipped, &mut broken] {
        let on_search = running.call("search", json!({})).await;
        assert_real_catalog(&on_search);
    }
    let on_search = down.call("search", json!({})).await;
    assert_eq!(on_search["error"]["code"], "31001", "{on_search}");
    for (name, running) in [
        ("shipped", &shipped),
        ("erp down", &down),
        ("broken", &broken),
    ] {
        assert_eq!(
            running.net.answered(),
            running.callbacks,
            "{name}: answers received != requests ACKed"
        );
    }
    assert_eq!(
        panics.load(Ordering::SeqCst),
        0,
        "something panicked (see the output above)"
    );
}

/// Sends one case and asserts its outcome; the case's name heads every failure message.
async fn check(running: &mut Running, case: &Case) {
    let name = case.name;
    eprintln!("case: {name}");
    let order_id = match &case.setup {
        Setup::None => None,
        Setup::Fault(fault) => {
            running.net.erp.set_fault(Some(*fault));
            None
        }
        Setup::Order { advance } => Some(running.booked_order(*advance).await),
    };
    let txn = uuid::Uuid::new_v4().to_string();
    let (bytes, unedited, message_id) = match &case.body {
        Body::Raw(bytes) => (bytes.clone(), bytes.clone(), None),
        Body::Beckn {
            action,
            message,
            edit,
        } => {
            let mut message = message.clone();
            match &order_id {
                Some(id) => replace_placeholder(&mut message, id),
                None => assert!(
                    !message.to_string().contains("$ORDER"),
                    "[{name}] $ORDER needs Setup::Order"
                ),
            }
            let mut body = running.net.request(action, &txn, message);
            let unedited = serde_json::to_vec(&body).expect("serialisable");
            let message_id = body["context"]["message_id"].as_str().map(str::to_string);
            edit(&mut body);
            let bytes = serde_json::to_vec(&body).expect("serialisable");
            (bytes, unedited, message_id)
        }
    };
    let authorization = match case.sign {
        Sign::Farmer => Some(common::bap_signature(&bytes)),
        Sign::No => None,
        Sign::Header(value) => Some(value.to_string()),
        Sign::BeforeEdit => Some(common::bap_signature(&unedited)),
    };
    let (status, answer) = running
        .send(case.path, case.content_type, authorization, bytes)
        .await;

    match &case.expect {
        Expect::Nack {
            status: want_status,
            code,
            path,
            says,
        } => {
            assert_eq!(
                status, *want_status,
                "[{name}] HTTP status; answer: {answer}"
            );
            assert_eq!(
                answer["message"]["ack"]["status"], "NACK",
                "[{name}] {answer}"
            );
            assert_eq!(answer["error"]["code"], *code, "[{name}] {answer}");
            assert_eq!(
                answer["error"]["paths"].as_str(),
                *path,
                "[{name}] error.paths; answer: {answer}"
            );
            let text = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                text.contains(says),
                "[{name}] message lacks {says:?}: {answer}"
            );
        }
        Expect::Callback { code, says } => {
            assert_eq!(status, 200, "[{name}] expected an ACK, got {answer}");
            assert_eq!(
                answer["message"]["ack"]["status"], "ACK",
                "[{name}] {answer}"
            );
            let Body::Beckn { action, .. } = &case.body else {
                panic!("[{name}] a callback case needs a Beckn body");
            };
            let message_id = message_id.expect("Beckn bodies have a message id");
            let callback = running.wait(&format!("on_{action}"), &message_id).await;
            assert_eq!(
                callback["context"]["action"],
                format!("on_{action}"),
                "[{name}]"
            );
            assert_eq!(
                callback["context"]["transaction_id"], txn,
                "[{name}] {callback}"
            );
            assert_eq!(
                callback["context"]["bpp_id"], GFSL_ID,
                "[{name}] {callback}"
            );
            assert_eq!(callback["error"]["code"], *code, "[{name}] {callback}");
            let text = callback["error"]["message"].as_str().unwrap_or_default();
            assert!(
                text.contains(says),
                "[{name}] error lacks {says:?}: {callback}"
            );
            if *action == "rating" {
                // on_rating is the one callback whose schema requires `message`.
                assert_eq!(callback["message"], json!({}), "[{name}] {callback}");
            } else {
                assert!(callback.get("message").is_none(), "[{name}] {callback}");
            }
        }
    }
    running.net.erp.set_fault(None);
}

// --- the table's vocabulary -------------------------------------------------------------

/// Which running network a case needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    /// The shipped flows and the sample ERP (faults are switched on per case).
    Shipped,
    /// The shipped flows with the ERP backend on a closed loopback port.
    ErpDown,
    /// A copy of the tree with a short backend timeout and broken mappings.
    Broken,
}

/// What has to exist before the request is sent.
enum Setup {
    None,
    /// The ERP misbehaves for this one request.
    Fault(Fault),
    /// A lab-drop order booked through `confirm` and moved `advance` statuses on
    /// (BOOKED -> RECEIVED_AT_LAB -> TESTING); its id replaces `$ORDER` in the message.
    Order {
        advance: usize,
    },
}

/// The `Authorization` header a case sends.
#[derive(Debug, Clone, Copy)]
enum Sign {
    /// Signed by the farmer app (`bap_id` of every request) with its registered test key.
    Farmer,
    No,
    /// This header value as it is.
    Header(&'static str),
    /// The farmer app's signature over the body as it was before the case's `edit`.
    BeforeEdit,
}

enum Body {
    Raw(Vec<u8>),
    /// A valid request for `action` carrying `message` (fresh ids, sent now), then `edit`.
    Beckn {
        action: &'static str,
        message: Value,
        edit: fn(&mut Value),
    },
}

enum Expect {
    /// Refused at once. `path` is the Beckn `error.paths`, absent when `None`.
    Nack {
        status: u16,
        code: &'static str,
        path: Option<&'static str>,
        says: &'static str,
    },
    /// ACKed; the `on_<action>` callback carries this error and no result.
    Callback {
        code: &'static str,
        says: &'static str,
    },
}

struct Case {
    name: &'static str,
    net: Net,
    setup: Setup,
    path: &'static str,
    content_type: Option<&'static str>,
    sign: Sign,
    body: Body,
    expect: Expect,
}

/// A case sending a valid `action` request with `message` to `/<action>`.
fn beckn(name: &'static str, action: &'static str, message: Value) -> Case {
    Case {
        name,
        net: Net::Shipped,
        setup: Setup::None,
        path: action,
        content_type: Some("application/json"),
        sign: Sign::Farmer,
        body: Body::Beckn {
            action,
            message,
            edit: |_| {},
        },
        expect: Expect::Callback { code: "", says: "" },
    }
}

/// A case sending `bytes` as JSON to `/<path>`.
fn raw(name: &'static str, path: &'static str, bytes: &[u8]) -> Case {
    Case {
        body: Body::Raw(bytes.to_vec()),
        ..beckn(name, path, Value::Null)
    }
}

impl Case {
    fn at(self, path: &'static str) -> Case {
        Case { path, ..self }
    }

    fn content_type(self, content_type: Option<&'static str>) -> Case {
        Case {
            content_type,
            ..self
        }
    }

    fn signed(self, sign: Sign) -> Case {
        Case { sign, ..self }
    }

    fn on(self, net: Net) -> Case {
        Case { net, ..self }
    }

    fn given(self, setup: Setup) -> Case {
        Case { setup, ..self }
    }

    fn edit(self, edit: fn(&mut Value)) -> Case {
        let Body::Beckn {
            action, message, ..
        } = self.body
        else {
            panic!("{}: only Beckn bodies can be edited", self.name);
        };
        Case {
            body: Body::Beckn {
                action,
                message,
                edit,
            },
            ..self
        }
    }

    fn nack(
        self,
        status: u16,
        code: &'static str,
        path: Option<&'static str>,
        says: &'static str,
    ) -> Case {
        Case {
            expect: Expect::Nack {
                status,
                code,
                path,
                says,
            },
            ..self
        }
    }

    fn callback(self, code: &'static str, says: &'static str) -> Case {
        Case {
            expect: Expect::Callback { code, says },
            ..self
        }
    }
}

/// An order for one `item` with fulfillment `kind` (`home` or `lab`), no slot chosen.
fn order_of(item: &str, kind: &str) -> Value {
    json!({"order": {
        "provider": {"id": "GFSL"},
        "items": [{"id": item, "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": kind, "stops": [{
            "type": "start",
            "location": {"address": "Plot 7, Kanjhawala village", "area_code": "110081"},
            "contact": {"phone": "+91-98100-22222"},
            "person": {"name": "Asha Devi"}
        }]}],
        "billing": {"name": "Asha Devi", "phone": "+91-98100-22222"},
        "payments": [{"collected_by": "BPP", "type": "ON-FULFILLMENT"}]
    }})
}

fn remove(object: &mut Value, key: &str) {
    object.as_object_mut().expect("an object").remove(key);
}

fn replace_placeholder(v: &mut Value, order_id: &str) {
    match v {
        Value::String(s) if s == "$ORDER" => *s = order_id.to_string(),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| replace_placeholder(i, order_id)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|i| replace_placeholder(i, order_id)),
        _ => {}
    }
}

// --- running networks -------------------------------------------------------------------

/// A network and how many callbacks it should have sent so far.
struct Running {
    net: Network,
    callbacks: usize,
}

impl Running {
    fn new(net: Network) -> Running {
        Running { net, callbacks: 0 }
    }

    /// POSTs `bytes` with exactly these headers: each is sent only when given.
    async fn send(
        &self,
        path: &str,
        content_type: Option<&str>,
        authorization: Option<String>,
        bytes: Vec<u8>,
    ) -> (u16, Value) {
        if let Some(id) = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["context"]["message_id"].as_str().map(str::to_string))
        {
            self.net.sent.lock().unwrap().insert(id);
        }
        let url = format!("{}/{}", self.net.bpp_url, path.trim_start_matches('/'));
        let mut req = self.net.http.post(url).body(bytes);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(auth) = authorization {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.expect("adapter reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn call(&mut self, action: &str, message: Value) -> Value {
        self.callbacks += 1;
        let txn = uuid::Uuid::new_v4().to_string();
        self.net.call(action, &txn, message).await
    }

    async fn wait(&mut self, action: &str, message_id: &str) -> Value {
        self.callbacks += 1;
        self.net
            .bap
            .wait(action, message_id, Duration::from_secs(10))
            .await
    }

    /// Books a lab-drop order (no slot needed) and advances it `advance` times.
    async fn booked_order(&mut self, advance: usize) -> String {
        let on_confirm = self
            .call("confirm", order_of("soil-micronutrient-panel", "lab"))
            .await;
        let order_id = on_confirm["message"]["order"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("setup: no order booked: {on_confirm}"))
            .to_string();
        for _ in 0..advance {
            self.net
                .erp
                .advance("GFSL", &order_id)
                .expect("setup: advance the order");
        }
        order_id
    }
}

/// A copy of the tree whose greenfield-lab flow calls the ERP with a 300ms timeout, whose
/// `on_track.j2` loops a million times (more than the template fuel) and whose rating
/// script never ends.
fn broken_tree() -> tempfile::TempDir {
    let tree = common::temp_tree(&["greenfield-lab.yaml"]);
    let edit = |rel: &str, f: &dyn Fn(String) -> String| {
        let path = tree.path().join(rel);
        let before = std::fs::read_to_string(&path).expect("read tree file");
        let after = f(before.clone());
        assert_ne!(before, after, "{rel}: the edit changed nothing");
        std::fs::write(&path, after).expect("write tree file");
    };
    edit("flows/greenfield-lab.yaml", &|s| {
        s.replace("    timeout: 3s\n", "    timeout: 300ms\n")
    });
    edit("mappings/soil/on_track.j2", &|s| {
        format!(
            "{{%- for i in range(1000) %}}{{% for j in range(1000) %}}{{% endfor %}}{{% endfor -%}}\n{s}"
        )
    });
    edit("mappings/soil/rating_request.rhai", &|s| {
        format!("let n = 0;\nloop {{ n += 1; }}\n{s}")
    });
    tree
}

/// A loopback URL nothing listens on.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}/api/v1/labs/GFSL")
}

fn assert_real_catalog(on_search: &Value) {
    assert!(on_search.get("error").is_none(), "{on_search}");
    let provider = &on_search["message"]["catalog"]["providers"][0];
    assert_eq!(provider["id"], "GFSL", "{on_search}");
    let items = provider["items"].as_array().expect("items");
    assert!(!items.is_empty(), "{on_search}");
    for item in items {
        assert!(
            item["id"].is_string() && item["price"]["value"].is_string(),
            "{item}"
        );
    }
}

/// Counts panics on the calling thread from now on. The networks of a `#[tokio::test]` run
/// on its (current-thread) runtime, so a panic in any handler or flow task lands here.
fn count_panics_on_this_thread() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let me = std::thread::current().id();
    let seen = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == me {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    count
}

#[tokio::test]
async fn invented_paths_do_not_grow_the_metric_series() {
    let net = Network::start().await;
    for i in 0..50 {
        let (status, nack) = net
            .post_raw(&format!("probe-{i}"), "application/json", b"{}".to_vec())
            .await;
        assert_eq!(status, 404, "{nack}");
        assert_eq!(nack["message"]["ack"]["status"], "NACK");
    }
    let text = beckn_adapter::telemetry::metrics().render();
    assert!(!text.contains("probe-"), "{text}");
    assert!(
        text.contains("role=\"bpp\",action=\"other\",outcome=\"nack\",code=\"30000\""),
        "{text}"
    );
}
