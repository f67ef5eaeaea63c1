//! Delivering what the adapter owes others (`on_*` callbacks, app webhook deliveries, order
//! sinks' updates) through the durable outbox: recorded first, then sent by a worker that
//! prepares (signs) each attempt, retries with exponential backoff and jitter until the
//! message's deadline, and buries what cannot be delivered as a
//! dead letter with its last error. A restart resumes pending work.
//!
//! How a message is sent depends on its kind: the [`kinds::Destination`] registered for it (the
//! Beckn callback, `callback.rs`; the app webhook, `app_webhook.rs`; each order sink's, from
//! `crate::sinks`) prepares every attempt, reads the answer and caps the backoff.

pub mod app_webhook;
pub mod callback;
pub mod destination;
pub mod kinds;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::FutureExt;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::clock::{SharedClock, SystemClock};
use crate::compile::CompiledSet;
use crate::store::heartbeat::{Held, while_held};
use crate::store::{Claim, NewOutbox, OutboxItem, Store, StoreError};
use crate::telemetry::traces::{self, Traces};
use destination::Destinations;
use kinds::{Destination, Kinds, Verdict};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::collections::HashMap;

/// How the outbox retries.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Pause before the first retry; doubles with every attempt.
    pub base_backoff: Duration,
    /// The cap of a destination that does not name its own.
    pub max_backoff: Duration,
    /// How long a claimed message is reserved for one worker's attempt; renewed while the
    /// attempt runs.
    pub lease: Duration,
    /// Most messages taken by one claim of the store.
    pub batch: usize,
    /// Most delivery attempts under way at once.
    pub concurrency: usize,
    /// Deadline of messages whose request had no usable `timestamp + ttl`.
    pub default_deadline: Duration,
    /// How long an accepted request belongs to the process running it unless renewed (it is,
    /// while its flow runs); after that (the process died or stood still) another process
    /// sharing the store takes it over.
    pub work_lease: Duration,
    /// The adapter's own listeners (the admin listener) that nothing it sends may reach.
    pub protected: Vec<SocketAddr>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            batch: 64,
            concurrency: 256,
            default_deadline: Duration::from_secs(600),
            work_lease: Duration::from_secs(60),
            protected: Vec::new(),
        }
    }
}

/// The outbox: where finished messages are handed over, and the worker that sends them.
pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub settings: DeliverySettings,
    wake: Notify,
    client: reqwest::Client,
    /// Names this process's claims (leases) in the store.
    pub owner: String,
    /// Messages recorded already claimed by this process, on their way to the worker.
    handoff: mpsc::Sender<OutboxItem>,
    handed: std::sync::Mutex<Option<mpsc::Receiver<OutboxItem>>>,
    /// Where messages may go: http(s) only, never the adapter's own admin listener.
    pub destinations: Destinations,
    /// How each kind of message is sent.
    kinds: Kinds,
    /// Whose time decides when a message is due, late or past its deadline.
    pub clock: SharedClock,
    /// When the worker looks at the store next, by the clock (unix ms): a retry due before
    /// that wakes it, so retries keep to their time on a clock that jumps.
    next_look: AtomicI64,
    /// Messages taken to be sent (handed over or claimed) whose outcome is not recorded yet.
    under_way: AtomicUsize,
    /// Where delivery attempts are traced.
    traces: Traces,
    /// The trace of each message queued by this process while it waits to be delivered, by
    /// outbox id: its attempts, retries too, are spans of the trace of the message they answer.
    /// (An attempt of a message queued by another process, or before a restart, starts a
    /// trace of its own, with the transaction and message ids as attributes.)
    trace_of: std::sync::Mutex<HashMap<i64, opentelemetry::Context>>,
}

/// Most message traces kept for later attempts; past that the oldest are forgotten together
/// (their later attempts start traces of their own).
const TRACES_KEPT: usize = 65_536;

/// Most messages waiting in memory for the worker; past that they wait in the store only.
const HANDOFF_QUEUE: usize = 4096;

