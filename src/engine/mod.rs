//! Runs one action of a compiled flow: its steps (backend calls, scripts) in order, then the
//! reply. Knows nothing of HTTP servers, signatures or delivery; sees only compiled flows.

pub mod call_log;
pub mod error;
mod for_each;
mod paginate;

use minijinja::Value as JValue;
use serde_json::{Map, Value, json};

use crate::backend::{BackendFailure, BackendRequest, TextBody, Transport};
use crate::beckn::action::Action;
use crate::beckn::error::{BecknError, ErrorCode};
use crate::clock::Clock;
use crate::compile::{
    CallBody, CompiledAction, CompiledCall, CompiledEvents, CompiledFlow, Reply, StepKind,
};
use crate::mapping::TemplateError;
use crate::telemetry::traces;
pub use error::EngineError;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// What a run produced, with every intermediate value (for `render` and logs).
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub message: Value,
    /// What the action's `remember:` computed, to keep under the transaction.
    pub remembered: Map<String, Value>,
    /// The variables the reply saw: context, message, flow and each step's result.
    pub scope: Map<String, Value>,
}

/// Runs `action` for the request `body` (the whole Beckn request: context and message).
pub async fn run_action(
    flow: &CompiledFlow,
    action: Action,
    body: &Value,
    transport: &dyn Transport,
    clock: &dyn Clock,
) -> Result<RunOutput, EngineError> {
    let memory = Map::new();
    run_action_in(flow, action, body, &memory, transport, clock).await
}

/// [`run_action`] for a transaction that remembers `memory` (read as `transaction.*`).
pub async fn run_action_in(
    flow: &CompiledFlow,
    action: Action,
    body: &Value,
    memory: &Map<String, Value>,
    transport: &dyn Transport,
    clock: &dyn Clock,
) -> Result<RunOutput, EngineError> {
    let trace = trace_action_in(flow, action, body, memory, transport, clock).await;
    trace.outcome.map(|message| RunOutput {
        message,
        remembered: trace.remembered,
        scope: trace.scope,
    })
}

/// A run with everything it bound, also when it failed part-way: what `render` and `test`
/// show, so a failing step can be read next to the results of the steps before it.
#[derive(Debug, Clone)]
pub struct Trace {
    /// `context`, `message`, `flow` and the result of every step that ran before the run
    /// ended (a skipped step binds null and is listed in `skipped`).
    pub scope: Map<String, Value>,
    /// Steps whose `when` was false.
    pub skipped: Vec<String>,
    /// The reply's `message`, or why the run stopped.
    pub outcome: Result<Value, EngineError>,
    /// What `remember:` computed (empty when the run failed).
    pub remembered: Map<String, Value>,
}

/// Like [`run_action`], keeping the scope of a run that failed.
pub async fn trace_action(
    flow: &CompiledFlow,
    action: Action,
    body: &Value,
    transport: &dyn Transport,
    clock: &dyn Clock,
) -> Trace {
    trace_action_in(flow, action, body, &Map::new(), transport, clock).await
}

/// [`trace_action`] for a transaction that remembers `memory`.
pub async fn trace_action_in(
    flow: &CompiledFlow,
    action: Action,
    body: &Value,
    memory: &Map<String, Value>,
    transport: &dyn Transport,
    clock: &dyn Clock,
) -> Trace {
    let mut scope = Map::new();
    let mut skipped = Vec::new();
    scope.insert(TRANSACTION.into(), Value::Object(memory.clone()));
    scope.insert(
        "context".into(),
        body.get("context").cloned().unwrap_or(Value::Null),
    );
    scope.insert(
        "message".into(),
        body.get("message").cloned().unwrap_or(Value::Null),
    );
    // The callback is due by the request's `timestamp + ttl` (or the flow's own deadline): a
    // backend asking to be called again later than that is not waited for.
    let deadline = flow
        .callback_deadline
        .and_then(|d| clock.now().checked_add(d).ok())
        .or_else(|| body.get("context").and_then(crate::beckn::context::expiry));
    let outcome = match flow.actions.get(&action) {
        Some(compiled) => {
            let run = Run {
                action,
                deadline,
                transport,
                clock,
            };
            run_steps(flow, compiled, &run, &mut scope, &mut skipped).await
        }
        None => Err(EngineError::NotConfigured(action.to_string())),
    };
    let (outcome, remembered) = match outcome {
        Ok((message, remembered)) => (Ok(message), remembered),
        Err(e) => (Err(e), Map::new()),
    };
    Trace {
        scope,
        skipped,
        outcome,
        remembered,
    }
}

