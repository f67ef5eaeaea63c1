//! Canned backend answers, matched by the name of the step that calls, and the transports of a
//! dry run: one answering from fixtures, one recording every call whatever answers it.
//!
//! Steps are the natural key: a flow's steps are named and unique per action, whereas paths
//! carry ids and the same path may be called by several actions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::input::{InputError, read_data, typed};
use crate::backend::{Backend, BackendFailure, BackendRequest, BackendResponse, Transport};

/// What a backend answers one step. A 2xx `status` (the default, 200) makes `body` the step's
/// result; any other status is a failure that the call's `errors:` table maps to a Beckn error.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// HTTP status of the answer (default 200).
    #[serde(default)]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<u16>,
    /// The JSON body of the answer (default null).
    #[serde(default)]
    pub body: Option<Value>,
    /// No answer at all: `timeout`, `unreachable`, or `invalid_response` (a body that is not JSON).
    #[serde(default)]
    pub failure: Option<FailureKind>,
    /// Headers of the answer; a `Link: <url>; rel="next"` gives a `next_link` page's successor.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The answers to the step's later calls, in order: its first call gets this fixture's
    /// own answer, the second `then[0]`, and so on (pages of a `paginate:` call, or the
    /// elements of a `for_each`). A call beyond them fails as unreachable.
    #[serde(default)]
    pub then: Vec<Fixture>,
    /// Mapping tests only: the call the step must make. Only what is given is compared; in
    /// `query` and `body`, a key given as null must be absent.
    #[serde(default)]
    pub expect_request: Option<ExpectedRequest>,
}

/// A failure without an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    Timeout,
    Unreachable,
    InvalidResponse,
}

/// The parts of a backend call a test wants to see; each is optional.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRequest {
    /// `GET`, `POST`...
    #[serde(default)]
    pub method: Option<String>,
    /// The path under the backend's base URL, exactly (`/orders/GFSL-1/cancel`).
    #[serde(default)]
    pub path: Option<String>,
    /// Query parameters that must be sent with these values (null: must not be sent).
    #[serde(default)]
    pub query: Option<BTreeMap<String, Option<String>>>,
    /// Headers of the call (besides the backend's own) that must be sent with these values.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// The JSON body, compared partially: only the keys given.
    #[serde(default)]
    pub body: Option<Value>,
    /// Fields of a form body (`form:`) that must be sent with these values (null: must not be
    /// sent).
    #[serde(default)]
    pub form: Option<BTreeMap<String, Option<String>>>,
    /// A raw text body (`text_body:`), exactly.
    #[serde(default)]
    pub text_body: Option<String>,
}

impl Fixture {
    /// The fixture answering the `n`-th call of its step (from 0): itself, then `then`.
    pub fn nth(&self, n: usize) -> Option<&Fixture> {
        match n {
            0 => Some(self),
            n => self.then.get(n - 1),
        }
    }

    /// The answer this fixture gives to a call to `backend`.
    pub fn answer(&self, backend: &Backend) -> Result<BackendResponse, BackendFailure> {
        let status = self.status.unwrap_or(200);
        let body = self.body.clone().unwrap_or(Value::Null);
        match self.failure {
            Some(FailureKind::Timeout) => Err(BackendFailure::Timeout(backend.timeout)),
            Some(FailureKind::Unreachable) => Err(BackendFailure::Unreachable(
                "connection refused (fixture)".into(),
            )),
            Some(FailureKind::InvalidResponse) => Err(BackendFailure::InvalidResponse {
                status,
                detail: "the body is not JSON (fixture)".into(),
            }),
            None if (200..300).contains(&status) => Ok(BackendResponse {
                status,
                body,
                next_link: self
                    .headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("link"))
                    .find_map(|(_, v)| crate::backend::next_in_link(v)),
            }),
            None => Err(BackendFailure::Status {
                status,
                body,
                retry_after: None,
            }),
        }
    }
}

/// Fixtures by step name.
pub type Fixtures = BTreeMap<String, Fixture>;

/// The JSON Schema of fixture files (`render --fixtures`, a test's `fixtures_file`).
pub fn schema() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<Fixtures>();
    schema.insert("title".into(), "beckn-adapter backend fixtures".into());
    schema.insert(
        "description".into(),
        "Canned backend answers, by the name of the flow step that calls.".into(),
    );
    crate::config::json_schema::tidy(schema.to_value())
}

/// Reads a fixture file: a mapping from step name to [`Fixture`], JSON or YAML.
pub fn load_fixtures(path: &Path) -> Result<Fixtures, InputError> {
    let doc = read_data(path)?;
    if !doc.value.is_object() {
        return Err(InputError::one(
            doc.diagnostic(path, "", "a fixture file maps step names to answers")
                .hint("quote: { status: 200, body: { total_paise: 58882 } }"),
        ));
    }
    typed(&doc, path, "", &doc.value)
}

/// A call made during a dry run, and what answered it.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub step: String,
    pub backend: String,
    pub request: BackendRequest,
    pub answer: Result<BackendResponse, BackendFailure>,
}

