//! rhai scripts for the logic templates should not hold (state mapping, price rules).
//!
//! The engine is locked down: no module loading from disk, no `eval`, and limits on operations,
//! call depth, expression depth, string, array and map sizes. A script that loops forever runs
//! out of operations and fails its message; it cannot stall a worker.

use std::collections::HashMap;

use rhai::{AST, Dynamic, Engine, EvalAltResult, Scope};
use serde_json::Value;

/// A script failure, located in the script.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScriptError {
    #[error("{script}{}: {detail}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Failed {
        script: String,
        line: Option<usize>,
        detail: String,
    },
    #[error("{script}: stopped, {what}")]
    Limit { script: String, what: String },
    /// The script threw `#{code: "...", message: "..."}`: a Beckn error for the caller.
    #[error("{script}: {code} {}", crate::beckn::error::clip(.message, crate::beckn::error::MAX_ERROR_TEXT))]
    Beckn {
        script: String,
        code: String,
        message: String,
    },
}

/// The compiled scripts of one flow and the engine that runs them.
pub struct ScriptEngine {
    engine: Engine,
    asts: HashMap<String, AST>,
}

impl ScriptEngine {
    pub fn new(max_operations: u64) -> Self {
        let mut engine = Engine::new();
        engine.set_max_operations(max_operations);
        engine.set_max_call_levels(32);
        engine.set_max_expr_depths(64, 32);
        engine.set_max_string_size(1 << 20);
        engine.set_max_array_size(10_000);
        engine.set_max_map_size(10_000);
        engine.set_max_variables(1_000);
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.disable_symbol("eval");
        engine.register_fn("uuid4", || uuid::Uuid::new_v4().to_string());
        // A value written into a message (as in templates), not a decision: the system's time.
        engine.register_fn("now", || jiff::Timestamp::now().to_string());
        // Seconds since the epoch of an RFC 3339 timestamp, or () when it is not one: lets
        // scripts compare instants written with different offsets.
        engine.register_fn("to_epoch", |s: &str| -> Dynamic {
            s.parse::<jiff::Timestamp>()
                .map_or(Dynamic::UNIT, |t| Dynamic::from_int(t.as_second()))
        });
        ScriptEngine {
            engine,
            asts: HashMap::new(),
        }
    }

    /// Compiles `source` under `name`; the error carries line and column.
    pub fn add(
        &mut self,
        name: &str,
        source: &str,
    ) -> Result<(), (Option<(usize, usize)>, String)> {
        match self.engine.compile(source) {
            Ok(ast) => {
                self.asts.insert(name.to_string(), ast);
                Ok(())
            }
            Err(e) => {
                let pos = e.position();
                let at = pos.line().map(|l| (l, pos.position().unwrap_or(1)));
                Err((at, e.err_type().to_string()))
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.asts.contains_key(name)
    }

    /// Runs a script with `vars` in scope; its last expression is the result.
    pub fn run(
        &self,
        name: &str,
        vars: &serde_json::Map<String, Value>,
    ) -> Result<Value, ScriptError> {
        let failed = |line, detail: String| ScriptError::Failed {
            script: name.to_string(),
            line,
            detail,
        };
        let ast = self
            .asts
            .get(name)
            .ok_or_else(|| failed(None, "script is not loaded".into()))?;
        let mut scope = Scope::new();
        for (k, v) in vars {
            let d: Dynamic = rhai::serde::to_dynamic(v).map_err(|e| failed(None, e.to_string()))?;
            scope.push_dynamic(k.as_str(), d);
        }
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, ast)
            .map_err(|e| classify(name, *e))?;
        rhai::serde::from_dynamic::<Value>(&result)
            .map_err(|e| failed(None, format!("result is not JSON-like: {e}")))
    }
}

fn classify(script: &str, err: EvalAltResult) -> ScriptError {
    let line = err.position().line();
    match &err {
        EvalAltResult::ErrorTooManyOperations(_) => ScriptError::Limit {
            script: script.into(),
            what: "too many operations (is there an endless loop?)".into(),
        },
        EvalAltResult::ErrorStackOverflow(_) | EvalAltResult::ErrorTooManyVariables(_) => {
            ScriptError::Limit {
                script: script.into(),
                what: err.to_string(),
            }
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => ScriptError::Limit {
            script: script.into(),
            what: format!("{what} too large"),
        },
        EvalAltResult::ErrorRuntime(value, _) => {
            if let Some(map) = value.read_lock::<rhai::Map>() {
                let code = map.get("code").map(|c| c.to_string());
                let message = map.get("message").map(|m| m.to_string());
                if let (Some(code), Some(message)) = (code, message) {
                    return ScriptError::Beckn {
                        script: script.into(),
                        code,
                        message,
                    };
                }
            }
            ScriptError::Failed {
                script: script.into(),
                line,
                detail: format!("thrown: {value}"),
            }
        }
        _ => ScriptError::Failed {
            script: script.into(),
            line,
            detail: err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, vars: Value) -> Result<Value, ScriptError> {
        let mut e = ScriptEngine::new(10_000);
        e.add("s.rhai", src).map_err(|(_, m)| ScriptError::Failed {
            script: "s.rhai".into(),
            line: None,
            detail: m,
        })?;
        e.run("s.rhai", vars.as_object().unwrap())
    }

    #[test]
    fn maps_values() {
        let out = run(
            r#"let s = order.status; #{ code: if s == "BOOKED" { "SCHEDULED" } else { s }, n: order.n * 2 }"#,
            json!({"order": {"status": "BOOKED", "n": 21}}),
        )
        .unwrap();
        assert_eq!(out, json!({"code": "SCHEDULED", "n": 42}));
    }

    #[test]
    fn epochs_compare_across_offsets() {
        let out = run(
            r#"to_epoch("2026-11-24T09:00:00+05:30") == to_epoch("2026-11-24T03:30:00Z") && to_epoch("x") == ()"#,
            json!({}),
        )
        .unwrap();
        assert_eq!(out, json!(true));
    }

    #[test]
    fn endless_loops_hit_the_limit() {
        assert!(matches!(
            run("loop {}", json!({})),
            Err(ScriptError::Limit { .. })
        ));
    }

    #[test]
    fn modules_and_eval_are_unavailable() {
        let mut e = ScriptEngine::new(10_000);
        assert!(e.add("a", r#"eval("1")"#).is_err());
        e.add("b", r#"import "/etc/passwd" as p; 1"#).unwrap();
        assert!(e.run("b", &serde_json::Map::new()).is_err());
    }

    #[test]
    fn thrown_maps_become_beckn_errors() {
        let err = run(
            r#"throw #{ code: "40002", message: "only 3 slots left" }"#,
            json!({}),
        )
        .unwrap_err();
        assert!(
            matches!(err, ScriptError::Beckn { ref code, .. } if code == "40002"),
            "{err:?}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let mut e = ScriptEngine::new(100);
        let (at, _) = e.add("a", "let x = ;\n").unwrap_err();
        assert_eq!(at.map(|p| p.0), Some(1));
    }
}
