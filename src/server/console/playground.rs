//! The mapping playground's API: a flow's action run on a request and backend fixtures (the
//! mapping tests' format), by the same code as `render` and `test` (`dry_run::run`), with its
//! violations and the template line that wrote each value; mapping test files opened and
//! saved, only under the flows' tests directory.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Console, refusal};
use crate::backend::BackendFailure;
use crate::compile::Layout;
use crate::dry_run::fixtures::{FixtureTransport, Fixtures};
use crate::dry_run::json_path::{JsonPath, Segment};
use crate::dry_run::{self, input, origin};
use crate::mapping_test::{self, TESTS_DIR};

/// The tests directory of `layout`.
fn tests_dir(layout: &Layout) -> PathBuf {
    layout.flows.join(TESTS_DIR)
}

/// Why a path given by the page is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    #[error("`{0}` is not a relative path under the tests directory")]
    Outside(String),
    #[error("`{0}`: a mapping test file ends in .yaml or .yml")]
    NotYaml(String),
    #[error("the tests directory {0} cannot be read: {1}")]
    NoTestsDir(String, String),
}

/// `rel` resolved under `dir`, refusing anything that could leave it: absolute paths, `..`,
/// and (once resolved on disk) links that point elsewhere.
pub fn under(dir: &Path, rel: &str) -> Result<PathBuf, PathRefused> {
    let outside = || PathRefused::Outside(rel.to_string());
    let path = Path::new(rel);
    if rel.is_empty()
        || rel.contains('\0')
        || !path.components().all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(outside());
    }
    if !matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    ) {
        return Err(PathRefused::NotYaml(rel.to_string()));
    }
    let root = dir
        .canonicalize()
        .map_err(|e| PathRefused::NoTestsDir(dir.display().to_string(), e.to_string()))?;
    let joined = root.join(path);
    let parent = joined.parent().ok_or_else(outside)?;
    let parent = parent.canonicalize().map_err(|_| outside())?;
    if !parent.starts_with(&root) {
        return Err(outside());
    }
    let file = parent.join(joined.file_name().ok_or_else(outside)?);
    // An existing file may itself be a link out of the directory.
    if let Ok(real) = file.canonicalize()
        && !real.starts_with(&root)
    {
        return Err(outside());
    }
    Ok(file)
}

/// The test files under the tests directory, and the flows with their actions to pick from.
pub async fn files(State(console): State<Arc<Console>>) -> Response {
    let layout = console.admin.reloader.layout();
    let dir = tests_dir(layout);
    let files: Vec<String> = mapping_test::test_files(&layout.flows)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.strip_prefix(&dir).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let set = console.admin.reloader.flows.load();
    let flows: Vec<Value> = set
        .flows
        .iter()
        .filter(|f| !f.actions.is_empty())
        .map(|f| {
            let mut actions: Vec<&str> = f.actions.keys().map(|a| a.as_str()).collect();
            actions.sort();
            json!({"name": f.name, "actions": actions})
        })
        .collect();
    Json(json!({"tests_dir": dir.display().to_string(), "files": files, "flows": flows}))
        .into_response()
}

#[derive(Deserialize)]
pub struct OpenQuery {
    path: String,
}