/// How one delivery attempt ended.
enum Attempt {
    Delivered,
    /// Worth trying again (network error, 5xx, 429, 408), not before the wait a 429 or 503
    /// asked for with `Retry-After`.
    Transient(String, Option<Duration>),
    /// Refused for good (a NACK or another 4xx): retrying cannot help.
    Refused(String),
    /// Not sent: the address is not one messages may go to (see [`destination`]).
    Unsendable(String),
}

impl From<Verdict> for Attempt {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Delivered => Attempt::Delivered,
            Verdict::Transient(why, asked) => Attempt::Transient(why, asked),
            Verdict::Refused(why) => Attempt::Refused(why),
        }
    }
}

/// The destinations every outbox has: Beckn callbacks (also of kinds nobody claims), the app
/// webhook, and those of the order sinks.
fn default_kinds() -> Kinds {
    let mut kinds = Kinds::new(Arc::new(callback::BecknCallback::default()));
    kinds.register(Arc::new(app_webhook::AppWebhook));
    for destination in crate::sinks::destinations() {
        kinds.register(destination);
    }
    kinds
}

impl Outbox {
    /// An outbox on the system clock.
    pub fn new(store: Arc<dyn Store>, settings: DeliverySettings) -> Self {
        Outbox::with_clock(store, settings, SystemClock::shared())
    }