/// Runs the flow's `events:` mapping for one backend `event` of the transaction whose last
/// request had `context` and which remembers `memory`; the result is the `message` of an
/// unsolicited callback.
pub async fn run_event(
    flow: &CompiledFlow,
    events: &CompiledEvents,
    event: &Value,
    context: &Value,
    memory: &Map<String, Value>,
    transport: &dyn Transport,
    clock: &dyn Clock,
) -> Result<RunOutput, EngineError> {
    let mut scope = Map::new();
    scope.insert(TRANSACTION.into(), Value::Object(memory.clone()));
    scope.insert("event".into(), event.clone());
    scope.insert("context".into(), context.clone());
    scope.insert("message".into(), Value::Null);
    let run = Run {
        action: events.callback,
        deadline: flow
            .callback_deadline
            .and_then(|d| clock.now().checked_add(d).ok()),
        transport,
        clock,
    };
    let outcome = run_steps(flow, &events.action, &run, &mut scope, &mut Vec::new()).await;
    outcome.map(|(message, remembered)| RunOutput {
        message,
        remembered,
        scope,
    })
}

/// What one run of steps is for.
struct Run<'a> {
    /// Decides whether failed calls may be retried.
    action: Action,
    /// When the callback is due; None: no deadline but [`MAX_ASKED_WAIT`].
    deadline: Option<jiff::Timestamp>,
    transport: &'a dyn Transport,
    /// Whose time the deadline is, and a retry's wait.
    clock: &'a dyn Clock,
}

/// The flow as templates see it (`flow.name`, `flow.subscriber_id`, …): in steps, requests
/// and answers of the client API, polls and order sinks' mappings alike.
pub fn flow_value(flow: &CompiledFlow) -> Value {
    json!({
        "name": flow.name,
        "subscriber_id": flow.participant.subscriber_id,
        "subscriber_uri": flow.participant.subscriber_uri,
        "domain": flow.domain,
    })
}

/// The longest a run waits for a backend's `Retry-After` when it has no deadline of its own.
const MAX_ASKED_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The name templates read a transaction's memory by.
const TRANSACTION: &str = "transaction";

