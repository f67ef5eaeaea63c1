//! `beckn-adapter check`, run as an integrator runs it: the built binary on a tree of flows,
//! mappings and schemas. Broken trees must give one clear diagnostic per mistake (file:line:col,
//! YAML path, hint), exit 1 and end with the count; the whole output is pinned by snapshots.

use std::path::Path;
use std::process::Command;

use crate::common;

/// What `check` printed and how it exited.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `beckn-adapter check flows` in `root` with an empty environment (so `${VAR}` defaults
/// apply and logs stay quiet); every occurrence of `root` in the output becomes `[TREE]`.
fn run_check(root: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .args(["check", "flows"])
        .current_dir(root)
        .env_clear()
        .env("BECKN_LOG", "off")
        .output()
        .expect("run beckn-adapter");
    let redact = |bytes: &[u8]| {
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        for form in [root.to_path_buf(), root.canonicalize().unwrap_or_default()] {
            let form = form.display().to_string();
            if !form.is_empty() {
                text = text.replace(&form, "[TREE]");
            }
        }
        text
    };
    Outcome {
        code: out.status.code(),
        stdout: redact(&out.stdout),
        stderr: redact(&out.stderr),
    }
}

/// `check` on a scratch tree: the repository's mappings and schemas plus `files`
/// (`(path under the tree, content)`), the flow files among them.
fn check(files: &[(&str, &str)]) -> Outcome {
    let tree = common::temp_tree(&[]);
    for (rel, content) in files {
        let path = tree.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write fixture");
    }
    run_check(tree.path())
}

/// `check` on a broken tree: exit 1, nothing on stdout, `problems` diagnostics each with a
/// position, and the closing count. Returns the diagnostics for the snapshot.
fn check_fails(files: &[(&str, &str)], problems: usize) -> String {
    let out = check(files);
    assert_eq!(
        out.code,
        Some(1),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "", "nothing on stdout when the check fails");
    let plural = if problems == 1 { "" } else { "s" };
    let last = out.stderr.trim_end().lines().last().unwrap_or_default();
    assert_eq!(
        last,
        format!("{problems} problem{plural} found"),
        "{}",
        out.stderr
    );
    let headers: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(headers.len(), problems, "{}", out.stderr);
    for h in &headers {
        let location = h.split(": error: ").next().unwrap_or_default();
        let mut parts = location.rsplitn(3, ':');
        let (col, line) = (parts.next(), parts.next());
        assert!(
            col.is_some_and(|c| c.parse::<u32>().is_ok_and(|c| c > 0))
                && line.is_some_and(|l| l.parse::<u32>().is_ok_and(|l| l > 0)),
            "no file:line:col in {h:?}"
        );
    }
    out.stderr
}

/// A small valid flow: search and status against the sample ERP. Cases break copies of it.
const LAB: &str = r#"name: mini-lab
role: bpp
listen: 127.0.0.1:7199
network:
  subscriber_id: soil.mini-lab.example
  subscriber_uri: http://127.0.0.1:7199
  verify_signatures: false
domain: agri.soil
validation:
  allow_loopback_uris: true

backends:
  erp:
    base_url: ${MINI_ERP_URL:-http://127.0.0.1:7180/api/v1/labs/GFSL}
    timeout: 3s
    error_code: /error

actions:
  search:
    steps:
      - name: lab
        call: { backend: erp, path: /profile }
      - name: found
        call:
          backend: erp
          path: /packages
          query:
            q: "{{ message.intent.descriptor.name if message.intent is defined else none }}"
    reply: { template: soil/on_search.j2 }

  status:
    steps:
      - name: order
        call:
          backend: erp
          path: "/orders/{{ message.order_id | urlencode }}"
          errors:
            NOT_FOUND: { code: "30010", message: "{{ response.message }}" }
      - name: state
        script: soil/order_state.rhai
    reply: { template: soil/on_status.j2 }
"#;

const FLOW: &str = "flows/mini-lab.yaml";

/// `LAB` with each `(from, to)` replaced once; every `from` must be there.
fn lab_with(edits: &[(&str, &str)]) -> String {
    let mut text = LAB.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "fixture has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

#[test]
fn shipped_flows_pass() {
    let out = run_check(&common::repo());
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.starts_with("ok: "), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("greenfield-lab (bpp, soil.greenfield-labs.example)"),
        "{}",
        out.stdout
    );
}

#[test]
fn fixture_passes() {
    let out = check(&[(FLOW, LAB)]);
    assert_eq!(
        out.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.starts_with("ok: 1 flow compiled"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("mini-lab (bpp, soil.mini-lab.example) on 127.0.0.1:7199: search status"),
        "{}",
        out.stdout
    );
}

#[test]
fn three_mistakes_three_diagnostics() {
    let flow = lab_with(&[
        // a misspelt key
        ("path: /packages", "pth: /packages"),
        // a backend that does not exist
        (
            "backend: erp, path: /profile",
            "backend: lims, path: /profile",
        ),
        // a variable no step defines
        ("| urlencode }}", "| urlencode }}/{{ order_ref }}"),
    ]);
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 3));
}

