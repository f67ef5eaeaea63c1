//! `beckn-adapter test`, run as CI and an integrator run it: the shipped mapping tests pass,
//! cover every action of the sample lab, and a mapping broken on purpose fails with a diff that
//! names the template line (pinned by a snapshot).

use std::path::Path;
use std::process::Command;

use beckn_adapter::beckn::action::Action;

use crate::common;

/// What `beckn-adapter test` printed and how it exited.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `beckn-adapter test flows ARGS` in `root`, with an empty environment so `${VAR}`
/// defaults apply and the output is the same on every machine.
fn run_tests(root: &Path, args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .args(["test", "flows"])
        .args(args)
        .current_dir(root)
        .env_clear()
        .env("BECKN_LOG", "off")
        .output()
        .expect("run beckn-adapter");
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch copy of the repository with the greenfield-lab flow and its tests.
fn tree_with_tests() -> tempfile::TempDir {
    let tree = common::temp_tree(&["greenfield-lab.yaml"]);
    common::copy_dir(
        &common::repo().join("flows/tests"),
        &tree.path().join("flows/tests"),
    );
    tree
}

/// Replaces `from` (which must occur) with `to` in the file `rel` under `root`; returns the
/// 1-based line of the change.
fn break_file(root: &Path, rel: &str, from: &str, to: &str) -> usize {
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path).expect("read mapping");
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("`{from}` not in {rel}"));
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write mapping");
    text[..at].matches('\n').count() + 1
}

#[test]
fn shipped_mapping_tests_pass() {
    let out = run_tests(&common::repo(), &[]);
    assert_eq!(
        out.code,
        Some(0),
        "the shipped mapping tests fail:\n{}{}",
        out.stdout,
        out.stderr
    );
    let summary = out.stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{}", out.stdout);
    assert!(!out.stdout.contains("FAIL"), "{}", out.stdout);
}

#[test]
fn every_action_of_the_sample_lab_is_tested() {
    let dir = common::repo().join("flows/tests");
    let mut tested = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(&dir).expect("flows/tests") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read test");
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}: ")))
                .map(|v| v.trim().to_string())
        };
        if field("flow").as_deref() == Some("greenfield-lab") {
            let action = field("action").expect("an action");
            let is_error = text.contains("\n  error:");
            *tested.entry(action.clone()).or_default() += 1;
            if is_error {
                *tested.entry("(error paths)".into()).or_default() += 1;
            }
        }
    }
    for action in Action::BPP_SOIL {
        assert!(
            tested.contains_key(action.as_str()),
            "no mapping test for greenfield-lab {action}: {tested:?}"
        );
    }
    assert!(
        tested.get("(error paths)").copied().unwrap_or(0) >= 2,
        "{tested:?}"
    );
}

#[test]
fn a_broken_field_fails_with_a_diff_and_the_template_line() {
    let tree = tree_with_tests();
    let line = break_file(
        tree.path(),
        "mappings/soil/on_select.j2",
        r#""descriptor": {"name": {{ lab.lab_name }}}}"#,
        r#""descriptor": {"name": {{ lab.city }}}}"#,
    );
    let out = run_tests(tree.path(), &["--filter", "greenfield-lab.select"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("written at mappings/soil/on_select.j2:{line}")),
        "{}",
        out.stdout
    );
    insta::assert_snapshot!(out.stdout);
}

