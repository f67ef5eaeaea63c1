//! Transaction memory: what `confirm` remembers is read by a later `status` (after the adapter
//! restarted on the same store) and by the ERP's events of the transaction, and by nobody
//! else's transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use beckn_adapter::beckn::action::Action;
use beckn_adapter::beckn::signing::PrivateKey;
use serde_json::{Value, json};

use crate::common::{Inbox, Network, bind, record, temp_tree};

/// The greenfield-lab flow, with `confirm` remembering the booking and `status` and the ERP's
/// events showing it as the order's billing name.
fn remembering_tree() -> tempfile::TempDir {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let path = tree.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).unwrap();
    let confirm_reply = "      - name: state\n        script: soil/order_state.rhai\n    reply: { template: soil/on_confirm.j2 }\n";
    assert!(flow.contains(confirm_reply));
    let flow = flow.replace(
        confirm_reply,
        &format!(
            "{confirm_reply}    remember:\n      booked: \"{{{{ order.customer.name }}}} ({{{{ order.order_no }}}})\"\n      \
             confirmed_status: \"{{{{ reply.order.status }}}}\"\n"
        ),
    );
    let status_call = "  status:\n    steps:\n      - name: order\n        call:";
    assert!(flow.contains(status_call));
    let flow = flow.replace(
        status_call,
        "  status:\n    steps:\n      - name: erp_order\n        call:",
    );
    let status_state = "          errors:\n            NOT_FOUND: { code: \"30010\", message: \"{{ response.message }}\" }\n      - name: state\n";
    assert!(flow.contains(status_state), "{flow}");
    let flow = flow.replace(
        status_state,
        "          errors:\n            NOT_FOUND: { code: \"30010\", message: \"{{ response.message }}\" }\n      \
         - name: order\n        script: soil/with_memory.rhai\n      - name: state\n",
    );
    let event_order = "    - name: order                           # the order as of this change\n      script: soil/event_order.rhai\n";
    assert!(flow.contains(event_order));
    let flow = flow.replace(
        event_order,
        "    - name: erp_order\n      script: soil/event_order.rhai\n    \
         - name: order\n      script: soil/with_memory.rhai\n",
    );
    std::fs::write(&path, flow).unwrap();
    std::fs::write(
        tree.path().join("mappings/soil/with_memory.rhai"),
        "// The ERP's order, billed as the booking `confirm` remembered.\n\
         let o = erp_order;\n\
         o.billing = #{ name: `${transaction.booked} ${transaction.confirmed_status} ${transaction.erp_order_id}`, phone: (), email: () };\n\
         o\n",
    )
    .unwrap();
    tree
}

fn lab_order() -> Value {
    json!({"order": {"provider": {"id": "GFSL"},
        "items": [{"id": "soil-micronutrient-panel", "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
            "contact": {"phone": "+91-98100-22222"}, "person": {"name": "Asha Devi"}}]}]}})
}

