//! `events.poll_orders`: the backend asked for the state of each open order, for backends
//! that neither call a webhook nor keep a feed of changes. Its call is checked here (backend,
//! templates reading `transaction`, `order_id` and `flow`), with how often, how many at once,
//! where the state is in the answer and which states end the polling.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::action::TRANSACTION;
use super::events::PolledCall;
use super::templates::MINIJINJA_BUILTINS;
use super::{CompiledPollOrders, Loader};
use crate::backend::Backend;
use crate::config::model::EventPollOrders;
use crate::config::yaml::SpannedDoc;
use crate::mapping::Templates;
use crate::mapping::templates::GLOBAL_NAMES;

const PATH: &str = "events.poll_orders";
const DEFAULT_EVERY: Duration = Duration::from_secs(30);
const DEFAULT_CONCURRENCY: u64 = 4;
const MAX_CONCURRENCY: u64 = 64;

impl Loader<'_> {
    /// Compiles `events.poll_orders`, reporting each mistake at its key.
    pub(super) fn event_poll_orders(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        cfg: EventPollOrders,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
    ) -> Option<CompiledPollOrders> {
        let before = self.diagnostics.len();
        let every = cfg.every.map_or(DEFAULT_EVERY, |d| d.0);
        let call = PolledCall {
            at: PATH,
            backend: &cfg.backend,
            path: &cfg.path,
            every,
            too_often: "asking every order every",
            usual: "at most every 100ms; 30s or more is usual",
        };
        self.polled_call(doc, file, &call, backends);
        let concurrency = cfg.concurrency.map_or(DEFAULT_CONCURRENCY, |c| c.0);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{PATH}.concurrency"),
                    format!("{concurrency} calls at once is outside 1 to {MAX_CONCURRENCY}"),
                )
                .hint("the default, 4, suits most backends"),
            );
        }
        if !cfg.state.starts_with('/') {
            let message = if cfg.state.is_empty() {
                "the state pointer is empty: say where the order's state is in the answer"
                    .to_string()
            } else {
                format!("`{}` is not a JSON pointer", cfg.state)
            };
            self.diagnostics.push(
                doc.diagnostic(file, &format!("{PATH}.state"), message)
                    .hint("e.g. /state for an answer like {\"state\": \"TESTING\"}"),
            );
        }
        if let Some(empty) = cfg.final_states.iter().position(|s| s.is_empty()) {
            self.diagnostics.push(doc.diagnostic(
                file,
                &format!("{PATH}.final[{empty}]"),
                "an empty state name",
            ));
        }
        // Status calls see the order and what its transaction remembered, not a request.
        let known: HashSet<String> = [TRANSACTION, "order_id", "flow"]
            .iter()
            .chain(GLOBAL_NAMES.iter())
            .chain(MINIJINJA_BUILTINS.iter())
            .map(|s| s.to_string())
            .collect();
        let path = self.text(
            doc,
            file,
            scope,
            &format!("{PATH}.path"),
            &cfg.path,
            &known,
            templates,
        );
        let mut pairs = |section: &str, map: &BTreeMap<String, String>, me: &mut Self| {
            let mut out = Vec::new();
            for (k, v) in map {
                let at = format!("{PATH}.{section}.{k}");
                if let Some(t) = me.text(doc, file, scope, &at, v, &known, templates) {
                    out.push((k.clone(), t));
                }
            }
            out
        };
        let query = pairs("query", &cfg.query, self);
        let headers = pairs("headers", &cfg.headers, self);
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledPollOrders {
            backend: cfg.backend,
            path: path?,
            query,
            headers,
            every,
            concurrency: concurrency as usize,
            state: cfg.state,
            final_states: cfg.final_states,
        })
    }
}