/// Answers every call from fixtures; a call without one fails as unreachable and is listed in
/// [`FixtureTransport::missing`], so a test can say which fixture to add.
pub struct FixtureTransport {
    fixtures: Fixtures,
    missing: Mutex<Vec<RecordedCall>>,
    /// Calls made so far, by step: which of a fixture's answers comes next.
    calls: Mutex<BTreeMap<String, usize>>,
}

impl FixtureTransport {
    pub fn new(fixtures: Fixtures) -> Self {
        FixtureTransport {
            fixtures,
            missing: Mutex::new(Vec::new()),
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    /// Calls that found no fixture for their step.
    pub fn missing(&self) -> Vec<RecordedCall> {
        self.missing.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Transport for FixtureTransport {
    fn send<'a>(
        &'a self,
        backend: &'a Backend,
        step: &'a str,
        request: BackendRequest,
    ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>> {
        let n = match self.calls.lock() {
            Ok(mut calls) => {
                let n = calls.entry(step.to_string()).or_default();
                *n += 1;
                *n - 1
            }
            Err(_) => 0,
        };
        let answer = match self.fixtures.get(step) {
            Some(f) => match f.nth(n) {
                Some(f) => f.answer(backend),
                None => Err(BackendFailure::Unreachable(format!(
                    "the fixture for step `{step}` has {} answer(s); this is call {}",
                    1 + f.then.len(),
                    n + 1
                ))),
            },
            None => {
                let answer = Err(BackendFailure::Unreachable(format!(
                    "no fixture for step `{step}`"
                )));
                if let Ok(mut missing) = self.missing.lock() {
                    missing.push(RecordedCall {
                        step: step.to_string(),
                        backend: backend.name.clone(),
                        request,
                        answer: answer.clone(),
                    });
                }
                answer
            }
        };
        Box::pin(async move { answer })
    }
}

/// Passes calls to `inner` and keeps each with its answer, in order (retries included).
pub struct Recording<'t> {
    inner: &'t dyn Transport,
    calls: Mutex<Vec<RecordedCall>>,
}

impl<'t> Recording<'t> {
    pub fn new(inner: &'t dyn Transport) -> Self {
        Recording {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn into_calls(self) -> Vec<RecordedCall> {
        self.calls.into_inner().unwrap_or_default()
    }
}

impl Transport for Recording<'_> {
    fn send<'a>(
        &'a self,
        backend: &'a Backend,
        step: &'a str,
        request: BackendRequest,
    ) -> BoxFuture<'a, Result<BackendResponse, BackendFailure>> {
        Box::pin(async move {
            let answer = self.inner.send(backend, step, request.clone()).await;
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(RecordedCall {
                    step: step.to_string(),
                    backend: backend.name.clone(),
                    request,
                    answer: answer.clone(),
                });
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn backend() -> Backend {
        Backend {
            name: "erp".into(),
            base_url: "http://erp.invalid".into(),
            auth: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(3),
            retry: None,
            error_code: Some("/error".into()),
            idempotency_header: None,
        }
    }

    #[test]
    fn answers_follow_status_and_failure() {
        let ok: Fixture = serde_json::from_value(serde_json::json!({"body": {"a": 1}})).unwrap();
        assert_eq!(ok.answer(&backend()).unwrap().body["a"], 1);
        let err: Fixture = serde_json::from_value(
            serde_json::json!({"status": 404, "body": {"error": "NOT_FOUND"}}),
        )
        .unwrap();
        let failure = err.answer(&backend()).unwrap_err();
        assert_eq!(
            failure.rule_keys(Some("/error")),
            ["NOT_FOUND", "404", "4xx"]
        );
        let t: Fixture = serde_json::from_value(serde_json::json!({"failure": "timeout"})).unwrap();
        assert!(matches!(
            t.answer(&backend()),
            Err(BackendFailure::Timeout(_))
        ));
    }

    #[tokio::test]
    async fn a_step_gets_its_answers_in_order_then_none() {
        let fixtures: Fixtures = serde_json::from_value(serde_json::json!({
            "tests": {
                "body": {"items": [1, 2]},
                "headers": {"Link": "</tests?p=2>; rel=\"next\""},
                "then": [{"body": {"items": [3]}}]
            }
        }))
        .unwrap();
        let transport = FixtureTransport::new(fixtures);
        let request = BackendRequest {
            method: "GET".into(),
            path: "/tests".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            form: None,
            text: None,
        };
        let first = transport
            .send(&backend(), "tests", request.clone())
            .await
            .unwrap();
        assert_eq!(first.body["items"], serde_json::json!([1, 2]));
        assert_eq!(first.next_link.as_deref(), Some("/tests?p=2"));
        let second = transport
            .send(&backend(), "tests", request.clone())
            .await
            .unwrap();
        assert_eq!(second.body["items"], serde_json::json!([3]));
        assert_eq!(second.next_link, None);
        let third = transport.send(&backend(), "tests", request).await;
        assert!(
            matches!(&third, Err(BackendFailure::Unreachable(why)) if why.contains("2 answer(s); this is call 3")),
            "{third:?}"
        );
    }
}