#[test]
fn yaml_syntax_error() {
    let flow = lab_with(&[(
        "call: { backend: erp, path: /profile }",
        "call: { backend: erp, path: /profile",
    )]);
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 1));
}

#[test]
fn unset_variable_without_default() {
    let flow = lab_with(&[(
        "${MINI_ERP_URL:-http://127.0.0.1:7180/api/v1/labs/GFSL}",
        "${MINI_ERP_URL}",
    )]);
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 1));
}

#[test]
fn template_syntax_error_in_a_mapping() {
    let flow = lab_with(&[("soil/on_search.j2", "soil/mini_search.j2")]);
    let template = r#"{#- on_search for the mini lab -#}
{"catalog": {"providers": [
  {%- for p in found.packages %}
  {"id": {{ p.sku }}, "descriptor": {"name": {{ p.title }}}}{% if not loop.last %},{% endif %}
  {%- endfo %}
]}}
"#;
    insta::assert_snapshot!(check_fails(
        &[(FLOW, &flow), ("mappings/soil/mini_search.j2", template)],
        1
    ));
}

#[test]
fn rhai_syntax_error() {
    let flow = lab_with(&[("soil/order_state.rhai", "soil/mini_state.rhai")]);
    let script = r#"// Maps the ERP order status for the mini lab.
let s = order.status;
let code = if (s == "BOOKED" { "SCHEDULED" } else { s };
#{ code: code, order_status: "ACTIVE" }
"#;
    insta::assert_snapshot!(check_fails(
        &[(FLOW, &flow), ("mappings/soil/mini_state.rhai", script)],
        1
    ));
}

#[test]
fn unknown_variable_in_a_mapping() {
    let flow = lab_with(&[("soil/on_status.j2", "soil/mini_status.j2")]);
    let template = r#"{#- on_status for the mini lab: reads order and state -#}
{"order": {"id": {{ order.order_no }}, "status": {{ stat.order_status }}}}
"#;
    insta::assert_snapshot!(check_fails(
        &[(FLOW, &flow), ("mappings/soil/mini_status.j2", template)],
        1
    ));
}

/// `LAB` with order events polled from the ERP, as `poll` says.
fn lab_polling(poll: &str) -> String {
    format!(
        r#"{LAB}
events:
{poll}
  transaction_id: event.client_ref
  callback: on_status
  steps:
    - name: order
      script: soil/event_order.rhai
    - name: state
      script: soil/order_state.rhai
  reply: {{ template: soil/on_status.j2 }}
"#
    )
}

#[test]
fn polled_events_pass() {
    let flow = lab_polling(
        r#"  poll:
    backend: erp
    path: /order-events
    query: { after: "{{ cursor }}" }
    every: 2s
    items: /events
    cursor: /next
  event_id: event.event_id"#,
    );
    let out = check(&[(FLOW, &flow)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn poll_mistakes_each_located() {
    let flow = lab_polling(
        r#"  poll:
    backend: lims
    path: order-events
    query: { after: "{{ cursor }}" }
    every: 10ms
    items: events
  event_id: evnt.event_id"#,
    );
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 6));
}

#[test]
fn events_need_a_webhook_or_a_poll() {
    let flow = lab_polling("  event_id: event.event_id");
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 1));
}

/// `LAB` with events from asking each open order's state, as `poll_orders` says.
fn lab_polling_orders(poll_orders: &str) -> String {
    format!(
        r#"{LAB}
events:
{poll_orders}
  callback: on_status
  steps:
    - name: order
      script: soil/event_order.rhai
    - name: state
      script: soil/order_state.rhai
  reply: {{ template: soil/on_status.j2 }}
"#
    )
}

