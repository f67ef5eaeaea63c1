//! `beckn-adapter render`: one action against a request file and fixtures, every step's result
//! and the callback printed, nothing sent; bad input files are reported at their line.

use std::path::Path;
use std::process::Command;

use crate::common;

fn render(root: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .arg("render")
        .args(args)
        .arg("flows")
        .current_dir(root)
        .env_clear()
        .env("BECKN_LOG", "off")
        .output()
        .expect("run beckn-adapter");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prints_each_step_and_the_callback() {
    let tree = common::temp_tree(&["greenfield-lab.yaml"]);
    let dir = tree.path();
    std::fs::write(
        dir.join("status.yaml"),
        "message: { order_id: GFSL-000042 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("erp.json"),
        r#"{"order": {"body": {
            "order_no": "GFSL-000042", "lab_code": "GFSL", "status": "TESTING",
            "items": [{"sku": "soil-npk-package", "title": "Soil NPK Package", "qty": 1,
                       "unit_price_paise": 49900, "amount_paise": 49900}],
            "pickup_fee_paise": 0, "gst_paise": 8982, "total_paise": 58882, "currency": "INR",
            "mode": "LAB_DROP", "slot": null, "billing": null, "agent": null,
            "customer": {"name": "Asha Devi", "phone": "+91-98100-22222", "email": null,
                         "address": null, "pincode": "110081", "gps": null},
            "payment": {"status": "PENDING"}, "report_url": null, "tracking_url": null,
            "cancellation": null, "created_at": "2026-11-23T10:00:00Z",
            "updated_at": "2026-11-24T10:00:00Z"}}}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = render(
        dir,
        &[
            "--flow",
            "greenfield-lab",
            "--action",
            "status",
            "--request",
            "status.yaml",
            "--fixtures",
            "erp.json",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for expected in [
        "== step order (call erp)",
        "erp GET /orders/GFSL-000042",
        "== step state (script mappings/soil/order_state.rhai)",
        "\"code\": \"TESTING\"",
        "== on_status (reply: template mappings/soil/on_status.j2)",
        "\"action\": \"on_status\"",
        "\"type\": \"lab\"",
        "(valid: passes the core schema and the domain rules; nothing was sent)",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in:\n{stdout}");
    }
}

#[test]
fn a_failing_step_is_shown_with_what_the_caller_gets() {
    let tree = common::temp_tree(&["greenfield-lab.yaml"]);
    let dir = tree.path();
    std::fs::write(dir.join("cancel.yaml"), "message: { order_id: GFSL-1 }\n").unwrap();
    std::fs::write(
        dir.join("erp.yaml"),
        "order: { status: 409, body: { error: CANNOT_CANCEL, message: too late } }\n",
    )
    .unwrap();
    let (code, stdout, stderr) = render(
        dir,
        &[
            "--flow",
            "greenfield-lab",
            "--action",
            "cancel",
            "--request",
            "cancel.yaml",
            "--fixtures",
            "erp.yaml",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("-> HTTP 409 (a failure)"), "{stdout}");
    assert!(stdout.contains("FAILED: step `order`"), "{stdout}");
    assert!(
        stdout.contains("not run: an earlier step failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the caller gets error 50001 (Cancellation not possible): too late"),
        "{stdout}"
    );
}

#[test]
fn bad_files_are_reported_at_their_line() {
    let tree = common::temp_tree(&["greenfield-lab.yaml"]);
    let dir = tree.path();
    std::fs::write(
        dir.join("bad.json"),
        "{\n  \"message\": {}\n  \"context\": {}\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("ok.yaml"), "message: { order_id: X }\n").unwrap();
    std::fs::write(dir.join("fix.yaml"), "order:\n  stauts: 200\n").unwrap();
    let args = |request: &'static str, fixtures: &'static str| {
        [
            "--flow",
            "greenfield-lab",
            "--action",
            "status",
            "--request",
            request,
            "--fixtures",
            fixtures,
        ]
    };
    let (code, _, stderr) = render(dir, &args("bad.json", "fix.yaml"));
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("bad.json:3:3: error: invalid JSON"),
        "{stderr}"
    );
    let (code, _, stderr) = render(dir, &args("ok.yaml", "fix.yaml"));
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("fix.yaml:2:3: error: unknown key `stauts`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `status`?"), "{stderr}");
    let (code, _, stderr) = render(
        dir,
        &[
            "--flow",
            "greenfield-lab",
            "--action",
            "updat",
            "--request",
            "ok.yaml",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("`updat` is not a Beckn action"), "{stderr}");
}
