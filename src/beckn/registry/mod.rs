//! Who is who on the network: subscribers, their callback URLs and signing keys.
//!
//! Sources behind one trait: an embedded registry read from a YAML file (local networks,
//! demos, tests; the adapter can also serve it as `/lookup`), a remote Beckn registry
//! (`POST {url}/lookup`, `core.rs`) and ONDC's registry (the signed `POST {url}/v2.0/lookup`,
//! `ondc.rs`). [`CachedRegistry`] sits in front of a remote one so that a burst of requests
//! from one subscriber costs one lookup.

mod core;
mod ondc;

pub use self::core::{RemoteRegistry, parse_lookup_answer};
pub use self::ondc::{LookupSigner, OndcRegistry, parse_ondc_answer};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::clock::{SharedClock, SystemClock};

/// The role a subscriber plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SubscriberType {
    #[serde(alias = "bap")]
    Bap,
    #[serde(alias = "bpp")]
    Bpp,
    #[serde(alias = "bg", alias = "GATEWAY", alias = "gateway")]
    Bg,
}

/// One registered key of one subscriber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscriber {
    pub subscriber_id: String,
    #[serde(rename = "type")]
    pub kind: SubscriberType,
    /// Where its Beckn endpoints (and callbacks) are.
    pub url: String,
    pub domain: String,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    pub unique_key_id: String,
    /// base64 ed25519 public key.
    pub signing_public_key: String,
    #[serde(default)]
    pub encr_public_key: Option<String>,
    #[serde(default)]
    pub valid_from: Option<jiff::Timestamp>,
    #[serde(default)]
    pub valid_until: Option<jiff::Timestamp>,
    /// `SUBSCRIBED` for a usable entry.
    pub status: String,
}

impl Subscriber {
    /// Subscribed and inside its validity window at `now`.
    pub fn is_valid_at(&self, now: jiff::Timestamp) -> bool {
        self.status.eq_ignore_ascii_case("SUBSCRIBED")
            // By the second: signatures and the verifier's clock count whole seconds, and a
            // key registered a fraction into the current second is usable in it.
            && self.valid_from.is_none_or(|f| f.as_second() <= now.as_second())
            && self.valid_until.is_none_or(|u| now < u)
    }
}

/// What to look up. Empty fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct LookupQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        alias = "ukId",
        alias = "key_id"
    )]
    pub unique_key_id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<SubscriberType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl LookupQuery {
    pub fn key(subscriber_id: &str, unique_key_id: &str) -> Self {
        LookupQuery {
            subscriber_id: Some(subscriber_id.to_string()),
            unique_key_id: Some(unique_key_id.to_string()),
            ..Default::default()
        }
    }

    pub fn matches(&self, s: &Subscriber) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let opt = |want: &Option<String>, have: &Option<String>| {
            want.as_deref()
                .is_none_or(|w| have.as_deref().is_none_or(|h| h == w || h == "*"))
        };
        eq(&self.subscriber_id, &s.subscriber_id)
            && eq(&self.unique_key_id, &s.unique_key_id)
            && self.kind.is_none_or(|k| k == s.kind)
            && eq(&self.domain, &s.domain)
            && opt(&self.city, &s.city)
            && opt(&self.country, &s.country)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    #[error("registry answered HTTP {0}")]
    Status(u16),
    #[error("registry answer could not be read: {0}")]
    BadAnswer(String),
    /// The registry did not answer within the lookup's timeout.
    #[error("registry did not answer within {0:?}")]
    TimedOut(Duration),
    /// Not asked: this process already sent its most lookups for this second.
    #[error("registry lookups are limited to {0} a second and the limit is reached")]
    Limited(u32),
}

pub trait Registry: Send + Sync {
    fn lookup(&self, query: LookupQuery) -> BoxFuture<'_, Result<Vec<Subscriber>, RegistryError>>;
}

/// Subscribers from a YAML file (`subscribers: [...]`).
#[derive(Debug, Clone, Default)]
pub struct EmbeddedRegistry {
    pub subscribers: Vec<Subscriber>,
}

/// Where a participant looks subscribers up.
#[derive(Clone)]
pub enum RegistrySource {
    Embedded(Arc<EmbeddedRegistry>),
    Remote {
        url: String,
        /// How lookups are asked: Beckn core, or ONDC's signed `/v2.0/lookup`.
        dialect: LookupDialect,
        cache_ttl: Duration,
        /// How long answers without a usable entry, and failures, are reused.
        negative_cache_ttl: Duration,
        timeout: Duration,
        /// Most lookups per second sent to this registry.
        max_lookups_per_second: u32,
        /// Least time between two lookups asking again for a subscriber's key the cache had
        /// no usable entry for.
        refresh_unknown_key_every: Duration,
    },
}

