//! Mapping tests: YAML files beside the flows (`flows/tests/*.yaml`), each running one action of
//! a flow against a request and canned backend answers, offline, and checking the `on_*`
//! callback: its content, that it passes the outgoing checks, and the calls made on the way.
//!
//! A failure says where: the path of each differing value with both sides, and the template
//! line that wrote it (see `dry_run::origin`), so a mapping change that breaks a message is
//! found by `beckn-adapter test`, not by a buyer app.
//!
//! A test with `action: ultra` checks a flow's `ultra:` mapping instead: the OMS order it
//! makes of an order event (see `oms`).

pub mod format;
pub mod oms;
mod report;

pub use report::{Problem, Report, TestResult};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tracing::instrument::WithSubscriber;

use crate::beckn::action::Action;
use crate::beckn::error::BecknError;
use crate::compile::{CompiledFlow, CompiledSet, Layout, StepKind};
use crate::config::{Diagnostic, SpannedDoc};
use crate::dry_run::fixtures::{ExpectedRequest, FixtureTransport, Fixtures, RecordedCall};
use crate::dry_run::input::{self, InputError};
use crate::dry_run::json_path::{self, JsonPath, Mismatch};
use crate::dry_run::origin;
use crate::dry_run::{self, DryRun, request};
use format::TestFile;

/// Tests live in this directory under the flows directory. The flow loader reads only
/// `flows/*.yaml`, so test files never pass for flows.
pub const TESTS_DIR: &str = "tests";

