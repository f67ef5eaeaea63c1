//! The callback stage on its own: `on_search` messages queued in the outbox as the engine
//! queues them (recorded, then handed to the worker), signed with the flow's key and POSTed
//! over pooled keep-alive connections to a loopback receiver that ACKs, their delivery
//! recorded. `cargo bench --bench delivery`.
//!
//! Per message this is one store write to queue, one ed25519 signature, one HTTP exchange and
//! one store write for the outcome; the store is SQLite with `synchronous=FULL`, as `serve`
//! opens it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::post;
use beckn_adapter::compile::{Layout, load};
use beckn_adapter::delivery::{DeliverySettings, Outbox};
use beckn_adapter::store::NewOutbox;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::sync::Notify;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A buyer app that ACKs every callback and counts them.
struct Receiver {
    got: AtomicUsize,
    arrived: Notify,
}

/// The `n`th callback: an `on_search` with a small catalog, as the ACK-path bench flow answers.
fn callback(url: &str, n: u64) -> NewOutbox {
    let (transaction_id, message_id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let body = format!(
        r#"{{"context":{{"domain":"agri.soil","action":"on_search","version":"1.1.0","bap_id":"farmer-app.example","bap_uri":"{url}","bpp_id":"soil.greenfield-labs.example","bpp_uri":"http://127.0.0.1:7101","transaction_id":"{transaction_id}","message_id":"{message_id}","timestamp":"2026-12-01T12:00:00.000Z","ttl":"PT30S"}},"message":{{"catalog":{{"descriptor":{{"name":"GreenField Soil Labs {n}"}},"providers":[]}}}}}}"#
    );
    NewOutbox {
        flow: "greenfield-lab".into(),
        kind: "callback".into(),
        url: format!("{url}/on_search"),
        action: "on_search".into(),
        transaction_id: transaction_id.to_string(),
        message_id: message_id.to_string(),
        body: Bytes::from(body),
        deadline: None,
        completes: None,
        order: None,
        not_before: None,
        sequence: None,
        claimed_by: None,
        steps: None,
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let env: HashMap<String, String> = HashMap::new();
    let set = load(&Layout::from_flows_dir(repo().join("flows")), &env).expect("sample flows");
    let flows = Arc::new(ArcSwap::from_pointee(set));
    let receiver = Arc::new(Receiver {
        got: AtomicUsize::new(0),
        arrived: Notify::new(),
    });
    let url = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let counted = receiver.clone();
        let app = Router::new().route(
            "/on_search",
            post(move || {
                let counted = counted.clone();
                async move {
                    counted.got.fetch_add(1, Ordering::SeqCst);
                    counted.arrived.notify_one();
                    axum::Json(serde_json::json!({"message": {"ack": {"status": "ACK"}}}))
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    });
    let store = rt
        .block_on(beckn_adapter::store::open(&format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        )))
        .expect("store");
    let outbox = Arc::new(Outbox::new(store, DeliverySettings::default()));
    rt.spawn(outbox.clone().run(flows, std::future::pending()));

    let mut n = 0u64;
    let mut group = c.benchmark_group("delivery");
    group.bench_function(
        "64 callbacks queued, signed, POSTed over keep-alive and recorded delivered",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let target = receiver.got.load(Ordering::SeqCst) + 64;
                    let sends: Vec<_> = (0..64)
                        .map(|_| {
                            n += 1;
                            let (outbox, item) = (outbox.clone(), callback(&url, n));
                            tokio::spawn(async move { outbox.submit(item).await })
                        })
                        .collect();
                    for s in sends {
                        s.await.expect("task").expect("queued");
                    }
                    while receiver.got.load(Ordering::SeqCst) < target {
                        receiver.arrived.notified().await;
                    }
                    // The outcomes are recorded after the receiver answered: wait for them
                    // too, so that each round pays for its own.
                    while outbox.under_way() > 0 {
                        tokio::task::yield_now().await;
                    }
                })
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = delivery;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = benches
}
criterion_main!(delivery);