/// How a remote registry is asked.
#[derive(Clone)]
pub enum LookupDialect {
    /// `POST {url}/lookup`, unsigned.
    Core,
    /// `POST {url}/v2.0/lookup`, signed by this participant.
    Ondc(Arc<LookupSigner>),
}

impl LookupDialect {
    /// Who asks: remote caches are shared by the flows asking the same registry as the same
    /// subscriber.
    pub fn asker(&self) -> &str {
        match self {
            LookupDialect::Core => "",
            LookupDialect::Ondc(signer) => &signer.subscriber_id,
        }
    }
}

/// The embedded registry file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub subscribers: Vec<Subscriber>,
}

impl EmbeddedRegistry {
    pub fn find(&self, query: &LookupQuery) -> Vec<Subscriber> {
        self.subscribers
            .iter()
            .filter(|s| query.matches(s))
            .cloned()
            .collect()
    }
}

impl Registry for EmbeddedRegistry {
    fn lookup(&self, query: LookupQuery) -> BoxFuture<'_, Result<Vec<Subscriber>, RegistryError>> {
        let found = self.find(&query);
        Box::pin(async move { Ok(found) })
    }
}

/// A query's answer and until when it may be reused (unix ms, by the registry's clock).
type Slot = Arc<OnceCell<(Result<Vec<Subscriber>, RegistryError>, i64)>>;

/// Caches lookups for `ttl` (never past an entry's `valid_until`), with one lookup in flight
/// per query however many requests wait for it. An answer with no usable entry, and a failed
/// lookup, are kept for the shorter `negative_ttl`: a stream of unknown keys costs one lookup
/// per key per period, and a subscriber that just registered is seen soon. Lookups sent are
/// bounded per second; past the bound a query is answered [`RegistryError::Limited`] without
/// asking. When the registry is down or the bound is reached, the last good answer keeps being
/// served (its entries' own validity still applies).
///
/// A signature's key the cached answer has no usable entry for ([`CachedRegistry::lookup_key`])
/// is asked for again at once, so a key published since the last lookup is found, but at most
/// once per subscriber per period: invented key ids repeated cost the registry nothing more.
pub struct CachedRegistry {
    inner: Arc<dyn Registry>,
    ttl: Duration,
    negative_ttl: Duration,
    budget: Mutex<LookupBudget>,
    slots: Mutex<HashMap<LookupQuery, Slot>>,
    last_good: Mutex<HashMap<LookupQuery, Vec<Subscriber>>>,
    /// When each subscriber's unknown key was last asked for again (registry clock, ms).
    refreshed: Mutex<HashMap<String, i64>>,
    /// Lookups sent to the inner registry, for tests and metrics.
    pub lookups: std::sync::atomic::AtomicU64,
    /// Whose time says when an answer is stale and an entry valid. The lookup budget is a rate
    /// and stays on the monotonic timer.
    clock: SharedClock,
}

/// Most queries remembered; past it, expired ones are dropped (all, if none has expired), so
/// a stream of distinct queries cannot grow the cache without bound.
const MAX_SLOTS: usize = 65_536;

/// A token bucket: `per_second` tokens a second, holding at most `per_second`.
struct LookupBudget {
    per_second: u32,
    tokens: f64,
    at: tokio::time::Instant,
}

impl LookupBudget {
    fn new(per_second: u32) -> Self {
        LookupBudget {
            per_second,
            tokens: f64::from(per_second),
            at: tokio::time::Instant::now(),
        }
    }

    /// Takes a token, or says the rate it is out of.
    fn take(&mut self, now: tokio::time::Instant) -> Result<(), u32> {
        let rate = f64::from(self.per_second);
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * rate;
        self.tokens = (self.tokens + refill).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.per_second)
        }
    }
}

impl CachedRegistry {
    /// A cache reusing answers for `ttl`, failures and answers without a usable entry for
    /// 30s, sending at most 20 lookups a second.
    pub fn new(inner: Arc<dyn Registry>, ttl: Duration) -> Self {
        Self::with_limits(inner, ttl, Duration::from_secs(30), 20)
    }