/// The test files (`*.yaml`, `*.yml`) directly under `flows/tests/`, sorted. Subdirectories
/// hold the data files tests share (requests, fixtures).
pub fn test_files(flows_dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let dir = flows_dir.join(TESTS_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        Diagnostic::new(&dir, format!("cannot read the tests directory: {e}"))
            .hint("mapping tests are YAML files in a `tests/` directory beside the flow files")
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Runs every test under `layout.flows/tests/` whose file or name contains `filter`.
pub async fn run_all(
    layout: &Layout,
    set: &CompiledSet,
    filter: Option<&str>,
) -> Result<Report, Diagnostic> {
    let files = test_files(&layout.flows)?;
    let mut results = Vec::new();
    for file in files {
        // The engine logs what a server's operator needs (retries of a failing backend); in a
        // test those failures are fixtures and the report says what matters.
        let result = run_file(layout, set, &file)
            .with_subscriber(tracing::subscriber::NoSubscriber::default())
            .await;
        let wanted =
            filter.is_none_or(|f| result.name.contains(f) || file.to_string_lossy().contains(f));
        if wanted {
            results.push(result);
        }
    }
    if results.is_empty() {
        let dir = layout.flows.join(TESTS_DIR);
        return Err(match filter {
            Some(f) => Diagnostic::new(&dir, format!("no mapping test matches `{f}`")),
            None => Diagnostic::new(&dir, "no mapping tests (*.yaml) found")
                .hint("a test names a flow, an action, a request, fixtures and what to expect"),
        });
    }
    Ok(Report { results })
}

/// Runs the test in `file`.
pub async fn run_file(layout: &Layout, set: &CompiledSet, file: &Path) -> TestResult {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(doc) = input::read_data(file)
        && oms::is_oms_test(&doc)
    {
        return oms::run(layout, set, file, &doc, stem);
    }
    let prepared = match prepare(set, file) {
        Ok(p) => p,
        Err(e) => {
            return TestResult {
                file: file.to_path_buf(),
                name: stem,
                problems: vec![Problem::Setup(e)],
            };
        }
    };
    let name = prepared.test.name.clone().unwrap_or(stem);
    let transport = FixtureTransport::new(prepared.fixtures.clone());
    let memory = prepared.test.transaction.clone().unwrap_or_default();
    let run = dry_run::run(
        set,
        &prepared.flow,
        prepared.action,
        &prepared.request,
        &memory,
        &transport,
    )
    .await;
    let mut problems = Vec::new();
    if !run.request_violations.is_empty() {
        problems.push(Problem::RequestRejected(run.request_violations.clone()));
    }
    problems.extend(
        transport
            .missing()
            .into_iter()
            .map(|c| Problem::MissingFixture(Box::new(c))),
    );
    check_calls(&prepared, &run, &mut problems);
    check_callback(layout, &prepared, &run, &mut problems);
    TestResult {
        file: file.to_path_buf(),
        name,
        problems,
    }
}

/// A test file read and checked against the flows, ready to run.
struct Prepared {
    test: TestFile,
    flow: Arc<CompiledFlow>,
    action: Action,
    request: Value,
    fixtures: Fixtures,
    paths: Vec<(JsonPath, Value)>,
}

fn prepare(set: &CompiledSet, file: &Path) -> Result<Prepared, InputError> {
    let doc = input::read_data(file)?;
    let test: TestFile = input::typed(&doc, file, "", &doc.value)?;
    let Some(flow) = set.flow(&test.flow).cloned() else {
        let names: Vec<&str> = set.flows.iter().map(|f| f.name.as_str()).collect();
        return Err(InputError::one(
            doc.diagnostic(file, "flow", format!("no flow named `{}`", test.flow))
                .hint(format!("the flows are: {}", names.join(", "))),
        ));
    };
    let (_, action) = dry_run::pick(set, &test.flow, &test.action)
        .map_err(|m| InputError::one(doc.diagnostic(file, "action", m)))?;
    let mut problems = Vec::new();
    let expect = test.expect.as_ref();
    for (key, given) in [
        ("identity_token", test.identity_token.is_some()),
        ("expect.order", expect.is_some_and(|e| e.order.is_some())),
        (
            "expect.refused",
            expect.is_some_and(|e| e.refused.is_some()),
        ),
        ("expect.nothing", expect.is_some_and(|e| e.nothing)),
    ] {
        if given {
            problems.push(
                doc.diagnostic(file, key, format!("`{key}` is only for `action: ultra`"))
                    .hint("an action's test expects its callback: `expect.message`, `expect.error`, `expect_paths`"),
            );
        }
    }
    let call_steps = call_steps(&flow, action);
    for step in test.fixtures.keys() {
        if !call_steps.contains(step) {
            let mut d = doc.diagnostic(
                file,
                &format!("fixtures.{step}"),
                format!("`{step}` is not a step of `{action}` that calls a backend"),
            );
            d = match crate::config::closest(step, &call_steps) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None => d.hint(format!("steps that call: {}", call_steps.join(", "))),
            };
            problems.push(d);
        }
    }
    let mut paths = Vec::new();
    for (key, expected) in &test.expect_paths {
        let yaml_path = format!("expect_paths.{key}");
        match JsonPath::parse(key) {
            Ok(p) if matches!(p.first_key(), Some("context" | "message" | "error")) => {
                paths.push((p, expected.clone()));
            }
            Ok(_) => problems.push(
                doc.diagnostic(
                    file,
                    &yaml_path,
                    format!("`{key}` is not a path into the callback"),
                )
                .hint("paths start with `message.`, `context.` or `error.`"),
            ),
            Err(e) => problems.push(doc.diagnostic(file, &yaml_path, e.to_string())),
        }
    }
    let request = match (&test.request, &test.request_file) {
        (Some(_), Some(_)) => {
            problems.push(doc.diagnostic(
                file,
                "request_file",
                "give either `request` or `request_file`, not both",
            ));
            Value::Null
        }
        (Some(r), None) => match request::check_shape(&doc, file, "request") {
            Ok(()) => r.clone(),
            Err(e) => {
                problems.extend(e.0);
                Value::Null
            }
        },
        (None, Some(rel)) => match request::load_request(&input::beside(file, rel)) {
            Ok(r) => r,
            Err(e) => {
                problems.extend(located_reference(&doc, file, "request_file", e));
                Value::Null
            }
        },
        (None, None) => {
            problems.push(
                doc.diagnostic(file, "", "the test gives no request")
                    .hint("add `request: { message: ... }` or `request_file: data/x.yaml`"),
            );
            Value::Null
        }
    };
    let mut fixtures = Fixtures::new();
    if let Some(rel) = &test.fixtures_file {
        match crate::dry_run::fixtures::load_fixtures(&input::beside(file, rel)) {
            Ok(f) => fixtures = f,
            Err(e) => problems.extend(located_reference(&doc, file, "fixtures_file", e)),
        }
    }
    for (step, f) in &test.fixtures {
        fixtures.insert(step.clone(), f.clone());
    }
    if !problems.is_empty() {
        return Err(InputError(problems));
    }
    Ok(Prepared {
        test,
        flow,
        action,
        request,
        fixtures,
        paths,
    })
}

/// The problems of a file a test names, each saying which key of the test named it.
fn located_reference(doc: &SpannedDoc, file: &Path, key: &str, e: InputError) -> Vec<Diagnostic> {
    let (line, _) = doc.locate(key);
    e.0.into_iter()
        .map(|d| {
            let hint = format!("named by {}:{line} ({key})", file.display());
            match d.hint.clone() {
                Some(h) => d.hint(format!("{h}; {hint}")),
                None => d.hint(hint),
            }
        })
        .collect()
}

/// Names of the steps of `action` that call a backend.
fn call_steps(flow: &CompiledFlow, action: Action) -> Vec<String> {
    flow.actions
        .get(&action)
        .map(|a| {
            a.steps
                .iter()
                .filter(|s| matches!(s.kind, StepKind::Call(_)))
                .map(|s| s.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Compares each call with its fixture's `expect_request`. A step that made no call is a
/// problem only for the test's own fixtures and only when its `when` skipped it: entries of a
/// shared fixture file may serve other requests, and a run that stopped earlier says why.
fn check_calls(prepared: &Prepared, run: &DryRun, problems: &mut Vec<Problem>) {
    let steps = call_steps(&prepared.flow, prepared.action);
    for (step, fixture) in &prepared.fixtures {
        // The step's first call is checked against the fixture's own `expect_request`, its
        // later calls (pages) against those of `then`, in order.
        let expected: Vec<Option<&ExpectedRequest>> = std::iter::once(fixture)
            .chain(&fixture.then)
            .map(|f| f.expect_request.as_ref())
            .collect();
        if expected.iter().all(Option::is_none) || !steps.contains(step) {
            continue; // nothing to compare, or a shared fixture file's entry for another action
        }
        let calls: Vec<&RecordedCall> = run.calls.iter().filter(|c| &c.step == step).collect();
        match calls.first() {
            Some(_) => {
                for (expected, call) in expected.iter().zip(&calls) {
                    let Some(expected) = expected else { continue };
                    let differences = request_differences(expected, call);
                    if !differences.is_empty() {
                        problems.push(Problem::RequestDiffers {
                            step: step.clone(),
                            differences,
                        });
                    }
                }
            }
            None if prepared.test.fixtures.contains_key(step)
                && run.trace.skipped.contains(step) =>
            {
                problems.push(Problem::NoCall { step: step.clone() })
            }
            None => {}
        }
    }
}

fn request_differences(expected: &ExpectedRequest, call: &RecordedCall) -> Vec<Mismatch> {
    let r = &call.request;
    let mut out = Vec::new();
    let mut scalar = |name: &str, want: &Option<String>, got: &str| {
        if let Some(want) = want
            && !want.eq_ignore_ascii_case(got)
        {
            out.push(Mismatch {
                path: JsonPath::default().key(name),
                expected: Some(Value::String(want.clone())),
                actual: Some(Value::String(got.to_string())),
            });
        }
    };
    scalar("method", &expected.method, &r.method);
    if let Some(want) = &expected.text_body {
        let got = r.text.as_ref().map(|t| Value::String(t.text.clone()));
        if got.as_ref().and_then(Value::as_str) != Some(want.as_str()) {
            out.push(Mismatch {
                path: JsonPath::default().key("text_body"),
                expected: Some(Value::String(want.clone())),
                actual: got,
            });
        }
    }
    if let Some(want) = &expected.path
        && *want != r.path
    {
        out.push(Mismatch {
            path: JsonPath::default().key("path"),
            expected: Some(Value::String(want.clone())),
            actual: Some(Value::String(r.path.clone())),
        });
    }
    let sent = [("query", Some(&r.query)), ("form", r.form.as_ref())];
    for ((name, pairs), want) in sent.into_iter().zip([&expected.query, &expected.form]) {
        for (k, want) in want.iter().flatten() {
            let got = pairs
                .and_then(|p| p.iter().find(|(n, _)| n == k))
                .map(|(_, v)| v.clone());
            if *want != got {
                out.push(Mismatch {
                    path: JsonPath::default().key(name).key(k),
                    expected: want.clone().map(Value::String),
                    actual: got.map(Value::String),
                });
            }
        }
    }
    if let Some(headers) = &expected.headers {
        for (k, want) in headers {
            let got = r
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone());
            if got.as_deref() != Some(want.as_str()) {
                out.push(Mismatch {
                    path: JsonPath::default().key("headers").key(k),
                    expected: Some(Value::String(want.clone())),
                    actual: got.map(Value::String),
                });
            }
        }
    }
    if let Some(body) = &expected.body {
        let base = JsonPath::default().key("body");
        match &r.body {
            Some(actual) => json_path::diff_partial(body, actual, &base, &mut out),
            None => out.push(Mismatch {
                path: base,
                expected: Some(body.clone()),
                actual: None,
            }),
        }
    }
    out
}

/// Checks the callback: error or not, outgoing checks, `expect.message`, `expect_paths`.
fn check_callback(layout: &Layout, prepared: &Prepared, run: &DryRun, problems: &mut Vec<Problem>) {
    let callback_name = prepared.action.callback();
    let expected_error = prepared.test.expect.as_ref().and_then(|e| e.error.as_ref());
    let actual_error: Option<BecknError> = run
        .callback
        .get("error")
        .and_then(|e| serde_json::from_value(e.clone()).ok());
    let detail = run
        .trace
        .outcome
        .as_ref()
        .err()
        .map(|e| origin::explain(layout, e));
    let mut unexpected_failure = false;
    match (expected_error, actual_error) {
        (Some(want), Some(got)) => {
            let same_message = want.message.as_ref().is_none_or(|m| *m == got.message);
            if want.code != got.code || !same_message {
                problems.push(Problem::WrongError {
                    expected: want.clone(),
                    actual: got,
                    detail,
                });
            }
        }
        (Some(want), None) => problems.push(Problem::NoError(want.clone())),
        (None, Some(got)) => {
            unexpected_failure = true;
            problems.push(Problem::Failed {
                detail: detail.unwrap_or_else(|| "the callback carries an error".into()),
                error: got,
            });
        }
        (None, None) => {}
    }
    let mut differences = Vec::new();
    if let Some(message) = prepared
        .test
        .expect
        .as_ref()
        .and_then(|e| e.message.as_ref())
        && !unexpected_failure
    {
        let base = JsonPath::default().key("message");
        match run.callback.get("message") {
            Some(actual) => json_path::diff_exact(message, actual, &base, &mut differences),
            None => differences.push(Mismatch {
                path: base,
                expected: Some(message.clone()),
                actual: None,
            }),
        }
    }
    for (path, expected) in &prepared.paths {
        if unexpected_failure && path.first_key() == Some("message") {
            continue;
        }
        match path.get(&run.callback) {
            // null expects the value to be absent (or null)
            None | Some(Value::Null) if expected.is_null() => {}
            Some(actual) if expected.is_object() || expected.is_array() => {
                json_path::diff_partial(expected, actual, path, &mut differences)
            }
            Some(actual) if json_path::same(expected, actual) => {}
            actual => differences.push(Mismatch {
                path: path.clone(),
                expected: Some(expected.clone()),
                actual: actual.cloned(),
            }),
        }
    }
    if differences.is_empty() && run.callback_violations.is_empty() {
        return;
    }
    // Where the reply wrote each value: only worked out when something is wrong with one.
    let origins = run
        .trace
        .outcome
        .is_ok()
        .then(|| origin::reply_origins(layout, &run.flow, run.action, &run.trace.scope))
        .flatten();
    let written_at = |path: &JsonPath| match (&origins, path.first_key()) {
        (Some(o), Some("message")) => o.of(&path.skip(1)),
        _ => None,
    };
    if !run.callback_violations.is_empty() {
        let violations = run
            .callback_violations
            .iter()
            .map(|v| {
                let at = JsonPath::parse(&v.path).ok().and_then(|p| written_at(&p));
                (v.clone(), at)
            })
            .collect();
        problems.push(Problem::CallbackInvalid {
            callback: callback_name,
            violations,
        });
    }
    if differences.is_empty() {
        return;
    }
    let located = differences
        .into_iter()
        .map(|m| {
            let at = written_at(&m.path);
            (m, at)
        })
        .collect();
    problems.push(Problem::Differs {
        callback: callback_name,
        reply: origins.map(|o| o.reply),
        differences: located,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendFailure, BackendRequest};

    #[test]
    fn form_fields_are_compared_like_query_parameters() {
        let call = RecordedCall {
            step: "token".into(),
            backend: "erp".into(),
            request: BackendRequest {
                method: "POST".into(),
                path: "/bookings".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                form: Some(vec![("test_code".into(), "SOIL-NPK".into())]),
                text: None,
            },
            answer: Err(BackendFailure::Unreachable("fixture".into())),
        };
        let expected: ExpectedRequest = serde_json::from_value(serde_json::json!({
            "form": {"test_code": "SOIL-NPK", "patient": null}
        }))
        .unwrap();
        assert!(request_differences(&expected, &call).is_empty());
        let expected: ExpectedRequest = serde_json::from_value(serde_json::json!({
            "form": {"test_code": "SOIL-PH", "patient": "Asha"}
        }))
        .unwrap();
        let paths: Vec<String> = request_differences(&expected, &call)
            .iter()
            .map(|m| m.path.to_string())
            .collect();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths.iter().all(|p| p.starts_with("form")), "{paths:?}");
    }

    #[test]
    fn a_text_body_is_compared_exactly() {
        let call = RecordedCall {
            step: "book".into(),
            backend: "erp".into(),
            request: BackendRequest {
                method: "POST".into(),
                path: "/soap".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
                form: None,
                text: Some(crate::backend::TextBody {
                    content_type: "application/xml".into(),
                    text: "<ref>t-1</ref>".into(),
                }),
            },
            answer: Err(BackendFailure::Unreachable("fixture".into())),
        };
        let expect = |text: &str| -> ExpectedRequest {
            serde_json::from_value(serde_json::json!({ "text_body": text })).unwrap()
        };
        assert!(request_differences(&expect("<ref>t-1</ref>"), &call).is_empty());
        let differences = request_differences(&expect("<ref>t-2</ref>"), &call);
        assert_eq!(differences.len(), 1);
        assert_eq!(differences[0].path.to_string(), "text_body");
    }
}
