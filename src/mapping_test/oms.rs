//! Mapping tests of a flow's `ultra:` mapping (`action: ultra`): an order event (an `on_*`
//! callback carrying an order) through the same code the adapter runs before queueing an OMS
//! update (`ultra::report::build_order`), and the checked OMS order compared with the
//! expectation, each difference with the template line that wrote the value; or the refusal
//! (a failing mapping, an order breaking Ultra's rules) or `null` the test expects.

use std::path::Path;

use serde_json::Value;

use super::format::TestFile;
use super::{Problem, TestResult, located_reference};
use crate::compile::{CompiledFlow, CompiledSet, Layout};
use crate::config::SpannedDoc;
use crate::dry_run::input::{self, InputError};
use crate::dry_run::json_path::{self, JsonPath, Mismatch};
use crate::dry_run::origin;
use crate::sinks::ultra::report::{self, BuildError};

/// The `action` naming a flow's `ultra:` mapping.
pub const ACTION: &str = "ultra";
/// The identity token a test's order event belongs to unless it names one.
pub const DEFAULT_IDENTITY: &str = "IDT-TEST";
/// What the differences are about, in the report.
const SUBJECT: &str = "OMS order";

/// Whether the test file `doc` tests an `ultra:` mapping.
pub fn is_oms_test(doc: &SpannedDoc) -> bool {
    doc.value.get("action").and_then(Value::as_str) == Some(ACTION)
}

/// Runs the `action: ultra` test in `file` (already read as `doc`).
pub fn run(
    layout: &Layout,
    set: &CompiledSet,
    file: &Path,
    doc: &SpannedDoc,
    stem: String,
) -> TestResult {
    let result = |name: String, problems: Vec<Problem>| TestResult {
        file: file.to_path_buf(),
        name,
        problems,
    };
    let (test, flow, event) = match prepare(set, file, doc) {
        Ok(p) => p,
        Err(e) => return result(stem, vec![Problem::Setup(e)]),
    };
    let name = test.name.clone().unwrap_or(stem);
    let identity = test
        .identity_token
        .clone()
        .unwrap_or_else(|| DEFAULT_IDENTITY.to_string());
    let callback = event
        .pointer("/context/action")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let expect = test.expect.as_ref();
    let wants_refusal = expect.and_then(|e| e.refused.clone());
    let wants_nothing = expect.is_some_and(|e| e.nothing);
    let mut problems = Vec::new();
    match report::build_order(&flow, &callback, &event, &identity) {
        Ok(Some(order)) => {
            if let Some(want) = wants_refusal {
                problems.push(Problem::OmsAccepted { expected: want });
            } else if wants_nothing {
                problems.push(Problem::OmsMade);
            }
            let differences = differences(&test, &order.body, doc, file);
            match differences {
                Ok(d) if d.is_empty() => {}
                Ok(d) => problems.push(located(layout, &flow, &callback, &event, &identity, d)),
                Err(e) => problems.push(Problem::Setup(e)),
            }
        }
        Ok(None) if wants_nothing => {}
        Ok(None) => problems.push(Problem::OmsNothing),
        Err(e) => {
            let detail = e.to_string();
            match wants_refusal {
                Some(want) if detail.contains(&want) => {}
                Some(want) => problems.push(Problem::WrongRefusal {
                    expected: want,
                    actual: detail,
                }),
                None => problems.push(Problem::OmsRefused {
                    mapping_failed: matches!(e, BuildError::Mapping(_)),
                    detail,
                }),
            }
        }
    }
    result(name, problems)
}

