//! The PostgreSQL store, shared by several processes. These tests need a PostgreSQL server
//! (`BECKN_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432/test); they are
//! `#[ignore]`d so that `cargo test` reports them as skipped where there is none, and CI runs
//! them with `--ignored` when its PostgreSQL is up. Each test works in a database of its own.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::json;
use sqlx::Connection;

use crate::common::{BAP_ID, bap_signature, bind};
use crate::durability::{Adapter, free_port, stand_in_at, wait_until};

/// A database created for one test and dropped after it.
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = std::env::var("BECKN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("beckn_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL reachable (these tests are skipped without it)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        TestDb {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        // Dropping needs a runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn two_processes_share_the_work_and_survive_one_being_killed() {
    let db = TestDb::create().await;
    let erp = sample_erp::SampleErp::new(sample_erp::ErpConfig::default());
    let (erp_listener, erp_addr) = bind().await;
    tokio::spawn(erp.clone().serve(erp_listener, std::future::pending()));
    let bap_addr = free_port().await;
    let bap = stand_in_at(bap_addr).await;
    let mut adapters = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..2 {
        let gfsl = free_port().await;
        urls.push(format!("http://{gfsl}"));
        adapters.push(Adapter {
            env: HashMap::from([
                ("GFSL_LISTEN".into(), gfsl.to_string()),
                ("GFSL_PUBLIC_URL".into(), format!("http://{gfsl}")),
                ("KTH_LISTEN".into(), free_port().await.to_string()),
                ("BHOOMI_LISTEN".into(), free_port().await.to_string()),
                ("GATEWAY_LISTEN".into(), free_port().await.to_string()),
                ("FARMER_APP_LISTEN".into(), free_port().await.to_string()),
                ("FARMER_APP_URL".into(), format!("http://{bap_addr}")),
                (
                    "GFSL_ERP_URL".into(),
                    format!("http://{erp_addr}/api/v1/labs/GFSL"),
                ),
                (
                    "KTH_ERP_URL".into(),
                    format!("http://{erp_addr}/api/v1/labs/KTH"),
                ),
                ("BECKN_LOG".into(), "warn".into()),
                ("BECKN_ADMIN".into(), free_port().await.to_string()),
            ]),
            store: db.url.clone(),
            child: None,
        });
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for (a, url) in adapters.iter_mut().zip(&urls) {
        a.spawn();
        let start = std::time::Instant::now();
        while http.get(format!("{url}/health")).send().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "adapter did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let search = |http: reqwest::Client, url: String| async move {
        let body = json!({
            "context": {"domain": "agri.soil", "action": "search", "version": "1.1.0",
                "bap_id": BAP_ID, "bap_uri": format!("http://{bap_addr}"),
                "transaction_id": uuid::Uuid::new_v4().to_string(),
                "message_id": uuid::Uuid::new_v4().to_string(),
                "timestamp": jiff::Timestamp::now().to_string(), "ttl": "PT1M"},
            "message": {}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let id = body["context"]["message_id"].as_str().unwrap().to_string();
        let ok = http
            .post(format!("{url}/search"))
            .header("content-type", "application/json")
            .header("authorization", bap_signature(&bytes))
            .body(bytes)
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .is_some();
        (id, ok)
    };
    let mut acked = HashSet::new();
    let mut killed = false;
    for round in 0..24 {
        if round == 8 {
            erp.set_fault(Some(sample_erp::Fault::Slow(Duration::from_millis(400))));
        }
        let batch: Vec<_> = (0..10)
            .map(|i| tokio::spawn(search(http.clone(), urls[i % 2].clone())))
            .collect();
        if round == 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            adapters[0].kill();
            killed = true;
        }
        if round == 12 {
            erp.set_fault(None);
        }
        for t in batch {
            let (id, ok) = t.await.unwrap();
            if ok {
                acked.insert(id);
            }
        }
    }
    assert!(killed && acked.len() >= 150, "{} acked", acked.len());
    let delivered = || -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for r in bap.raw.lock().unwrap().iter() {
            let id = r.body["context"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            *seen.entry(id).or_insert(0) += 1;
        }
        seen
    };
    wait_until(
        "the survivor to finish the killed process's work",
        Duration::from_secs(60),
        || {
            let seen = delivered();
            acked.iter().all(|id| seen.contains_key(id))
        },
    )
    .await;
    let seen = delivered();
    let repeats = seen.values().filter(|n| **n > 1).count();
    assert!(repeats <= 64, "{repeats} repeated");
    eprintln!(
        "two processes: {} acknowledged, {} delivered, {} repeated after the kill",
        acked.len(),
        seen.len(),
        repeats
    );
}

/// A request on PostgreSQL is accepted in one statement with no transaction to roll back: two
/// processes accepting first requests of one transaction for different counterparts at once
/// admit exactly one (the other is foreign and leaves no record), and the same request accepted
/// by both at once is recorded once.
#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn postgres_accepts_in_one_statement_and_admits_one_of_two_first_requests_at_once() {
    use beckn_adapter::store::{Admission, Inbound, InboundKey, now_ms};

    let db = TestDb::create().await;
    let (a, b) = (
        beckn_adapter::store::open(&db.url).await.unwrap(),
        beckn_adapter::store::open(&db.url).await.unwrap(),
    );
    let request = |message_id: String, transaction_id: String, bap_id: &str| Inbound {
        key: InboundKey {
            flow: "lab".into(),
            action: "search".into(),
            message_id,
        },
        transaction_id,
        counterpart: bap_id.into(),
        role: "bpp".into(),
        body: bytes::Bytes::from(format!("{{\"from\":\"{bap_id}\"}}")),
        headers: "{}".into(),
        callback_base: format!("http://127.0.0.1:9/{bap_id}"),
        owner: "p".into(),
        lease_until: now_ms() + 60_000,
    };
    for i in 0..20 {
        let t = format!("t{i}");
        let (x, y) = tokio::join!(
            a.accept(request(format!("a{i}"), t.clone(), "a.example")),
            b.accept(request(format!("b{i}"), t.clone(), "b.example")),
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let winner = match (&x, &y) {
            (Admission::New, Admission::Foreign) => "a.example",
            (Admission::Foreign, Admission::New) => "b.example",
            other => panic!("{t}: one first request passes, the other is foreign: {other:?}"),
        };
        let (body, _) = a.last_request("lab", &t).await.unwrap().unwrap();
        assert_eq!(body, format!("{{\"from\":\"{winner}\"}}").as_bytes(), "{t}");

        let same = request(format!("s{i}"), format!("u{i}"), "a.example");
        let (x, y) = tokio::join!(a.accept(same.clone()), b.accept(same));
        let mut got = [x.unwrap(), y.unwrap()];
        got.sort_by_key(|admission| admission != &Admission::New);
        assert_eq!(got, [Admission::New, Admission::Duplicate], "u{i}");
    }
}
