//! Order events found by polling: Krishi Test House's flow asks the sample ERP for its status
//! changes (`events.poll`), and each becomes an unsolicited `on_status` at the farmer app. The
//! adapter is the built binary on the shipped flows, restarted on the same SQLite store.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::common::{BAP_ID, Inbox, bap_signature, bind};
use crate::durability::{Adapter, free_port, stand_in_at, wait_until};

const KTH_ID: &str = "soil.krishitesthouse.example";
const FLOW: &str = "krishi-lab";
const DEADLINE: Duration = Duration::from_secs(20);

/// The sample ERP, the farmer app's stand-in and an adapter process.
struct Polling {
    erp: sample_erp::SampleErp,
    bap: Arc<Inbox>,
    bap_url: String,
    kth: SocketAddr,
    admin: SocketAddr,
    adapter: Adapter,
    store_file: std::path::PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Polling {
    async fn start() -> Polling {
        // No webhook: the lab's changes reach the adapter only by its polls.
        let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
        let (erp_listener, erp_addr) = bind().await;
        tokio::spawn(erp.clone().serve(erp_listener, std::future::pending()));
        let bap_addr = free_port().await;
        let bap = stand_in_at(bap_addr).await;
        let bap_url = format!("http://{bap_addr}");
        let kth = free_port().await;
        let admin = free_port().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let store_file = dir.path().join("store.db");
        let adapter = Adapter {
            env: HashMap::from([
                ("KTH_LISTEN".into(), kth.to_string()),
                ("KTH_PUBLIC_URL".into(), format!("http://{kth}")),
                (
                    "KTH_ERP_URL".into(),
                    format!("http://{erp_addr}/api/v1/labs/KTH"),
                ),
                ("KTH_EVENTS_POLL_EVERY".into(), "200ms".into()),
                ("GFSL_LISTEN".into(), free_port().await.to_string()),
                ("BHOOMI_LISTEN".into(), free_port().await.to_string()),
                (
                    "GFSL_ERP_URL".into(),
                    format!("http://{erp_addr}/api/v1/labs/GFSL"),
                ),
                ("GATEWAY_LISTEN".into(), free_port().await.to_string()),
                ("FARMER_APP_LISTEN".into(), free_port().await.to_string()),
                ("FARMER_APP_URL".into(), bap_url.clone()),
                ("BECKN_ADMIN".into(), admin.to_string()),
                ("BECKN_LOG".into(), "warn".into()),
            ]),
            store: format!("sqlite://{}", store_file.display()),
            child: None,
        };
        let mut me = Polling {
            erp,
            bap,
            bap_url,
            kth,
            admin,
            adapter,
            store_file,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
            _dir: dir,
        };
        me.spawn().await;
        me
    }

    /// Starts the adapter and waits until it answers.
    async fn spawn(&mut self) {
        self.adapter.spawn();
        let health = format!("http://{}/health", self.kth);
        let start = Instant::now();
        // A start on a machine busy with other tests' processes may take a while.
        while self.http.get(&health).send().await.is_err() {
            assert!(start.elapsed() < 3 * DEADLINE, "adapter did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Confirms a lab-drop order with the lab through Beckn; returns the ERP's order number.
    async fn confirm(&self, txn: &str) -> String {
        let message_id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "context": {"domain": "agri.soil", "action": "confirm", "version": "1.1.0",
                "bap_id": BAP_ID, "bap_uri": self.bap_url,
                "bpp_id": KTH_ID, "bpp_uri": format!("http://{}", self.kth),
                "transaction_id": txn, "message_id": message_id,
                "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT30S",
                "location": {"city": {"code": "std:020"}, "country": {"code": "IND"}}},
            "message": {"order": {"provider": {"id": "KTH"},
                "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
                "fulfillments": [{"type": "lab", "stops": [{
                    "location": {"area_code": "411005", "address": "Shivajinagar, Pune"},
                    "contact": {"phone": "+91-99220-12345"},
                    "person": {"name": "Vijay Pawar"}}]}]}}
        });
        let bytes = serde_json::to_vec(&body).expect("JSON");
        let ack: Value = self
            .http
            .post(format!("http://{}/confirm", self.kth))
            .header("content-type", "application/json")
            .header("authorization", bap_signature(&bytes))
            .body(bytes)
            .send()
            .await
            .expect("adapter reachable")
            .json()
            .await
            .expect("JSON ACK");
        assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
        let on_confirm = self.bap.wait("on_confirm", &message_id, DEADLINE).await;
        on_confirm["message"]["order"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no order id in {on_confirm}"))
            .to_string()
    }

    /// The unsolicited on_status callbacks of `txn`, by fulfillment state code.
    fn on_status(&self, txn: &str) -> Vec<(String, Value)> {
        self.bap
            .raw
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.action == "on_status" && r.body["context"]["transaction_id"] == txn)
            .map(|r| {
                let code =
                    r.body["message"]["order"]["fulfillments"][0]["state"]["descriptor"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                (code, r.body.clone())
            })
            .collect()
    }

    fn has(&self, txn: &str, code: &str) -> bool {
        self.on_status(txn).iter().any(|(c, _)| c == code)
    }

    /// Distinct message ids of `txn`'s unsolicited callbacks: a resent event has a new one
    /// (a repeated delivery of one callback does not).
    fn message_ids(&self, txn: &str) -> HashSet<String> {
        self.on_status(txn)
            .iter()
            .filter_map(|(_, b)| b["context"]["message_id"].as_str().map(str::to_string))
            .collect()
    }

    /// A counter of the adapter's `/metrics`, 0 when it has not been counted yet.
    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .expect("admin reachable")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits until the counter `series` reaches `at_least`.
    async fn wait_metric(&self, series: &str, at_least: f64) {
        let start = Instant::now();
        loop {
            let value = self.metric(series).await;
            if value >= at_least {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{series} is {value}, not {at_least}, after {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cursor the store holds for the flow (read while the adapter may be running).
    async fn cursor(&self) -> Option<String> {
        let url = format!("sqlite://{}?mode=ro", self.store_file.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("store readable");
        sqlx::query_scalar::<_, Option<String>>("SELECT cursor FROM poll_cursors WHERE flow = ?")
            .bind(FLOW)
            .fetch_optional(&mut conn)
            .await
            .expect("poll_cursors readable")
            .flatten()
    }

    /// Sets the flow's cursor back to the start, as if a crash came before it was saved.
    async fn rewind(&self) {
        let url = format!("sqlite://{}", self.store_file.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("store writable");
        sqlx::query("UPDATE poll_cursors SET cursor = NULL, lease_until = 0 WHERE flow = ?")
            .bind(FLOW)
            .execute(&mut conn)
            .await
            .expect("cursor rewound");
    }
}

fn series(name: &str, labels: &str) -> String {
    format!("{name}{{flow=\"{FLOW}\",{labels}}} ")
}

#[tokio::test]
async fn polled_status_changes_reach_the_farmer_app_once_across_restarts_and_erp_outages() {
    let mut net = Polling::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let order_id = net.confirm(&txn).await;

    // The lab works on the dropped sample: received, testing, report ready.
    for _ in 0..3 {
        net.erp.advance("KTH", &order_id).expect("advances");
    }
    wait_until("a polled REPORT-READY on_status", DEADLINE, || {
        net.has(&txn, "REPORT-READY")
    })
    .await;
    let report = net
        .on_status(&txn)
        .into_iter()
        .find(|(c, _)| c == "REPORT-READY")
        .map(|(_, b)| b)
        .expect("report ready");
    assert_eq!(report["context"]["bpp_id"], KTH_ID);
    assert_eq!(report["context"]["action"], "on_status");
    assert!(uuid::Uuid::parse_str(report["context"]["message_id"].as_str().unwrap()).is_ok());
    let order = &report["message"]["order"];
    assert_eq!(order["id"], order_id.as_str());
    assert_eq!(order["status"], "COMPLETE");
    let url = order["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .find(|g| g["descriptor"]["code"] == "report")
        .and_then(|g| g["list"][0]["value"].as_str())
        .expect("report link")
        .to_string();
    assert!(url.ends_with(&format!("{order_id}.pdf")), "{url}");
    // Every step was announced, in order.
    let codes: Vec<String> = net.on_status(&txn).into_iter().map(|(c, _)| c).collect();
    assert_eq!(codes, ["SAMPLE-RECEIVED", "TESTING", "REPORT-READY"]);

    // The cursor is in the store once the page is recorded: the third event's number.
    let start = Instant::now();
    while net.cursor().await.as_deref() != Some("3") {
        assert!(
            start.elapsed() < DEADLINE,
            "cursor {:?}",
            net.cursor().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A restart carries on from the saved cursor: nothing is read or sent again.
    net.adapter.kill();
    net.spawn().await;
    let txn2 = uuid::Uuid::new_v4().to_string();
    let order2 = net.confirm(&txn2).await;
    net.erp.advance("KTH", &order2).expect("advances");
    wait_until("the second order's SAMPLE-RECEIVED", DEADLINE, || {
        net.has(&txn2, "SAMPLE-RECEIVED")
    })
    .await;
    let polled = |outcome: &str| {
        series(
            "adapter_events_total",
            &format!("source=\"poll\",outcome=\"{outcome}\""),
        )
    };
    assert_eq!(net.metric(&polled("accepted")).await, 1.0);
    assert_eq!(net.metric(&polled("duplicate")).await, 0.0);
    assert_eq!(net.message_ids(&txn).len(), 3, "nothing resent");

    // A crash before the cursor was saved re-reads the events: the inbox drops the repeats.
    net.adapter.kill();
    net.rewind().await;
    net.spawn().await;
    net.wait_metric(&polled("duplicate"), 4.0).await;
    assert_eq!(net.metric(&polled("accepted")).await, 0.0);
    assert_eq!(net.message_ids(&txn).len(), 3, "nothing resent");
    assert_eq!(net.message_ids(&txn2).len(), 1, "nothing resent");

    // The ERP fails for a while: polls back off and carry on once it is back.
    net.erp.set_fault(Some(sample_erp::Fault::ServerError));
    net.erp.advance("KTH", &order2).expect("advances");
    net.wait_metric(
        &series("adapter_event_polls_total", "outcome=\"failed\""),
        2.0,
    )
    .await;
    assert!(!net.has(&txn2, "TESTING"), "not before the ERP answers");
    net.erp.set_fault(None);
    wait_until("TESTING once the ERP is back", DEADLINE, || {
        net.has(&txn2, "TESTING")
    })
    .await;
    assert_eq!(net.message_ids(&txn2).len(), 2);
}

/// Polling follows reloads without a restart; a webhook's path does not.
#[tokio::test]
async fn a_reload_changes_what_is_polled_without_a_restart() {
    use beckn_adapter::reload::ReloadOutcome;

    let tree = crate::common::temp_tree(&["greenfield-lab.yaml", "krishi-lab.yaml"]);
    let root = tree.path().to_path_buf();
    let krishi = root.join("flows/krishi-lab.yaml");
    let edit = |file: &std::path::Path, from: &str, to: &str| {
        let text = std::fs::read_to_string(file).expect("flow file");
        assert!(text.contains(from), "{from} not in {}", file.display());
        std::fs::write(file, text.replacen(from, to, 1)).expect("flow written");
    };
    // Hardly ever polled at first.
    edit(&krishi, "${KTH_EVENTS_POLL_EVERY:-2s}", "1h");
    // The adapter polls as `serve` does, and reloads through its own reloader.
    let net = crate::common::Network::start_tree(&root.join("flows"), None).await;
    let reloader = net.reloader.clone();
    // A change at the lab: an order placed at its counter, not through Beckn, so the adapter
    // ignores its event once it sees it.
    let erp = format!("http://{}/api/v1/labs/KTH", net.erp_addr);
    let placed = net
        .http
        .post(format!("{erp}/orders"))
        .header("x-api-key", "sample-erp-key")
        .json(
            &json!({"client_ref": "walk-in-1", "items": [{"sku": "soil-npk-package", "qty": 1}],
            "mode": "LAB_DROP", "customer": {"name": "Vijay Pawar", "phone": "+91-99220-12345",
            "pincode": "411005"}}),
        )
        .send()
        .await
        .expect("ERP reachable");
    assert_eq!(placed.status(), 201);
    let ignored = series(
        "adapter_events_total",
        "source=\"poll\",outcome=\"ignored\"",
    );
    let counted = || {
        beckn_adapter::telemetry::metrics()
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(ignored.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // The first poll, at start, has found nothing and saved the cursor.
    let store = net.services.outbox.store.clone();
    let start = Instant::now();
    loop {
        let position = store
            .claim_poll(FLOW, "sole-process", beckn_adapter::store::now_ms(), 60_000)
            .await
            .expect("store");
        if position.is_some_and(|p| p.cursor.is_some()) {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "no first poll");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = counted();
    net.erp.advance("KTH", "KTH-000001").expect("advances");

    edit(&krishi, "every: 1h", "every: 100ms");
    assert!(matches!(
        reloader.reload("test"),
        ReloadOutcome::Applied { .. }
    ));
    wait_until("the reloaded poller to see the change", DEADLINE, || {
        counted() > before
    })
    .await;

    // Moving a webhook needs a restart: such a reload is refused.
    edit(
        &root.join("flows/greenfield-lab.yaml"),
        "path: /erp/events",
        "path: /erp/hooks",
    );
    assert!(matches!(
        reloader.reload("test"),
        ReloadOutcome::Rejected { .. }
    ));
}