#[tokio::test]
async fn confirm_remembers_for_status_and_events_across_a_restart() {
    let tree = remembering_tree();
    let store_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", store_dir.path().join("store.db").display());
    let on_store = |url: String| move |s: &mut beckn_adapter::app::Settings| s.store_url = url;
    let flows = tree.path().join("flows");
    let net = Network::start_app(
        &flows,
        None,
        HashMap::new(),
        Vec::new(),
        on_store(url.clone()),
    )
    .await;
    let txn = uuid::Uuid::new_v4().to_string();
    let on_confirm = net.call("confirm", &txn, lab_order()).await;
    assert!(on_confirm.get("error").is_none(), "{on_confirm}");
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = on_confirm["message"]["order"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    let billed = format!("Asha Devi ({order_id}) {status} {order_id}");

    // the ERP's event of the transaction reads what confirm remembered
    net.erp.advance("GFSL", &order_id).expect("sample received");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pushed = loop {
        let found = net
            .bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .find(|r| {
                r.action == "on_status" && r.body["context"]["transaction_id"] == txn.as_str()
            })
            .map(|r| r.body.clone());
        if let Some(b) = found {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no unsolicited on_status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        pushed["message"]["order"]["billing"]["name"], billed,
        "{pushed}"
    );
    assert_eq!(pushed["message"]["order"]["id"], order_id);

    // another adapter process on the same store (a restart) answers status from memory
    let erp_url = format!("http://{}/api/v1/labs/GFSL", net.erp_addr);
    let (listener, addr) = bind().await;
    let other = Arc::new(Inbox::default());
    let router = Router::new()
        .route("/{action}", post(record))
        .with_state(other.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let other_url = format!("http://{addr}");
    let env = HashMap::from([("OTHER_APP_URL".to_string(), other_url.clone())]);
    let after = Network::start_app(&flows, Some(erp_url), env, Vec::new(), on_store(url)).await;
    let on_status = after
        .call("status", &txn, json!({"order_id": order_id}))
        .await;
    assert!(on_status.get("error").is_none(), "{on_status}");
    assert_eq!(
        on_status["message"]["order"]["billing"]["name"], billed,
        "{on_status}"
    );
    assert_eq!(on_status["message"]["order"]["id"], order_id);

    // another buyer app (a valid key of its own) cannot join the transaction, and in a
    // transaction of its own reads nothing the farmer app's transaction remembered
    let (status, nack, _) = send_as_other(&after, &other_url, "status", &txn, &order_id).await;
    assert_eq!(status, 409, "{nack}");
    assert_eq!(nack["message"]["ack"]["status"], "NACK", "{nack}");
    let own_txn = uuid::Uuid::new_v4().to_string();
    let (_, ack, id) = send_as_other(&after, &other_url, "status", &own_txn, &order_id).await;
    assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
    let answer = other.wait("on_status", &id, Duration::from_secs(10)).await;
    assert_eq!(answer["error"]["code"], "30010", "{answer}");
    assert!(!answer.to_string().contains("Asha Devi ("), "{answer}");
}

/// TEST-ONLY key of `other-app.example` (registry/local.yaml).
const OTHER_KEY: &str =
    "4UzVQqIjTxyIQ860F5Z85PJGoi6ra2UOCEYAol5FjYa6asprKf2JC2B76zOIMuFr5nSa9DtsxsDh9coWQnI5hQ==";
const OTHER_ID: &str = "other-app.example";

/// A status request of the second buyer app, signed with its key: HTTP status, answer and
/// message id.
async fn send_as_other(
    net: &Network,
    other_url: &str,
    action: &str,
    transaction_id: &str,
    order_id: &str,
) -> (u16, Value, String) {
    let mut body = net.request(action, transaction_id, json!({"order_id": order_id}));
    body["context"]["bap_id"] = json!(OTHER_ID);
    body["context"]["bap_uri"] = json!(other_url);
    let message_id = body["context"]["message_id"].as_str().unwrap().to_string();
    let bytes = serde_json::to_vec(&body).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let auth = PrivateKey::from_base64(OTHER_KEY).unwrap().sign(
        &bytes,
        &format!("{OTHER_ID}|other-app-key-1"),
        now,
        now + 60,
    );
    let headers = [("authorization", auth.as_str())];
    let (status, answer) = net
        .post_with(action, "application/json", bytes, &headers)
        .await;
    (status, answer, message_id)
}

/// A series of the process's metrics (`telemetry::metrics`, shared by every test of this
/// binary), 0 when it was never counted.
fn counted(series: &str) -> f64 {
    beckn_adapter::telemetry::metrics()
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The store is asked for a transaction's memory only before an action that reads
/// `transaction` (known when the flow is compiled): `search` and `confirm` (which do not)
/// read nothing, `status` (whose script reads it) reads it and sees what `confirm`
/// remembered. No flow of these tests reads `transaction` in `search`, so its series stays 0
/// whatever runs beside this test.
#[tokio::test]
async fn an_action_that_does_not_read_transaction_makes_no_memory_read() {
    let tree = remembering_tree();
    let flows = tree.path().join("flows");
    let set = crate::common::load_flows(&flows, &HashMap::new());
    let flow = set
        .flows
        .iter()
        .find(|f| f.name == "greenfield-lab")
        .unwrap();
    let reads = |a: Action| flow.actions.get(&a).unwrap().reads_transaction;
    assert!(!reads(Action::Search) && !reads(Action::Confirm) && !reads(Action::Init));
    assert!(reads(Action::Status), "status's script reads transaction");
    let events = flow.events().unwrap();
    assert!(
        events.action.reads_transaction,
        "the events' script reads it"
    );

    let series = |action: &str| {
        format!(
            "adapter_transaction_memory_reads_total{{flow=\"greenfield-lab\",action=\"{action}\"}} "
        )
    };
    let net = Network::start_app(&flows, None, HashMap::new(), Vec::new(), |_| {}).await;
    let txn = uuid::Uuid::new_v4().to_string();
    let on_search = net.call("search", &txn, json!({})).await;
    assert!(on_search.get("error").is_none(), "{on_search}");
    assert_eq!(counted(&series("search")), 0.0, "search read the memory");
    let confirms_before = counted(&series("confirm"));
    let on_confirm = net.call("confirm", &txn, lab_order()).await;
    assert!(on_confirm.get("error").is_none(), "{on_confirm}");
    let order_id = on_confirm["message"]["order"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        counted(&series("confirm")),
        confirms_before,
        "confirm read the memory"
    );
    let statuses_before = counted(&series("status"));
    let on_status = net
        .call("status", &txn, json!({"order_id": order_id}))
        .await;
    assert!(on_status.get("error").is_none(), "{on_status}");
    assert!(
        counted(&series("status")) > statuses_before,
        "status read no memory"
    );
    let billing = on_status["message"]["order"]["billing"]["name"]
        .as_str()
        .unwrap();
    assert!(
        billing.starts_with(&format!("Asha Devi ({order_id})")),
        "{on_status}"
    );
}
