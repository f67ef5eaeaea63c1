//! Who a flow is on the network: identity, signing key, registry source and the limits on
//! received messages, compiled into a [`Participant`]; the embedded registry file read and its
//! keys checked.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{Loader, Origin};
use crate::beckn::context::{DEFAULT_MAX_TTL, DEFAULT_TIMESTAMP_SKEW, TimeLimits};
use crate::beckn::onboarding::{EncryptionKey, EncryptionPublicKey};
use crate::beckn::participant::{NextKey, Onboarding, Participant};
use crate::beckn::registry::{
    EmbeddedRegistry, LookupDialect, LookupQuery, LookupSigner, RegistryFile, RegistrySource,
};
use crate::beckn::signing::{PrivateKey, PublicKey};
use crate::config::model::{FlowFile, Network, RegistryDialect};
use crate::config::yaml::SpannedDoc;

const DEFAULT_SKEW: Duration = Duration::from_secs(5);
const DEFAULT_SIGNATURE_VALIDITY: Duration = Duration::from_secs(60);
const DEFAULT_MAX_SIGNATURE_LIFETIME: Duration = Duration::from_secs(3600);
const DEFAULT_REGISTRY_NEGATIVE_TTL: Duration = Duration::from_secs(30);
const DEFAULT_REGISTRY_LOOKUPS_PER_SECOND: u64 = 20;
const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(600);
const DEFAULT_REGISTRY_TIMEOUT: Duration = Duration::from_secs(3);
const DEFAULT_REFRESH_UNKNOWN_KEY_EVERY: Duration = Duration::from_secs(10);

