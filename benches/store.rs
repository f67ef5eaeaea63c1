//! The store's hot path on SQLite (`synchronous=FULL`), with the ids a buyer app sends
//! (random UUIDs, each transaction its own): one accept alone, 64 at once (group commit),
//! the three writes of an ACK-path message (accept, its callback queued, delivered) for 64
//! messages at once, and a batch of 64 delivery outcomes. `cargo bench --bench store`.
//!
//! `STORE_COUNT=N cargo bench --bench store` first runs N ACK-path messages, 64 at a time,
//! and prints the bytes the process wrote (`wchar` of `/proc/self/io`: the WAL, and the
//! database at checkpoints) per message; run it under `strace -f -c -e trace=fdatasync,fsync`
//! for the syncs.
//!
//! `BENCH_POSTGRES_URL=postgres://… cargo bench --bench store` runs the same writes on the
//! PostgreSQL store too, in that database (migrated on open; the rows stay).

use std::sync::Arc;
use std::time::{Duration, Instant};

use beckn_adapter::store::{Claim, HeldRequest, Inbound, InboundKey, NewOutbox, Store, now_ms};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};

const OWNER: &str = "bench-owner";

/// A search as the load generator sends it (its ids random, as a buyer app's are).
fn inbound() -> Inbound {
    let (transaction_id, message_id) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let body = format!(
        r#"{{"context":{{"domain":"agri.soil","action":"search","version":"1.1.0","bap_id":"farmer-app.example","bap_uri":"http://127.0.0.1:7393","transaction_id":"{transaction_id}","message_id":"{message_id}","timestamp":"2026-12-01T12:00:00.000Z","ttl":"PT10M","location":{{"country":{{"code":"IND"}}}}}},"message":{{"intent":{{"tags":[{{"descriptor":{{"code":"crop"}},"list":[{{"descriptor":{{"code":"name"}},"value":"wheat"}}]}}]}}}}}}"#
    );
    Inbound {
        key: InboundKey {
            flow: "bench-ack".into(),
            action: "search".into(),
            message_id: message_id.to_string(),
        },
        transaction_id: transaction_id.to_string(),
        counterpart: "farmer-app.example".into(),
        role: "bpp".into(),
        body: Bytes::from(body),
        headers: r#"{"authorization":"[redacted]","content-type":"application/json"}"#.into(),
        callback_base: "http://127.0.0.1:7393".into(),
        owner: OWNER.into(),
        lease_until: now_ms() + 60_000,
    }
}

/// The constant `on_search` answering `request`, handed straight to this process's worker.
fn callback(request: &Inbound) -> NewOutbox {
    let body = format!(
        r#"{{"context":{{"domain":"agri.soil","action":"on_search","version":"1.1.0","bap_id":"farmer-app.example","bap_uri":"http://127.0.0.1:7393","bpp_id":"soil.greenfield-labs.example","bpp_uri":"http://127.0.0.1:7101","transaction_id":"{}","message_id":"{}","timestamp":"2026-12-01T12:00:00.010Z","ttl":"PT10M"}},"message":{{"catalog":{{"descriptor":{{"name":"GreenField Soil Labs"}},"providers":[]}}}}}}"#,
        request.transaction_id, request.key.message_id
    );
    NewOutbox {
        flow: request.key.flow.clone(),
        kind: "callback".into(),
        url: format!("{}/on_search", request.callback_base),
        action: "on_search".into(),
        transaction_id: request.transaction_id.clone(),
        message_id: request.key.message_id.clone(),
        body: Bytes::from(body),
        deadline: Some(now_ms() + 600_000),
        completes: Some(HeldRequest {
            key: request.key.clone(),
            claim: Claim::first(OWNER),
        }),
        order: None,
        not_before: None,
        sequence: None,
        claimed_by: Some((OWNER.into(), now_ms() + 30_000)),
        steps: None,
    }
}

/// One ACK-path message: accepted, its callback queued (the request done), delivered.
async fn message(store: Arc<dyn Store>) {
    let request = inbound();
    let item = callback(&request);
    store.accept(request).await.expect("accept");
    let id = store.enqueue(item).await.expect("enqueue");
    let delivered = store.delivered(id, &Claim::first(OWNER), now_ms());
    assert!(delivered.await.expect("delivered"));
}

/// `n` messages queued and handed to this process's worker, ready for their outcome.
async fn queued(store: &Arc<dyn Store>, n: usize) -> Vec<i64> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move {
                let request = inbound();
                let item = callback(&request);
                s.accept(request).await.expect("accept");
                s.enqueue(item).await.expect("enqueue")
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    ids
}

/// Bytes this process has written so far (`wchar`: every write, cached or not).
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar: ").map(|n| n.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

fn count(rt: &tokio::runtime::Runtime, store: &Arc<dyn Store>, n: usize) {
    // A warm-up, so that the count is of a store in use rather than of its first pages.
    let run = |n: usize| {
        rt.block_on(async {
            for _ in 0..n.div_ceil(64) {
                let tasks: Vec<_> = (0..64)
                    .map(|_| tokio::spawn(message(store.clone())))
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
            }
        })
    };
    run(n / 4);
    let (before, started) = (written(), Instant::now());
    run(n);
    let n = n.div_ceil(64) * 64;
    println!(
        "count: {n} ACK-path messages (64 at once): {} bytes written per message, {:.1} µs each",
        (written() - before) / n as u64,
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = rt
        .block_on(beckn_adapter::store::open(&url))
        .expect("store");
    if let Some(n) = std::env::var("STORE_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        count(&rt, &store, n);
    }
    group(c, &rt, "store", &store);
    // The same on PostgreSQL, in a database the bench may fill (migrated on open).
    if let Ok(url) = std::env::var("BENCH_POSTGRES_URL") {
        let store = rt
            .block_on(beckn_adapter::store::open(&url))
            .expect("PostgreSQL store");
        group(c, &rt, "store/postgres", &store);
    }
}

/// The store's hot-path writes on `store`, under `name`.
fn group(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, store: &Arc<dyn Store>) {
    let mut group = c.benchmark_group(name);
    group.bench_function("accept alone (one commit)", |b| {
        b.iter(|| rt.block_on(store.accept(inbound())).expect("accept"))
    });
    group.bench_function("accept x64 concurrent (group commit)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..64)
                    .map(|_| {
                        let s = store.clone();
                        tokio::spawn(async move { s.accept(inbound()).await })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task").expect("accept");
                }
            })
        })
    });
    group.bench_function(
        "ACK-path message x64 concurrent (accept, queue, delivered)",
        |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tasks: Vec<_> = (0..64)
                        .map(|_| tokio::spawn(message(store.clone())))
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                })
            })
        },
    );
    group.bench_function("delivered x64 concurrent (a batch of outcomes)", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let ids = rt.block_on(queued(store, 64));
                let started = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = ids
                        .into_iter()
                        .map(|id| {
                            let s = store.clone();
                            tokio::spawn(async move {
                                s.delivered(id, &Claim::first(OWNER), now_ms()).await
                            })
                        })
                        .collect();
                    for t in tasks {
                        assert!(t.await.expect("task").expect("delivered"));
                    }
                });
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

criterion_group! {
    name = store;
    config = Criterion::default().sample_size(20);
    targets = benches
}
criterion_main!(store);
