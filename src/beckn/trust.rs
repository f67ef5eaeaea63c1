//! Trust stage of the message path: who sent a message (Beckn HTTP signatures checked against
//! the registry), where its answer may go, and how our own messages are signed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;

use super::ack::Rejection;
use super::participant::Participant;
use super::registry::{
    CachedRegistry, LookupDialect, LookupQuery, OndcRegistry, Registry, RegistryError,
    RegistrySource, RemoteRegistry, Subscriber, SubscriberType,
};
use super::signing::{PublicKey, SignatureHeader};
use crate::clock::{Clock, SharedClock, SystemClock};

/// Header carrying a gateway's signature next to the sender's `Authorization`.
pub const GATEWAY_HEADER: &str = "x-gateway-authorization";

/// Remote registries with their caches, shared by every flow that names the same URL (and,
/// for ONDC's signed lookups, asks as the same subscriber); and the clock signatures and
/// registry entries are checked by.
pub struct RegistryPool {
    remote: Mutex<HashMap<(String, String), Arc<CachedRegistry>>>,
    clock: SharedClock,
}

impl Default for RegistryPool {
    fn default() -> Self {
        RegistryPool::new(SystemClock::shared())
    }
}

impl RegistryPool {
    /// A pool whose caches and checks follow `clock`.
    pub fn new(clock: SharedClock) -> Self {
        RegistryPool {
            remote: Mutex::default(),
            clock,
        }
    }

    /// The clock signatures, registry entries and cached answers are judged by.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub async fn lookup(
        &self,
        source: &RegistrySource,
        query: LookupQuery,
    ) -> Result<Vec<Subscriber>, RegistryError> {
        match source {
            RegistrySource::Embedded(reg) => reg.lookup(query).await,
            RegistrySource::Remote { .. } => match self.remote(source) {
                Some(cached) => cached.lookup(query).await,
                None => Ok(Vec::new()),
            },
        }
    }

    /// The entries of a signature's key: a remote registry is asked again for a key its
    /// cached answer does not hold (rate-limited per subscriber, see
    /// [`CachedRegistry::lookup_key`]).
    pub async fn lookup_key(
        &self,
        source: &RegistrySource,
        subscriber_id: &str,
        key_id: &str,
    ) -> Result<Vec<Subscriber>, RegistryError> {
        match source {
            RegistrySource::Embedded(reg) => {
                reg.lookup(LookupQuery::key(subscriber_id, key_id)).await
            }
            RegistrySource::Remote {
                refresh_unknown_key_every,
                ..
            } => match self.remote(source) {
                Some(cached) => {
                    cached
                        .lookup_key(subscriber_id, key_id, *refresh_unknown_key_every)
                        .await
                }
                None => Ok(Vec::new()),
            },
        }
    }

    /// The cache of a remote registry, made on first use with the settings of the flow that
    /// uses it first; None for an embedded one.
    fn remote(&self, source: &RegistrySource) -> Option<Arc<CachedRegistry>> {
        let RegistrySource::Remote {
            url,
            dialect,
            cache_ttl,
            negative_cache_ttl,
            timeout,
            max_lookups_per_second,
            ..
        } = source
        else {
            return None;
        };
        let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        let cached = remote
            .entry((url.clone(), dialect.asker().to_string()))
            .or_insert_with(|| {
                let inner: Arc<dyn Registry> = match dialect {
                    LookupDialect::Core => Arc::new(RemoteRegistry::new(url, *timeout)),
                    LookupDialect::Ondc(signer) => Arc::new(OndcRegistry::new(
                        url,
                        *timeout,
                        signer.clone(),
                        self.clock.clone(),
                    )),
                };
                Arc::new(
                    CachedRegistry::with_limits(
                        inner,
                        *cache_ttl,
                        *negative_cache_ttl,
                        *max_lookups_per_second,
                    )
                    .with_clock(self.clock.clone()),
                )
            });
        Some(cached.clone())
    }

    /// Lookups sent to the remote registry at `url` so far.
    pub fn remote_lookups(&self, url: &str) -> u64 {
        self.remote
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((u, _), _)| u == url)
            .map(|(_, c)| c.lookups.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

/// Who signed a message that passed verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// The subscriber of the `Authorization` signature (None when verification is off).
    pub signer: Option<String>,
    /// The gateway of the `X-Gateway-Authorization` signature, when present.
    pub gateway: Option<String>,
}