#[test]
fn a_broken_price_filter_is_traced_into_the_macro() {
    let tree = tree_with_tests();
    let line = break_file(
        tree.path(),
        "mappings/soil/_common.j2",
        "{{ q.total_paise | price(q.currency) }}",
        "{{ q.total_paise | price(q.currency, 3) }}",
    );
    let out = run_tests(tree.path(), &[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let stdout = &out.stdout;
    for expected in [
        "FAIL flows/tests/greenfield-lab.select.yaml",
        "message.order.quote.price.value",
        "expected: \"647.82\"",
        "actual:   \"64.782\"",
        &format!("written at mappings/soil/_common.j2:{line}"),
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
    // Tests that never look at a price still pass.
    assert!(
        stdout.contains("PASS flows/tests/greenfield-lab.support.yaml"),
        "{stdout}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed, ") && !summary.ends_with(" 0 failed"),
        "{summary}"
    );
}

#[test]
fn a_malformed_test_file_is_reported_at_its_line() {
    let tree = tree_with_tests();
    std::fs::write(
        tree.path().join("flows/tests/zz-broken.yaml"),
        "flow: greenfield-lab\naction: support\nrequest: { message: {} }\nfixtures:\n  tiket: { body: {} }\n",
    )
    .expect("write test");
    let out = run_tests(tree.path(), &["--filter", "zz-broken"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "flows/tests/zz-broken.yaml:5:3: error: `tiket` is not a step of `support` that calls a backend"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("did you mean `ticket`?"),
        "{}",
        out.stdout
    );
}

#[test]
fn no_tests_is_an_error() {
    let tree = common::temp_tree(&["greenfield-lab.yaml"]);
    let out = run_tests(tree.path(), &[]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("flows/tests"), "{}", out.stderr);
}

#[test]
fn the_ultra_mapping_is_tested_and_a_broken_oms_field_names_its_template_line() {
    let tree = common::temp_tree(&["farmer-app.yaml", "ultra.yaml"]);
    common::copy_dir(
        &common::repo().join("flows/tests"),
        &tree.path().join("flows/tests"),
    );
    let out = run_tests(tree.path(), &["--filter", "farmer-app.ultra"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    for state in ["confirmed", "fulfilled", "cancelled"] {
        assert!(
            out.stdout
                .contains(&format!("PASS flows/tests/farmer-app.ultra.{state}.yaml")),
            "{}",
            out.stdout
        );
    }
    // a refund that forgets cancellations
    let line = break_file(
        tree.path(),
        "mappings/ultra/oms_order.j2",
        r#"{{ refund if state == "ORDER_CANCELLED" else 0 }}"#,
        "0",
    );
    let out = run_tests(tree.path(), &["--filter", "farmer-app.ultra"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    for expected in [
        "FAIL flows/tests/farmer-app.ultra.cancelled.yaml",
        "OMS order differs from the expectation (template mappings/ultra/oms_order.j2):",
        "reverseTransaction",
        "expected: 1060.82",
        "actual:   0",
        &format!("written at mappings/ultra/oms_order.j2:{line}"),
        "PASS flows/tests/farmer-app.ultra.confirmed.yaml",
    ] {
        assert!(
            out.stdout.contains(expected),
            "no `{expected}` in:\n{}",
            out.stdout
        );
    }
    // an order breaking Ultra's rules is a refusal, which a test can expect
    break_file(
        tree.path(),
        "mappings/ultra/oms_order.j2",
        r#""forwardTransaction": {{ paid }}"#,
        r#""forwardTransaction": 0"#,
    );
    std::fs::write(
        tree.path().join("flows/tests/farmer-app.ultra.zz-refused.yaml"),
        "flow: farmer-app\naction: ultra\nrequest_file: data/farmer-app.on_cancel.yaml\nexpect: { refused: forwardTransaction }\n",
    )
    .expect("write test");
    let out = run_tests(tree.path(), &["--filter", "farmer-app.ultra"]);
    assert!(
        out.stdout.contains("FAIL flows/tests/farmer-app.ultra.cancelled.yaml")
            && out.stdout.contains("Ultra's rules refuse the OMS order (nothing would be sent): the OMS order breaks the rules: forwardTransaction")
            && out.stdout.contains("PASS flows/tests/farmer-app.ultra.zz-refused.yaml"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_mapping_test_gives_the_transaction_memory() {
    let tree = tree_with_tests();
    let root = tree.path();
    break_file(
        root,
        "flows/greenfield-lab.yaml",
        "path: \"/orders/{{ message.order_id | segment }}\"\n          errors:\n            NOT_FOUND",
        "path: \"/orders/{{ transaction.erp_order_id | segment }}\"\n          errors:\n            NOT_FOUND",
    );
    // without memory, the status test cannot build its call
    let out = run_tests(root, &["--filter", "greenfield-lab.status"]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAIL"), "{}", out.stdout);
    // with the order id the transaction keeps, it passes as before
    for test in std::fs::read_dir(root.join("flows/tests")).unwrap() {
        let path = test.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("\naction: status\n") {
            let id = if text.contains("GFSL-999999") {
                "GFSL-999999"
            } else {
                "GFSL-000001"
            };
            let text = text.replacen(
                "\naction: status\n",
                &format!("\naction: status\ntransaction: {{ erp_order_id: {id} }}\n"),
                1,
            );
            std::fs::write(&path, text).unwrap();
        }
    }
    let out = run_tests(root, &["--filter", "greenfield-lab.status"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
}

/// A flow whose search walks a cursor-paged list, and its mapping tests: one answers the pages
/// with a fixture and `then:`, checking the cursor each later page is asked with; one gives
/// more pages than `max_pages` and expects the Beckn error of the `errors:` table.
#[test]
fn a_paged_search_is_tested_with_one_fixture_per_page() {
    let tree = common::temp_tree(&[]);
    let flow = r#"name: paged-lab
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
  erp: { base_url: "http://127.0.0.1:7180/api" }
actions:
  search:
    steps:
      - name: tests
        call:
          backend: erp
          path: /tests
          paginate: { style: cursor, param: after, next: /next, items: /items, max_pages: 3 }
          errors:
            max_pages: { code: "40000", message: "too many tests to list" }
    reply:
      message:
        catalog:
          descriptor:
            name: Paged Lab
            short_desc: "{{ tests | map(attribute='code') | join(',') }}"
          providers: []
"#;
    std::fs::write(tree.path().join("flows/paged-lab.yaml"), flow).unwrap();
    let tests = tree.path().join("flows/tests");
    std::fs::create_dir_all(&tests).unwrap();
    let pages = r#"
fixtures:
  tests:
    expect_request: { path: /tests, query: { after: null } }
    body: { items: [{ code: T1 }, { code: T2 }], next: c2 }
    then:
      - expect_request: { query: { after: c2 } }
        body: { items: [{ code: T3 }], next: c3 }
      - expect_request: { query: { after: c3 } }
        body: { items: [{ code: T4 }], next: null }
"#;
    std::fs::write(
        tests.join("paged-lab.search.yaml"),
        format!(
            "name: every page of the list is in the catalog\nflow: paged-lab\naction: search\n\
             request: {{ message: {{ intent: {{ item: {{ descriptor: {{ name: soil }} }} }} }} }}\n{pages}\
             expect:\n  message:\n    catalog:\n      descriptor: {{ name: Paged Lab, short_desc: \"T1,T2,T3,T4\" }}\n      providers: []\n"
        ),
    )
    .unwrap();
    let too_long = pages.replace("next: null", "next: c4");
    std::fs::write(
        tests.join("paged-lab.search.too-long.yaml"),
        format!(
            "name: a list longer than max_pages is an error\nflow: paged-lab\naction: search\n\
             request: {{ message: {{ intent: {{ item: {{ descriptor: {{ name: soil }} }} }} }} }}\n{too_long}\
             expect:\n  error: {{ code: \"40000\", message: too many tests to list }}\n"
        ),
    )
    .unwrap();
    let out = run_tests(tree.path(), &[]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2 passed, 0 failed"), "{}", out.stdout);

    // A later page asked with another cursor than the test expects is a difference.
    break_file(
        tree.path(),
        "flows/tests/paged-lab.search.yaml",
        "query: { after: c3 }",
        "query: { after: c9 }",
    );
    let out = run_tests(tree.path(), &["--filter", "every page"]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("c9"), "{all}");
}
