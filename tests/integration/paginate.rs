//! `paginate:` against a stand-in ERP serving one list of seven tests in pages of three, by
//! page number, offset, `Link` header, next link in the body and cursor. A flow's steps are run
//! through the engine with the real HTTP transport: every page is fetched, in order, into one
//! array; a list longer than `max_pages` is a Beckn error from the call's `errors:` table.
//! The same stand-in serves one test by code for `for_each` (answers kept in list order while
//! calls overlap; a list over `max_items` refused before any call) and echoes a `text_body`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::header::LINK;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use beckn_adapter::backend::HttpTransport;
use beckn_adapter::beckn::action::Action;
use beckn_adapter::clock::SystemClock;
use beckn_adapter::compile::Layout;
use beckn_adapter::engine::run_action;
use serde_json::{Value, json};

use crate::common::{bind, temp_tree};

const TOTAL: usize = 7;
const SIZE: usize = 3;

/// Every request the ERP saw: path and query string.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

fn tests_from(start: usize) -> Vec<Value> {
    (start..TOTAL.min(start + SIZE))
        .map(|i| json!({"code": format!("T{}", i + 1)}))
        .collect()
}

type Q = Query<HashMap<String, String>>;

fn note(seen: &Seen, path: &str, q: &HashMap<String, String>) {
    let mut pairs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    seen.0
        .lock()
        .unwrap()
        .push(format!("{path}?{}", pairs.join("&")));
}

fn num(q: &HashMap<String, String>, key: &str, default: usize) -> usize {
    q.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn by_page(State(seen): State<Arc<Seen>>, Query(q): Q) -> Response {
    note(&seen, "/by-page", &q);
    let page = num(&q, "page", 1);
    axum::Json(json!({"items": tests_from((page - 1) * SIZE)})).into_response()
}

async fn by_offset(State(seen): State<Arc<Seen>>, Query(q): Q) -> Response {
    note(&seen, "/by-offset", &q);
    let rows = tests_from(num(&q, "offset", 0));
    axum::Json(json!({"data": {"rows": rows}})).into_response()
}

async fn by_link(State(seen): State<Arc<Seen>>, Query(q): Q) -> Response {
    note(&seen, "/by-link", &q);
    let p = num(&q, "p", 0);
    let body = axum::Json(json!(tests_from(p * SIZE)));
    if (p + 1) * SIZE < TOTAL {
        let link = format!(
            r#"</api/erp/by-link?p={}>; rel="next", </api/erp/by-link?p=0>; rel="first""#,
            p + 1
        );
        ([(LINK, link)], body).into_response()
    } else {
        body.into_response()
    }
}

async fn by_body_link(State(seen): State<Arc<Seen>>, Query(q): Q) -> Response {
    note(&seen, "/by-body-link", &q);
    let p = num(&q, "p", 0);
    let next = ((p + 1) * SIZE < TOTAL).then(|| format!("by-body-link?p={}", p + 1));
    axum::Json(json!({"items": tests_from(p * SIZE), "next": next})).into_response()
}

async fn by_cursor(State(seen): State<Arc<Seen>>, Query(q): Q) -> Response {
    note(&seen, "/by-cursor", &q);
    let from = q
        .get("after")
        .and_then(|c| c.strip_prefix("c"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let next = (from + SIZE < TOTAL).then(|| format!("c{}", from + SIZE));
    axum::Json(json!({"results": tests_from(from), "meta": {"next_cursor": next}})).into_response()
}

/// One test by its code; later codes answer sooner, so answers arrive out of order.
async fn one_test(State(seen): State<Arc<Seen>>, UrlPath(code): UrlPath<String>) -> Response {
    let n: u64 = code.trim_start_matches('T').parse().unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis((8 - n.min(8)) * 15)).await;
    note(&seen, &format!("/tests/{code}"), &HashMap::new());
    axum::Json(json!({"code": code, "price": format!("{n}99.00")})).into_response()
}

/// Echoes a raw body and its content type.
async fn echo(headers: axum::http::HeaderMap, body: String) -> Response {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    axum::Json(json!({"content_type": ct, "body": body})).into_response()
}

async fn start_erp() -> (Arc<Seen>, SocketAddr) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/api/erp/by-page", get(by_page))
        .route("/api/erp/by-offset", get(by_offset))
        .route("/api/erp/by-link", get(by_link))
        .route("/api/erp/by-body-link", get(by_body_link))
        .route("/api/erp/by-cursor", get(by_cursor))
        .route("/api/erp/tests/{code}", get(one_test))
        .route("/api/erp/echo", axum::routing::post(echo))
        .with_state(seen.clone());
    let (listener, addr) = bind().await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, addr)
}

