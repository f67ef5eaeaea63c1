//! Order events from the backend (`events:`): the webhook, polling, the expressions that place
//! an event, and the action answering it with an unsolicited callback.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::templates::{MINIJINJA_BUILTINS, known_names};
use super::{CompiledEvents, CompiledPoll, CompiledWebhook, Loader, Placement};
use crate::backend::Backend;
use crate::beckn::action::Action;
use crate::config::model::{ActionConfig, EventPoll, EventsConfig};
use crate::config::yaml::SpannedDoc;
use crate::mapping::templates::{EXPR_PREFIX, GLOBAL_NAMES};
use crate::mapping::{ScriptEngine, Templates};

const DEFAULT_POLL_EVERY: Duration = Duration::from_secs(5);

/// The shortest interval a poller may ask its backend at.
pub(super) const MIN_POLL_EVERY: Duration = Duration::from_millis(100);

/// A backend call a poller makes, as configured, for [`Loader::polled_call`].
pub(super) struct PolledCall<'a> {
    /// Its key in the flow file (`events.poll`).
    pub at: &'a str,
    pub backend: &'a str,
    pub path: &'a str,
    pub every: Duration,
    /// How a too short `every` is said: "`too_often` 50ms would flood the backend".
    pub too_often: &'a str,
    /// The hint given then.
    pub usual: &'a str,
}