#[test]
fn polled_orders_pass() {
    let flow = lab_polling_orders(
        r#"  poll_orders:
    backend: erp
    path: "/orders/{{ order_id | segment }}"
    query: { ref: "{{ transaction.erp_order_id }}", lab: "{{ flow.name }}" }
    every: 30s
    concurrency: 8
    state: /status
    final: [REPORT_READY, CANCELLED]"#,
    );
    let out = check(&[(FLOW, &flow)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn poll_orders_mistakes_each_located() {
    let flow = lab_polling_orders(
        r#"  poll_orders:
    backend: lims
    path: "/orders/{{ order_no }}"
    every: 10ms
    concurrency: 65
    state: status
  transaction_id: event.client_ref
  erp_order_id: event.order_no"#,
    );
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 6));
}

#[test]
fn poll_orders_need_a_state_pointer() {
    let flow = lab_polling_orders(
        r#"  poll_orders:
    backend: erp
    path: "/orders/{{ order_id }}"
    concurrency: 0
    state: """#,
    );
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 2));
}

#[test]
fn webhook_events_need_a_transaction_or_an_order_id() {
    let flow = lab_polling_orders(r#"  webhook: { path: /erp/events, secret: TEST-ONLY }"#);
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 1));
}

/// A gateway has no orders, so order events on it would be compiled and never run.
#[test]
fn events_on_a_gateway_are_refused() {
    let gateway = std::fs::read_to_string(common::repo().join("flows/gateway.yaml"))
        .expect("the shipped gateway flow");
    let flow = format!(
        r#"{gateway}
events:
  webhook:
    path: /erp/events
    secret: test-only-webhook-secret
  transaction_id: event.client_ref
  callback: on_status
  steps:
    - name: order
      script: soil/event_order.rhai
    - name: state
      script: soil/order_state.rhai
  reply: {{ template: soil/on_status.j2 }}
"#
    );
    let out = check_fails(&[("flows/gateway.yaml", &flow)], 1);
    assert!(
        out.contains("a gateway has no orders: its `events:` would never run"),
        "{out}"
    );
}

/// `LAB` with `backends` added beside `erp` (a YAML block indented as under `backends:`).
fn lab_with_backends(backends: &str) -> String {
    lab_with(&[(
        "    error_code: /error\n",
        &format!("    error_code: /error\n{backends}"),
    )])
}

#[test]
fn every_auth_kind_and_a_form_body_pass() {
    let flow = lab_with_backends(
        r#"  keyed:
    base_url: http://127.0.0.1:7180
    auth: { query: api_key, value: "${KEY:-k}" }
  basic:
    base_url: http://127.0.0.1:7180
    auth: { basic: { username: lab, password: "${PASSWORD:-p}" } }
  signed:
    base_url: http://127.0.0.1:7180
    auth:
      hmac:
        header: X-Signature
        key: "${HMAC_KEY:-k}"
        algorithm: sha256
        encoding: base64
        timestamp_header: X-Timestamp
        string_to_sign: "{{ method }}\n{{ path }}?{{ query }}\n{{ timestamp }}\n{{ body }}"
  oauth:
    base_url: http://127.0.0.1:7180
    auth:
      oauth2_client_credentials:
        token_url: http://127.0.0.1:7180/oauth/token
        client_id: lab
        client_secret: "${CLIENT_SECRET:-s}"
        scope: orders
        audience: lab-api
        client_auth: basic
        refresh_margin: 10s
"#,
    )
    .replace(
        "      - name: lab\n        call: { backend: erp, path: /profile }",
        "      - name: lab\n        call: { backend: oauth, method: POST, path: /profile, form: { q: \"{{ message.intent is defined }}\", kind: lab } }",
    );
    let out = check(&[(FLOW, &flow)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn unknown_filter_in_a_mapping() {
    let flow = lab_with(&[("soil/on_status.j2", "soil/mini_status.j2")]);
    let template = r#"{#- on_status for the mini lab: reads order and state -#}
{"order": {"id": {{ order.order_no }}, "status": {{ state.order_status }},
  "quote": {"price": {{ order.amount | decimel_price }}}}}
"#;
    insta::assert_snapshot!(check_fails(
        &[(FLOW, &flow), ("mappings/soil/mini_status.j2", template)],
        1
    ));
}

#[test]
fn unknown_test_and_function_in_inline_templates() {
    let flow = lab_with(&[
        (
            "      - name: state\n",
            "      - name: state\n        when: order is mapingg\n",
        ),
        ("q: \"{{ message", "q: \"{{ uuid5() ~ message"),
    ]);
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 2));
}

#[test]
fn undefined_variable_in_a_script() {
    let flow = lab_with(&[("soil/order_state.rhai", "soil/mini_state.rhai")]);
    let script = r#"// Maps the ERP order status for the mini lab.
let s = order.status;
let code = if s == "BOOKED" { "SCHEDULED" } else { s };
#{ code: code, order_status: "ACTIVE", mode: ordr.mode }
"#;
    insta::assert_snapshot!(check_fails(
        &[(FLOW, &flow), ("mappings/soil/mini_state.rhai", script)],
        1
    ));
}

/// Anchors and aliases share a block between calls; saphyr expands them within a node budget.
#[test]
fn yaml_anchors_and_aliases_pass() {
    let errors = "          errors:\n            NOT_FOUND: { code: \"30010\", message: \"{{ response.message }}\" }\n";
    let query = "            q: \"{{ message.intent.descriptor.name if message.intent is defined else none }}\"\n";
    let flow = lab_with(&[
        (errors, "          errors: *order_errors\n"),
        (
            query,
            &format!(
                "{query}{}",
                errors.replace("errors:", "errors: &order_errors")
            ),
        ),
    ]);
    let out = check(&[(FLOW, &flow)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn auth_mistakes_each_located() {
    let flow = lab_with_backends(
        r#"  no_value:
    base_url: http://127.0.0.1:7180
    auth: { header: X-Api-Key }
  two_kinds:
    base_url: http://127.0.0.1:7180
    auth: { bearer: t, basic: { username: u, password: p } }
  signed:
    base_url: http://127.0.0.1:7180
    auth:
      hmac: { header: X-Signature, key: k, algorithm: sha1, string_to_sign: "{{ nonce }}" }
  oauth:
    base_url: http://127.0.0.1:7180
    auth:
      oauth2_client_credentials:
        token_url: not-a-url
        client_id: lab
        client_secret: s
        client_auth: header
  half_oauth:
    base_url: http://127.0.0.1:7180
    auth: { oauth2_client_credentials: { token_url: "http://127.0.0.1:7180/token", client_id: lab } }
"#,
    )
    .replace(
        "        call: { backend: erp, path: /profile }",
        "        call: { backend: erp, method: POST, path: /profile, body: {}, form: { a: b } }",
    );
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 8));
}

/// An alias expanding past the budget (a "billion laughs") is refused where it is used.
#[test]
fn yaml_alias_bombs_are_refused() {
    let mut flow = lab_with(&[]);
    flow.push_str("x-a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n");
    for (name, prev) in [("b", "a"), ("c", "b"), ("d", "c"), ("e", "d"), ("f", "e")] {
        let items = vec![format!("*{prev}"); 10].join(", ");
        flow.push_str(&format!("x-{name}: &{name} [{items}]\n"));
    }
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 1));
}

#[test]
fn transaction_memory_is_readable_and_remembered_names_are_checked() {
    // `transaction` is known in calls, scripts and the reply; `remember` sees `reply`
    let flow = lab_with(&[
        (
            "path: \"/orders/{{ message.order_id | urlencode }}\"",
            "path: \"/orders/{{ transaction.booking or message.order_id | urlencode }}\"",
        ),
        (
            "    reply: { template: soil/on_status.j2 }\n",
            "    reply: { template: soil/on_status.j2 }\n    remember:\n      last_status: \"{{ reply.order.status }}\"\n      booking: \"{{ order.order_no }}\"\n",
        ),
    ]);
    let out = check(&[(FLOW, &flow)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // a name that cannot be remembered, and a value reading an unknown name
    let flow = lab_with(&[(
        "    reply: { template: soil/on_status.j2 }\n",
        "    reply: { template: soil/on_status.j2 }\n    remember:\n      erp_order_id: \"{{ order.order_no }}\"\n      booking: \"{{ ordr.order_no }}\"\n",
    )]);
    insta::assert_snapshot!(check_fails(&[(FLOW, &flow)], 2));
}

#[test]
fn every_paginate_style_and_a_text_body_pass() {
    let flow = lab_with(&[(
        "      - name: lab\n        call: { backend: erp, path: /profile }",
        r#"      - name: lab
        call: { backend: erp, method: POST, path: /profile, text_body: "<q>{{ context.transaction_id }}</q>", content_type: application/xml }
      - name: by_page
        call: { backend: erp, path: /p, paginate: { style: page, param: page, size: 50, size_param: per_page, items: /items, max_pages: 5 } }
      - name: by_offset
        call: { backend: erp, path: /o, paginate: { style: offset, param: offset, start: 0, size: 50, items: /rows }, errors: { max_pages: { code: "40000" } } }
      - name: by_link
        call: { backend: erp, path: /l, paginate: { style: next_link, items: "" } }
      - name: by_cursor
        call: { backend: erp, path: /c, paginate: { style: cursor, param: after, next: /next, items: /items, stop: "{{ page >= 3 or response.done }}" } }"#,
    )]);
    let out = check(&[(FLOW, &flow)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn paginate_and_text_body_mistakes_each_located() {
    let flow = lab_with(&[(
        "      - name: lab\n        call: { backend: erp, path: /profile }",
        r#"      - name: lab
        call: { backend: erp, method: POST, path: /profile, body: {}, text_body: "x" }
      - name: typed
        call: { backend: erp, path: /t, content_type: text/csv }
      - name: no_param
        call: { backend: erp, path: /p, paginate: { style: page, items: /items } }
      - name: link_param
        call: { backend: erp, path: /l, paginate: { style: next_link, param: page, items: /items } }
      - name: no_cursor
        call: { backend: erp, path: /c, paginate: { style: cursor, param: after, items: items } }
      - name: no_size
        call: { backend: erp, path: /o, paginate: { style: offset, param: offset, items: /rows, next: /next, max_pages: 0 } }
      - name: bad_stop
        call: { backend: erp, path: /s, paginate: { style: page, param: page, items: /i, stop: "{{ pages > 2 }}" } }"#,
    )]);
    let out = check_fails(&[(FLOW, &flow)], 10);
    for (at, says) in [
        ("steps[0].call.text_body", "give one body"),
        (
            "steps[1].call.content_type",
            "`content_type` is the type of `text_body`",
        ),
        ("steps[2].call.paginate\n", "needs `param`"),
        ("steps[3].call.paginate.param", "sends no parameter"),
        (
            "steps[4].call.paginate.items",
            "`items` is not a JSON pointer",
        ),
        (
            "steps[4].call.paginate\n",
            "`cursor` pagination needs `next`",
        ),
        (
            "steps[5].call.paginate\n",
            "`offset` pagination needs `size`",
        ),
        ("steps[5].call.paginate.next", "computes the next page"),
        ("steps[5].call.paginate.max_pages", "must be 1 to"),
        ("steps[6].call.paginate.stop", "`pages`"),
    ] {
        let found = out
            .split("\n\n")
            .any(|d| d.contains(&format!("at: actions.search.{at}")) && d.contains(says));
        assert!(found, "no diagnostic at {at:?} saying {says:?} in:\n{out}");
    }
}

#[test]
fn for_each_mistakes_each_located() {
    let flow = lab_with(&[(
        "      - name: lab\n        call: { backend: erp, path: /profile }",
        r#"      - name: lab
        call: { backend: erp, path: /profile }
      - name: each
        for_each: { items: "{{ lab.tests }}", as: test, concurrency: 4, max_items: 50 }
        call: { backend: erp, path: "/tests/{{ test.code }}", errors: { max_items: { code: "40000" } } }
      - name: no_call
        for_each: { items: "{{ lab.tests }}" }
        script: soil/search_filters.rhai
      - name: taken
        for_each: { items: "{{ lab.tests }}", as: lab, concurrency: 0, max_items: 100000 }
        call: { backend: erp, path: "/tests/{{ lab.code }}" }
      - name: unknown
        for_each: { items: "{{ nothing }}" }
        call: { backend: erp, path: "/tests/{{ item.code }}" }"#,
    )]);
    let out = check_fails(&[(FLOW, &flow)], 5);
    for (at, says) in [
        ("steps[2].for_each\n", "`for_each` repeats a call"),
        ("steps[3].for_each.as", "`lab` cannot name the element"),
        ("steps[3].for_each.concurrency", "must be 1 to 32"),
        ("steps[3].for_each.max_items", "must be 1 to 10000"),
        ("steps[4].for_each.items", "`nothing`"),
    ] {
        let found = out
            .split("\n\n")
            .any(|d| d.contains(&format!("at: actions.search.{at}")) && d.contains(says));
        assert!(found, "no diagnostic at {at:?} saying {says:?} in:\n{out}");
    }
}
