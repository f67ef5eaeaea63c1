//! A backend's `auth:` block: exactly one kind, each complete, checked with located
//! diagnostics, compiled into a [`BackendAuth`].

use std::path::Path;
use std::sync::Arc;

use super::Loader;
use crate::backend::BackendAuth;
use crate::backend::auth::{ClientAuth, HmacSignature, OAuth2ClientCredentials, SignatureEncoding};
use crate::config::model::{BackendAuth as AuthConfig, HmacAuthConfig, OAuth2Config};
use crate::config::yaml::SpannedDoc;

const KINDS_HINT: &str = "one of: { header: X-Api-Key, value: ${KEY} }, { query: api_key, value: ${KEY} }, { bearer: ${TOKEN} }, { basic: { username, password } }, { hmac: { header, key, string_to_sign } }, { oauth2_client_credentials: { token_url, client_id, client_secret } }";

impl Loader<'_> {
    /// The compiled auth, or `Err` after reporting what is wrong (at `path`, `backends.x.auth`).
    pub(super) fn auth(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        a: AuthConfig,
    ) -> Result<BackendAuth, ()> {
        let given: Vec<&str> = [
            ("header", a.header.is_some()),
            ("query", a.query.is_some()),
            ("bearer", a.bearer.is_some()),
            ("basic", a.basic.is_some()),
            ("hmac", a.hmac.is_some()),
            (
                "oauth2_client_credentials",
                a.oauth2_client_credentials.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
        if given.len() != 1 {
            let message = if given.is_empty() {
                "auth needs one kind".to_string()
            } else {
                format!("auth takes one kind, not {}", given.join(" and "))
            };
            self.diagnostics
                .push(doc.diagnostic(file, path, message).hint(KINDS_HINT));
            return Err(());
        }
        let keyed = matches!(given[0], "header" | "query");
        if keyed != a.value.is_some() {
            let message = if keyed {
                format!("`{}` needs the key in `value`", given[0])
            } else {
                "`value` goes with `header` or `query`".to_string()
            };
            self.diagnostics.push(
                doc.diagnostic(file, path, message)
                    .hint("auth: { header: X-Api-Key, value: ${ERP_API_KEY} }"),
            );
            return Err(());
        }
        match (a.header, a.query, a.value) {
            (Some(name), _, Some(value)) => return Ok(BackendAuth::Header { name, value }),
            (_, Some(name), Some(value)) => return Ok(BackendAuth::Query { name, value }),
            _ => {}
        }
        if let Some(token) = a.bearer {
            return Ok(BackendAuth::Bearer(token));
        }
        if let Some(b) = a.basic {
            return Ok(BackendAuth::Basic {
                username: b.username,
                password: b.password,
            });
        }
        if let Some(h) = a.hmac {
            return self
                .hmac(doc, file, &format!("{path}.hmac"), h)
                .map(|s| BackendAuth::Hmac(Arc::new(s)));
        }
        match a.oauth2_client_credentials {
            Some(o) => self
                .oauth2(doc, file, &format!("{path}.oauth2_client_credentials"), o)
                .map(|o| BackendAuth::OAuth2(Arc::new(o))),
            None => Err(()),
        }
    }

    fn hmac(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        h: HmacAuthConfig,
    ) -> Result<HmacSignature, ()> {
        let mut ok = true;
        if h.algorithm.as_deref().is_some_and(|a| a != "sha256") {
            ok = false;
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    &format!("{path}.algorithm"),
                    format!(
                        "`{}` is not a supported algorithm",
                        h.algorithm.unwrap_or_default()
                    ),
                )
                .hint("algorithm: sha256"),
            );
        }
        let encoding = match h.encoding.as_deref() {
            None | Some("hex") => SignatureEncoding::Hex,
            Some("base64") => SignatureEncoding::Base64,
            Some(other) => {
                ok = false;
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("{path}.encoding"),
                        format!("`{other}` is not an encoding"),
                    )
                    .hint("hex or base64"),
                );
                SignatureEncoding::Hex
            }
        };
        let signer = HmacSignature::new(
            h.header,
            h.key,
            &h.string_to_sign,
            encoding,
            h.timestamp_header,
        );
        let names = ["method", "path", "query", "body", "timestamp"];
        match signer {
            Ok(s) => {
                let unknown = unknown_names(&h.string_to_sign, &names);
                if !unknown.is_empty() {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            &format!("{path}.string_to_sign"),
                            format!(
                                "unknown name `{}` in the string to sign",
                                unknown.join("`, `")
                            ),
                        )
                        .hint("it may use method, path, query, body and timestamp"),
                    );
                    return Err(());
                }
                if ok { Ok(s) } else { Err(()) }
            }
            Err(e) => {
                self.diagnostics.push(
                    doc.diagnostic(file, &format!("{path}.string_to_sign"), e.to_string())
                        .hint("e.g. \"{{ method }}\\n{{ path }}\\n{{ timestamp }}\\n{{ body }}\""),
                );
                Err(())
            }
        }
    }

    fn oauth2(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        path: &str,
        o: OAuth2Config,
    ) -> Result<OAuth2ClientCredentials, ()> {
        let mut ok = true;
        match reqwest::Url::parse(&o.token_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                ok = false;
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("{path}.token_url"),
                        format!("`{}` is not an http(s) URL", o.token_url),
                    )
                    .hint("e.g. https://erp.example.com/oauth/token"),
                );
            }
        }
        for (field, value) in [
            ("client_id", &o.client_id),
            ("client_secret", &o.client_secret),
        ] {
            if value.expose().is_empty() {
                ok = false;
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("{path}.{field}"),
                        format!("`{field}` is empty"),
                    )
                    .hint("give it through the environment: ${ERP_CLIENT_SECRET}"),
                );
            }
        }
        let client_auth = match o.client_auth.as_deref() {
            None | Some("body") => ClientAuth::Body,
            Some("basic") => ClientAuth::Basic,
            Some(other) => {
                ok = false;
                self.diagnostics.push(
                    doc.diagnostic(
                        file,
                        &format!("{path}.client_auth"),
                        format!("`{other}` is not a place for the client credentials"),
                    )
                    .hint("body (form fields) or basic (an Authorization header)"),
                );
                ClientAuth::Body
            }
        };
        ok.then(|| {
            OAuth2ClientCredentials::new(
                o.token_url,
                o.client_id,
                o.client_secret,
                o.scope,
                o.audience,
                client_auth,
                o.refresh_margin.map(|d| d.0),
            )
        })
        .ok_or(())
    }
}

/// Names a template uses that are not among `known`.
fn unknown_names(source: &str, known: &[&str]) -> Vec<String> {
    let env = minijinja::Environment::new();
    let Ok(t) = env.template_from_str(source) else {
        return Vec::new();
    };
    let mut out: Vec<String> = t
        .undeclared_variables(false)
        .into_iter()
        .filter(|n| !known.contains(&n.as_str()))
        .collect();
    out.sort();
    out
}