/// Verifies the signatures on a received message over its raw bytes, and that the bytes mean
/// one thing (no key given twice where the context is read).
///
/// Every header is read and its times checked before any key is looked up, so a malformed
/// or stale header costs no registry lookup.
pub async fn verify_inbound(
    me: &Participant,
    registries: &RegistryPool,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, Rejection> {
    if !me.verify_signatures {
        refuse_ambiguous(body)?;
        return Ok(Verified::default());
    }
    let now = registries.clock().now().as_second();
    let auth = read_header(me, headers, axum::http::header::AUTHORIZATION.as_str(), now)?
        .ok_or_else(|| {
            unauthorized(
                me,
                false,
                "missing Authorization header: messages must be signed (BECKN-006)".into(),
            )
        })?;
    let gateway = read_header(me, headers, GATEWAY_HEADER, now)?;
    let signer = verify_one(me, registries, &auth, body, now, false).await?;
    let gateway = match gateway {
        Some(g) => Some(verify_one(me, registries, &g, body, now, true).await?),
        None => None,
    };
    refuse_ambiguous(body)?;
    Ok(Verified {
        signer: Some(signer),
        gateway,
    })
}

/// A body whose top-level object or `context` names a key twice: a parser keeping the first
/// and one keeping the last would read different messages from the same signed bytes.
fn refuse_ambiguous(body: &[u8]) -> Result<(), Rejection> {
    match super::context::duplicate_key(body) {
        Some(e) => Err(Rejection::malformed(&e)),
        None => Ok(()),
    }
}

/// The signature header `name` (`Authorization` or `X-Gateway-Authorization`), parsed and with
/// its times checked; None when absent.
fn read_header(
    me: &Participant,
    headers: &HeaderMap,
    name: &str,
    now: i64,
) -> Result<Option<SignatureHeader>, Rejection> {
    let proxy = name == GATEWAY_HEADER;
    let reject = |reason: String| unauthorized(me, proxy, reason);
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(reject(format!("the {name} header is given twice")));
    }
    let value = value
        .to_str()
        .map_err(|_| reject(format!("the {name} header is not ASCII text")))?;
    let parsed = SignatureHeader::parse(value).map_err(|e| reject(e.to_string()))?;
    parsed
        .check_times(now, me.signature_skew, me.max_signature_lifetime)
        .map_err(|e| reject(e.to_string()))?;
    Ok(Some(parsed))
}

async fn verify_one(
    me: &Participant,
    registries: &RegistryPool,
    parsed: &SignatureHeader,
    body: &[u8],
    now: i64,
    proxy: bool,
) -> Result<String, Rejection> {
    let reject = |reason: String| unauthorized(me, proxy, reason);
    let Some(source) = &me.registry else {
        return Err(reject(
            "no registry is configured to check signatures".into(),
        ));
    };
    let mut entries = registries
        .lookup_key(source, &parsed.subscriber_id, &parsed.unique_key_id)
        .await
        .map_err(|e| {
            reject(format!(
                "cannot check the key of {}: {e}",
                parsed.subscriber_id
            ))
        })?;
    // A registry that ignores the key id in the query answers every key of the subscriber
    // (or others): only the entry of the signature's own key may check it.
    entries.retain(|s| {
        s.subscriber_id == parsed.subscriber_id && s.unique_key_id == parsed.unique_key_id
    });
    let when = jiff::Timestamp::from_second(now).unwrap_or_else(|_| registries.clock().now());
    let Some(entry) = entries.iter().find(|s| s.is_valid_at(when)) else {
        return Err(reject(match entries.first() {
            Some(s) => format!(
                "key {}|{} is not usable (status {}, valid until {})",
                s.subscriber_id,
                s.unique_key_id,
                s.status,
                s.valid_until.map_or("-".into(), |u| u.to_string())
            ),
            None => format!(
                "unknown key {}|{}: not in the registry",
                parsed.subscriber_id, parsed.unique_key_id
            ),
        }));
    };
    if proxy && entry.kind != SubscriberType::Bg {
        return Err(reject(format!(
            "{} signed X-Gateway-Authorization but is not a gateway",
            entry.subscriber_id
        )));
    }
    let key = PublicKey::from_base64_cached(&entry.signing_public_key)
        .map_err(|e| reject(format!("the registry's key is unusable: {e}")))?;
    parsed
        .verify_signature_batched(body, &key)
        .await
        .map_err(|e| reject(e.to_string()))?;
    Ok(parsed.subscriber_id.clone())
}