impl Loader<'_> {
    /// Who the flow is on the network: its identity, signing key, registry and the limits it
    /// checks received messages against. The key and the registry are needed unless
    /// verification is off.
    pub(super) fn participant(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        head: &FlowFile,
    ) -> Participant {
        let net = &head.network;
        let verify = net.verify_signatures.is_none_or(|f| f.0);
        let signing_secret = net
            .signing_private_key
            .as_ref()
            .map(|src| self.key(doc, file, "network.signing_private_key", src));
        let signing_key = match signing_secret {
            Some(None) => None,
            Some(Some(secret)) => match PrivateKey::from_base64(secret.expose()) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.diagnostics.push(
                        doc.diagnostic(file, "network.signing_private_key", e.to_string())
                            .hint("`beckn-adapter keys` prints a fresh key pair and its registry entry"),
                    );
                    None
                }
            },
            None if verify => {
                self.diagnostics.push(
                    doc.diagnostic(file, "network", "no `signing_private_key`: every callback must be signed")
                        .hint("generate one with `beckn-adapter keys` and set it from the environment, e.g. signing_private_key: ${LAB_SIGNING_KEY}"),
                );
                None
            }
            None => None,
        };
        if signing_key.is_some() && net.key_id.is_none() {
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "network",
                    "a signing key needs its `key_id` (the registry's unique key id)",
                )
                .hint("key_id: lab-key-1"),
            );
        }
        let registry = match &net.registry {
            None if verify => {
                self.diagnostics.push(
                    doc.diagnostic(file, "network", "no `registry`: signatures cannot be checked without one")
                        .hint("registry: { file: registry/local.yaml }  or  registry: { url: https://registry.example.org }"),
                );
                None
            }
            None => None,
            Some(cfg) => {
                let src = cfg.source.trim();
                if src.starts_with("http://") || src.starts_with("https://") {
                    if reqwest::Url::parse(src).is_err() {
                        self.diagnostics.push(doc.diagnostic(
                            file,
                            "network.registry.source",
                            format!("`{src}` is not a URL"),
                        ));
                    }
                    if cfg.serve.0 {
                        self.diagnostics.push(
                            doc.diagnostic(file, "network.registry.serve", "only a registry file can be served")
                                .hint("serve: true needs `source:` to be a file such as registry/local.yaml"),
                        );
                    }
                    let dialect = match cfg.dialect.unwrap_or_default() {
                        RegistryDialect::Core => LookupDialect::Core,
                        RegistryDialect::Ondc => match (&signing_key, &net.key_id) {
                            (Some(key), Some(key_id)) => {
                                LookupDialect::Ondc(Arc::new(LookupSigner {
                                    subscriber_id: net.subscriber_id.clone(),
                                    key_id: key_id.clone(),
                                    key: key.clone(),
                                    validity: net
                                        .signature_validity
                                        .map_or(DEFAULT_SIGNATURE_VALIDITY, |d| d.0)
                                        .as_secs()
                                        .max(1)
                                        as i64,
                                }))
                            }
                            _ => {
                                self.diagnostics.push(
                                    doc.diagnostic(file, "network.registry.dialect", "ONDC's /v2.0/lookup is signed: it needs `signing_private_key` and `key_id`")
                                        .hint("the key and ukId registered with ONDC's registry"),
                                );
                                LookupDialect::Core
                            }
                        },
                    };
                    Some(RegistrySource::Remote {
                        url: src.trim_end_matches('/').to_string(),
                        dialect,
                        cache_ttl: cfg.cache_ttl.map_or(DEFAULT_REGISTRY_TTL, |d| d.0),
                        negative_cache_ttl: cfg
                            .negative_cache_ttl
                            .map_or(DEFAULT_REGISTRY_NEGATIVE_TTL, |d| d.0),
                        timeout: cfg.timeout.map_or(DEFAULT_REGISTRY_TIMEOUT, |d| d.0),
                        max_lookups_per_second: cfg
                            .max_lookups_per_second
                            .map_or(DEFAULT_REGISTRY_LOOKUPS_PER_SECOND, |c| c.0)
                            .clamp(1, u32::MAX as u64)
                            as u32,
                        refresh_unknown_key_every: cfg
                            .refresh_unknown_key_every
                            .map_or(DEFAULT_REFRESH_UNKNOWN_KEY_EVERY, |d| d.0),
                    })
                } else {
                    self.registry_file(doc, file, src)
                        .map(RegistrySource::Embedded)
                }
            }
        };
        let next_key = net
            .next_key
            .as_ref()
            .and_then(|_| self.next_key(doc, file, net));
        if let Some(RegistrySource::Embedded(reg)) = &registry {
            let own = signing_key
                .as_ref()
                .zip(net.key_id.as_deref())
                .map(|(key, id)| (key, id, "network.signing_private_key"));
            let next = next_key
                .as_ref()
                .map(|n| (&n.signing_key, n.key_id.as_str(), "network.next_key"));
            for (key, key_id, path) in own.into_iter().chain(next) {
                let entries = reg.find(&LookupQuery::key(&net.subscriber_id, key_id));
                let public = key.public_key().to_base64();
                if !entries.iter().any(|s| s.signing_public_key == public) {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            path,
                            format!(
                                "the registry has no entry for {}|{key_id} with this key's public key",
                                net.subscriber_id
                            ),
                        )
                        .hint(format!(
                            "add it to the registry file: signing_public_key: {public}"
                        )),
                    );
                }
            }
        }
        Participant {
            subscriber_id: net.subscriber_id.clone(),
            subscriber_uri: net.subscriber_uri.trim_end_matches('/').to_string(),
            key_id: net.key_id.clone(),
            signing_key,
            next_key,
            verify_signatures: verify,
            signature_skew: net.signature_skew.map_or(DEFAULT_SKEW, |d| d.0).as_secs() as i64,
            signature_validity: net
                .signature_validity
                .map_or(DEFAULT_SIGNATURE_VALIDITY, |d| d.0)
                .as_secs()
                .max(1) as i64,
            max_signature_lifetime: net
                .max_signature_lifetime
                .map_or(DEFAULT_MAX_SIGNATURE_LIFETIME, |d| d.0)
                .as_secs()
                .min(i64::MAX as u64) as i64,
            time_limits: TimeLimits {
                max_ttl: head.validation.max_ttl.map_or(DEFAULT_MAX_TTL, |d| d.0),
                skew: head
                    .validation
                    .timestamp_skew
                    .map_or(DEFAULT_TIMESTAMP_SKEW, |d| d.0),
            },
            registry,
            onboarding: self.onboarding(doc, file, head),
            registration: self.registration(doc, file, head),
        }
    }

    /// The key that takes over signing: its key read and parsed, its id not the current one,
    /// its `sign_from` a time. None (with diagnostics) when any of them is wrong.
    fn next_key(&mut self, doc: &SpannedDoc, file: &Path, net: &Network) -> Option<NextKey> {
        let next = net.next_key.as_ref()?;
        let mut ok = true;
        if net.key_id.as_deref() == Some(next.key_id.as_str()) {
            ok = false;
            self.diagnostics.push(
                doc.diagnostic(
                    file,
                    "network.next_key.key_id",
                    format!(
                        "the next key's id `{}` is the current `key_id`: a registry keeps one key per id",
                        next.key_id
                    ),
                )
                .hint("give the next key an id of its own, e.g. lab-key-2"),
            );
        }
        let sign_from = match next.sign_from.as_deref().map(str::trim) {
            None => None,
            Some(text) => match text.parse::<jiff::Timestamp>() {
                Ok(t) => Some(t),
                Err(e) => {
                    ok = false;
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            "network.next_key.sign_from",
                            format!("`{text}` is not an RFC 3339 time: {e}"),
                        )
                        .hint("sign_from: 2026-12-01T12:00:00Z"),
                    );
                    None
                }
            },
        };
        let path = "network.next_key.signing_private_key";
        let secret = self.key(doc, file, path, &next.signing_private_key)?;
        let signing_key = match PrivateKey::from_base64(secret.expose()) {
            Ok(k) => k,
            Err(e) => {
                self.diagnostics.push(
                    doc.diagnostic(file, path, e.to_string())
                        .hint("`beckn-adapter keys rotate <flow>` makes the next key pair"),
                );
                return None;
            }
        };
        ok.then(|| NextKey {
            key_id: next.key_id.clone(),
            signing_key,
            sign_from,
        })
    }

    /// The keys and ids that answer a registry's challenge; each checked when given.
    fn onboarding(&mut self, doc: &SpannedDoc, file: &Path, head: &FlowFile) -> Onboarding {
        let net = &head.network;
        let path = "network.encryption_private_key";
        let encryption_key = net
            .encryption_private_key
            .as_ref()
            .and_then(|src| self.key(doc, file, path, src))
            .and_then(|secret| match EncryptionKey::from_base64(secret.expose()) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.diagnostics.push(
                        doc.diagnostic(file, path, e.to_string())
                            .hint("`beckn-adapter keys` prints a fresh encryption key pair"),
                    );
                    None
                }
            });
        let registry_encryption_key = net
            .registry
            .as_ref()
            .and_then(|r| r.encryption_public_key.as_deref())
            .and_then(|b64| match EncryptionPublicKey::from_base64(b64) {
                Ok(k) => Some(k),
                Err(e) => {
                    self.diagnostics.push(
                        doc.diagnostic(
                            file,
                            "network.registry.encryption_public_key",
                            e.to_string(),
                        )
                        .hint("the registry publishes it per environment, e.g. MCowBQYDK2VuAyEA…"),
                    );
                    None
                }
            });
        Onboarding {
            encryption_key,
            registry_encryption_key,
            request_id: net.subscription.as_ref().map(|s| s.request_id.clone()),
        }
    }

    fn registry_file(
        &mut self,
        doc: &SpannedDoc,
        file: &Path,
        rel: &str,
    ) -> Option<Arc<EmbeddedRegistry>> {
        let full = self.layout.root.join(rel);
        let origin = Origin {
            doc,
            file,
            path: "network.registry.source".into(),
        };
        let (rdoc, parsed): (_, RegistryFile) = self.yaml_file(&origin, &full, "registry")?;
        let mut ok = true;
        for (i, s) in parsed.subscribers.iter().enumerate() {
            if let Err(e) = PublicKey::from_base64(&s.signing_public_key) {
                ok = false;
                self.diagnostics.push(rdoc.diagnostic(
                    &full,
                    &format!("subscribers[{i}].signing_public_key"),
                    e.to_string(),
                ));
            }
        }
        ok.then(|| {
            Arc::new(EmbeddedRegistry {
                subscribers: parsed.subscribers,
            })
        })
    }
}
