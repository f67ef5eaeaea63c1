//! The JSON Schemas of the files integrators write: the committed copies are current, the
//! shipped files follow them, and they catch the mistakes an editor should flag.

use std::path::Path;

use beckn_adapter::beckn::schema::JsonValidator;
use beckn_adapter::config::json_schema::{flow_file, to_text};
use beckn_adapter::config::yaml::parse_literal;
use serde_json::{Value, json};

use crate::common;

/// (committed file, generated schema, `beckn-adapter schema` argument)
fn schemas() -> [(&'static str, Value, &'static str); 3] {
    [
        ("schemas/flow.schema.json", flow_file(), "flow"),
        (
            "schemas/mapping-test.schema.json",
            beckn_adapter::mapping_test::format::schema(),
            "mapping-test",
        ),
        (
            "schemas/fixtures.schema.json",
            beckn_adapter::dry_run::fixtures::schema(),
            "fixtures",
        ),
    ]
}

#[test]
fn committed_schemas_are_current() {
    for (file, schema, kind) in schemas() {
        let committed = std::fs::read_to_string(common::repo().join(file)).unwrap_or_default();
        assert!(
            committed == to_text(&schema),
            "{file} is stale: regenerate it with `cargo run -q -- schema {kind} > {file}`"
        );
    }
}

#[test]
fn the_schema_command_prints_the_flow_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .arg("schema")
        .output()
        .expect("run beckn-adapter");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), to_text(&flow_file()));
}

fn validator(schema: &Value) -> JsonValidator {
    JsonValidator::compile(schema).expect("a valid JSON Schema")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read");
    parse_literal(path, &text).expect("YAML").0.value
}

fn yaml_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn shipped_files_follow_their_schemas() {
    let [(_, flow, _), (_, test, _), (_, fixtures, _)] = schemas();
    let repo = common::repo();
    let checks = [
        (validator(&flow), yaml_files(&repo.join("flows")), "flow"),
        (
            validator(&test),
            yaml_files(&repo.join("flows/tests")),
            "mapping-test",
        ),
        (
            validator(&fixtures),
            vec![repo.join("flows/tests/data/gfsl-erp.yaml")],
            "fixtures",
        ),
    ];
    for (v, files, kind) in checks {
        assert!(!files.is_empty());
        for file in files {
            let violations = v.violations(&yaml(&file), 5);
            assert!(
                violations.is_empty(),
                "{} breaks the {kind} schema: {violations:?}",
                file.display()
            );
            let first = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                first
                    .lines()
                    .next()
                    .is_some_and(|l| l.starts_with("# yaml-language-server: $schema=")
                        && l.ends_with(&format!("schemas/{kind}.schema.json"))),
                "{} does not name its schema on its first line",
                file.display()
            );
        }
    }
}

#[test]
fn the_flow_schema_catches_what_check_would() {
    let v = validator(&flow_file());
    let flow = |actions: Value| {
        json!({
            "role": "bpp", "listen": "127.0.0.1:7101", "domain": "agri.soil",
            "network": {"subscriber_id": "lab.example", "subscriber_uri": "https://lab.example"},
            "backends": {"erp": {"base_url": "http://erp", "timeout": "3s", "retry": {"attempts": "${N:-2}"}}},
            "actions": actions,
        })
    };
    let reply = json!({"template": "soil/on_search.j2"});
    let ok = flow(json!({"search": {
        "steps": [{"name": "found", "call": {"backend": "erp", "path": "/packages"}}],
        "reply": reply,
    }}));
    assert!(v.is_valid(&ok), "{:?}", v.violations(&ok, 5));
    for bad in [
        // a misspelt action
        flow(json!({"serach": {"reply": reply}})),
        // a step with both a call and a script
        flow(
            json!({"search": {"steps": [{"name": "x", "script": "a.rhai",
            "call": {"backend": "erp", "path": "/p"}}], "reply": reply}}),
        ),
        // an unknown key in a call
        flow(json!({"search": {"steps": [{"name": "x",
            "call": {"backend": "erp", "pth": "/p"}}], "reply": reply}})),
        // a reply with neither template nor message
        flow(json!({"search": {"reply": {}}})),
    ] {
        assert!(!v.is_valid(&bad), "accepted: {bad}");
    }
}

#[test]
fn the_flow_schema_knows_the_auth_kinds_and_form_bodies() {
    let v = validator(&flow_file());
    let flow = |auth: Value, call: Value| {
        json!({
            "role": "bpp", "listen": "127.0.0.1:7101", "domain": "agri.soil",
            "network": {"subscriber_id": "lab.example", "subscriber_uri": "https://lab.example"},
            "backends": {"erp": {"base_url": "http://erp", "auth": auth}},
            "actions": {"search": {
                "steps": [{"name": "found", "call": call}],
                "reply": {"template": "soil/on_search.j2"},
            }},
        })
    };
    let call = json!({"backend": "erp", "path": "/packages"});
    for ok in [
        flow(
            json!({"header": "X-Api-Key", "value": "${K}"}),
            call.clone(),
        ),
        flow(json!({"query": "api_key", "value": "${K}"}), call.clone()),
        flow(json!({"bearer": "${T}"}), call.clone()),
        flow(
            json!({"basic": {"username": "u", "password": "${P}"}}),
            call.clone(),
        ),
        flow(
            json!({"hmac": {"header": "X-Signature", "key": "${K}", "string_to_sign": "{{ body }}"}}),
            call.clone(),
        ),
        flow(
            json!({"oauth2_client_credentials": {"token_url": "https://erp/token",
                "client_id": "lab", "client_secret": "${S}", "client_auth": "basic",
                "refresh_margin": "10s"}}),
            json!({"backend": "erp", "method": "POST", "path": "/p", "form": {"a": "{{ x }}"}}),
        ),
    ] {
        assert!(v.is_valid(&ok), "{ok}: {:?}", v.violations(&ok, 5));
    }
    for bad in [
        // a key without its header or query
        flow(json!({"value": "${K}"}), call.clone()),
        // two kinds
        flow(
            json!({"bearer": "t", "basic": {"username": "u", "password": "p"}}),
            call.clone(),
        ),
        // OAuth2 without its secret
        flow(
            json!({"oauth2_client_credentials": {"token_url": "https://erp/token", "client_id": "lab"}}),
            call.clone(),
        ),
        // a form and a JSON body
        flow(
            json!({"bearer": "t"}),
            json!({"backend": "erp", "path": "/p", "body": {}, "form": {"a": "b"}}),
        ),
    ] {
        assert!(!v.is_valid(&bad), "accepted: {bad}");
    }
}