/// A mapping test file, as the playground edits it: flow, action, request, fixtures (its
/// fixture file's entries with its own over them) and what the transaction remembered.
pub async fn open(State(console): State<Arc<Console>>, Query(q): Query<OpenQuery>) -> Response {
    let layout = console.admin.reloader.layout();
    let file = match under(&tests_dir(layout), &q.path) {
        Ok(f) => f,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match read_test(&file) {
        Ok(v) => Json(v).into_response(),
        Err(e) => refusal(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}

fn read_test(file: &Path) -> Result<Value, input::InputError> {
    let doc = input::read_data(file)?;
    let test: mapping_test::format::TestFile = input::typed(&doc, file, "", &doc.value)?;
    let request = match (&test.request, &test.request_file) {
        (Some(r), _) => r.clone(),
        (None, Some(rel)) => dry_run::request::load_request(&input::beside(file, rel))?,
        (None, None) => json!({"context": {}, "message": {}}),
    };
    let mut fixtures = Map::new();
    if let Some(rel) = &test.fixtures_file {
        let from_file = input::read_data(&input::beside(file, rel))?;
        if let Value::Object(m) = from_file.value {
            fixtures.extend(m);
        }
    }
    if let Some(Value::Object(m)) = doc.value.get("fixtures") {
        fixtures.extend(m.clone());
    }
    Ok(json!({
        "name": test.name,
        "flow": test.flow,
        "action": test.action,
        "request": request,
        "fixtures": fixtures,
        "transaction": test.transaction,
    }))
}

/// What the page sends to run: the mapping test's fields.
#[derive(Deserialize)]
pub struct Case {
    flow: String,
    action: String,
    request: Value,
    #[serde(default)]
    fixtures: Value,
    #[serde(default)]
    transaction: Option<Map<String, Value>>,
}

/// Runs a case; 422 with the reason when it cannot run at all.
pub async fn render(State(console): State<Arc<Console>>, Json(case): Json<Case>) -> Response {
    let layout = console.admin.reloader.layout();
    let set = console.admin.reloader.flows.load_full();
    let (flow, action) = match dry_run::pick(&set, &case.flow, &case.action) {
        Ok(p) => p,
        Err(e) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &e),
    };
    let fixtures: Fixtures = match &case.fixtures {
        Value::Null => Fixtures::default(),
        v => match serde_json::from_value(v.clone()) {
            Ok(f) => f,
            Err(e) => {
                return refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("fixtures: {e} (step name -> {{status, body}})"),
                );
            }
        },
    };
    if !case.request.is_object() {
        return refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the request is an object with `context` and `message`",
        );
    }
    let transport = FixtureTransport::new(fixtures);
    let memory = case.transaction.clone().unwrap_or_default();
    let run = dry_run::run(&set, &flow, action, &case.request, &memory, &transport).await;
    let origins = run
        .trace
        .outcome
        .is_ok()
        .then(|| origin::reply_origins(layout, &flow, action, &run.trace.scope))
        .flatten();
    let mut written = Vec::new();
    if let (Some(o), Some(message)) = (&origins, run.callback.get("message")) {
        leaves(message, &mut JsonPath::default(), &mut |path, value| {
            written.push(json!({
                "path": format!("message.{path}"),
                "value": value,
                "line": o.of(path).map(|l| l.to_string()),
            }));
        });
    }
    let violations = |vs: &[crate::beckn::schema::Violation]| -> Vec<Value> {
        vs.iter()
            .map(|v| json!({"path": v.path, "message": v.message}))
            .collect()
    };
    let calls: Vec<Value> = run
        .calls
        .iter()
        .map(|c| {
            json!({
                "step": c.step, "backend": c.backend,
                "method": c.request.method.to_string(), "path": c.request.path,
                "status": match &c.answer {
                    Ok(r) => json!(r.status),
                    Err(BackendFailure::Status { status, .. }) => json!(status),
                    Err(other) => json!(other.to_string()),
                },
            })
        })
        .collect();
    let missing: Vec<String> = transport.missing().into_iter().map(|c| c.step).collect();
    Json(json!({
        "callback": run.callback,
        "request_violations": violations(&run.request_violations),
        "callback_violations": violations(&run.callback_violations),
        "error": run.trace.outcome.as_ref().err().map(|e| origin::explain(layout, e)),
        "reply": origins.as_ref().map(|o| o.reply.to_string()),
        "written": written,
        "calls": calls,
        "missing_fixtures": missing,
    }))
    .into_response()
}

/// Calls `f` with the path and value of every leaf of `value` (and of every empty array or
/// object), in document order.
fn leaves(value: &Value, at: &mut JsonPath, f: &mut dyn FnMut(&JsonPath, &Value)) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                at.0.push(Segment::Key(k.clone()));
                leaves(v, at, f);
                at.0.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, v) in a.iter().enumerate() {
                at.0.push(Segment::Index(i));
                leaves(v, at, f);
                at.0.pop();
            }
        }
        leaf => f(at, leaf),
    }
}

