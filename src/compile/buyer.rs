//! Compiling the buyer-app (`role: bap`) parts of a flow: the gateway its searches go to and
//! the client API its own application calls (address, token, defaults, webhook, templates).
//!
//! A buyer app runs no steps: it has no `actions`, `backends` or `events`. What it needs from
//! `mappings/` are the optional templates between the app's JSON and Beckn, checked here like
//! any other template (every name they read must exist).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::{Loader, Origin, known_names, normalise_base_path};
use crate::beckn::action::Action;
use crate::compile::model::{ClientTemplates, CompiledAppWebhook, CompiledBap, GatewayTarget};
use crate::config::model::{AnswerMode, FlowFile};
use crate::config::yaml::SpannedDoc;
use crate::mapping::Templates;

/// The client API's path prefix when the flow sets none.
pub const DEFAULT_CLIENT_BASE_PATH: &str = "/api";
/// The ttl of requests whose call sets none.
pub const DEFAULT_CLIENT_TTL: Duration = Duration::from_secs(30);
/// The header of the app webhook's HMAC signature when the flow names none.
pub const DEFAULT_WEBHOOK_SIGNATURE_HEADER: &str = "X-Adapter-Signature";

/// Names a request template reads besides `context`, `message` and `flow`.
pub const REQUEST_TEMPLATE_NAMES: [&str; 2] = ["input", "user"];
/// Names a response template reads besides `context`, `message` and `flow`.
pub const RESPONSE_TEMPLATE_NAMES: [&str; 3] = ["responses", "missing", "status"];