    pub fn with_limits(
        inner: Arc<dyn Registry>,
        ttl: Duration,
        negative_ttl: Duration,
        lookups_per_second: u32,
    ) -> Self {
        CachedRegistry {
            inner,
            ttl,
            negative_ttl,
            budget: Mutex::new(LookupBudget::new(lookups_per_second.max(1))),
            slots: Mutex::new(HashMap::new()),
            last_good: Mutex::new(HashMap::new()),
            refreshed: Mutex::new(HashMap::new()),
            lookups: Default::default(),
            clock: SystemClock::shared(),
        }
    }

    /// The same cache on `clock`.
    pub fn with_clock(self, clock: SharedClock) -> Self {
        CachedRegistry { clock, ..self }
    }

    pub async fn lookup(&self, query: LookupQuery) -> Result<Vec<Subscriber>, RegistryError> {
        self.lookup_marked(query).await.0
    }

    /// The entries of `subscriber_id`'s key `key_id`, as [`CachedRegistry::lookup`]; when the
    /// answer came from the cache and holds no usable entry of that key, the registry is asked
    /// again, if `subscriber_id` has not been asked again within `refresh_every`.
    pub async fn lookup_key(
        &self,
        subscriber_id: &str,
        key_id: &str,
        refresh_every: Duration,
    ) -> Result<Vec<Subscriber>, RegistryError> {
        let query = LookupQuery::key(subscriber_id, key_id);
        let (answer, fresh) = self.lookup_marked(query.clone()).await;
        let now = self.clock.now();
        let usable = answer
            .as_ref()
            .is_ok_and(|list| list.iter().any(|s| query.matches(s) && s.is_valid_at(now)));
        if fresh || usable || !self.may_refresh(subscriber_id, refresh_every) {
            return answer;
        }
        tracing::info!(
            subscriber_id,
            key_id,
            "a key the cache does not know: asking the registry again"
        );
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&query);
        self.lookup_marked(query).await.0
    }

    /// Whether `subscriber_id` may be asked for again now, noting it if so. The record is
    /// bounded like the cache; when it is full of subscribers asked within the period, no one
    /// more is asked again.
    fn may_refresh(&self, subscriber_id: &str, every: Duration) -> bool {
        let now = self.clock.now_ms();
        let every = every.as_millis().min(i64::MAX as u128) as i64;
        let mut refreshed = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
        if refreshed
            .get(subscriber_id)
            .is_some_and(|at| now.saturating_sub(*at) < every)
        {
            return false;
        }
        if refreshed.len() >= MAX_SLOTS && !refreshed.contains_key(subscriber_id) {
            refreshed.retain(|_, at| now.saturating_sub(*at) < every);
            if refreshed.len() >= MAX_SLOTS {
                return false;
            }
        }
        refreshed.insert(subscriber_id.to_string(), now);
        true
    }

    /// The answer to `query`, and whether it was asked of the registry for this call (true
    /// also when it waited for a lookup already in flight) rather than taken from the cache.
    async fn lookup_marked(
        &self,
        query: LookupQuery,
    ) -> (Result<Vec<Subscriber>, RegistryError>, bool) {
        let now = self.clock.now_ms();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = slots
                .get(&query)
                .filter(|s| s.get().is_none_or(|(_, until)| *until > now))
                .cloned();
            match fresh {
                Some(s) => s,
                None => {
                    if slots.len() >= MAX_SLOTS {
                        slots.retain(|_, s| s.get().is_none_or(|(_, until)| *until > now));
                        if slots.len() >= MAX_SLOTS {
                            slots.clear();
                        }
                    }
                    let s: Slot = Arc::default();
                    slots.insert(query.clone(), s.clone());
                    s
                }
            }
        };
        let fresh = slot.get().is_none();
        let (result, _) = slot
            .get_or_init(|| async {
                let taken = self
                    .budget
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(tokio::time::Instant::now());
                if let Err(per_second) = taken {
                    // Not kept: the next request for this query may ask.
                    return (Err(RegistryError::Limited(per_second)), self.clock.now_ms());
                }
                self.lookups
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let result = self.inner.lookup(query.clone()).await;
                let until = self.clock.now_ms() + self.cache_for(&result).as_millis() as i64;
                (result, until)
            })
            .await;
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        let answer = match result {
            Ok(list) => {
                if !list.is_empty() {
                    if last_good.len() >= MAX_SLOTS && !last_good.contains_key(&query) {
                        last_good.clear();
                    }
                    last_good.insert(query, list.clone());
                }
                Ok(list.clone())
            }
            Err(e) => match last_good.get(&query) {
                Some(stale) => {
                    tracing::warn!(error = %e, "registry lookup failed; using the last good answer");
                    Ok(stale.clone())
                }
                None => Err(e.clone()),
            },
        };
        (answer, fresh)
    }

    /// How long an answer may be reused: the TTL, cut at the earliest `valid_until`; the
    /// negative TTL for a failure or an answer with no usable entry.
    fn cache_for(&self, result: &Result<Vec<Subscriber>, RegistryError>) -> Duration {
        let now = self.clock.now();
        let Ok(list) = result else {
            return self.negative_ttl;
        };
        if !list.iter().any(|s| s.is_valid_at(now)) {
            return self.negative_ttl.min(self.ttl);
        }
        list.iter()
            .filter_map(|s| s.valid_until)
            .filter_map(|u| Duration::try_from(u.duration_since(now)).ok())
            .fold(self.ttl, Duration::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub(id: &str, kind: SubscriberType) -> Subscriber {
        Subscriber {
            subscriber_id: id.into(),
            kind,
            url: format!("https://{id}/beckn"),
            domain: "agri.soil".into(),
            city: Some("std:011".into()),
            country: Some("IND".into()),
            unique_key_id: "k1".into(),
            signing_public_key: "awGPjRK6i/Vg/lWr+0xObclVxlwZXvTjWYtlu6NeOHk=".into(),
            encr_public_key: None,
            valid_from: None,
            valid_until: None,
            status: "SUBSCRIBED".into(),
        }
    }

    #[test]
    fn field_name_variants() {
        let body = json!([{"subscriber_id": "a.example", "subscriber_url": "https://a.example",
            "type": "BPP", "domain": "agri.soil", "ukId": "k9", "signing_public_key": "x",
            "valid_to": "2030-01-01T00:00:00Z", "status": "SUBSCRIBED"}]);
        let s = &parse_lookup_answer(&body).unwrap()[0];
        assert_eq!(
            (s.unique_key_id.as_str(), s.url.as_str()),
            ("k9", "https://a.example")
        );
        assert!(s.valid_until.is_some());
        let wrapped = json!({"message": [{"subscriber_id": "b", "url": "u", "type": "bg",
            "key_id": "k", "signing_public_key": "x"}]});
        assert_eq!(
            parse_lookup_answer(&wrapped).unwrap()[0].kind,
            SubscriberType::Bg
        );
        assert!(parse_lookup_answer(&json!({"oops": 1})).is_err());
    }

    #[test]
    fn queries_match() {
        let reg = EmbeddedRegistry {
            subscribers: vec![
                sub("a.example", SubscriberType::Bpp),
                sub("b.example", SubscriberType::Bap),
            ],
        };
        let q = LookupQuery {
            kind: Some(SubscriberType::Bpp),
            domain: Some("agri.soil".into()),
            city: Some("std:011".into()),
            ..Default::default()
        };
        assert_eq!(reg.find(&q).len(), 1);
        assert_eq!(reg.find(&LookupQuery::key("b.example", "k1")).len(), 1);
        assert!(reg.find(&LookupQuery::key("b.example", "k2")).is_empty());
    }

    #[test]
    fn validity() {
        let mut s = sub("a", SubscriberType::Bap);
        let now = jiff::Timestamp::now();
        assert!(s.is_valid_at(now));
        s.valid_until = Some(now - jiff::SignedDuration::from_secs(1));
        assert!(!s.is_valid_at(now));
        s.valid_until = None;
        s.status = "UNSUBSCRIBED".into();
        assert!(!s.is_valid_at(now));
    }

    #[test]
    fn a_key_valid_from_a_fraction_into_the_current_second_is_usable_in_it() {
        let mut s = sub("a", SubscriberType::Bap);
        let second = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        s.valid_from = Some(second + jiff::SignedDuration::from_millis(700));
        assert!(s.is_valid_at(second), "the signature's whole second");
        assert!(!s.is_valid_at(second - jiff::SignedDuration::from_secs(1)));
    }

    /// A registry whose answers the test switches off.
    struct Flaky {
        up: std::sync::atomic::AtomicBool,
        inner: EmbeddedRegistry,
    }

    impl Registry for Flaky {
        fn lookup(&self, q: LookupQuery) -> BoxFuture<'_, Result<Vec<Subscriber>, RegistryError>> {
            let up = self.up.load(std::sync::atomic::Ordering::SeqCst);
            let found = self.inner.find(&q);
            Box::pin(async move {
                if up {
                    Ok(found)
                } else {
                    Err(RegistryError::Unreachable("down".into()))
                }
            })
        }
    }

    #[tokio::test]
    async fn known_keys_survive_a_registry_outage() {
        let flaky = Arc::new(Flaky {
            up: true.into(),
            inner: EmbeddedRegistry {
                subscribers: vec![sub("a.example", SubscriberType::Bap)],
            },
        });
        let cache = CachedRegistry::new(flaky.clone(), Duration::ZERO);
        assert_eq!(
            cache
                .lookup(LookupQuery::key("a.example", "k1"))
                .await
                .unwrap()
                .len(),
            1
        );
        flaky.up.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            cache
                .lookup(LookupQuery::key("a.example", "k1"))
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            cache
                .lookup(LookupQuery::key("x.example", "k1"))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn unknown_keys_are_remembered_briefly_and_lookups_are_bounded() {
        let reg = Arc::new(EmbeddedRegistry {
            subscribers: vec![sub("a.example", SubscriberType::Bap)],
        });
        let cache =
            CachedRegistry::with_limits(reg, Duration::from_secs(600), Duration::from_secs(30), 5);
        let count = || cache.lookups.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..10 {
            assert!(
                cache
                    .lookup(LookupQuery::key("x.example", "k1"))
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(count(), 1, "a negative answer is reused");
        let mut limited = 0;
        for i in 0..100 {
            match cache
                .lookup(LookupQuery::key("x.example", &format!("fresh-{i}")))
                .await
            {
                Err(RegistryError::Limited(5)) => limited += 1,
                other => assert!(matches!(other, Ok(ref l) if l.is_empty()), "{other:?}"),
            }
        }
        assert!(count() <= 7, "at most the burst and a refill: {}", count());
        assert!(limited >= 90, "{limited}");
    }

    #[tokio::test]
    async fn a_burst_costs_one_lookup() {
        let reg = Arc::new(EmbeddedRegistry {
            subscribers: vec![sub("a.example", SubscriberType::Bap)],
        });
        let cache = Arc::new(CachedRegistry::new(reg, Duration::from_secs(60)));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = cache.clone();
            tasks.push(tokio::spawn(async move {
                c.lookup(LookupQuery::key("a.example", "k1")).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().len(), 1);
        }
        assert_eq!(cache.lookups.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// A registry whose subscribers the test changes, counting lookups.
    #[derive(Default)]
    struct Changing {
        subscribers: Mutex<Vec<Subscriber>>,
    }

    impl Registry for Changing {
        fn lookup(&self, q: LookupQuery) -> BoxFuture<'_, Result<Vec<Subscriber>, RegistryError>> {
            let found: Vec<_> = self
                .subscribers
                .lock()
                .unwrap()
                .iter()
                .filter(|s| q.matches(s))
                .cloned()
                .collect();
            Box::pin(async move { Ok(found) })
        }
    }

    #[tokio::test]
    async fn an_unknown_key_is_asked_again_at_most_once_per_subscriber_per_period() {
        let reg = Arc::new(Changing::default());
        let clock = crate::clock::ManualClock::new(jiff::Timestamp::now());
        let cache = CachedRegistry::with_limits(
            reg.clone(),
            Duration::from_secs(600),
            Duration::from_secs(30),
            100,
        )
        .with_clock(clock.clone() as SharedClock);
        let count = || cache.lookups.load(std::sync::atomic::Ordering::Relaxed);
        let every = Duration::from_secs(10);
        let k2 = || cache.lookup_key("a.example", "k2", every);
        assert!(k2().await.unwrap().is_empty());
        assert_eq!(count(), 1, "asked once, its absence cached");
        // published since: found by one refresh, then served from the cache
        let mut published = sub("a.example", SubscriberType::Bap);
        published.unique_key_id = "k2".into();
        reg.subscribers.lock().unwrap().push(published);
        assert_eq!(k2().await.unwrap().len(), 1);
        assert_eq!(count(), 2);
        assert_eq!(k2().await.unwrap().len(), 1);
        assert_eq!(count(), 2);
        // an invented key, again and again: asked once, and no refresh within the period
        for _ in 0..20 {
            assert!(
                cache
                    .lookup_key("a.example", "ghost", every)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(count(), 3, "a.example was asked again less than 10s ago");
        // another subscriber has a period of its own; a period later, one more
        for _ in 0..20 {
            assert!(
                cache
                    .lookup_key("b.example", "ghost", every)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(count(), 5, "b.example: asked, then asked again once");
        clock.advance(every);
        for _ in 0..20 {
            assert!(
                cache
                    .lookup_key("a.example", "ghost", every)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        assert_eq!(count(), 6);
    }
}