#[derive(Deserialize)]
pub struct SaveCase {
    path: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(flatten)]
    case: Case,
}

/// Saves a case as a mapping test expecting what it renders now: its `message`, or its error
/// code. Written as JSON (which is YAML) into a `.yaml` file under the tests directory.
pub async fn save(State(console): State<Arc<Console>>, Json(save): Json<SaveCase>) -> Response {
    let layout = console.admin.reloader.layout();
    let file = match under(&tests_dir(layout), &save.path) {
        Ok(f) => f,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let set = console.admin.reloader.flows.load_full();
    let case = &save.case;
    let (flow, action) = match dry_run::pick(&set, &case.flow, &case.action) {
        Ok(p) => p,
        Err(e) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &e),
    };
    let fixtures: Fixtures = match serde_json::from_value(match &case.fixtures {
        Value::Null => json!({}),
        v => v.clone(),
    }) {
        Ok(f) => f,
        Err(e) => return refusal(StatusCode::UNPROCESSABLE_ENTITY, &format!("fixtures: {e}")),
    };
    let transport = FixtureTransport::new(fixtures);
    let memory = case.transaction.clone().unwrap_or_default();
    let run = dry_run::run(&set, &flow, action, &case.request, &memory, &transport).await;
    let expect = match (&run.trace.outcome, run.callback.get("message")) {
        (Ok(_), Some(message)) => json!({"message": message}),
        _ => {
            json!({"error": {"code": run.callback.pointer("/error/code").cloned().unwrap_or(json!("31001"))}})
        }
    };
    let mut test = Map::new();
    if let Some(name) = &save.name {
        test.insert("name".into(), json!(name));
    }
    test.insert("flow".into(), json!(case.flow));
    test.insert("action".into(), json!(case.action));
    test.insert("request".into(), case.request.clone());
    if !matches!(&case.fixtures, Value::Null) {
        test.insert("fixtures".into(), case.fixtures.clone());
    }
    if let Some(t) = &case.transaction {
        test.insert("transaction".into(), json!(t));
    }
    test.insert("expect".into(), expect);
    let text = format!(
        "# A mapping test saved from the console (JSON is YAML).\n{}\n",
        serde_json::to_string_pretty(&Value::Object(test)).unwrap_or_default()
    );
    match std::fs::write(&file, text) {
        Ok(()) => Json(json!({"saved": file.display().to_string()})).into_response(),
        Err(e) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot write {}: {e}", file.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_tests_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        assert!(under(dir.path(), "a.yaml").is_ok());
        assert!(under(dir.path(), "data/b.yml").is_ok());
        for bad in [
            "../a.yaml",
            "/etc/a.yaml",
            "data/../../a.yaml",
            "",
            "./a.yaml",
        ] {
            assert!(
                matches!(under(dir.path(), bad), Err(PathRefused::Outside(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            under(dir.path(), "a.sh"),
            Err(PathRefused::NotYaml(_))
        ));
        assert!(matches!(
            under(dir.path(), "missing/a.yaml"),
            Err(PathRefused::Outside(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_out_of_the_tests_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("x.yaml"), "a: 1").unwrap();
        std::os::unix::fs::symlink(elsewhere.path().join("x.yaml"), dir.path().join("x.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("out")).unwrap();
        assert!(under(dir.path(), "x.yaml").is_err());
        assert!(under(dir.path(), "out/x.yaml").is_err());
    }

    #[test]
    fn every_leaf_is_visited_with_its_path() {
        let v = json!({"a": {"b": [1, {"c": "x"}], "d": {}}});
        let mut seen = Vec::new();
        leaves(&v, &mut JsonPath::default(), &mut |p, v| {
            seen.push(format!("{p}={v}"))
        });
        assert_eq!(seen, vec!["a.b[0]=1", "a.b[1].c=\"x\"", "a.d={}"]);
    }
}