impl Loader<'_> {
    /// A gateway forwards; the gateway settings of a buyer app (`url`, `subscriber_id`) make
    /// no sense on it.
    pub(super) fn gateway_settings_of_a_gateway(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
    ) {
        let Some(g) = &head.gateway else { return };
        for (key, set) in [
            ("url", g.url.is_some()),
            ("subscriber_id", g.subscriber_id.is_some()),
        ] {
            if set {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("gateway.{key}"),
                        format!("`gateway.{key}` names the gateway a buyer app searches through"),
                    )
                    .hint("a gateway flow takes only `gateway.forward_timeout`"),
                );
            }
        }
    }

    /// A buyer app sends requests and collects callbacks; it runs no provider steps.
    pub(super) fn bap_has_no_provider_parts(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
    ) {
        let parts = [
            ("actions", !head.actions.is_empty()),
            ("backends", !head.backends.is_empty()),
            ("events", head.events.as_ref().is_some_and(|e| !e.is_null())),
        ];
        for (key, present) in parts {
            if present {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        key,
                        format!("a buyer app (`role: bap`) has no `{key}:`; providers do"),
                    )
                    .hint("app-shaped requests and answers go under `client.actions.<action>`"),
                );
            }
        }
    }

    /// The buyer-app settings of a `role: bap` flow listening on `listen`.
    pub(super) fn bap(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
        listen: SocketAddr,
        templates: &mut Templates,
    ) -> Option<CompiledBap> {
        let before = self.diagnostics.len();
        let gateway = self.bap_gateway(doc, file, head);
        let default_client = Default::default();
        let client = head.client.as_ref().unwrap_or(&default_client);
        let client_listen = match &client.listen {
            None => Some(listen),
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            "client.listen",
                            format!("`{text}` is not an address"),
                        )
                        .hint("write it as host:port, e.g. 127.0.0.1:7110"),
                    );
                    None
                }
            },
        };
        let client_base_path = normalise_base_path(
            client
                .base_path
                .as_deref()
                .unwrap_or(DEFAULT_CLIENT_BASE_PATH),
        );
        let beckn_base_path = normalise_base_path(head.base_path.as_deref().unwrap_or(""));
        if client_base_path.is_empty() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "client.base_path",
                    "the client API needs a path prefix",
                )
                .hint("e.g. base_path: /api"),
            );
        } else if client_listen == Some(listen) && client_base_path == beckn_base_path {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "client.base_path",
                    format!(
                        "the client API and the Beckn endpoints would share `{client_base_path}` on {listen}"
                    ),
                )
                .hint("give the client API another base_path (default /api) or its own `client.listen`"),
            );
        }
        let ttl = client.ttl.map_or(DEFAULT_CLIENT_TTL, |d| d.0);
        if ttl.is_zero() {
            self.diagnostics.push(doc.diagnostic(
                file,
                "client.ttl",
                "the ttl must be longer than zero",
            ));
        }
        if let Some(location) = &client.location
            && !location.is_object()
        {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "client.location",
                    "`location` is a Beckn location object",
                )
                .hint("e.g. location: { country: { code: IND }, city: { code: \"std:011\" } }"),
            );
        }
        let webhook = client.webhook.as_ref().and_then(|w| {
            match reqwest::Url::parse(&w.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            "client.webhook.url",
                            format!("`{}` is not an http(s) URL", w.url),
                        )
                        .hint("the URL of the app that receives callbacks"),
                    );
                    return None;
                }
            }
            if w.secret.expose().is_empty() {
                self.diagnostics.push(
                    doc.diagnostic(file, "client.webhook.secret", "the webhook secret is empty")
                        .hint("the app checks each delivery's HMAC with it; set one, e.g. ${APP_WEBHOOK_SECRET}"),
                );
            }
            Some(CompiledAppWebhook {
                url: w.url.clone(),
                secret: w.secret.clone(),
                signature_header: w
                    .signature_header
                    .clone()
                    .unwrap_or_else(|| DEFAULT_WEBHOOK_SIGNATURE_HEADER.into())
                    .to_ascii_lowercase(),
            })
        });
        let mode = client.mode.unwrap_or(AnswerMode::Sync);
        if mode == AnswerMode::Webhook && client.webhook.is_none() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "client.mode",
                    "webhook mode needs `client.webhook`",
                )
                .hint("webhook: { url: https://app.example.org/beckn, secret: ${APP_WEBHOOK_SECRET} }"),
            );
        }
        let actions = self.client_actions(doc, file, head, templates);
        if self.diagnostics.len() > before {
            return None;
        }
        Some(CompiledBap {
            gateway,
            client_listen: client_listen?,
            client_base_path,
            // An empty token (`${APP_TOKEN:-}` left unset) asks for none.
            token: client.token.clone().filter(|t| !t.expose().is_empty()),
            ttl,
            mode,
            location: client.location.clone(),
            webhook,
            actions,
        })
    }

    fn bap_gateway(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
    ) -> Option<GatewayTarget> {
        let g = head.gateway.as_ref()?;
        match (&g.url, &g.subscriber_id) {
            (Some(_), Some(_)) => {
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        "gateway",
                        "give the gateway's `url` or its `subscriber_id`, not both",
                    )
                    .hint("subscriber_id: gateway.example.org (its URL comes from the registry)"),
                );
                None
            }
            (Some(url), None) => match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {
                    Some(GatewayTarget::Url(url.trim_end_matches('/').to_string()))
                }
                _ => {
                    self.diagnostics.push(doc.diagnostic(
                        file,
                        "gateway.url",
                        format!("`{url}` is not an http(s) URL"),
                    ));
                    None
                }
            },
            (None, Some(id)) => Some(GatewayTarget::Subscriber(id.clone())),
            (None, None) => None,
        }
    }

    /// `client.actions`: known action names, and templates that read only what they get.
    fn client_actions(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
        templates: &mut Templates,
    ) -> HashMap<Action, ClientTemplates> {
        let mut out = HashMap::new();
        let Some(client) = &head.client else {
            return out;
        };
        let request_names: Vec<String> = REQUEST_TEMPLATE_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let response_names: Vec<String> = RESPONSE_TEMPLATE_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (key, cfg) in &client.actions {
            let path = format!("client.actions.{key}");
            let action = match key.parse::<Action>() {
                Ok(a) => a,
                Err(e) => {
                    let options: Vec<String> = Action::ALL.iter().map(|a| a.to_string()).collect();
                    let mut d = doc.diagnostic(file, &path, e.to_string());
                    d = match crate::config::closest(key, &options) {
                        Some(best) => d.hint(format!("did you mean `{best}`?")),
                        None => d.hint(format!("actions are: {}", options.join(", "))),
                    };
                    self.diagnostics.push(d);
                    continue;
                }
            };
            let mut compiled = ClientTemplates::default();
            for (field, rel, names, slot) in [
                (
                    "request_template",
                    &cfg.request_template,
                    &request_names,
                    &mut compiled.request,
                ),
                (
                    "response_template",
                    &cfg.response_template,
                    &response_names,
                    &mut compiled.response,
                ),
            ] {
                let Some(rel) = rel else { continue };
                let origin = Origin {
                    doc,
                    file,
                    path: format!("{path}.{field}"),
                };
                let known = known_names(&[], names);
                if self
                    .template_file(&origin, rel, &known, templates)
                    .is_some()
                {
                    *slot = Some(rel.clone());
                }
            }
            out.insert(action, compiled);
        }
        out
    }
}