/// Runs `compiled`'s steps and reply, then what it remembers; `scope` holds the run's inputs
/// on entry and every step's result on return.
async fn run_steps(
    flow: &CompiledFlow,
    compiled: &CompiledAction,
    run: &Run<'_>,
    scope: &mut Map<String, Value>,
    skipped: &mut Vec<String>,
) -> Result<(Value, Map<String, Value>), EngineError> {
    let mut bound = TemplateScope::of(scope);
    bound.bind(scope, "flow", flow_value(flow));
    for step in &compiled.steps {
        let ctx = bound.context();
        if let Some(when) = &step.when {
            let run = flow
                .templates
                .render_json(when, &ctx)
                .map_err(EngineError::Template)?;
            if run != Value::Bool(true) {
                bound.bind(scope, &step.name, Value::Null);
                skipped.push(step.name.clone());
                continue;
            }
        }
        let result = match &step.kind {
            StepKind::Call(call) => match &step.for_each {
                None => run_call(flow, run, &step.name, call, scope, &ctx, None).await?,
                Some(fe) => for_each::run(flow, run, &step.name, call, fe, scope, &ctx).await?,
            },
            StepKind::Script(script) => {
                let span = traces::step_with("script", SpanKind::Internal, || {
                    vec![
                        KeyValue::new("step", step.name.clone()),
                        KeyValue::new("script", script.to_string()),
                    ]
                });
                let started = std::time::Instant::now();
                let result = span
                    .in_scope(|| flow.scripts.run(script, scope))
                    .inspect_err(|e| span.fail(e));
                let took = started.elapsed();
                run.transport
                    .step_done("script", script, started, took, result.is_err());
                result.map_err(EngineError::Script)?
            }
        };
        bound.bind(scope, &step.name, result);
    }
    let ctx = bound.context();
    let name = reply_name(&compiled.reply);
    let span = traces::step_with("template", SpanKind::Internal, || {
        vec![KeyValue::new("template", name.to_string())]
    });
    let started = std::time::Instant::now();
    let message = match &compiled.reply {
        Reply::Template(name) => flow.templates.render_json(name, &ctx),
        Reply::Inline(t) => t.render(&flow.templates, &ctx),
    }
    .inspect_err(|e| span.fail(e));
    span.end();
    let took = started.elapsed();
    run.transport
        .step_done("template", name, started, took, message.is_err());
    let message = message.map_err(EngineError::Template)?;
    if !message.is_object() {
        return Err(EngineError::Template(TemplateError {
            template: name.to_string(),
            line: None,
            detail: "the reply must be a JSON object (the callback's `message`)".into(),
            beckn: None,
        }));
    }
    let mut remembered = Map::new();
    if !compiled.remember.is_empty() {
        bound.bind(scope, "reply", message.clone());
        remembered = remember(&flow.templates, &compiled.remember, &bound.context())?;
    }
    Ok((message, remembered))
}

/// The values of `remember:`, by name, rendered in the reply's scope with `reply` bound.
fn remember(
    templates: &crate::mapping::Templates,
    remember: &[(String, crate::mapping::ValueTemplate)],
    ctx: &JValue,
) -> Result<Map<String, Value>, EngineError> {
    let mut remembered = Map::new();
    for (name, template) in remember {
        let value = template
            .render(templates, ctx)
            .map_err(EngineError::Template)?;
        remembered.insert(name.clone(), value);
    }
    Ok(remembered)
}

/// A run's bindings as template values, each converted from JSON once, when it is bound,
/// rather than the whole scope again for every step (the request and the ERP's answers can be
/// large).
struct TemplateScope {
    values: std::collections::BTreeMap<String, JValue>,
}

impl TemplateScope {
    fn of(scope: &Map<String, Value>) -> Self {
        let values = scope
            .iter()
            .map(|(k, v)| (k.clone(), crate::mapping::jvalue(v)))
            .collect();
        TemplateScope { values }
    }

    /// Binds `name` in the JSON scope and here.
    fn bind(&mut self, scope: &mut Map<String, Value>, name: &str, value: Value) {
        self.values
            .insert(name.to_string(), crate::mapping::jvalue(&value));
        scope.insert(name.to_string(), value);
    }

    /// The template context: a map sharing the converted values.
    fn context(&self) -> JValue {
        JValue::from(self.values.clone())
    }
}

/// `ctx` (a map) with `extra` bound besides: what a page's `stop` or a `for_each` element's
/// call sees.
fn ctx_with(ctx: &JValue, extra: &[(&str, JValue)]) -> JValue {
    let mut map: std::collections::BTreeMap<String, JValue> = ctx
        .try_iter()
        .map(|keys| {
            keys.filter_map(|k| {
                let v = ctx.get_item(&k).ok()?;
                Some((k.as_str()?.to_string(), v))
            })
            .collect()
        })
        .unwrap_or_default();
    for (k, v) in extra {
        map.insert((*k).to_string(), v.clone());
    }
    JValue::from(map)
}

