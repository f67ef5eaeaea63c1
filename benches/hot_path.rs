//! Micro-benchmarks of the pieces on the message path: signatures, schema validation, template
//! rendering, a rhai step, a store insert and the metrics of one message. `cargo bench --bench hot_path`.

mod fixtures;

use std::collections::HashMap;
use std::hint::black_box;

use beckn_adapter::beckn::signing::{PrivateKey, SignatureHeader};
use beckn_adapter::compile::{Layout, load};
use beckn_adapter::mapping::jvalue;
use beckn_adapter::store::{Inbound, InboundKey};
use criterion::{Criterion, criterion_group, criterion_main};
use fixtures::{lab, packages, repo, search};
use serde_json::{Value, json};

fn search_body() -> Vec<u8> {
    serde_json::to_vec(&search()).unwrap()
}

/// The `n`th accepted search, as the store records it.
fn inbound(n: u64, body: &bytes::Bytes) -> Inbound {
    Inbound {
        key: InboundKey {
            flow: "lab".into(),
            action: "search".into(),
            message_id: format!("m{n}"),
        },
        transaction_id: "t".into(),
        counterpart: "farmer-app.example".into(),
        role: "bpp".into(),
        body: body.clone(),
        headers: "{}".into(),
        callback_base: "http://127.0.0.1:7100".into(),
        owner: "bench".into(),
        lease_until: 0,
    }
}

fn benches(c: &mut Criterion) {
    let body = search_body();
    let key = PrivateKey::generate().unwrap();
    let public = key.public_key();
    let header = key.sign(&body, "farmer-app.example|k1", 1_800_000_000, 1_800_000_060);
    c.bench_function("signature/sign", |b| {
        b.iter(|| {
            key.sign(
                black_box(&body),
                "farmer-app.example|k1",
                1_800_000_000,
                1_800_000_060,
            )
        })
    });
    c.bench_function("signature/verify", |b| {
        b.iter(|| {
            let parsed = SignatureHeader::parse(black_box(&header)).unwrap();
            parsed
                .verify(black_box(&body), &public, 1_800_000_010, 5)
                .unwrap()
        })
    });

    c.bench_function("json/keys given twice (top level and context)", |b| {
        b.iter(|| beckn_adapter::beckn::context::duplicate_key(black_box(&body)))
    });
    c.bench_function("json/parse the search into a Value", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).unwrap())
    });

    let env: HashMap<String, String> = HashMap::new();
    let set =
        load(&Layout::from_flows_dir(repo().join("flows")), &env).expect("sample flows compile");
    let flow = set.flow("greenfield-lab").expect("greenfield-lab").clone();
    let search: Value = serde_json::from_slice(&body).unwrap();
    c.bench_function("schema/search (core + domain)", |b| {
        b.iter(|| {
            let core = set
                .core
                .get("search")
                .unwrap()
                .violations(black_box(&search), 5);
            let domain = flow
                .domain_rules
                .as_ref()
                .unwrap()
                .check("search", &search, true, 5);
            assert!(core.is_empty() && domain.is_empty());
        })
    });

    // A 20-item on_search, rendered by the shipped template, then validated.
    let scope = json!({"context": search["context"], "message": search["message"],
        "flow": {"name": "greenfield-lab"}, "filters": {}, "lab": lab(), "found": packages(20)});
    let ctx = jvalue(&scope);
    c.bench_function("template/on_search 20 items", |b| {
        b.iter(|| {
            flow.templates
                .render_json("soil/on_search.j2", black_box(&ctx))
                .unwrap()
        })
    });
    let catalog = flow
        .templates
        .render_json("soil/on_search.j2", &ctx)
        .unwrap();
    let on_search = json!({"context": {"domain": "agri.soil", "action": "on_search", "version": "1.1.0",
        "bap_id": "farmer-app.example", "bap_uri": "http://127.0.0.1:7100",
        "bpp_id": "soil.greenfield-labs.example", "bpp_uri": "http://127.0.0.1:7101",
        "transaction_id": "6f1c6b1e-8a7d-4c39-9f0e-2d1b3a4c5d6e",
        "message_id": "7a2d7c2f-9b8e-4d4a-8f1f-3e2c4b5d6f7a",
        "timestamp": "2026-11-23T10:00:00.000Z", "ttl": "PT30S"}, "message": catalog});
    c.bench_function("schema/on_search 20 items (core + domain)", |b| {
        b.iter(|| {
            let core = set
                .core
                .get("on_search")
                .unwrap()
                .violations(black_box(&on_search), 5);
            let domain =
                flow.domain_rules
                    .as_ref()
                    .unwrap()
                    .check("on_search", &on_search, true, 5);
            assert!(core.is_empty() && domain.is_empty(), "{core:?} {domain:?}");
        })
    });

    // The message log masks personal fields: a catalog carries the labs' addresses and GPS,
    // a search nothing personal (left as it is without being read).
    let fields = beckn_adapter::beckn::redact::PersonalFields::defaults();
    let on_search_bytes = serde_json::to_vec(&on_search).unwrap();
    c.bench_function("redact/on_search 20 items (message log masking)", |b| {
        b.iter(|| fields.mask(black_box(&on_search_bytes)).unwrap().len())
    });
    c.bench_function("redact/search (nothing personal)", |b| {
        b.iter(|| fields.mask(black_box(&body)).unwrap().len())
    });

    let vars = scope.as_object().unwrap().clone();
    c.bench_function("rhai/search_filters step", |b| {
        b.iter(|| {
            flow.scripts
                .run("soil/search_filters.rhai", black_box(&vars))
                .unwrap()
        })
    });

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(beckn_adapter::store::open(&format!(
            "sqlite://{}",
            dir.path().join("bench.db").display()
        )))
        .unwrap();
    let raw = bytes::Bytes::from(body.clone());
    let mut n = 0u64;
    c.bench_function("store/accept (one at a time, fsync each)", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(store.accept(inbound(n, &raw))).unwrap()
        })
    });
    c.bench_function("store/accept x64 concurrent (group commit)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::with_capacity(64);
                for _ in 0..64 {
                    n += 1;
                    let s = store.clone();
                    let inbound = inbound(n, &raw);
                    tasks.push(tokio::spawn(async move { s.accept(inbound).await }));
                }
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            })
        })
    });

    c.bench_function(
        "metrics/one request ACKed and its callback delivered, recorded",
        |b| {
            b.iter(|| {
                beckn_adapter::telemetry::request_answered(
                    black_box("greenfield-lab"),
                    "bpp",
                    "search",
                    None,
                    std::time::Duration::from_micros(300),
                );
                beckn_adapter::telemetry::delivery_attempted(
                    black_box("greenfield-lab"),
                    "on_search",
                    "delivered",
                    std::time::Duration::from_micros(900),
                );
            })
        },
    );

    c.bench_function("compile/full load of the sample flows", |b| {
        b.iter(|| load(&Layout::from_flows_dir(repo().join("flows")), &env).unwrap())
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(hot_path);
