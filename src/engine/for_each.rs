//! Runs a call step with `for_each:`: one call per element of a list, at most `concurrency` in
//! flight, the answers kept in the list's order. A list longer than `max_items` is an error
//! (`errors:` key `max_items`) before any call is made.

use futures::{StreamExt, TryStreamExt};
use minijinja::Value as JValue;
use serde_json::{Map, Value};

use super::{EngineError, Run, run_call};
use crate::backend::BackendFailure;
use crate::compile::{CompiledCall, CompiledFlow, ForEach};
use crate::mapping::TemplateError;

/// The answers of `call` made for each element of `fe.items`, in order.
pub(super) async fn run(
    flow: &CompiledFlow,
    run: &Run<'_>,
    step: &str,
    call: &CompiledCall,
    fe: &ForEach,
    scope: &Map<String, Value>,
    ctx: &JValue,
) -> Result<Value, EngineError> {
    let list = match fe
        .items
        .render(&flow.templates, ctx)
        .map_err(EngineError::Template)?
    {
        Value::Array(list) => list,
        Value::Null => Vec::new(),
        other => {
            return Err(EngineError::Template(TemplateError {
                template: format!("for_each of step `{step}`"),
                line: None,
                detail: format!("`items` gave {other}, not a list"),
                beckn: None,
            }));
        }
    };
    if list.len() > fe.max_items {
        let failure = BackendFailure::TooManyItems {
            count: list.len(),
            max_items: fe.max_items,
        };
        return Err(too_many(flow, step, call, failure, scope));
    }
    let calls = list.into_iter().enumerate().map(|(i, element)| {
        let mut scope = scope.clone();
        let jelement = crate::mapping::jvalue(&element);
        scope.insert(fe.as_name.clone(), element);
        let ctx = super::ctx_with(ctx, &[(fe.as_name.as_str(), jelement)]);
        async move { run_call(flow, run, step, call, &scope, &ctx, Some(i)).await }
    });
    let answers: Vec<Value> = futures::stream::iter(calls)
        .buffered(fe.concurrency.max(1))
        .try_collect()
        .await?;
    Ok(Value::Array(answers))
}

/// The step's error for a list over its bound, as its `errors:` table maps `max_items`.
fn too_many(
    flow: &CompiledFlow,
    step: &str,
    call: &CompiledCall,
    failure: BackendFailure,
    scope: &Map<String, Value>,
) -> EngineError {
    let reply = match super::error_reply(flow, call, &failure, scope) {
        Ok(reply) => reply,
        Err(e) => return e,
    };
    EngineError::Backend(Box::new(super::error::BackendCallError {
        step: step.to_string(),
        backend: call.backend.clone(),
        failure,
        reply,
    }))
}