fn flow_text(addr: SocketAddr) -> String {
    format!(
        r#"name: paged-lab
role: bpp
listen: 127.0.0.1:7199
network:
  subscriber_id: soil.paged-lab.example
  subscriber_uri: http://127.0.0.1:7199
  verify_signatures: false
domain: agri.soil
validation:
  allow_loopback_uris: true

backends:
  erp:
    base_url: http://{addr}/api/erp
    timeout: 3s

actions:
  search:
    steps:
      - name: by_page
        call:
          backend: erp
          path: /by-page
          paginate: {{ style: page, param: page, size: 3, size_param: size, items: /items }}
      - name: by_offset
        call:
          backend: erp
          path: /by-offset
          paginate: {{ style: offset, param: offset, size: 3, size_param: limit, items: /data/rows }}
      - name: by_link
        call:
          backend: erp
          path: /by-link
          paginate: {{ style: next_link, items: "" }}
      - name: by_body_link
        call:
          backend: erp
          path: /by-body-link
          paginate: {{ style: next_link, next: /next, items: /items }}
      - name: by_cursor
        call:
          backend: erp
          path: /by-cursor
          paginate: {{ style: cursor, param: after, next: /meta/next_cursor, items: /results }}
    reply:
      message:
        by_page: "{{{{ by_page | map(attribute='code') | list }}}}"
        by_offset: "{{{{ by_offset | map(attribute='code') | list }}}}"
        by_link: "{{{{ by_link | map(attribute='code') | list }}}}"
        by_body_link: "{{{{ by_body_link | map(attribute='code') | list }}}}"
        by_cursor: "{{{{ by_cursor | map(attribute='code') | list }}}}"

  select:
    steps:
      - name: codes
        call:
          backend: erp
          path: /by-page
          paginate: {{ style: page, param: page, size: 3, items: /items }}
      - name: prices
        for_each: {{ items: "{{{{ codes }}}}", as: test, concurrency: 3 }}
        call: {{ backend: erp, path: "/tests/{{{{ test.code }}}}" }}
    reply:
      message: {{ prices: "{{{{ prices | map(attribute='price') | list }}}}" }}

  confirm:
    steps:
      - name: booked
        call:
          backend: erp
          method: POST
          path: /echo
          content_type: application/xml
          text_body: "<booking ref=\"{{{{ context.transaction_id }}}}\"/>"
    reply:
      message: {{ booked: "{{{{ booked }}}}" }}

  init:
    steps:
      - name: prices
        for_each: {{ items: "{{{{ [1, 2, 3] }}}}", max_items: 2 }}
        call:
          backend: erp
          path: "/tests/T{{{{ item }}}}"
          errors:
            max_items: {{ code: "40000", message: "too many tests in one order" }}
    reply:
      message: {{ prices: "{{{{ prices }}}}" }}

  status:
    steps:
      - name: tests
        call:
          backend: erp
          path: /by-page
          paginate: {{ style: page, param: page, items: /items, max_pages: 2 }}
          errors:
            max_pages: {{ code: "40000", message: "the catalog has more than two pages" }}
    reply:
      message: {{ count: "{{{{ tests | length }}}}" }}
"#
    )
}

fn request() -> Value {
    json!({
        "context": {"transaction_id": "t-paged", "message_id": "m-paged"},
        "message": {}
    })
}

