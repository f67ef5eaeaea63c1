//! Micro-benchmarks of the template and script work of a search: the shipped 20-item catalog,
//! the conversion of the ERP's packages for templates, the rhai step, and the whole action
//! run from the ERP's answers to the callback body checked against the schemas.
//! `cargo bench --bench templates`.

mod fixtures;

use std::collections::HashMap;
use std::hint::black_box;

use beckn_adapter::backend::{Backend, BackendFailure, BackendRequest, BackendResponse, Transport};
use beckn_adapter::beckn::action::Action;
use beckn_adapter::clock::SystemClock;
use beckn_adapter::compile::{Layout, load};
use beckn_adapter::mapping::jvalue;
use criterion::{Criterion, criterion_group, criterion_main};
use fixtures::{lab, packages, repo, search};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

/// The allocator the `beckn-adapter` binary runs with: a render allocates and frees many small
/// values, so the system allocator would measure something the adapter does not run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The ERP's answers by step, the same every time: no network, no fixture bookkeeping.
struct Answers(HashMap<&'static str, Value>);

impl Transport for Answers {
    fn send<'a>(
        &'a self,
        _backend: &'a Backend,
        step: &'a str,
        _request: BackendRequest,
    ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>> {
        let answer = match self.0.get(step) {
            Some(body) => Ok(BackendResponse {
                status: 200,
                body: body.clone(),
                next_link: None,
            }),
            None => Err(BackendFailure::Unreachable(format!("no answer for {step}"))),
        };
        Box::pin(async move { answer })
    }
}

fn benches(c: &mut Criterion) {
    let env: HashMap<String, String> = HashMap::new();
    let set =
        load(&Layout::from_flows_dir(repo().join("flows")), &env).expect("sample flows compile");
    let flow = set.flow("greenfield-lab").expect("greenfield-lab").clone();
    let search = search();

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
    // The same render split in its two halves: the template writing its JSON text, and
    // serde_json reading that text back into a value.
    c.bench_function("template/on_search 20 items, text only", |b| {
        b.iter(|| {
            flow.templates
                .render("soil/on_search.j2", black_box(&ctx))
                .unwrap()
        })
    });
    let text = flow.templates.render("soil/on_search.j2", &ctx).unwrap();
    c.bench_function("template/on_search 20 items, text parsed only", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(&text)).unwrap())
    });
    let found = packages(20);
    c.bench_function("template/20 packages converted to template values", |b| {
        b.iter(|| jvalue(black_box(&found)))
    });

    // The step's own scope (the request), and one with the ERP's 20 packages besides.
    let mut request_scope = Map::new();
    for k in ["context", "message"] {
        request_scope.insert(k.into(), search[k].clone());
    }
    request_scope.insert("transaction".into(), json!({}));
    request_scope.insert("flow".into(), json!({"name": "greenfield-lab"}));
    c.bench_function("rhai/search_filters step, request scope", |b| {
        b.iter(|| {
            flow.scripts
                .run("soil/search_filters.rhai", black_box(&request_scope))
                .unwrap()
        })
    });
    let vars = scope.as_object().unwrap().clone();
    c.bench_function("rhai/search_filters step, scope with 20 packages", |b| {
        b.iter(|| {
            flow.scripts
                .run("soil/search_filters.rhai", black_box(&vars))
                .unwrap()
        })
    });

    // The whole search action: filters script, the two ERP answers, the catalog; then the
    // callback's context and body with the outgoing schema and domain rules check.
    let answers = Answers(HashMap::from([("lab", lab()), ("found", packages(20))]));
    let clock = SystemClock;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let run = || {
        rt.block_on(beckn_adapter::engine::run_action(
            &flow,
            Action::Search,
            black_box(&search),
            &answers,
            &clock,
        ))
        .unwrap()
    };
    assert_eq!(
        run().message["catalog"]["providers"][0]["items"]
            .as_array()
            .map(Vec::len),
        Some(20)
    );
    c.bench_function("action/search run, ERP answers given", |b| b.iter(run));
    let rules = beckn_adapter::roles::rules(&flow, &set.core);
    c.bench_function(
        "action/search run + callback body (schema and rules checked)",
        |b| {
            b.iter(|| {
                let out = run();
                let context = beckn_adapter::beckn::context::callback_context(
                    &flow.participant,
                    &flow.domain,
                    Action::Search,
                    &search["context"],
                    jiff::Timestamp::now(),
                );
                let body = beckn_adapter::intake::answer::callback_body(
                    &rules,
                    Action::Search,
                    context,
                    Ok(out.message),
                );
                assert!(body.get("error").is_none(), "{body}");
                body
            })
        },
    );
}

criterion_group! {
    name = templates;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(templates);
