//! An action: its steps (backend calls and scripts, each maybe guarded by `when`) and the
//! reply that builds the callback's `message`. Names bound by earlier steps are checked in
//! every template that reads them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::templates::{is_identifier, known_names, script_names};
use super::{CompiledAction, CompiledStep, ForEach, Loader, Origin, Reply, StepKind};
use crate::backend::Backend;
use crate::config::model::{ActionConfig, ForEachConfig, ReplyConfig, StepConfig};
use crate::config::yaml::SpannedDoc;
use crate::mapping::templates::{EXPR_PREFIX, GLOBAL_NAMES};
use crate::mapping::{ScriptEngine, Templates, ValueTemplate};

/// The name templates and scripts read a transaction's memory by.
pub(crate) const TRANSACTION: &str = "transaction";
/// The name `remember:` reads the reply's `message` by.
pub(crate) const REPLY: &str = "reply";

impl Loader<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn action(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        cfg: ActionConfig,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> Option<CompiledAction> {
        let before = self.diagnostics.len();
        let outer_reads = std::mem::replace(&mut self.reads_transaction, false);
        let mut steps = Vec::new();
        // What the transaction remembered is readable everywhere in an action.
        let mut bound: Vec<String> = vec![TRANSACTION.to_string()];
        for (i, raw) in cfg.steps.iter().enumerate() {
            let spath = format!("{path}.steps[{i}]");
            // A broken step is reported once: its name stays bound, so the later steps and
            // the reply that use its result are not reported as reading an unknown name.
            let Some(step) = self.de::<StepConfig>(doc, file, &spath, raw) else {
                if let Some(name) = raw.get("name").and_then(Value::as_str) {
                    bound.push(name.to_string());
                }
                continue;
            };
            let name = step.name.clone();
            if let Some(c) = self.step(
                doc, file, scope, &spath, step, &bound, backends, templates, scripts,
            ) {
                steps.push(c);
            }
            bound.push(name);
        }
        let reply = self.reply(
            doc,
            file,
            scope,
            &format!("{path}.reply"),
            cfg.reply,
            &bound,
            templates,
        );
        let remember = self.remember(doc, file, scope, path, &cfg.remember, &bound, templates);
        let reads_transaction = std::mem::replace(&mut self.reads_transaction, outer_reads);
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledAction {
            steps,
            reply: reply?,
            remember,
            reads_transaction,
        })
    }

    /// `remember:`: value templates that see the reply's scope and the reply as `reply`.
    #[allow(clippy::too_many_arguments)]
    fn remember(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        remember: &BTreeMap<String, Value>,
        bound: &[String],
        templates: &mut Templates,
    ) -> Vec<(String, ValueTemplate)> {
        let mut names = bound.to_vec();
        names.push(REPLY.to_string());
        let known = known_names(&names, &self.scope_names);
        let mut out = Vec::new();
        for (name, value) in remember {
            let vpath = format!("{path}.remember.{name}");
            if !is_identifier(name) || name == "erp_order_id" {
                self.diagnostics.push(
                    doc.diagnostic(file, &vpath, format!("`{name}` cannot be remembered"))
                        .hint("use letters, digits and _; `erp_order_id` is kept by the adapter"),
                );
                continue;
            }
            if let Some(t) = self.value(doc, file, scope, &vpath, value, &known, templates) {
                out.push((name.clone(), t));
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        step: StepConfig,
        bound: &[String],
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> Option<CompiledStep> {
        let before = self.diagnostics.len();
        let reserved = ["context", "message", "flow", "response", TRANSACTION, REPLY];
        if reserved.contains(&step.name.as_str()) || GLOBAL_NAMES.contains(&step.name.as_str()) {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.name"),
                    format!("`{}` is a reserved name", step.name),
                )
                .hint(
                    "reserved: context, message, flow, response, transaction, reply, now, uuid4, fail",
                ),
            );
        } else if bound.contains(&step.name) {
            self.diagnostics.push(doc.diagnostic(
                file,
                &format!("{path}.name"),
                format!(
                    "another step of this action is already named `{}`",
                    step.name
                ),
            ));
        } else if !is_identifier(&step.name) {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.name"),
                    format!("`{}` is not a valid name", step.name),
                )
                .hint("use letters, digits and _ (templates refer to the result by this name)"),
            );
        }
        let known = known_names(bound, &self.scope_names);
        let when = step.when.as_ref().and_then(|expr| {
            let name = format!("{EXPR_PREFIX}{scope}:{path}.when");
            let source = format!("{{{{ true if ({expr}) else false }}}}");
            self.template(
                doc,
                file,
                &format!("{path}.when"),
                templates,
                &name,
                &source,
                &known,
            )
            .map(|_| name)
        });
        let mut for_each = None;
        let mut known = known;
        if let Some(fe) = step.for_each {
            let as_name = fe.as_name.clone().unwrap_or_else(|| "item".into());
            for_each = self.for_each(
                doc,
                file,
                scope,
                &format!("{path}.for_each"),
                fe,
                &known,
                templates,
            );
            if step.call.is_none() {
                self.diagnostics.push(
                    doc.diagnostic(file, &format!("{path}.for_each"), "`for_each` repeats a call; this step has none")
                        .hint("for_each: { items: \"{{ order.samples }}\", as: sample }  with  call: { backend: erp, path: \"/samples/{{ sample.id }}\" }"),
                );
            }
            // Bound even when the block has errors, so the call is not reported a second time.
            known.insert(as_name);
        }
        let kind = match (step.call, step.script) {
            (Some(call), None) => self
                .call(
                    doc,
                    file,
                    scope,
                    &format!("{path}.call"),
                    call,
                    &known,
                    backends,
                    templates,
                )
                .map(|c| StepKind::Call(Box::new(c))),
            (None, Some(script)) => {
                let origin = Origin {
                    doc,
                    file,
                    path: format!("{path}.script"),
                };
                self.script(&origin, &script, &script_names(&known), scripts)
                    .map(|_| StepKind::Script(script))
            }
            _ => {
                self.diagnostics.push(
                    doc.diagnostic(file, path, "a step needs exactly one of `call` or `script`")
                        .hint("call: { backend: erp, path: /packages }  or  script: soil/x.rhai"),
                );
                None
            }
        };
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledStep {
            name: step.name,
            when,
            kind: kind?,
            for_each,
        })
    }

    /// Compiles a step's `for_each:`; `known` are the names its `items` expression may read.
    #[allow(clippy::too_many_arguments)]
    fn for_each(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        fe: ForEachConfig,
        known: &std::collections::HashSet<String>,
        templates: &mut Templates,
    ) -> Option<ForEach> {
        let before = self.diagnostics.len();
        let as_name = fe.as_name.unwrap_or_else(|| "item".into());
        let reserved = ["context", "message", "flow", "response"];
        if !is_identifier(&as_name)
            || reserved.contains(&as_name.as_str())
            || GLOBAL_NAMES.contains(&as_name.as_str())
            || known.contains(&as_name)
        {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.as"),
                    format!(
                        "`{as_name}` cannot name the element: it is taken or not an identifier"
                    ),
                )
                .hint("choose a new name of letters, digits and _, e.g. as: sample"),
            );
        }
        let mut bounded =
            |key: &str, given: Option<crate::config::values::Count>, default: u64, max: u64| {
                match given {
                    None => default as usize,
                    Some(n) if (1..=max).contains(&n.0) => n.0 as usize,
                    Some(n) => {
                        self.diagnostics.push(doc.diagnostic(
                            file,
                            &format!("{path}.{key}"),
                            format!("`{key}` is {}; it must be 1 to {max}", n.0),
                        ));
                        0
                    }
                }
            };
        let concurrency = bounded("concurrency", fe.concurrency, 4, 32);
        let max_items = bounded("max_items", fe.max_items, 100, 10_000);
        let items = self.value(
            doc,
            file,
            scope,
            &format!("{path}.items"),
            &serde_json::Value::String(fe.items),
            known,
            templates,
        );
        if self.diagnostics.len() > before {
            return None;
        }
        Some(ForEach {
            items: items?,
            as_name,
            concurrency,
            max_items,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        reply: ReplyConfig,
        bound: &[String],
        templates: &mut Templates,
    ) -> Option<Reply> {
        let known = known_names(bound, &self.scope_names);
        match (reply.template, reply.message) {
            (Some(t), None) => {
                let origin = Origin {
                    doc,
                    file,
                    path: format!("{path}.template"),
                };
                self.template_file(&origin, &t, &known, templates)
                    .map(|_| Reply::Template(t))
            }
            (None, Some(m)) => self
                .value(
                    doc,
                    file,
                    scope,
                    &format!("{path}.message"),
                    &m,
                    &known,
                    templates,
                )
                .map(Reply::Inline),
            _ => {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        path,
                        "a reply needs exactly one of `template` or `message`",
                    )
                    .hint("reply: { template: soil/on_search.j2 }"),
                );
                None
            }
        }
    }
}
