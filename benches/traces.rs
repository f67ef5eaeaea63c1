//! What tracing costs a message: the spans of one search's steps (a root, eight steps, a
//! `traceparent` for a call), with no exporter configured and with one.

use std::hint::black_box;

use beckn_adapter::telemetry::traces::{self, TraceSettings, Traces};
use criterion::{Criterion, criterion_group, criterion_main};

/// The spans a search makes, as the adapter makes them.
fn one_message(traces: &Traces) -> usize {
    let root = traces.message("search", None, Vec::new);
    root.in_scope(|| {
        let mut made = 0;
        for name in [
            "beckn.verify",
            "beckn.check",
            "store.accept",
            "beckn.work",
            "script",
            "backend.call",
            "template",
            "delivery.attempt",
        ] {
            let step = traces::step(black_box(name));
            step.attr("step", "lab");
            made += step.in_scope(traces::traceparent).map_or(0, |t| t.len());
        }
        made
    })
}

fn benches(c: &mut Criterion) {
    let off = Traces::off();
    c.bench_function("traces/one message's spans, no exporter", |b| {
        b.iter(|| one_message(black_box(&off)))
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Nothing listens there: the spans are made and batched, their exports fail.
    let on = rt
        .block_on(async {
            Traces::new(&TraceSettings {
                endpoint: Some("http://127.0.0.1:9".into()),
                ..TraceSettings::default()
            })
        })
        .unwrap();
    c.bench_function("traces/one message's spans, exported", |b| {
        b.iter(|| one_message(black_box(&on)))
    });
}

criterion_group! {
    name = traces_cost;
    config = Criterion::default().sample_size(30);
    targets = benches
}
criterion_main!(traces_cost);