/// The test, its flow (with an `ultra:` mapping reporting the event) and the order event.
fn prepare(
    set: &CompiledSet,
    file: &Path,
    doc: &SpannedDoc,
) -> Result<(TestFile, std::sync::Arc<CompiledFlow>, Value), InputError> {
    let test: TestFile = input::typed(doc, file, "", &doc.value)?;
    let Some(flow) = set.flow(&test.flow).cloned() else {
        let names: Vec<&str> = set.flows.iter().map(|f| f.name.as_str()).collect();
        return Err(InputError::one(
            doc.diagnostic(file, "flow", format!("no flow named `{}`", test.flow))
                .hint(format!("the flows are: {}", names.join(", "))),
        ));
    };
    let mut problems = Vec::new();
    let Some(ultra) = &flow.sinks.ultra else {
        return Err(InputError::one(
            doc.diagnostic(
                file,
                "action",
                format!("flow `{}` has no `ultra:` mapping", flow.name),
            )
            .hint("`action: ultra` tests the OMS order a flow's `ultra:` block makes"),
        ));
    };
    for (key, given) in [
        ("fixtures", !test.fixtures.is_empty()),
        ("fixtures_file", test.fixtures_file.is_some()),
        (
            "expect.message",
            test.expect.as_ref().is_some_and(|e| e.message.is_some()),
        ),
        (
            "expect.error",
            test.expect.as_ref().is_some_and(|e| e.error.is_some()),
        ),
    ] {
        if given {
            problems.push(
                doc.diagnostic(file, key, format!("`{key}` is not used by `action: ultra`"))
                    .hint("expect `order`, `refused` or `nothing`, and `expect_paths` into the OMS order"),
            );
        }
    }
    for key in test.expect_paths.keys() {
        if let Err(e) = JsonPath::parse(key) {
            problems.push(doc.diagnostic(file, &format!("expect_paths.{key}"), e.to_string()));
        }
    }
    let event = match (&test.request, &test.request_file) {
        (Some(_), Some(_)) => {
            problems.push(doc.diagnostic(
                file,
                "request_file",
                "give either `request` or `request_file`, not both",
            ));
            Value::Null
        }
        (Some(r), None) => r.clone(),
        (None, Some(rel)) => match input::read_data(&input::beside(file, rel)) {
            Ok(d) => d.value,
            Err(e) => {
                problems.extend(located_reference(doc, file, "request_file", e));
                Value::Null
            }
        },
        (None, None) => {
            problems.push(
                doc.diagnostic(file, "", "the test gives no order event")
                    .hint("add `request_file: data/x.on_confirm.yaml` or `request: { context: ..., message: { order: ... } }`"),
            );
            Value::Null
        }
    };
    if !event.is_null() {
        let at = if test.request.is_some() {
            "request"
        } else {
            "request_file"
        };
        match event.pointer("/context/action").and_then(Value::as_str) {
            Some(a) if ultra.on.iter().any(|c| c == a) => {}
            Some(a) => problems.push(
                doc.diagnostic(
                    file,
                    at,
                    format!("flow `{}` does not report `{a}` to Ultra", flow.name),
                )
                .hint(format!("its `ultra.on` lists: {}", ultra.on.join(", "))),
            ),
            None => problems.push(
                doc.diagnostic(file, at, "the order event has no `context.action`")
                    .hint("the callback as received: `context.action: on_confirm`, ..."),
            ),
        }
        if event
            .pointer("/message/order")
            .is_none_or(|o| !o.is_object())
        {
            problems.push(
                doc.diagnostic(file, at, "the order event carries no `message.order`")
                    .hint("an order event is a callback with an order, as the flow receives or sends it"),
            );
        }
    }
    if !problems.is_empty() {
        return Err(InputError(problems));
    }
    Ok((test, flow, event))
}

/// The differences between the checked OMS order and `expect.order` / `expect_paths`.
fn differences(
    test: &TestFile,
    order: &Value,
    doc: &SpannedDoc,
    file: &Path,
) -> Result<Vec<Mismatch>, InputError> {
    let mut out = Vec::new();
    if let Some(want) = test.expect.as_ref().and_then(|e| e.order.as_ref()) {
        json_path::diff_exact(want, order, &JsonPath::default(), &mut out);
    }
    for (key, expected) in &test.expect_paths {
        let path = JsonPath::parse(key).map_err(|e| {
            InputError::one(doc.diagnostic(file, &format!("expect_paths.{key}"), e.to_string()))
        })?;
        match path.get(order) {
            None | Some(Value::Null) if expected.is_null() => {}
            Some(actual) if expected.is_object() || expected.is_array() => {
                json_path::diff_partial(expected, actual, &path, &mut out)
            }
            Some(actual) if json_path::same(expected, actual) => {}
            actual => out.push(Mismatch {
                path,
                expected: Some(expected.clone()),
                actual: actual.cloned(),
            }),
        }
    }
    Ok(out)
}

/// The differences, each with the line of the order template that wrote the value (found by
/// rendering it again, instrumented, from the same variables).
fn located(
    layout: &Layout,
    flow: &CompiledFlow,
    callback: &str,
    event: &Value,
    identity: &str,
    differences: Vec<Mismatch>,
) -> Problem {
    let origins = flow.sinks.ultra.as_ref().and_then(|u| {
        report::order_scope(flow, callback, event, identity)
            .ok()
            .map(|scope| origin::template_origins(layout, &u.order_template, &scope))
    });
    let differences = differences
        .into_iter()
        .map(|m| {
            let at = origins.as_ref().and_then(|o| o.of(&m.path));
            (m, at)
        })
        .collect();
    Problem::Differs {
        callback: SUBJECT,
        reply: origins.map(|o| o.reply),
        differences,
    }
}