fn reply_name(reply: &Reply) -> &str {
    match reply {
        Reply::Template(n) => n,
        Reply::Inline(_) => "inline reply",
    }
}

async fn run_call(
    flow: &CompiledFlow,
    run: &Run<'_>,
    step: &str,
    call: &CompiledCall,
    scope: &Map<String, Value>,
    ctx: &JValue,
    element: Option<usize>,
) -> Result<Value, EngineError> {
    let t = &flow.templates;
    let request = BackendRequest {
        method: call.method.clone(),
        path: call
            .path
            .render_text(t, ctx)
            .map_err(EngineError::Template)?,
        query: render_pairs(&call.query, t, ctx)?,
        headers: render_pairs(&call.headers, t, ctx)?,
        body: match &call.body {
            None => None,
            Some(CallBody::Inline(v)) => Some(v.render(t, ctx).map_err(EngineError::Template)?),
            Some(CallBody::Template(name)) => {
                Some(t.render_json(name, ctx).map_err(EngineError::Template)?)
            }
        },
        form: match &call.form {
            Some(fields) => Some(render_pairs(fields, t, ctx)?),
            None => None,
        },
        text: match &call.text {
            Some((text, content_type)) => Some(TextBody {
                content_type: content_type.clone(),
                text: text.render_text(t, ctx).map_err(EngineError::Template)?,
            }),
            None => None,
        },
    };
    if request
        .path
        .split(['/', '?', '#'])
        .any(|seg| seg == "." || seg == ".." || seg.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err(EngineError::Refused(BecknError::new(
            ErrorCode::InvalidRequest,
            "an identifier in the request is not valid here",
        )));
    }
    let Some(backend) = flow.backends.get(&call.backend) else {
        return Err(EngineError::NotConfigured(format!(
            "backend {}",
            call.backend
        )));
    };
    let call_ref = Call {
        flow,
        run,
        step,
        call,
        backend,
        scope,
        element,
    };
    match &call.paginate {
        Some(p) => paginate::run(&call_ref, p, request, ctx).await,
        None => call_ref.send(request, 1).await.map(|r| r.body),
    }
}

/// One call step as it is being made: what each of its requests (one, or one per page) is
/// sent with.
struct Call<'c, 'r> {
    flow: &'c CompiledFlow,
    run: &'c Run<'r>,
    step: &'c str,
    call: &'c CompiledCall,
    backend: &'c crate::backend::Backend,
    scope: &'c Map<String, Value>,
    /// The element of a `for_each` list this call is for.
    element: Option<usize>,
}

impl Call<'_, '_> {
    /// Sends `request` (the `page`-th of the step, from 1) through the transport, with the
    /// backend's idempotency key and retries; a failure becomes the Beckn error its
    /// `errors:` table gives.
    async fn send(
        &self,
        mut request: BackendRequest,
        page: u32,
    ) -> Result<crate::backend::BackendResponse, EngineError> {
        let Call {
            flow,
            run,
            step,
            backend,
            scope,
            element,
            ..
        } = *self;
        let (action, transport) = (run.action, run.transport);
        if let Some(header) = &backend.idempotency_header
            && !request.method.eq_ignore_ascii_case("GET")
        {
            request.headers.push((
                header.clone(),
                idempotency_key(flow, action, step, (element, page), scope),
            ));
        }
        let retries = match backend.retry {
            Some((n, pause)) if action.is_idempotent() => Some((n, pause)),
            _ => None,
        };
        let mut attempt = 0;
        loop {
            let started = std::time::Instant::now();
            let sent = transport.send(backend, step, request.clone()).await;
            let outcome = match &sent {
                Ok(_) => "ok".to_string(),
                Err(f) => f.kind(),
            };
            crate::telemetry::backend_called(
                &flow.name,
                &backend.name,
                &outcome,
                started.elapsed(),
            );
            match sent {
                Ok(response) => return Ok(response),
                Err(failure) => {
                    if let Some((n, pause)) = retries
                        && attempt < n
                        && failure.is_transient()
                    {
                        let wait = match asked_wait(&failure) {
                            Some(asked) => asked.max(pause * (attempt + 1)),
                            None => pause * (attempt + 1),
                        };
                        match too_late(wait, run.deadline, run.clock.now()) {
                            None => {
                                attempt += 1;
                                tracing::warn!(flow = %flow.name, %action, step, backend = %backend.name, attempt, error = %failure, retry_in_ms = wait.as_millis() as u64, "backend call failed, retrying");
                                let at = run.clock.now_ms() + wait.as_millis() as i64;
                                run.clock.sleep_until_ms(at).await;
                                continue;
                            }
                            Some(why) => {
                                tracing::warn!(flow = %flow.name, %action, step, backend = %backend.name, error = %failure, reason = %why, "backend call failed; not retried");
                            }
                        }
                    }
                    return Err(self.failed(failure));
                }
            }
        }
    }

