//! Dry runs: one action of one flow against a request and canned backend answers (or the live
//! backends), building the `on_*` callback the way the provider role does and sending nothing.
//! `beckn-adapter render` prints one; `beckn-adapter test` (`mapping_test`) compares them with
//! what a test expects.

pub mod fixtures;
pub mod input;
pub mod json_path;
pub mod origin;
pub mod request;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::backend::{BackendFailure, Transport};
use crate::beckn::action::Action;
use crate::beckn::context::callback_context;
use crate::beckn::error::ErrorCode;
use crate::beckn::schema::Violation;
use crate::compile::{CompiledFlow, CompiledSet, Layout, Reply, StepKind};
use crate::engine::{self, Trace};
use fixtures::{FixtureTransport, RecordedCall, Recording};
pub use input::InputError;

/// Everything one dry run saw and produced.
pub struct DryRun {
    pub flow: Arc<CompiledFlow>,
    pub action: Action,
    /// The request as run, its context completed.
    pub request: Value,
    /// Why the provider would NACK the request (empty: it would ACK).
    pub request_violations: Vec<Violation>,
    pub trace: Trace,
    /// Every backend call, in order, with its answer.
    pub calls: Vec<RecordedCall>,
    /// The `on_*` body as built before the outgoing checks: the result, or the error callback.
    pub callback: Value,
    /// Core schema and domain rule violations of `callback`. The provider would send a 31001
    /// error callback instead; the body above is kept because it shows what to fix.
    pub callback_violations: Vec<Violation>,
}

/// Runs `action` of `flow` for `request` (completed with defaults) in a transaction that
/// remembers `memory`, through `transport`.
pub async fn run(
    set: &CompiledSet,
    flow: &Arc<CompiledFlow>,
    action: Action,
    request: &Value,
    memory: &serde_json::Map<String, Value>,
    transport: &dyn Transport,
) -> DryRun {
    let request = request::complete(flow, action, request);
    let request_violations = request::request_violations(flow, &set.core, action, &request);
    let recording = Recording::new(transport);
    let trace = engine::trace_action_in(
        flow,
        action,
        &request,
        memory,
        &recording,
        &crate::clock::SystemClock,
    )
    .await;
    let calls = recording.into_calls();
    let request_ctx = request.get("context").cloned().unwrap_or(Value::Null);
    // A dry run shows what would be sent now: the system's time, no application clock.
    let now = jiff::Timestamp::now();
    let context = callback_context(&flow.participant, &flow.domain, action, &request_ctx, now);
    let callback = match &trace.outcome {
        Ok(message) => json!({"context": context, "message": message}),
        Err(e) => crate::intake::answer::error_body(action, context, e.to_beckn()),
    };
    let callback_violations =
        crate::roles::rules(flow, &set.core).outgoing_violations(action.callback(), &callback);
    DryRun {
        flow: flow.clone(),
        action,
        request,
        request_violations,
        trace,
        calls,
        callback,
        callback_violations,
    }
}

/// The flow and action a dry run is asked for, or a diagnostic naming what exists.
pub fn pick(
    set: &CompiledSet,
    flow: &str,
    action: &str,
) -> Result<(Arc<CompiledFlow>, Action), String> {
    let Some(f) = set.flow(flow) else {
        let names: Vec<&str> = set.flows.iter().map(|f| f.name.as_str()).collect();
        return Err(format!(
            "no flow named `{flow}`; the flows are: {}",
            names.join(", ")
        ));
    };
    if f.actions.is_empty() {
        return Err(format!(
            "flow `{flow}` ({}) runs no actions of its own",
            f.role().as_str()
        ));
    }
    let served = || {
        let mut a: Vec<&str> = f.actions.keys().map(|a| a.as_str()).collect();
        a.sort();
        a.join(", ")
    };
    let action = action
        .parse::<Action>()
        .map_err(|e| format!("{e}; flow `{flow}` serves: {}", served()))?;
    if !f.actions.contains_key(&action) {
        return Err(format!(
            "flow `{flow}` has no `{action}` action; it serves: {}",
            served()
        ));
    }
    Ok((f.clone(), action))
}

/// What `beckn-adapter render` is given.
pub struct RenderArgs {
    pub flow: String,
    pub action: String,
    pub request: PathBuf,
    pub fixtures: Option<PathBuf>,
}

/// Why `render` could not run.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The request or fixture file is unreadable or malformed (located).
    #[error("{0}")]
    Input(#[from] InputError),
    /// No such flow or action.
    #[error("error: {0}")]
    Unknown(String),
}

/// `beckn-adapter render`: loads the request and fixtures, runs the action and returns the
/// printout. With `live`, calls go to the flow's real backends through `live` instead.
pub async fn render(
    layout: &Layout,
    set: &CompiledSet,
    args: &RenderArgs,
    live: Option<&dyn Transport>,
) -> Result<String, RenderError> {
    let (flow, action) = pick(set, &args.flow, &args.action).map_err(RenderError::Unknown)?;
    let request = request::load_request(&args.request)?;
    let fixtures = match &args.fixtures {
        Some(path) => fixtures::load_fixtures(path)?,
        None => Default::default(),
    };
    let offline = FixtureTransport::new(fixtures);
    let transport: &dyn Transport = live.unwrap_or(&offline);
    let memory = serde_json::Map::new();
    let run = run(set, &flow, action, &request, &memory, transport).await;
    Ok(show(layout, &run))
}

