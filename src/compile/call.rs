//! Backends and the calls steps make to them: base URLs, auth, the request's templates and the
//! table mapping a backend's failures to Beckn errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{CallBody, CompiledCall, ErrorRule, Loader, Origin};
use crate::backend::Backend;
use crate::beckn::error::ErrorCode;
use crate::config::model::{BackendConfig, CallConfig};
use crate::config::yaml::SpannedDoc;
use crate::mapping::Templates;

const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

impl Loader<'_> {
    /// Backends by name; `None` for one that has errors (reported), so references to it are
    /// not reported a second time.
    pub(super) fn backends(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
    ) -> BTreeMap<String, Option<Backend>> {
        let mut out = BTreeMap::new();
        let Some(map) = doc.value.get("backends").and_then(Value::as_object) else {
            return out;
        };
        for (name, raw) in map {
            let path = format!("backends.{name}");
            let backend = self
                .de::<BackendConfig>(doc, file, &path, raw)
                .and_then(|cfg| self.backend(doc, file, &path, name, cfg));
            out.insert(name.clone(), backend);
        }
        out
    }

    fn backend(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        name: &str,
        cfg: BackendConfig,
    ) -> Option<Backend> {
        let mut ok = true;
        if let Some(p) = &cfg.error_code
            && !p.starts_with('/')
        {
            ok = false;
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.error_code"),
                    format!("`{p}` is not a JSON pointer"),
                )
                .hint("e.g. /error for a body like {\"error\": \"NOT_FOUND\"}"),
            );
        }
        match reqwest::Url::parse(&cfg.base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                ok = false;
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("{path}.base_url"),
                        format!("`{}` is not an http(s) URL", cfg.base_url),
                    )
                    .hint("e.g. http://127.0.0.1:7180/api/v1"),
                );
            }
        }
        let auth = match cfg.auth {
            None => None,
            Some(a) => match self.auth(doc, file, &format!("{path}.auth"), a) {
                Ok(auth) => Some(auth),
                Err(()) => {
                    ok = false;
                    None
                }
            },
        };
        ok.then(|| Backend {
            name: name.to_string(),
            base_url: cfg.base_url.trim_end_matches('/').to_string(),
            auth,
            headers: cfg.headers.into_iter().collect(),
            timeout: cfg.timeout.map_or(DEFAULT_BACKEND_TIMEOUT, |d| d.0),
            error_code: cfg.error_code,
            idempotency_header: cfg.idempotency_header,
            retry: cfg.retry.map(|r| {
                (
                    r.attempts.0 as u32,
                    r.backoff.map_or(Duration::from_millis(200), |d| d.0),
                )
            }),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn call(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        scope: &str,
        path: &str,
        call: CallConfig,
        known: &HashSet<String>,
        backends: &BTreeMap<String, Option<Backend>>,
        templates: &mut Templates,
    ) -> Option<CompiledCall> {
        let before = self.diagnostics.len();
        if !backends.contains_key(&call.backend) {
            let names: Vec<String> = backends.keys().cloned().collect();
            let mut d = doc.diagnostic(
                file,
                &format!("{path}.backend"),
                format!("no backend named `{}`", call.backend),
            );
            d = match crate::config::closest(&call.backend, &names) {
                Some(best) => d.hint(format!("did you mean `{best}`?")),
                None if names.is_empty() => d.hint("declare it under `backends:`"),
                None => d.hint(format!("declared backends: {}", names.join(", "))),
            };
            self.diagnostics.push(d);
        }
        let method = call
            .method
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase();
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
            self.diagnostics.push(doc.diagnostic(
                file,
                &format!("{path}.method"),
                format!("`{method}` is not one of GET, POST, PUT, PATCH, DELETE"),
            ));
        }
        if !call.path.starts_with('/') {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.path"),
                    "the path must start with `/`",
                )
                .hint("it is appended to the backend's base_url"),
            );
        }
        let path_t = self.text(
            doc,
            file,
            scope,
            &format!("{path}.path"),
            &call.path,
            known,
            templates,
        );
        let mut query = Vec::new();
        for (k, v) in &call.query {
            if let Some(t) = self.text(
                doc,
                file,
                scope,
                &format!("{path}.query.{k}"),
                v,
                known,
                templates,
            ) {
                query.push((k.clone(), t));
            }
        }
        let mut headers = Vec::new();
        for (k, v) in &call.headers {
            if let Some(t) = self.text(
                doc,
                file,
                scope,
                &format!("{path}.headers.{k}"),
                v,
                known,
                templates,
            ) {
                headers.push((k.clone(), t));
            }
        }
        let mut form = None;
        if let Some(fields) = &call.form {
            if call.body.is_some() || call.body_template.is_some() {
                self.diagnostics.push(doc.diagnostic(
                    file,
                    &format!("{path}.form"),
                    "give either `form` or a JSON body (`body`, `body_template`), not both",
                ));
            }
            let mut pairs = Vec::new();
            for (k, v) in fields {
                if let Some(t) = self.text(
                    doc,
                    file,
                    scope,
                    &format!("{path}.form.{k}"),
                    v,
                    known,
                    templates,
                ) {
                    pairs.push((k.clone(), t));
                }
            }
            form = Some(pairs);
        }
        let mut text = None;
        match (&call.text_body, &call.content_type) {
            (Some(t), content_type) => {
                if call.body.is_some() || call.body_template.is_some() || call.form.is_some() {
                    self.diagnostics.push(doc.diagnostic(
                        file,
                        &format!("{path}.text_body"),
                        "give one body: `text_body`, `form` or a JSON body (`body`, `body_template`)",
                    ));
                }
                let content_type = content_type
                    .clone()
                    .unwrap_or_else(|| "text/plain; charset=utf-8".into());
                text = self
                    .text(
                        doc,
                        file,
                        scope,
                        &format!("{path}.text_body"),
                        t,
                        known,
                        templates,
                    )
                    .map(|t| (t, content_type));
            }
            (None, Some(_)) => {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("{path}.content_type"),
                        "`content_type` is the type of `text_body`, which is not given",
                    )
                    .hint("a JSON body is sent as application/json, a form as application/x-www-form-urlencoded"),
                );
            }
            (None, None) => {}
        }
        let body = match (call.body, call.body_template) {
            (Some(_), Some(_)) => {
                self.diagnostics.push(doc.diagnostic(
                    file,
                    &format!("{path}.body_template"),
                    "give either `body` or `body_template`, not both",
                ));
                None
            }
            (Some(inline), None) => self
                .value(
                    doc,
                    file,
                    scope,
                    &format!("{path}.body"),
                    &inline,
                    known,
                    templates,
                )
                .map(CallBody::Inline),
            (None, Some(t)) => {
                let origin = Origin {
                    doc,
                    file,
                    path: format!("{path}.body_template"),
                };
                self.template_file(&origin, &t, known, templates)
                    .map(|_| CallBody::Template(t))
            }
            (None, None) => None,
        };
        let paginate = match call.paginate {
            None => None,
            Some(cfg) => {
                if let Some(pair) = super::paginate::size_query(&cfg) {
                    query.push(pair);
                }
                self.paginate(
                    doc,
                    file,
                    scope,
                    &format!("{path}.paginate"),
                    cfg,
                    known,
                    templates,
                )
            }
        };
        let mut errors = HashMap::new();
        let mut with_response = known.clone();
        with_response.insert("response".into());
        for (key, rule) in call.errors {
            let rpath = format!("{path}.errors.{key}");
            let is_status =
                key.len() == 3 && key.parse::<u16>().is_ok_and(|s| (400..600).contains(&s));
            let is_kind = matches!(
                key.as_str(),
                "timeout"
                    | "unreachable"
                    | "invalid_response"
                    | "auth"
                    | "max_pages"
                    | "max_items"
                    | "4xx"
                    | "5xx"
            );
            // A missing or broken backend is reported already, and without it the keys
            // cannot be judged: give them the benefit of the doubt.
            let backend_codes = match backends.get(&call.backend) {
                Some(Some(b)) => b.error_code.is_some(),
                Some(None) | None => true,
            };
            if !is_status && !is_kind && !backend_codes {
                self.diagnostics.push(
                    doc.diagnostic(file, &rpath, format!("`{key}` is not a failure this table can match"))
                        .hint("use an HTTP status (404), a class (4xx, 5xx), timeout, unreachable, invalid_response, auth (no OAuth2 token), max_pages (a paged list longer than paginate.max_pages), max_items (a for_each list longer than its max_items), or the backend's own error code once the backend sets `error_code:`"),
                );
            }
            let Some(code) = ErrorCode::from_code(&rule.code) else {
                self.diagnostics.push(
                    doc.diagnostic(file, &format!("{rpath}.code"), format!("`{}` is not a Beckn error code", rule.code))
                        .hint("e.g. 30004 item not found, 30010 order not found, 40003 quote unavailable, 50001 cancellation not possible, 31001 internal error"),
                );
                continue;
            };
            let message = rule.message.as_ref().and_then(|m| {
                self.text(
                    doc,
                    file,
                    scope,
                    &format!("{rpath}.message"),
                    m,
                    &with_response,
                    templates,
                )
            });
            errors.insert(key, ErrorRule { code, message });
        }
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledCall {
            backend: call.backend,
            method,
            path: path_t?,
            query,
            headers,
            body,
            form,
            text,
            paginate,
            errors,
        })
    }
}
