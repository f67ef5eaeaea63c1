//! What a signature costs on the message path: signing a callback, reading and checking a
//! request's signature alone, and checking n signatures as one batch (per signature) the way
//! requests arriving together are checked. `cargo bench --bench signatures`.

use std::hint::black_box;

use beckn_adapter::beckn::signing::{PrivateKey, SignatureHeader};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const CREATED: i64 = 1_800_000_000;

/// A search body of about the size the load generator sends, made distinct by `n`.
fn body(n: usize) -> Vec<u8> {
    format!(
        r#"{{"context":{{"domain":"agri.soil","action":"search","version":"1.1.0","bap_id":"farmer-app.example","bap_uri":"http://127.0.0.1:7100","transaction_id":"6f1c6b1e-8a7d-4c39-9f0e-{n:012}","message_id":"7a2d7c2f-9b8e-4d4a-8f1f-{n:012}","timestamp":"2026-11-23T10:00:00.000Z","ttl":"PT30S","location":{{"city":{{"code":"std:011"}},"country":{{"code":"IND"}}}}}},"message":{{"intent":{{"fulfillment":{{"type":"home","stops":[{{"location":{{"area_code":"110012"}}}}]}}}}}}}}"#
    )
    .into_bytes()
}

fn signatures(c: &mut Criterion) {
    let key = PrivateKey::generate().unwrap();
    let public = key.public_key();
    let one = body(0);
    let header = key.sign(&one, "farmer-app.example|k1", CREATED, CREATED + 60);

    c.bench_function("signatures/sign a body (BLAKE2b-512 + ed25519)", |b| {
        b.iter(|| {
            key.sign(
                black_box(&one),
                "farmer-app.example|k1",
                CREATED,
                CREATED + 60,
            )
        })
    });
    c.bench_function("signatures/read the header", |b| {
        b.iter(|| SignatureHeader::parse(black_box(&header)).unwrap())
    });
    let parsed = SignatureHeader::parse(&header).unwrap();
    c.bench_function("signatures/verify alone", |b| {
        b.iter(|| parsed.verify_signature(black_box(&one), &public).unwrap())
    });

    // n requests in flight at once, checked through the batching path of the trust stage.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("signatures/verify n at once");
    for n in [1usize, 2, 4, 8, 16, 64] {
        let bodies: Vec<Vec<u8>> = (0..n).map(body).collect();
        let headers: Vec<SignatureHeader> = bodies
            .iter()
            .map(|b| {
                SignatureHeader::parse(&key.sign(b, "farmer-app.example|k1", CREATED, CREATED + 60))
                    .unwrap()
            })
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("alone", n), &n, |b, _| {
            b.iter(|| {
                for (h, body) in headers.iter().zip(&bodies) {
                    h.verify_signature(body, &public).unwrap();
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("batched", n), &n, |b, _| {
            b.iter(|| {
                runtime.block_on(futures::future::join_all(
                    headers
                        .iter()
                        .zip(&bodies)
                        .map(|(h, body)| h.verify_signature_batched(body, &public)),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, signatures);
criterion_main!(benches);