/// The printout of a dry run: the request, each step's result by name (and the calls it
/// made), then the `on_*` body and whether it passes the outgoing checks.
pub fn show(layout: &Layout, run: &DryRun) -> String {
    let mut out = String::new();
    let flow = &run.flow;
    let _ = writeln!(
        out,
        "flow {} ({}), action {}",
        flow.name,
        flow.file.display(),
        run.action
    );
    let _ = writeln!(out, "\n== request\n{}", pretty(&run.request));
    if run.request_violations.is_empty() {
        let _ = writeln!(out, "(valid: the provider would ACK it)");
    } else {
        let _ = writeln!(out, "(the provider would NACK it:)");
        list_violations(&mut out, &run.request_violations);
    }
    let Some(compiled) = flow.actions.get(&run.action) else {
        return out;
    };
    // A failed run stopped at the first step that bound nothing (or at the reply).
    let failed_at = run.trace.outcome.as_ref().err();
    let stopped_at = failed_at.and_then(|_| {
        compiled
            .steps
            .iter()
            .find(|s| !run.trace.scope.contains_key(&s.name))
            .map(|s| s.name.as_str())
    });
    for step in &compiled.steps {
        let what = match &step.kind {
            StepKind::Call(c) => format!("call {}", c.backend),
            StepKind::Script(s) => format!("script {}", layout.mappings.join(s).display()),
        };
        let _ = write!(out, "\n== step {} ({what})", step.name);
        if run.trace.skipped.contains(&step.name) {
            let _ = writeln!(out, ": skipped, `when` is false");
            continue;
        }
        out.push('\n');
        for call in run.calls.iter().filter(|c| c.step == step.name) {
            show_call(&mut out, call, flow.backends.get(&call.backend));
        }
        match (run.trace.scope.get(&step.name), failed_at) {
            (Some(v), _) => {
                let _ = writeln!(out, "result:\n{}", pretty(v));
            }
            (None, Some(e)) if stopped_at == Some(step.name.as_str()) => {
                let _ = writeln!(out, "FAILED: {}", origin::explain(layout, e));
            }
            (None, _) => {
                let _ = writeln!(out, "not run: an earlier step failed");
            }
        }
    }
    let reply = match &compiled.reply {
        Reply::Template(t) => format!("template {}", layout.mappings.join(t).display()),
        Reply::Inline(_) => format!("inline message in {}", flow.file.display()),
    };
    let _ = writeln!(out, "\n== {} (reply: {reply})", run.action.callback());
    if let Some(e) = failed_at
        && stopped_at.is_none()
    {
        let _ = writeln!(out, "the reply failed: {}", origin::explain(layout, e));
    }
    if let Err(e) = &run.trace.outcome {
        let beckn = e.to_beckn();
        let _ = writeln!(
            out,
            "the flow failed, so the caller gets error {} ({}): {}",
            beckn.code,
            ErrorCode::from_code(&beckn.code).map_or("", |c| c.title()),
            beckn.message
        );
    }
    let _ = writeln!(out, "{}", pretty(&run.callback));
    if run.callback_violations.is_empty() {
        let _ = writeln!(
            out,
            "(valid: passes the core schema and the domain rules; nothing was sent)"
        );
    } else {
        let _ = writeln!(
            out,
            "(INVALID: the provider would send a 31001 error instead; nothing was sent)"
        );
        let origins = run
            .trace
            .outcome
            .is_ok()
            .then(|| origin::reply_origins(layout, flow, run.action, &run.trace.scope))
            .flatten();
        for v in &run.callback_violations {
            let at = if v.path.is_empty() { "body" } else { &v.path };
            let _ = writeln!(out, "  - {at}: {}", v.message);
            let written = json_path::JsonPath::parse(&v.path)
                .ok()
                .filter(|p| p.first_key() == Some("message"))
                .and_then(|p| origins.as_ref().and_then(|o| o.of(&p.skip(1))));
            if let Some(line) = written {
                let _ = writeln!(out, "    written at {line}");
            }
        }
    }
    out
}

/// One call as it would be sent. A backend's auth shows as where its credential goes, with
/// `***` for it: a dry run fetches no token and signs nothing.
fn show_call(out: &mut String, call: &RecordedCall, backend: Option<&crate::backend::Backend>) {
    let r = &call.request;
    let mut line = format!("{} {}", r.method, r.path);
    if !r.query.is_empty() {
        let q: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        line.push('?');
        line.push_str(&q.join("&"));
    }
    let _ = writeln!(out, "{} {line}", call.backend);
    for (k, v) in &r.headers {
        let _ = writeln!(out, "  {k}: {v}");
    }
    if let Some(auth) = backend.and_then(|b| b.auth.as_ref()) {
        let _ = writeln!(out, "  {}", auth.shown());
    }
    if let Some(body) = &r.body {
        let _ = writeln!(out, "request body:\n{}", pretty(body));
    }
    if let Some(form) = &r.form {
        let fields: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "request form:\n{}", fields.join("&"));
    }
    match &call.answer {
        Ok(resp) => {
            let _ = writeln!(out, "-> HTTP {}", resp.status);
        }
        Err(BackendFailure::Status { status, body, .. }) => {
            let _ = writeln!(out, "-> HTTP {status} (a failure)\n{}", pretty(body));
        }
        Err(other) => {
            let _ = writeln!(out, "-> failed: {other}");
        }
    }
}

fn list_violations(out: &mut String, violations: &[Violation]) {
    for v in violations {
        let at = if v.path.is_empty() { "body" } else { &v.path };
        let _ = writeln!(out, "  - {at}: {}", v.message);
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