    /// An outbox whose due times, deadlines and backoff follow `clock`.
    pub fn with_clock(
        store: Arc<dyn Store>,
        settings: DeliverySettings,
        clock: SharedClock,
    ) -> Self {
        let (handoff, handed) = mpsc::channel(HANDOFF_QUEUE);
        Outbox {
            handoff,
            handed: std::sync::Mutex::new(Some(handed)),
            destinations: Destinations::new(&settings.protected),
            kinds: default_kinds(),
            store,
            settings,
            wake: Notify::new(),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            clock,
            next_look: AtomicI64::new(0),
            under_way: AtomicUsize::new(0),
            traces: Traces::off(),
            trace_of: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// This outbox with its attempts traced to `traces`.
    pub fn with_traces(mut self, traces: Traces) -> Self {
        self.traces = traces;
        self
    }

    /// Keeps the current trace (if any) for the attempts at message `id`.
    fn keep_trace(&self, id: i64) {
        let Some(context) = traces::current() else {
            return;
        };
        if let Ok(mut kept) = self.trace_of.lock() {
            if kept.len() >= TRACES_KEPT {
                kept.clear();
            }
            kept.insert(id, context);
        }
    }

    /// The span of one attempt at `item`: in the trace the message was queued in, while this
    /// process keeps it (forgotten once the message is delivered or buried), else the root of
    /// a trace of its own.
    fn attempt_span(&self, item: &OutboxItem) -> traces::Step {
        if !self.traces.is_on() {
            return traces::Step::none();
        }
        let attributes = || {
            vec![
                KeyValue::new("flow", item.flow.clone()),
                KeyValue::new("kind", item.kind.clone()),
                KeyValue::new("action", item.action.clone()),
                KeyValue::new("transaction_id", item.transaction_id.clone()),
                KeyValue::new("message_id", item.message_id.clone()),
                KeyValue::new("url.full", item.url.clone()),
                KeyValue::new("attempt", i64::from(item.attempts) + 1),
            ]
        };
        let kept = self
            .trace_of
            .lock()
            .ok()
            .and_then(|kept| kept.get(&item.id).cloned());
        match kept {
            Some(context) => {
                traces::child_of(&context, "delivery.attempt", SpanKind::Client, attributes)
            }
            None => self.traces.root(
                || "delivery.attempt".into(),
                None,
                SpanKind::Client,
                attributes,
            ),
        }
    }

    /// Forgets the trace of a message that will not be attempted again.
    fn settled(&self, id: i64) {
        if let Ok(mut kept) = self.trace_of.lock() {
            kept.remove(&id);
        }
    }

    /// Records `item` durably and wakes the worker. When this returns Ok the message will be
    /// delivered or dead-lettered, even across a restart.
    ///
    /// A message due now, with no sequence to wait in, is recorded as claimed by this process
    /// and handed to the worker in memory, which saves the store a claim per message; if the
    /// process stops first, the claim's lease runs out and a worker claims it again.
    pub async fn submit(&self, mut item: NewOutbox) -> Result<i64, StoreError> {
        let now = self.clock.now_ms();
        let direct = item.sequence.is_none() && item.not_before.is_none_or(|t| t <= now);
        let slot = if direct {
            self.handoff.try_reserve().ok()
        } else {
            None
        };
        let Some(slot) = slot else {
            let id = self.store.enqueue(item).await?;
            self.keep_trace(id);
            self.wake.notify_one();
            return Ok(id);
        };
        let claimed_until = now + self.settings.lease.as_millis() as i64;
        item.claimed_by = Some((self.owner.clone(), claimed_until));
        let handed = OutboxItem {
            id: 0,
            flow: item.flow.clone(),
            kind: item.kind.clone(),
            url: item.url.clone(),
            action: item.action.clone(),
            transaction_id: item.transaction_id.clone(),
            message_id: item.message_id.clone(),
            body: item.body.clone(),
            attempts: 0,
            deadline: item.deadline,
            epoch: Claim::first(&self.owner).epoch,
            claimed_until,
        };
        let id = self.store.enqueue(item).await?;
        self.keep_trace(id);
        self.under_way.fetch_add(1, Ordering::Relaxed);
        slot.send(OutboxItem { id, ..handed });
        Ok(id)
    }

    /// How many messages this process has taken to send and not yet recorded the outcome of.
    pub fn under_way(&self) -> usize {
        self.under_way.load(Ordering::Relaxed)
    }

    /// Sends messages of the kinds `destination` names through it.
    pub fn register(&mut self, destination: Arc<dyn Destination>) {
        self.kinds.register(destination);
    }

    /// Adds a listener of this process that nothing sent may reach (as bound, so a `:0`
    /// address is protected on the port it got).
    pub fn protect(&self, addr: SocketAddr) {
        self.destinations.protect(addr);
    }

    /// Wakes the worker for a message queued straight through the store (in the commit of
    /// other work, as a buyer app's webhook delivery is with the callback it forwards).
    pub fn queued(&self) {
        self.wake.notify_one();
    }

    /// Sends messages until `shutdown` resolves: those handed over by [`Outbox::submit`] at
    /// once, and those due in the store (retries, messages of other processes whose lease ran
    /// out, messages queued in other commits) as they fall due. Up to
    /// `settings.concurrency` attempts run at once, each on its own task.
    pub async fn run(
        self: Arc<Self>,
        flows: Arc<ArcSwap<CompiledSet>>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        let taken = self.handed.lock().map(|mut h| h.take()).unwrap_or(None);
        let Some(mut handed) = taken else {
            tracing::error!("outbox: a worker is already running");
            return;
        };
        if !self.store.shared() {
            match self.store.release_claims(&self.owner).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    messages = n,
                    "outbox: resuming messages an earlier run had taken"
                ),
                Err(e) => tracing::error!(error = %e, "outbox: cannot free earlier claims"),
            }
        }
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        // How often the store is asked is paced by the monotonic timer; when a message is due
        // is the clock's.
        let mut sweep_at = tokio::time::Instant::now();
        // When the next message falls due by the clock (which a test's clock reaches at once).
        let mut due = futures::future::pending().boxed();
        loop {
            if tokio::time::Instant::now() >= sweep_at {
                let next;
                (sweep_at, next) = self.sweep(&flows, &slots).await;
                // A time already reached is left to the short pause `sweep` chose.
                let now = self.clock.now_ms();
                due = match next.filter(|at| *at > now) {
                    Some(at) => self.clock.sleep_until_ms(at),
                    None => futures::future::pending().boxed(),
                };
                let pause = sweep_at.saturating_duration_since(tokio::time::Instant::now());
                let look = now + pause.as_millis() as i64;
                self.next_look
                    .store(next.map_or(look, |at| at.min(look)), Ordering::Relaxed);
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => return,
                Some(item) = handed.recv() => {
                    let Ok(slot) = slots.clone().acquire_owned().await else { return };
                    self.spawn_delivery(&flows, item, slot);
                }
                _ = self.wake.notified() => sweep_at = tokio::time::Instant::now(),
                _ = tokio::time::sleep_until(sweep_at) => {}
                _ = &mut due => sweep_at = tokio::time::Instant::now(),
            }
        }
    }

