//! `beckn-adapter demo`, run as a newcomer runs it: the built binary in the repository, which
//! starts the sample network in its own process and plays the farmer's journey.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::repo;

#[test]
fn the_demo_plays_the_whole_journey_and_exits_0() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .arg("demo")
        .current_dir(repo())
        .env_remove("BECKN_LOG")
        .output()
        .expect("run beckn-adapter demo");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the demo took {elapsed:?}"
    );
    let has = |line_start: &str, text: &str| {
        stdout
            .lines()
            .any(|l| l.trim_start().starts_with(line_start) && l.contains(text))
    };
    // Every participant joined through the stand-in registry, answering its challenge.
    for id in [
        "farmer-app.example",
        "gateway.soil.example",
        "soil.greenfield-labs.example",
        "soil.krishitesthouse.example",
        "soil.bhoomi-labs.example",
    ] {
        assert!(
            has("registry:", &format!("challenge answered by {id}")),
            "{id} did not answer its challenge:\n{stdout}"
        );
        assert!(
            has("registry:", &format!("{id}|")) && has("registry:", "SUBSCRIBED"),
            "{id} is not SUBSCRIBED:\n{stdout}"
        );
    }
    for (line_start, text) in [
        ("1  sign-in", "grant token exchanged (secureToken RS256)"),
        (
            "2  search",
            "farmer-app → soil-gateway (sync): wheat, pincode 110081",
        ),
        (
            "on_search",
            "GreenField Soil Labs → farmer-app via soil-gateway: 4 tests: Soil NPK Package ₹499.00",
        ),
        (
            "on_search",
            "Krishi Test House → farmer-app via soil-gateway: no tests at pincode 110081",
        ),
        (
            "on_select",
            "quote ₹647.82 (Soil NPK Package ₹499.00 + Home sample pickup ₹50.00 + GST ₹98.82)",
        ),
        ("on_init", "₹647.82 to pay ON-FULFILLMENT (BPP), pickup"),
        ("on_confirm", "order GFSL-000001 ACTIVE, SCHEDULED"),
        ("GET", "→ complete"),
        (
            "on_status",
            "(unsolicited, HMAC verified): order GFSL-000001 ACTIVE, AGENT-ASSIGNED",
        ),
        ("on_track", "(answer, HMAC verified): tracking active"),
        (
            "on_status",
            "(unsolicited, HMAC verified): order GFSL-000001 COMPLETE, REPORT-READY",
        ),
        ("on_cancel", "order GFSL-000002 CANCELLED"),
        (
            "on_rating",
            "feedback form https://greenfield-labs.example/feedback/",
        ),
        ("on_support", "ticket T-GFSL-000001, helpline 1800-11-4000"),
        ("ACK", "soil-gateway → farmer-app"),
        // the third lab runs on the sample LIMS, a system of another shape
        ("bhoomi-lab", "BPP, a lab on the sample LIMS"),
        (
            "on_search",
            "Bhoomi Soil Labs → farmer-app via soil-gateway: 5 tests: Soil NPK ₹1250.00",
        ),
        (
            "on_select",
            "Bhoomi Soil Labs → farmer-app: quote ₹1888.59 (Soil micronutrients ₹1450.50 + Field visit ₹150.00 + GST ₹288.09)",
        ),
        (
            "on_confirm",
            "order BHM-000001 ACTIVE, SCHEDULED (Field visit scheduled), ₹1888.59",
        ),
        ("22  LIMS", "moves BHM-000001 on to SAMPLE_COLLECTED"),
        (
            "on_status",
            "Bhoomi Soil Labs → farmer-app: order BHM-000001 ACTIVE, SAMPLE-COLLECTED",
        ),
        (
            "25  Ultra OMS",
            "My Orders: BHM-000001 ORDER_CONFIRMED (paid ₹1888.59",
        ),
        (
            "18  Ultra OMS",
            "My Orders: GFSL-000001 ORDER_CONFIRMED → ORDER_FULFILLED (paid ₹647.82, refunded ₹0.00)",
        ),
        (
            "18  Ultra OMS",
            "My Orders: GFSL-000002 ORDER_CONFIRMED → ORDER_CANCELLED (paid ₹1060.82, refunded ₹1060.82)",
        ),
    ] {
        assert!(
            has(line_start, text),
            "no `{line_start} … {text}` line in:\n{stdout}"
        );
    }
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("journey complete in"), "{last}");
    assert!(
        last.contains("webhook deliveries with a valid HMAC, 5 order states on Flipkart Ultra"),
        "{last}"
    );
}

#[test]
fn without_the_sample_flows_the_demo_fails_with_the_reason() {
    // A flows directory without the sample flows: the demo stops before any step, non-zero.
    let tree = crate::common::temp_tree(&["greenfield-lab.yaml"]);
    let out = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .args(["demo", "flows"])
        .current_dir(tree.path())
        .output()
        .expect("run beckn-adapter demo");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("demo failed: the demo needs the sample flow `farmer-app`"),
        "{stderr}"
    );
}