impl Loader<'_> {
    /// Compiles `events:`: the webhook, the expressions that place an event, and its steps and
    /// reply, whose templates may read `event`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn events(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        raw: &Value,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
        scripts: &mut ScriptEngine,
    ) -> Option<CompiledEvents> {
        let cfg: EventsConfig = self.de(doc, file, "events", raw)?;
        let before = self.diagnostics.len();
        let callback = match cfg.callback.as_str() {
            "on_status" => Action::Status,
            "on_update" => Action::Update,
            other => {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        "events.callback",
                        format!("`{other}` cannot be sent unsolicited"),
                    )
                    .hint("use on_status or on_update"),
                );
                Action::Status
            }
        };
        if cfg.webhook.is_none() && cfg.poll.is_none() && cfg.poll_orders.is_none() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "events",
                    "events need a way in: a `webhook:` the backend calls, a `poll:` of a backend endpoint, a `poll_orders:` asking each open order's state, or several",
                )
                .hint("webhook: { path: /erp/events, secret: ${ERP_WEBHOOK_SECRET} }  or  poll: { backend: erp, path: /order-events, items: /events, cursor: /next }  or  poll_orders: { backend: erp, path: \"/orders/{{ order_id | segment }}\", state: /status }"),
            );
        }
        let placed_by_expression = cfg.webhook.is_some() || cfg.poll.is_some();
        match (&cfg.transaction_id, &cfg.erp_order_id) {
            (Some(_), Some(_)) => self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "events.erp_order_id",
                    "give `transaction_id` or `erp_order_id`, not both: an event belongs to one transaction",
                )
                .hint("erp_order_id finds the transaction whose order the backend numbered so; transaction_id names it directly"),
            ),
            (None, None) if placed_by_expression => self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "events",
                    "webhook and poll events need `transaction_id:` or `erp_order_id:` to find their transaction",
                )
                .hint("transaction_id: event.client_ref  or  erp_order_id: event.order_no"),
            ),
            _ => {}
        }
        if let Some(webhook) = &cfg.webhook
            && !webhook.path.starts_with('/')
        {
            self.diagnostics.push(doc.diagnostic(
                file,
                "events.webhook.path",
                "the webhook path must start with `/`",
            ));
        }
        let poll = cfg
            .poll
            .map(|p| self.event_poll(doc, file, scope, p, backends, templates));
        let poll_orders = cfg
            .poll_orders
            .map(|p| self.event_poll_orders(doc, file, scope, p, backends, templates));
        self.scope_names = vec!["event".to_string()];
        let known = known_names(&[], &self.scope_names);
        let mut expression = |me: &mut Self, key: &str, expr: &Option<String>| {
            let expr = expr.as_ref()?;
            let name = format!("{EXPR_PREFIX}{scope}:events.{key}");
            let source = format!("{{{{ ({expr}) }}}}");
            me.template(
                doc,
                file,
                &format!("events.{key}"),
                templates,
                &name,
                &source,
                &known,
            )
            .map(|_| name)
        };
        let placement = match (
            expression(self, "transaction_id", &cfg.transaction_id),
            expression(self, "erp_order_id", &cfg.erp_order_id),
        ) {
            (Some(t), _) => Some(Placement::TransactionId(t)),
            (None, Some(o)) => Some(Placement::ErpOrderId(o)),
            (None, None) => None,
        };
        let event_id = cfg.event_id.as_ref().and_then(|expr| {
            let name = format!("{EXPR_PREFIX}{scope}:events.event_id");
            let source = format!("{{{{ ({expr}) }}}}");
            self.template(
                doc,
                file,
                "events.event_id",
                templates,
                &name,
                &source,
                &known,
            )
            .map(|_| name)
        });
        let when = cfg.when.as_ref().and_then(|expr| {
            let name = format!("{EXPR_PREFIX}{scope}:events.when");
            let source = format!("{{{{ true if ({expr}) else false }}}}");
            self.template(doc, file, "events.when", templates, &name, &source, &known)
                .map(|_| name)
        });
        let action = self.action(
            doc,
            file,
            scope,
            "events",
            ActionConfig {
                steps: cfg.steps,
                reply: cfg.reply,
                remember: Default::default(),
            },
            backends,
            templates,
            scripts,
        );
        self.scope_names.clear();
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledEvents {
            webhook: cfg.webhook.map(|w| CompiledWebhook {
                path: w.path,
                secret: w.secret,
                signature_header: w
                    .signature_header
                    .unwrap_or_else(|| "X-Signature".into())
                    .to_ascii_lowercase(),
            }),
            poll: poll.flatten(),
            poll_orders: poll_orders.flatten().map(Box::new),
            event_id,
            placement,
            when,
            callback,
            action: action?,
        })
    }

    /// The checks a polled backend call shares, whichever poller makes it (`events.poll`,
    /// `events.poll_orders`): the backend is declared, the path is absolute, and it is not
    /// asked more often than every [`MIN_POLL_EVERY`].
    pub(super) fn polled_call(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        call: &PolledCall<'_>,
        backends: &BTreeMap<String, Option<Backend>>,
    ) {
        let at = call.at;
        if !backends.contains_key(call.backend) {
            let names: Vec<String> = backends.keys().cloned().collect();
            let mut d = doc.diagnostic(
                file,
                &format!("{at}.backend"),
                format!("no backend named `{}`", call.backend),
            );
            d = match crate::config::closest(call.backend, &names) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None if names.is_empty() => d.hint("declare it under `backends:`"),
                None => d.hint(format!("declared backends: {}", names.join(", "))),
            };
            self.diagnostics.push(d);
        }
        if !call.path.starts_with('/') {
            self.diagnostics.push(
                doc.diagnostic(file, &format!("{at}.path"), "the path must start with `/`")
                    .hint("it is appended to the backend's base_url"),
            );
        }
        if call.every < MIN_POLL_EVERY {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{at}.every"),
                    format!(
                        "{} {:?} would flood the backend",
                        call.too_often, call.every
                    ),
                )
                .hint(call.usual),
            );
        }
    }

    /// Compiles `events.poll`: the backend request (templates reading `cursor` and `flow`) and
    /// where the events and the next cursor are in the answer.
    fn event_poll(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        cfg: EventPoll,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
    ) -> Option<CompiledPoll> {
        const PATH: &str = "events.poll";
        let before = self.diagnostics.len();
        let every = cfg.every.map_or(DEFAULT_POLL_EVERY, |d| d.0);
        let call = PolledCall {
            at: PATH,
            backend: &cfg.backend,
            path: &cfg.path,
            every,
            too_often: "polling every",
            usual: "poll at most every 100ms; a few seconds is usual",
        };
        self.polled_call(doc, file, &call, backends);
        if !cfg.items.is_empty() && !cfg.items.starts_with('/') {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{PATH}.items"),
                    format!("`{}` is not a JSON pointer", cfg.items),
                )
                .hint("e.g. /events for an answer like {\"events\": [...]}; \"\" when the answer is the list"),
            );
        }
        if let Some(c) = &cfg.cursor
            && !c.starts_with('/')
        {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{PATH}.cursor"),
                    format!("`{c}` is not a JSON pointer"),
                )
                .hint("e.g. /next for an answer like {\"events\": [...], \"next\": 42}"),
            );
        }
        // Poll templates see the cursor and the flow, not a request.
        let known: HashSet<String> = ["cursor", "flow"]
            .iter()
            .chain(GLOBAL_NAMES.iter())
            .chain(MINIJINJA_BUILTINS.iter())
            .map(|s| s.to_string())
            .collect();
        let mut compiled = Vec::new();
        let path = self.text(
            doc,
            file,
            scope,
            &format!("{PATH}.path"),
            &cfg.path,
            &known,
            templates,
        );
        if let Some(t) = &path {
            compiled.push((format!("{PATH}.path"), t.clone()));
        }
        let mut pairs = |section: &str, map: &BTreeMap<String, String>, me: &mut Self| {
            let mut out = Vec::new();
            for (k, v) in map {
                let at = format!("{PATH}.{section}.{k}");
                if let Some(t) = me.text(doc, file, scope, &at, v, &known, templates) {
                    compiled.push((at, t.clone()));
                    out.push((k.clone(), t));
                }
            }
            out
        };
        let query = pairs("query", &cfg.query, self);
        let headers = pairs("headers", &cfg.headers, self);
        if cfg.cursor.is_none() {
            for (at, t) in &compiled {
                let mut names = Vec::new();
                t.template_names(&mut names);
                if names
                    .iter()
                    .any(|n| templates.free_variables(n).iter().any(|v| v == "cursor"))
                {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            at,
                            "template reads `cursor`, but `poll:` says nowhere where the backend's answer gives it",
                        )
                        .hint("add `cursor: /next` (a JSON pointer to the next cursor in the answer)"),
                    );
                }
            }
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledPoll {
            backend: cfg.backend,
            path: path?,
            query,
            headers,
            every,
            items: cfg.items,
            cursor: cfg.cursor,
        })
    }
}
