//! What the adapter writes to its logs, with payload logging on: every message with its
//! headers, and never a private key, a signature, a secret or a redacted personal field.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{BAP_ID, BAP_TEST_KEY, bap_signature, bind, repo};
use crate::durability::{free_port, stand_in_at, wait_until};

const PHONE: &str = "+91-98100-55555";
const EMAIL: &str = "asha.logs@example.org";

#[tokio::test]
async fn logs_carry_ids_and_no_secrets() {
    let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
    let (erp_listener, erp_addr) = bind().await;
    tokio::spawn(erp.serve(erp_listener, std::future::pending()));
    let bap_addr = free_port().await;
    let bap = stand_in_at(bap_addr).await;
    let gfsl = free_port().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("adapter.log");
    let env: HashMap<String, String> = HashMap::from([
        ("GFSL_LISTEN".into(), gfsl.to_string()),
        ("GFSL_PUBLIC_URL".into(), format!("http://{gfsl}")),
        ("KTH_LISTEN".into(), free_port().await.to_string()),
        ("BHOOMI_LISTEN".into(), free_port().await.to_string()),
        ("GATEWAY_LISTEN".into(), free_port().await.to_string()),
        ("FARMER_APP_LISTEN".into(), free_port().await.to_string()),
        ("BECKN_ADMIN".into(), free_port().await.to_string()),
        ("FARMER_APP_URL".into(), format!("http://{bap_addr}")),
        (
            "GFSL_ERP_URL".into(),
            format!("http://{erp_addr}/api/v1/labs/GFSL"),
        ),
        (
            "KTH_ERP_URL".into(),
            format!("http://{erp_addr}/api/v1/labs/KTH"),
        ),
        ("BECKN_LOG".into(), "info".into()),
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .args([
            "--log-format",
            "json",
            "serve",
            "flows",
            "--log-payloads",
            "--no-watch",
        ])
        .arg("--store")
        .arg(format!("sqlite://{}", dir.path().join("s.db").display()))
        .current_dir(repo())
        .env_clear()
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http
        .get(format!("http://{gfsl}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "adapter did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let txn = uuid::Uuid::new_v4().to_string();
    let mut signatures = Vec::new();
    let mut ids = Vec::new();
    for (action, message) in [
        ("search", json!({})),
        (
            "confirm",
            json!({"order": {"provider": {"id": "GFSL"},
                "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
                "billing": {"name": "Asha Devi", "phone": PHONE, "email": EMAIL},
                "fulfillments": [{"type": "lab", "stops": [{"location": {"area_code": "110012", "address": "Pusa"},
                    "contact": {"phone": PHONE, "email": EMAIL}, "person": {"name": "Asha Devi"}}]}]}}),
        ),
    ] {
        let mut context = json!({"domain": "agri.soil", "action": action, "version": "1.1.0",
            "bap_id": BAP_ID, "bap_uri": format!("http://{bap_addr}"), "transaction_id": txn,
            "message_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT30S"});
        if action != "search" {
            context["bpp_id"] = json!("soil.greenfield-labs.example");
            context["bpp_uri"] = json!(format!("http://{gfsl}"));
        }
        let body = serde_json::to_vec(&json!({"context": context, "message": message})).unwrap();
        let auth = bap_signature(&body);
        signatures.push(
            auth.rsplit("signature=\"")
                .next()
                .unwrap()
                .trim_end_matches('"')
                .to_string(),
        );
        ids.push(context["message_id"].as_str().unwrap().to_string());
        let resp = http
            .post(format!("http://{gfsl}/{action}"))
            .header("content-type", "application/json")
            .header("authorization", auth)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    wait_until("both callbacks", Duration::from_secs(15), || {
        let got = bap.raw.lock().unwrap();
        ids.iter()
            .all(|id| got.iter().any(|r| r.body["context"]["message_id"] == *id))
    })
    .await;
    // the callbacks' own signatures must not be logged either
    for r in bap.raw.lock().unwrap().iter() {
        if let Some(a) = &r.authorization {
            signatures.push(
                a.rsplit("signature=\"")
                    .next()
                    .unwrap()
                    .trim_end_matches('"')
                    .to_string(),
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();

    // Something was logged: payloads of both directions, each line structured with the ids.
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(lines.len() > 10, "{log}");
    let payloads: Vec<&Value> = lines.iter().filter(|l| l["message"] == "payload").collect();
    assert!(
        payloads.iter().any(|p| p["direction"] == "in"),
        "incoming payloads logged"
    );
    assert!(
        payloads.iter().any(|p| p["direction"] == "out"),
        "outgoing payloads logged"
    );
    assert!(log.contains(&txn), "transaction ids are in the logs");
    let incoming_auth: Vec<String> = payloads
        .iter()
        .filter(|p| p["direction"] == "in")
        .filter_map(|p| serde_json::from_str::<Value>(p["headers"].as_str()?).ok())
        .filter_map(|h| h["authorization"].as_str().map(str::to_string))
        .collect();
    assert!(
        incoming_auth.iter().all(|a| a
            == "Signature keyId=\"farmer-app.example|farmer-app-key-1|ed25519\" (signature redacted)"),
        "signatures are logged by keyId only: {incoming_auth:?}"
    );
    assert_eq!(incoming_auth.len(), 2);

    // Nothing secret.
    let flow_keys: Vec<String> = ["greenfield-lab.yaml", "krishi-lab.yaml", "gateway.yaml"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(repo().join("flows").join(f)).ok())
        .filter_map(|t| {
            t.lines()
                .find(|l| l.contains("signing_private_key"))
                .and_then(|l| l.split(":-").nth(1))
                .map(|k| k.trim_end_matches("}\"").to_string())
        })
        .collect();
    assert_eq!(flow_keys.len(), 3, "{flow_keys:?}");
    let mut forbidden: Vec<(String, String)> = vec![
        ("the farmer app's private key".into(), BAP_TEST_KEY.into()),
        ("the ERP API key".into(), sample_erp::DEFAULT_API_KEY.into()),
        (
            "the webhook secret".into(),
            "test-only-webhook-secret".into(),
        ),
        ("a phone number".into(), PHONE.into()),
        ("an email address".into(), EMAIL.into()),
    ];
    forbidden.extend(
        flow_keys
            .into_iter()
            .map(|k| ("a flow's private key".into(), k)),
    );
    forbidden.extend(signatures.into_iter().map(|s| ("a signature".into(), s)));
    for (what, value) in forbidden {
        assert!(!value.is_empty());
        assert!(!log.contains(&value), "{what} appears in the logs");
    }
}

/// An adapter serving the shipped flows, its log (`--log-format FORMAT`) going to a file.
struct Logged {
    child: std::process::Child,
    gfsl: std::net::SocketAddr,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    async fn start(format: &str) -> Logged {
        let bap_addr = free_port().await;
        let _bap = stand_in_at(bap_addr).await;
        let gfsl = free_port().await;
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("adapter.log");
        let env: HashMap<String, String> = HashMap::from([
            ("GFSL_LISTEN".into(), gfsl.to_string()),
            ("GFSL_PUBLIC_URL".into(), format!("http://{gfsl}")),
            ("KTH_LISTEN".into(), free_port().await.to_string()),
            ("BHOOMI_LISTEN".into(), free_port().await.to_string()),
            ("GATEWAY_LISTEN".into(), free_port().await.to_string()),
            ("FARMER_APP_LISTEN".into(), free_port().await.to_string()),
            ("BECKN_ADMIN".into(), free_port().await.to_string()),
            ("FARMER_APP_URL".into(), format!("http://{bap_addr}")),
            ("BECKN_LOG".into(), "info".into()),
        ]);
        let child = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
            .args(["--log-format", format, "serve", "flows", "--no-watch"])
            .arg("--store")
            .arg(format!("sqlite://{}", dir.path().join("s.db").display()))
            .current_dir(repo())
            .env_clear()
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let start = Instant::now();
        while http
            .get(format!("http://{gfsl}/health"))
            .send()
            .await
            .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "adapter did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Logged {
            child,
            gfsl,
            log_path,
            _dir: dir,
        }
    }

    /// Stops the adapter and returns what it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log_path).unwrap()
    }
}

#[tokio::test]
async fn log_injection_through_a_path_or_a_signed_action_is_escaped() {
    const FORGED: &str = "2026-12-01T00:00:00.000000Z ERROR forged line";
    for format in ["text", "json"] {
        let adapter = Logged::start(format).await;
        let http = reqwest::Client::new();
        // An encoded newline and ESC in the path: the action the adapter logs.
        let resp = http
            .post(format!(
                "http://{}/search%0A2026-12-01T00:00:00.000000Z%20ERROR%20forged%20line%1B%5B31m",
                adapter.gfsl
            ))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        // The same in a signed context.action: the reason the adapter logs.
        let body = serde_json::to_vec(&json!({"context": {"domain": "agri.soil",
            "action": format!("search\n{FORGED}\u{1b}[31m"), "version": "1.1.0",
            "bap_id": BAP_ID, "bap_uri": "http://127.0.0.1:9",
            "transaction_id": uuid::Uuid::new_v4().to_string(),
            "message_id": uuid::Uuid::new_v4().to_string(),
            "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT30S"}, "message": {}}))
        .unwrap();
        let resp = http
            .post(format!("http://{}/search", adapter.gfsl))
            .header("content-type", "application/json")
            .header("authorization", bap_signature(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let log = adapter.stop();

        assert!(
            log.matches("forged line").count() >= 2,
            "both attempts are logged ({format}): {log}"
        );
        assert!(
            !log.contains('\u{1b}'),
            "a raw ESC in the {format} log: {log}"
        );
        for line in log.lines() {
            assert!(
                !line.starts_with(FORGED),
                "a forged line in the {format} log: {log}"
            );
            if format == "json" {
                assert!(
                    serde_json::from_str::<Value>(line).is_ok(),
                    "not one JSON object: {line}"
                );
            }
        }
    }
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("s.db").display());
    let stderr_of = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
            .args(extra)
            .args(["outbox", "list", "--store", &store])
            .env("BECKN_LOG", "debug")
            .env_remove("BECKN_LOG_COLOR")
            .output()
            .expect("run the adapter");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let piped = stderr_of(&[]);
    assert!(piped.contains("DEBUG"), "debug lines were logged: {piped}");
    assert!(
        !piped.contains('\u{1b}'),
        "no escape sequences in a pipe: {piped}"
    );
    assert!(!stderr_of(&["--color", "never"]).contains('\u{1b}'));
    assert!(stderr_of(&["--color", "always"]).contains("\u{1b}["));
}