fn unauthorized(me: &Participant, proxy: bool, reason: String) -> Rejection {
    Rejection::Unauthorized {
        realm: me.subscriber_id.clone(),
        proxy,
        reason,
    }
}

/// The URL the answer to `bap_id` goes to: the one the registry holds for it, which the
/// context's `bap_uri` must match, so no sender can make the adapter call an arbitrary address.
pub async fn callback_base(
    me: &Participant,
    registries: &RegistryPool,
    bap_id: &str,
    bap_uri: &str,
) -> Result<String, Rejection> {
    let Some(source) = me.registry.as_ref().filter(|_| me.verify_signatures) else {
        return Ok(bap_uri.trim_end_matches('/').to_string());
    };
    let query = LookupQuery {
        subscriber_id: Some(bap_id.to_string()),
        kind: Some(SubscriberType::Bap),
        ..Default::default()
    };
    let entries = registries
        .lookup(source, query)
        .await
        .map_err(|e| Rejection::Unavailable(format!("registry lookup of {bap_id} failed: {e}")))?;
    let now = registries.clock().now();
    let registered = entries
        .iter()
        .find(|s| s.is_valid_at(now))
        .map(|s| s.url.trim_end_matches('/').to_string())
        .ok_or_else(|| Rejection::CallbackNotRegistered {
            reason: format!("{bap_id} is not a subscribed BAP in the registry"),
        })?;
    if registered != bap_uri.trim_end_matches('/') {
        return Err(Rejection::CallbackNotRegistered {
            reason: format!(
                "bap_uri `{bap_uri}` is not the URL registered for {bap_id} (`{registered}`)"
            ),
        });
    }
    Ok(registered)
}

/// The base URL of the gateway `gateway_id`, where answers to what it forwarded go.
pub async fn gateway_base(
    me: &Participant,
    registries: &RegistryPool,
    gateway_id: &str,
) -> Result<String, Rejection> {
    let Some(source) = &me.registry else {
        return Err(Rejection::Unavailable(
            "no registry to find the gateway in".into(),
        ));
    };
    let query = LookupQuery {
        subscriber_id: Some(gateway_id.to_string()),
        kind: Some(SubscriberType::Bg),
        ..Default::default()
    };
    let now = registries.clock().now();
    registries
        .lookup(source, query)
        .await
        .map_err(|e| {
            Rejection::Unavailable(format!("registry lookup of {gateway_id} failed: {e}"))
        })?
        .into_iter()
        .find(|s| s.is_valid_at(now))
        .map(|s| s.url.trim_end_matches('/').to_string())
        .ok_or_else(|| Rejection::CallbackNotRegistered {
            reason: format!("gateway {gateway_id} is not subscribed in the registry"),
        })
}

/// Headers that authenticate an outgoing `body` as sent by `me`, signed at `now` (unix
/// seconds) with the key that signs then (the next key once its `sign_from` has come).
pub fn sign_outbound(me: &Participant, body: &[u8], now: i64) -> Vec<(String, String)> {
    let Some((key_id, key)) = me.signer_at(now) else {
        return Vec::new();
    };
    let value = key.sign(
        body,
        &format!("{}|{key_id}", me.subscriber_id),
        now,
        now + me.signature_validity,
    );
    vec![("Authorization".to_string(), value)]
}
