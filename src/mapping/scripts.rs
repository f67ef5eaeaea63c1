//! rhai scripts for the logic templates should not hold (state mapping, price rules).
//!
//! The engine is locked down: no module loading from disk, no `eval`, and limits on operations,
//! call depth, expression depth, string, array and map sizes. A script that loops forever runs
//! out of operations and fails its message; it cannot stall a worker.

use std::collections::{HashMap, HashSet};

use rhai::{AST, Dynamic, Engine, EvalAltResult, INT, Scope};
use serde_json::Value;

use super::helpers::{HelperError, money, time};

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
    /// Sources kept for [`ScriptEngine::undefined_variable`], which checks each use.
    sources: HashMap<String, String>,
    /// Per script, every word of its source: a variable it does not name cannot be read
    /// (there is no `eval`), so it is not converted into the script's scope.
    words: HashMap<String, HashSet<String>>,
}

/// A variable a script reads that is neither in its scope nor defined by the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndefinedVariable {
    pub name: String,
    /// 1-based line and column of the first read.
    pub at: Option<(usize, usize)>,
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
        register_helpers(&mut engine);
        ScriptEngine {
            engine,
            asts: HashMap::new(),
            sources: HashMap::new(),
            words: HashMap::new(),
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
                self.sources.insert(name.to_string(), source.to_string());
                self.words.insert(name.to_string(), words(source));
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

    /// The first variable the script `name` reads that is not among `vars` (the names the
    /// step runs it with) and that it does not define itself: rhai's strict-variables mode,
    /// applied at `check` time so the mistake is found before a message trips on it.
    pub fn undefined_variable(&mut self, name: &str, vars: &[String]) -> Option<UndefinedVariable> {
        let source = self.sources.get(name)?;
        let mut scope = Scope::new();
        for v in vars {
            scope.push_dynamic(v.as_str(), Dynamic::UNIT);
        }
        self.engine.set_strict_variables(true);
        let result = self.engine.compile_with_scope(&scope, source);
        self.engine.set_strict_variables(false);
        match result {
            Err(e) => match e.err_type() {
                rhai::ParseErrorType::VariableUndefined(var) => {
                    let pos = e.position();
                    Some(UndefinedVariable {
                        name: var.clone(),
                        at: pos.line().map(|l| (l, pos.position().unwrap_or(1))),
                    })
                }
                _ => None,
            },
            Ok(_) => None,
        }
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
        let words = self.words.get(name);
        let mut scope = Scope::new();
        for (k, v) in vars {
            if words.is_some_and(|w| !w.contains(k.as_str())) {
                continue;
            }
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

/// The identifier-like words of a source, comments and strings included (so that
/// `is_def_var("found")` still sees `found`).
fn words(source: &str) -> HashSet<String> {
    source
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

type HelperResult<T> = Result<T, Box<EvalAltResult>>;

/// A helper's refusal as a script error that keeps its message (see `classify`).
fn helper_err(e: HelperError) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(e),
        rhai::Position::NONE,
    ))
}

fn scale(helper: &'static str, n: INT) -> HelperResult<u32> {
    u32::try_from(n).ok().filter(|n| *n <= 12).ok_or_else(|| {
        helper_err(HelperError::new(
            helper,
            &n.to_string(),
            "is not a number of decimals (0 to 12)",
        ))
    })
}

/// The time and money helpers templates have as filters, under the same names.
fn register_helpers(engine: &mut Engine) {
    engine.register_fn("from_minor", |m: INT| money::from_minor(m.into(), 2));
    engine.register_fn("from_minor", |m: INT, s: INT| -> HelperResult<String> {
        Ok(money::from_minor(m.into(), scale("from_minor", s)?))
    });
    fn to_minor(d: &str, s: u32) -> HelperResult<INT> {
        let m = money::to_minor(d, s).map_err(helper_err)?;
        INT::try_from(m)
            .map_err(|_| helper_err(HelperError::new("to_minor", d, "is too large an amount")))
    }
    engine.register_fn("to_minor", |d: &str| to_minor(d, 2));
    engine.register_fn("to_minor", |d: &str, s: INT| {
        to_minor(d, scale("to_minor", s)?)
    });
    engine.register_fn("decimal", |d: &str| {
        money::decimal(d, 2).map_err(helper_err)
    });
    engine.register_fn("decimal", |d: &str, p: INT| -> HelperResult<String> {
        money::decimal(d, scale("decimal", p)?).map_err(helper_err)
    });
    engine.register_fn("decimal", |n: INT| {
        money::from_minor(i128::from(n) * 100, 2)
    });
    engine.register_fn("decimal", |f: rhai::FLOAT| {
        money::decimal(&f.to_string(), 2).map_err(helper_err)
    });
    engine.register_fn("local_to_rfc3339", |l: &str, tz: &str| {
        time::local_to_rfc3339(l, tz).map_err(helper_err)
    });
    engine.register_fn("rfc3339_to_local", |t: &str, tz: &str| {
        time::rfc3339_to_local(t, tz, None).map_err(helper_err)
    });
    engine.register_fn("rfc3339_to_local", |t: &str, tz: &str, f: &str| {
        time::rfc3339_to_local(t, tz, Some(f)).map_err(helper_err)
    });
    engine.register_fn("add_duration", |t: &str, d: &str| {
        time::add_duration(t, d).map_err(helper_err)
    });
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
        EvalAltResult::ErrorRuntime(value, _) if value.is::<HelperError>() => ScriptError::Failed {
            script: script.into(),
            line,
            detail: value.clone_cast::<HelperError>().to_string(),
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
    fn variables_a_script_names_are_in_its_scope_whatever_else_the_step_has() {
        let vars = json!({"found": {"packages": [1, 2]}, "lab": {"code": "GFSL"}, "other": 1});
        let out = run(
            r#"#{ n: found.packages.len(), lab: is_def_var("lab"), code: lab?.code }"#,
            vars,
        )
        .unwrap();
        assert_eq!(out, json!({"n": 2, "lab": true, "code": "GFSL"}));
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
    fn time_and_money_helpers_match_the_filters() {
        let out = run(
            r#"[
                local_to_rfc3339(slot, "Asia/Kolkata"),
                rfc3339_to_local("2026-12-02T03:30:00Z", "Asia/Kolkata"),
                rfc3339_to_local("2026-12-02T03:30:00Z", "Asia/Kolkata", "%d/%m/%Y"),
                add_duration("2026-12-02T09:00:00+05:30", "PT2H"),
                decimal("1499.5"), decimal(1499), decimal(0.1), decimal("2.5", 3),
                to_minor("1499.50"), from_minor(49900), from_minor(1234, 3)
            ]"#,
            json!({"slot": "2026-12-02T09:00"}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!([
                "2026-12-02T09:00:00+05:30",
                "2026-12-02T09:00",
                "02/12/2026",
                "2026-12-02T11:00:00+05:30",
                "1499.50",
                "1499.00",
                "0.10",
                "2.500",
                149950,
                "499.00",
                "1.234"
            ])
        );
    }

    #[test]
    fn helper_errors_name_the_input_and_line() {
        let err = run("let a = 1;\ndecimal(\"1,5\")", json!({})).unwrap_err();
        match err {
            ScriptError::Failed { line, detail, .. } => {
                assert_eq!(line, Some(2));
                assert_eq!(
                    detail,
                    "decimal: `1,5` is not a decimal number (like 1499.50)"
                );
            }
            other => panic!("{other:?}"),
        }
        let err = run(
            r#"local_to_rfc3339("2026-12-02T09:00", "Nowhere/Town")"#,
            json!({}),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("`Nowhere/Town` is not a time zone"),
            "{err}"
        );
    }

    #[test]
    fn undefined_variables_are_found_at_compile_time() {
        let mut e = ScriptEngine::new(1000);
        let src = "let total = 0;\nfor i in order.items { total += i.qty; }\nfn f(x) { x + 1 }\n#{ n: f(total), s: stauts }";
        e.add("s.rhai", src).unwrap();
        let vars = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            e.undefined_variable("s.rhai", &vars(&["order", "status"])),
            Some(UndefinedVariable {
                name: "stauts".into(),
                at: Some((4, 20))
            })
        );
        assert_eq!(
            e.undefined_variable("s.rhai", &vars(&["status"]))
                .map(|u| u.name),
            Some("order".into())
        );
        assert_eq!(
            e.undefined_variable("s.rhai", &vars(&["order", "stauts"])),
            None
        );
        // The engine stays lenient for running.
        assert!(
            e.run(
                "s.rhai",
                json!({"order": {"items": []}, "stauts": 1})
                    .as_object()
                    .unwrap()
            )
            .is_ok()
        );
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