    /// The error of this step failing with `failure`.
    fn failed(&self, failure: BackendFailure) -> EngineError {
        let reply = match error_reply(self.flow, self.call, &failure, self.scope) {
            Ok(reply) => reply,
            Err(e) => return e,
        };
        EngineError::Backend(Box::new(error::BackendCallError {
            step: self.step.to_string(),
            backend: self.backend.name.clone(),
            failure,
            reply,
        }))
    }
}

/// The idempotency key of a call: a digest of the flow, the action, the step and the Beckn
/// message it serves (transaction and message ids; for an order event, the event too), so
/// every run of the same request sends the same key, and no two requests share one.
fn idempotency_key(
    flow: &CompiledFlow,
    action: Action,
    step: &str,
    (element, page): (Option<usize>, u32),
    scope: &Map<String, Value>,
) -> String {
    use blake2::{Blake2b512, Digest};
    let id = |k: &str| {
        scope
            .get("context")
            .and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let mut digest = Blake2b512::new();
    for part in [
        flow.name.as_str(),
        action.as_str(),
        step,
        id("transaction_id"),
        id("message_id"),
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    if let Some(event) = scope.get("event") {
        digest.update(event.to_string().as_bytes());
    }
    // Each page is its own request; the first keeps the key of an unpaged call.
    if page > 1 {
        digest.update(page.to_be_bytes());
    }
    // So is the call for each element of a `for_each` list.
    if let Some(i) = element {
        digest.update(b"element");
        digest.update((i as u64).to_be_bytes());
    }
    hex::encode(&digest.finalize()[..16])
}

/// The wait a 429 or 503 asked for with `Retry-After`.
fn asked_wait(failure: &BackendFailure) -> Option<std::time::Duration> {
    match failure {
        BackendFailure::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// Why waiting `wait` before the next attempt is pointless: it ends after `deadline` (or,
/// without one, it is longer than [`MAX_ASKED_WAIT`]).
fn too_late(
    wait: std::time::Duration,
    deadline: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Option<String> {
    match deadline {
        Some(d) => {
            let next = now.checked_add(wait).ok();
            next.is_none_or(|n| n > d).then(|| {
                format!(
                    "the next attempt would be in {}ms, after the callback's deadline {d}",
                    wait.as_millis()
                )
            })
        }
        None => (wait > MAX_ASKED_WAIT).then(|| {
            format!(
                "the backend asked to wait {}s, longer than {}s",
                wait.as_secs(),
                MAX_ASKED_WAIT.as_secs()
            )
        }),
    }
}

/// Renders query parameters or headers; a value rendering none or "" is left out.
pub(crate) fn render_pairs(
    pairs: &[(String, crate::mapping::ValueTemplate)],
    t: &crate::mapping::Templates,
    ctx: &JValue,
) -> Result<Vec<(String, String)>, EngineError> {
    let mut out = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let value = v.render(t, ctx).map_err(EngineError::Template)?;
        match value {
            Value::Null => {} // an absent optional value drops the parameter
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => out.push((k.clone(), s)),
            other => out.push((k.clone(), other.to_string())),
        }
    }
    Ok(out)
}

/// The Beckn error for a failed call: the flow's rule for it, or the default (internal error).
fn error_reply(
    flow: &CompiledFlow,
    call: &CompiledCall,
    failure: &BackendFailure,
    scope: &Map<String, Value>,
) -> Result<BecknError, EngineError> {
    let pointer = flow
        .backends
        .get(&call.backend)
        .and_then(|b| b.error_code.as_deref());
    let rule = failure
        .rule_keys(pointer)
        .iter()
        .find_map(|k| call.errors.get(k));
    let Some(rule) = rule else {
        if let BackendFailure::TooManyPages { .. } | BackendFailure::TooManyItems { .. } = failure {
            return Ok(BecknError::new(
                ErrorCode::InternalError,
                "the provider's list is longer than it is set up to serve in one answer",
            ));
        }
        return Ok(BecknError::new(
            ErrorCode::InternalError,
            "the provider's system is unavailable; try again later",
        ));
    };
    let message = match &rule.message {
        Some(m) => {
            let mut with_response = scope.clone();
            with_response.insert("response".into(), failure.body());
            m.render_text(&flow.templates, &crate::mapping::jvalue(&with_response))
                .map_err(EngineError::Template)?
        }
        None => rule.code.title().to_string(),
    };
    Ok(BecknError::new(rule.code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_scope_is_a_map_that_follows_rebinding() {
        let mut scope = Map::new();
        scope.insert("context".into(), json!({"transaction_id": "t-1"}));
        let mut bound = TemplateScope::of(&scope);
        bound.bind(&mut scope, "lab", json!({"code": "GFSL"}));
        bound.bind(&mut scope, "lab", json!({"code": "KTH"}));
        let mut env = minijinja::Environment::new();
        env.add_template("t", "{{ context.transaction_id }} {{ lab.code }}")
            .unwrap();
        let out = env.get_template("t").unwrap().render(bound.context());
        assert_eq!(out.unwrap(), "t-1 KTH");
        assert_eq!(scope["lab"], json!({"code": "KTH"}));
    }

    #[test]
    fn remembered_values_keep_their_types_and_read_the_reply_and_memory() {
        use crate::mapping::{Templates, ValueTemplate};
        let mut t = Templates::new(10_000);
        let compile = |t: &mut Templates, name: &str, v: Value| {
            let path = format!("remember.{name}");
            let vt = ValueTemplate::compile(t, "f.yaml", &path, &v).unwrap();
            (name.to_string(), vt)
        };
        let spec = vec![
            compile(&mut t, "confirmed", json!("{{ reply.order }}")),
            compile(
                &mut t,
                "note",
                json!("{{ transaction.quotation_no }} for {{ order.no }}"),
            ),
            compile(
                &mut t,
                "ids",
                json!({"erp": "{{ transaction.erp_order_id }}"}),
            ),
        ];
        let mut scope = Map::new();
        scope.insert(
            TRANSACTION.into(),
            json!({"quotation_no": "Q-7", "erp_order_id": "ORD-1"}),
        );
        scope.insert("order".into(), json!({"no": "ORD-1"}));
        let mut bound = TemplateScope::of(&scope);
        bound.bind(
            &mut scope,
            "reply",
            json!({"order": {"id": "ORD-1", "items": [1, 2]}}),
        );
        let out = remember(&t, &spec, &bound.context()).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"confirmed": {"id": "ORD-1", "items": [1, 2]}, "note": "Q-7 for ORD-1",
                "ids": {"erp": "ORD-1"}})
        );
        // a value reading what is not there fails the action, as a reply would
        let missing = vec![compile(&mut t, "x", json!("{{ transaction.booking }}"))];
        assert!(remember(&t, &missing, &bound.context()).is_err());
    }
}