    /// Claims what is due, as far as free slots allow, and starts its attempts; returns when
    /// to look again, and when by the clock the next message falls due.
    async fn sweep(
        self: &Arc<Self>,
        flows: &Arc<ArcSwap<CompiledSet>>,
        slots: &Arc<Semaphore>,
    ) -> (tokio::time::Instant, Option<i64>) {
        let now = tokio::time::Instant::now();
        let free = slots.available_permits().min(self.settings.batch);
        if free == 0 {
            // every slot is busy: look again shortly, without holding up handed-over messages
            return (now + Duration::from_millis(10), None);
        }
        let claimed = self
            .store
            .claim(
                &self.owner,
                self.clock.now_ms(),
                free,
                self.settings.lease.as_millis() as i64,
            )
            .await;
        let items = match claimed {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, "outbox: cannot claim messages");
                return (now + Duration::from_secs(1), None);
            }
        };
        let full = items.len() == free;
        for item in items {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break; // not reached: only this loop takes slots
            };
            self.under_way.fetch_add(1, Ordering::Relaxed);
            self.spawn_delivery(flows, item, slot);
        }
        if full {
            return (now, None);
        }
        let (pause, due) = match self.store.next_due().await {
            Ok(Some(due)) => (
                Duration::from_millis((due - self.clock.now_ms()).clamp(1, 1000) as u64),
                Some(due),
            ),
            _ => (Duration::from_secs(1), None),
        };
        (now + pause, due)
    }

    fn spawn_delivery(
        self: &Arc<Self>,
        flows: &Arc<ArcSwap<CompiledSet>>,
        item: OutboxItem,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let (this, flows) = (self.clone(), flows.clone());
        // Boxed: an attempt's future (the HTTP exchange within it) is large, and tokio would
        // copy it whole as it spawns and completes the task.
        tokio::spawn(Box::pin(async move {
            this.deliver(&flows, item).await;
            this.under_way.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        }));
    }

    async fn deliver(&self, flows: &ArcSwap<CompiledSet>, item: OutboxItem) {
        let started = std::time::Instant::now();
        let claim = Claim {
            owner: self.owner.clone(),
            epoch: item.epoch,
        };
        let lease = self.settings.lease;
        let renew = |until| self.store.renew_delivery(item.id, &claim, until);
        let mut held_until = item.claimed_until;
        if self.clock.now_ms() >= held_until {
            // It waited past its lease (a busy worker): send only if nobody took it meanwhile.
            held_until = self.clock.now_ms() + lease.as_millis() as i64;
            if !renew(held_until).await.unwrap_or(false) {
                self.claim_lost(&item, "before its attempt");
                return;
            }
        }
        let span = self.attempt_span(&item);
        let outcome = match while_held(
            &*self.clock,
            lease,
            held_until,
            renew,
            span.wrap(self.attempt(flows, &item)),
        )
        .await
        {
            Held::Done(outcome) => outcome,
            Held::Lost => {
                span.fail("claim lost");
                self.claim_lost(&item, "during its attempt");
                return;
            }
        };
        let label = match &outcome {
            Attempt::Delivered => "delivered",
            Attempt::Refused(_) | Attempt::Unsendable(_) => "dead",
            Attempt::Transient(..) => "retry",
        };
        span.attr("outcome", label);
        match &outcome {
            Attempt::Delivered => {}
            Attempt::Refused(why) | Attempt::Unsendable(why) | Attempt::Transient(why, _) => {
                span.fail(why)
            }
        }
        span.end();
        crate::telemetry::delivery_attempted(&item.flow, &item.action, label, started.elapsed());
        let now = self.clock.now_ms();
        let attempt = item.attempts + 1;
        let recorded = match outcome {
            Attempt::Delivered => {
                tracing::info!(flow = %item.flow, action = %item.action, transaction_id = %item.transaction_id, message_id = %item.message_id, url = %item.url, attempt, "delivered");
                self.settled(item.id);
                self.store.delivered(item.id, &claim, now).await
            }
            Attempt::Refused(error) => {
                tracing::error!(flow = %item.flow, action = %item.action, transaction_id = %item.transaction_id, message_id = %item.message_id, url = %item.url, attempt, %error, "refused by the receiver; moved to dead letters");
                self.settled(item.id);
                self.store.bury(item.id, &claim, now, error).await
            }
            Attempt::Unsendable(error) => {
                tracing::error!(flow = %item.flow, action = %item.action, transaction_id = %item.transaction_id, message_id = %item.message_id, url = %item.url, %error, "not sent to this address; moved to dead letters");
                self.settled(item.id);
                self.store.bury(item.id, &claim, now, error).await
            }
            Attempt::Transient(error, asked) => match self.next_attempt(&item, now, attempt, asked)
            {
                Err(why) => {
                    let error = format!("{why}; last error: {error}");
                    tracing::error!(flow = %item.flow, action = %item.action, transaction_id = %item.transaction_id, message_id = %item.message_id, url = %item.url, %error, "moved to dead letters");
                    self.settled(item.id);
                    self.store.bury(item.id, &claim, now, error).await
                }
                Ok(next) => {
                    tracing::warn!(flow = %item.flow, action = %item.action, transaction_id = %item.transaction_id, message_id = %item.message_id, url = %item.url, attempt, %error, retry_in_ms = next - now, "delivery failed; will retry");
                    let recorded = self.store.retry_later(item.id, &claim, next, error).await;
                    if next < self.next_look.load(Ordering::Relaxed) {
                        self.wake.notify_one();
                    }
                    recorded
                }
            },
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => self.claim_lost(&item, "when its outcome was recorded"),
            Err(e) => {
                tracing::error!(error = %e, id = item.id, "outbox: cannot record a delivery outcome (the message will be retried when its lease ends)")
            }
        }
    }

    /// Another worker took the message over (this one's lease ended): this attempt's outcome
    /// is dropped, the other's counts.
    fn claim_lost(&self, item: &OutboxItem, when: &str) {
        self.settled(item.id);
        tracing::warn!(flow = %item.flow, action = %item.action, transaction_id = %item.transaction_id, message_id = %item.message_id, id = item.id, "outbox: the claim on this message was lost {when}; its outcome is dropped");
        crate::telemetry::claim_lost("delivery");
    }

    async fn attempt(&self, flows: &ArcSwap<CompiledSet>, item: &OutboxItem) -> Attempt {
        if let Err(refused) = self.destinations.check(&item.url).await {
            return Attempt::Unsendable(format!("not sent: {refused}"));
        }
        let destination = self.kinds.of(&item.kind);
        let set = flows.load_full();
        let prepared = traces::step_with("delivery.sign", SpanKind::Internal, || {
            vec![KeyValue::new("kind", item.kind.clone())]
        })
        .run(destination.prepare(self, &set, item))
        .await;
        let request = match prepared {
            Ok(request) => request,
            Err(verdict) => return verdict.into(),
        };
        crate::intake::payloads::sent(
            &item.flow,
            &item.action,
            &request.url,
            &request.headers,
            &request.body,
        );
        let mut req = self
            .client
            .post(&request.url)
            .timeout(request.timeout)
            .header("content-type", "application/json")
            .body(request.body);
        for (k, v) in request.headers.into_iter().chain(request.secret_headers) {
            req = req.header(k, v);
        }
        // A receiver that traces joins the trace of the message it answers.
        if let Some(traceparent) = traces::traceparent() {
            req = req.header("traceparent", traceparent);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let answer = kinds::Answer::Unreachable {
                    timed_out: e.is_timeout().then_some(request.timeout),
                    error: crate::backend::root_cause(&e),
                };
                return destination.classify(item, answer).into();
            }
        };
        let status = resp.status().as_u16();
        traces::note("http.response.status_code", i64::from(status));
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        drop(request.turn);
        let answer = kinds::Answer::Http {
            status,
            headers: &headers,
            body: &body,
            now: self.clock.now(),
        };
        destination.classify(item, answer).into()
    }

    /// When to try `item` again after its `attempt`-th failure: after the backoff, and not
    /// before the wait the receiver `asked` for (`Retry-After`). Err says why not at all: that
    /// time is past the message's deadline.
    fn next_attempt(
        &self,
        item: &OutboxItem,
        now: i64,
        attempt: u32,
        asked: Option<Duration>,
    ) -> Result<i64, String> {
        let cap = self.kinds.of(&item.kind).max_backoff(&self.settings);
        let backoff = self.backoff(attempt, cap);
        let wait = asked.map_or(backoff, |a| a.max(backoff));
        let next = now.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
        match item.deadline {
            Some(deadline) if next > deadline => {
                let deadline = jiff::Timestamp::from_millisecond(deadline)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                Err(match asked {
                    Some(a) if a >= backoff => format!(
                        "the receiver asked to be called again in {}s (Retry-After), after the deadline {deadline}; gave up after {attempt} attempts",
                        a.as_secs()
                    ),
                    _ => format!("deadline passed after {attempt} attempts"),
                })
            }
            _ => Ok(next),
        }
    }

    /// Exponential backoff up to `cap`, with ±20% jitter, so retries of many messages do not
    /// bunch up.
    fn backoff(&self, attempt: u32, cap: Duration) -> Duration {
        let base = self.settings.base_backoff.as_millis() as f64;
        let exp = base * 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
        let capped = exp.min(cap.as_millis() as f64);
        let jitter =
            0.8 + 0.4 * (getrandom::u32().unwrap_or(u32::MAX / 2) as f64 / u32::MAX as f64);
        Duration::from_millis((capped * jitter) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backoff_grows_and_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        let outbox = Outbox::new(store, DeliverySettings::default());
        let cap = outbox.settings.max_backoff;
        let b1 = outbox.backoff(1, cap).as_millis();
        let b3 = outbox.backoff(3, cap).as_millis();
        let b30 = outbox.backoff(30, cap).as_millis();
        assert!((200..=300).contains(&b1), "{b1}");
        assert!((800..=1200).contains(&b3), "{b3}");
        assert!((8000..=12000).contains(&b30), "{b30}");
    }

    #[tokio::test]
    async fn oms_updates_back_off_longer_and_retry_after_is_bounded_by_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        let outbox = Outbox::new(store, DeliverySettings::default());
        let now = 1_000_000;
        let item = |kind: &str, deadline: Option<i64>| OutboxItem {
            id: 1,
            flow: "f".into(),
            kind: kind.into(),
            url: "http://127.0.0.1:9/x".into(),
            action: "on_status".into(),
            transaction_id: "t".into(),
            message_id: "m".into(),
            body: bytes::Bytes::new(),
            attempts: 0,
            deadline,
            epoch: 1,
            claimed_until: now,
        };
        // after many failures: a callback waits about 10 s, an OMS update about 5 minutes
        let callback = outbox
            .next_attempt(&item("callback", None), now, 30, None)
            .unwrap()
            - now;
        let oms = outbox
            .next_attempt(&item(crate::sinks::ultra::OUTBOX_KIND, None), now, 30, None)
            .unwrap()
            - now;
        assert!((8_000..=12_000).contains(&callback), "{callback}");
        assert!((240_000..=360_000).contains(&oms), "{oms}");
        // Retry-After: at least as asked, within the deadline; past it, given up with why
        let asked = Some(Duration::from_secs(20));
        let soon = outbox.next_attempt(&item("callback", Some(now + 60_000)), now, 1, asked);
        assert_eq!(soon, Ok(now + 20_000));
        let why = outbox
            .next_attempt(&item("callback", Some(now + 10_000)), now, 1, asked)
            .unwrap_err();
        assert!(why.contains("20s (Retry-After)"), "{why}");
    }
}