#[tokio::test]
async fn every_page_is_collected_in_order_and_more_than_max_pages_is_a_beckn_error() {
    let (seen, addr) = start_erp().await;
    let tree = temp_tree(&[]);
    std::fs::write(tree.path().join("flows/paged-lab.yaml"), flow_text(addr)).unwrap();
    let layout = Layout::from_flows_dir(tree.path().join("flows"));
    let set = match beckn_adapter::compile::load(&layout, &HashMap::new()) {
        Ok(set) => set,
        Err(d) => panic!("{}", beckn_adapter::config::diagnostic::render_all(&d)),
    };
    let flow = set.flow("paged-lab").unwrap();
    let http = HttpTransport::new();

    let out = run_action(flow, Action::Search, &request(), &http, &SystemClock)
        .await
        .expect("search runs");
    let all: Vec<String> = (1..=TOTAL).map(|i| format!("T{i}")).collect();
    for style in [
        "by_page",
        "by_offset",
        "by_link",
        "by_body_link",
        "by_cursor",
    ] {
        assert_eq!(out.message[style], json!(all), "{style}: {}", out.message);
    }
    let seen_paths = seen.0.lock().unwrap().clone();
    assert_eq!(
        seen_paths,
        [
            // A third page shorter than `size` is the last.
            "/by-page?page=1&size=3",
            "/by-page?page=2&size=3",
            "/by-page?page=3&size=3",
            "/by-offset?limit=3&offset=0",
            "/by-offset?limit=3&offset=3",
            "/by-offset?limit=3&offset=6",
            "/by-link?",
            "/by-link?p=1",
            "/by-link?p=2",
            "/by-body-link?",
            "/by-body-link?p=1",
            "/by-body-link?p=2",
            "/by-cursor?",
            "/by-cursor?after=c3",
            "/by-cursor?after=c6",
        ]
    );

    seen.0.lock().unwrap().clear();
    let err = run_action(flow, Action::Status, &request(), &http, &SystemClock)
        .await
        .expect_err("three pages are more than max_pages: 2");
    let beckn = err.to_beckn();
    assert_eq!(beckn.code, "40000");
    assert_eq!(beckn.message, "the catalog has more than two pages");
    assert!(err.to_string().contains("more than 2 pages"), "{err}");
    assert_eq!(
        seen.0.lock().unwrap().clone(),
        ["/by-page?page=1", "/by-page?page=2"],
        "stops at the bound instead of fetching on"
    );
}

#[tokio::test]
async fn for_each_calls_once_per_element_bounded_and_in_order() {
    let (seen, addr) = start_erp().await;
    let tree = temp_tree(&[]);
    std::fs::write(tree.path().join("flows/paged-lab.yaml"), flow_text(addr)).unwrap();
    let layout = Layout::from_flows_dir(tree.path().join("flows"));
    let set = match beckn_adapter::compile::load(&layout, &HashMap::new()) {
        Ok(set) => set,
        Err(d) => panic!("{}", beckn_adapter::config::diagnostic::render_all(&d)),
    };
    let flow = set.flow("paged-lab").unwrap();
    let http = HttpTransport::new();

    let out = run_action(flow, Action::Select, &request(), &http, &SystemClock)
        .await
        .expect("select runs");
    let prices: Vec<String> = (1..=TOTAL).map(|i| format!("{i}99.00")).collect();
    assert_eq!(
        out.message["prices"],
        json!(prices),
        "answers in the list's order"
    );
    let calls: Vec<String> = seen
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.starts_with("/tests/"))
        .cloned()
        .collect();
    assert_eq!(calls.len(), TOTAL, "one call per element: {calls:?}");
    assert_ne!(
        calls[0], "/tests/T1?",
        "calls overlap (later codes answer sooner): {calls:?}"
    );

    seen.0.lock().unwrap().clear();
    let err = run_action(flow, Action::Init, &request(), &http, &SystemClock)
        .await
        .expect_err("three elements are more than max_items: 2");
    assert_eq!(err.to_beckn().code, "40000");
    assert_eq!(err.to_beckn().message, "too many tests in one order");
    assert!(
        seen.0.lock().unwrap().is_empty(),
        "no call for a list over its bound"
    );
}

#[tokio::test]
async fn a_text_body_goes_out_with_its_content_type() {
    let (_seen, addr) = start_erp().await;
    let tree = temp_tree(&[]);
    std::fs::write(tree.path().join("flows/paged-lab.yaml"), flow_text(addr)).unwrap();
    let layout = Layout::from_flows_dir(tree.path().join("flows"));
    let set = match beckn_adapter::compile::load(&layout, &HashMap::new()) {
        Ok(set) => set,
        Err(d) => panic!("{}", beckn_adapter::config::diagnostic::render_all(&d)),
    };
    let flow = set.flow("paged-lab").unwrap();
    let out = run_action(
        flow,
        Action::Confirm,
        &request(),
        &HttpTransport::new(),
        &SystemClock,
    )
    .await
    .expect("confirm runs");
    assert_eq!(
        out.message["booked"],
        json!({"content_type": "application/xml", "body": "<booking ref=\"t-paged\"/>"})
    );
}
