//! Telemetry next to the event: one function per event records its metric (Prometheus, via
//! prometheus-client) so that what is counted and what is logged cannot drift apart.
//!
//! Metric names follow `adapter_<noun>_<unit>`; labels are `flow`, `action`, `outcome` and the
//! like. The registry is process-wide: a process is one adapter.

pub mod log_format;
pub mod recent;
pub mod traces;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub flow: String,
    pub role: String,
    pub action: String,
    /// `ack` or `nack`.
    pub outcome: String,
    /// The Beckn error code of a NACK, empty for an ACK.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowAction {
    pub flow: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub flow: String,
    pub backend: String,
    /// `ok`, or the failure kind (`timeout`, `unreachable`, `http_5xx`...).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub flow: String,
    pub action: String,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkCallLabels {
    /// The order sink (`ultra`).
    pub sink: String,
    pub connection: String,
    /// What was called (Ultra: `oms`, `auth`, `resource` or `ping`).
    pub call: String,
    /// `accepted`, `repeat`, `retry`, `refused` or `unreachable`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkOrderLabels {
    /// The order sink (`ultra`).
    pub sink: String,
    pub flow: String,
    /// `queued`, `repeat`, `out_of_order`, `invalid`, `mapping_failed`, `skipped`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub flow: String,
    /// `webhook`, `poll` or `poll_orders`.
    pub source: String,
    /// `accepted`, `duplicate`, `ignored`, `refused`, `unauthorized`, `unavailable`...
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowOutcome {
    pub flow: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabel {
    pub flow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkLabel {
    /// `request` (an accepted request's flow) or `delivery` (an outbox attempt).
    pub work: String,
}

/// Every metric of the adapter.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    ack_seconds: Family<FlowAction, Histogram>,
    backend_calls: Family<BackendLabels, Counter>,
    backend_seconds: Family<BackendLabels, Histogram>,
    deliveries: Family<DeliveryLabels, Counter>,
    delivery_seconds: Family<FlowAction, Histogram>,
    outbox_pending: Gauge,
    outbox_dead: Gauge,
    reloads: Family<OutcomeLabel, Counter>,
    sink_calls: Family<SinkCallLabels, Counter>,
    sink_orders: Family<SinkOrderLabels, Counter>,
    events: Family<EventLabels, Counter>,
    event_polls: Family<FlowOutcome, Counter>,
    order_status_calls: Family<FlowOutcome, Counter>,
    order_state_changes: Family<FlowLabel, Counter>,
    claims_lost: Family<WorkLabel, Counter>,
    expired: Family<FlowAction, Counter>,
    memory_reads: Family<FlowAction, Counter>,
    signature_batch: Histogram,
    store_commit: Histogram,
}

fn latency() -> Histogram {
    // 100 µs to ~1.6 s: the ACK path lives at the low end, backends at the high end.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("adapter");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Beckn requests received, by flow, role, action and outcome (ACK, or NACK with its code)",
            requests.clone(),
        );
        let ack_seconds =
            Family::<FlowAction, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "ack_seconds",
            "Time from receiving a request to answering ACK or NACK",
            ack_seconds.clone(),
        );
        let backend_calls = Family::<BackendLabels, Counter>::default();
        registry.register(
            "backend_calls",
            "Calls to backends (ERPs), by outcome",
            backend_calls.clone(),
        );
        let backend_seconds =
            Family::<BackendLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "backend_call_seconds",
            "Duration of backend calls",
            backend_seconds.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Outbox delivery attempts of callbacks, by outcome (delivered, retry, dead)",
            deliveries.clone(),
        );
        let delivery_seconds =
            Family::<FlowAction, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "delivery_seconds",
            "Duration of one delivery attempt",
            delivery_seconds.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "outbox_pending",
            "Messages waiting in the outbox",
            outbox_pending.clone(),
        );
        let outbox_dead = Gauge::default();
        registry.register(
            "outbox_dead",
            "Dead letters in the outbox",
            outbox_dead.clone(),
        );
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "reloads",
            "Flow reloads, by outcome: applied, unchanged (nothing differed) or rejected",
            reloads.clone(),
        );
        let sink_calls = Family::<SinkCallLabels, Counter>::default();
        registry.register(
            "sink_calls",
            "Calls to order sinks (Flipkart Ultra), by sink, connection, call and result",
            sink_calls.clone(),
        );
        let sink_orders = Family::<SinkOrderLabels, Counter>::default();
        registry.register(
            "sink_order_updates",
            "Order updates for order sinks built from order events, by sink, flow and outcome",
            sink_orders.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Order events from backends, by flow, source (webhook, poll, poll_orders) and outcome",
            events.clone(),
        );
        let event_polls = Family::<FlowOutcome, Counter>::default();
        registry.register(
            "event_polls",
            "Polls of a backend for order events, by flow and outcome (ok, failed, standby: another process polls)",
            event_polls.clone(),
        );
        let order_status_calls = Family::<FlowOutcome, Counter>::default();
        registry.register(
            "order_status_calls",
            "Open orders asked for their state (events.poll_orders), by flow and outcome (baseline: first state seen, unchanged, changed, no_state: no state in the answer, failed)",
            order_status_calls.clone(),
        );
        let order_state_changes = Family::<FlowLabel, Counter>::default();
        registry.register(
            "order_state_changes",
            "Changed order states the order poller recorded as events, by flow",
            order_state_changes.clone(),
        );
        let claims_lost = Family::<WorkLabel, Counter>::default();
        registry.register(
            "claims_lost",
            "Work whose claim another process took over (this one stood still past its lease): its result was dropped",
            claims_lost.clone(),
        );
        let expired = Family::<FlowAction, Counter>::default();
        registry.register(
            "requests_expired",
            "Requests taken over after their ttl: not run, answered with an error or recorded as expired",
            expired.clone(),
        );
        let memory_reads = Family::<FlowAction, Counter>::default();
        registry.register(
            "transaction_memory_reads",
            "Reads of a transaction's memory before an action or event mapping that uses `transaction`",
            memory_reads.clone(),
        );
        // Sizes, not times: 1, 2, 4 ... 64 signatures (the batch's bound).
        let signature_batch = Histogram::new(exponential_buckets(1.0, 2.0, 7));
        registry.register(
            "signature_batch_size",
            "Request signatures verified together in one ed25519 batch (1: checked alone)",
            signature_batch.clone(),
        );
        // 1, 2, 4 ... 1,024 operations.
        let store_commit = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "store_commit_size",
            "Store writes made durable by one commit of the SQLite writer (group commit)",
            store_commit.clone(),
        );
        Metrics {
            signature_batch,
            store_commit,
            memory_reads,
            claims_lost,
            expired,
            registry,
            sink_calls,
            sink_orders,
            requests,
            ack_seconds,
            backend_calls,
            backend_seconds,
            deliveries,
            delivery_seconds,
            outbox_pending,
            outbox_dead,
            reloads,
            events,
            event_polls,
            order_status_calls,
            order_state_changes,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// A request was answered at once: ACK (`code` None) or NACK with its code. `action` is a
/// label from a fixed set (a Beckn action, or `other` for a path no action names), never text
/// a caller chose: invented paths must not grow the number of series, nor the memory.
pub fn request_answered(
    flow: &str,
    role: &str,
    action: &'static str,
    code: Option<&str>,
    took: Duration,
) {
    let m = metrics();
    let Some(code) = code else {
        recent::RECENT.add_at(recent::this_minute(), |h| {
            recent::bump(&mut h.requests, "ack")
        });
        ACKED.record(flow, [role, action], took, || {
            (
                m.requests
                    .get_or_create(&RequestLabels {
                        flow: flow.into(),
                        role: role.into(),
                        action: action.into(),
                        outcome: "ack".into(),
                        code: String::new(),
                    })
                    .clone(),
                m.ack_seconds
                    .get_or_create(&FlowAction {
                        flow: flow.into(),
                        action: action.into(),
                    })
                    .clone(),
            )
        });
        return;
    };
    recent::RECENT.add_at(recent::this_minute(), |h| {
        recent::bump(&mut h.requests, &format!("nack {code}"))
    });
    m.requests
        .get_or_create(&RequestLabels {
            flow: flow.into(),
            role: role.into(),
            action: action.into(),
            outcome: "nack".into(),
            code: code.into(),
        })
        .inc();
    m.ack_seconds
        .get_or_create(&FlowAction {
            flow: flow.into(),
            action: action.into(),
        })
        .observe(took.as_secs_f64());
}

/// `n` request signatures were verified as one batch.
pub fn signatures_verified_together(n: usize) {
    metrics().signature_batch.observe(n as f64);
}

/// One commit of the SQLite writer made `n` writes durable.
pub fn store_committed(n: usize) {
    metrics().store_commit.observe(n as f64);
}

/// A backend call ended (`outcome` is `ok` or the failure kind).
pub fn backend_called(flow: &str, backend: &str, outcome: &str, took: Duration) {
    let labels = BackendLabels {
        flow: flow.into(),
        backend: backend.into(),
        outcome: outcome.into(),
    };
    let m = metrics();
    m.backend_calls.get_or_create(&labels).inc();
    m.backend_seconds
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
}

/// A delivery attempt ended: `delivered`, `retry` or `dead`.
pub fn delivery_attempted(flow: &str, action: &str, outcome: &str, took: Duration) {
    let m = metrics();
    recent::RECENT.add_at(recent::this_minute(), |h| {
        recent::bump(&mut h.deliveries, outcome)
    });
    ATTEMPTED.record(flow, [action, outcome], took, || {
        (
            m.deliveries
                .get_or_create(&DeliveryLabels {
                    flow: flow.into(),
                    action: action.into(),
                    outcome: outcome.into(),
                })
                .clone(),
            m.delivery_seconds
                .get_or_create(&FlowAction {
                    flow: flow.into(),
                    action: action.into(),
                })
                .clone(),
        )
    });
}

/// ACKed requests' counter and latency histogram by flow, role and action.
static ACKED: Handles<2> = Handles::new();
/// Delivery attempts' counter and duration histogram by flow, action and outcome.
static ATTEMPTED: Handles<2> = Handles::new();

/// Metric handles of the label sets seen on every message, found again by the label values
/// themselves: a `Family` lookup wants an owned label set (a `String` per label, dropped
/// again) at every call. The label values come from fixed sets and the flows' names, so the
/// handles kept are as many as the series.
struct Handles<const N: usize> {
    by_flow: std::sync::RwLock<Option<HandlesByFlow<N>>>,
}

type HandlesByFlow<const N: usize> =
    std::collections::HashMap<String, Vec<([String; N], Counter, Histogram)>>;

impl<const N: usize> Handles<N> {
    const fn new() -> Self {
        Handles {
            by_flow: std::sync::RwLock::new(None),
        }
    }

    /// Counts one event of `took` under the handles of `flow` and `labels`, made by `make`
    /// the first time.
    fn record(
        &self,
        flow: &str,
        labels: [&str; N],
        took: Duration,
        make: impl FnOnce() -> (Counter, Histogram),
    ) {
        let same = |kept: &[String; N]| kept.iter().zip(&labels).all(|(k, l)| k == l);
        let count = |c: &Counter, h: &Histogram| {
            c.inc();
            h.observe(took.as_secs_f64());
        };
        if let Ok(by_flow) = self.by_flow.read()
            && let Some((_, c, h)) = by_flow
                .as_ref()
                .and_then(|m| m.get(flow))
                .and_then(|v| v.iter().find(|(kept, ..)| same(kept)))
        {
            count(c, h);
            return;
        }
        let (c, h) = make();
        let mut by_flow = self.by_flow.write().unwrap_or_else(|p| p.into_inner());
        let kept = by_flow
            .get_or_insert_with(Default::default)
            .entry(flow.to_string())
            .or_default();
        if !kept.iter().any(|(k, ..)| same(k)) {
            kept.push((labels.map(str::to_string), c.clone(), h.clone()));
        }
        count(&c, &h);
    }
}

/// The outbox's current size.
pub fn outbox_sampled(pending: u64, dead: u64) {
    let m = metrics();
    m.outbox_pending.set(pending as i64);
    m.outbox_dead.set(dead as i64);
}

/// A call to an order sink ended.
pub fn sink_called(sink: &str, connection: &str, call: &str, result: &str) {
    metrics()
        .sink_calls
        .get_or_create(&SinkCallLabels {
            sink: sink.into(),
            connection: connection.into(),
            call: call.into(),
            result: result.into(),
        })
        .inc();
    if result == "refused" {
        recent::RECENT.add_at(recent::this_minute(), |h| h.sink_refusals += 1);
    }
}

/// An order event was turned into an order sink's update (or not, and why).
pub fn sink_order(sink: &str, flow: &str, outcome: &str) {
    metrics()
        .sink_orders
        .get_or_create(&SinkOrderLabels {
            sink: sink.into(),
            flow: flow.into(),
            outcome: outcome.into(),
        })
        .inc();
}

/// A reload ran: `applied`, `unchanged` (the files compiled to the set already serving) or
/// `rejected`.
pub fn reloaded(outcome: &str) {
    metrics()
        .reloads
        .get_or_create(&OutcomeLabel {
            outcome: outcome.into(),
        })
        .inc();
}

/// An order event came from a backend (`source`: `webhook` or `poll`) and was `outcome`.
pub fn event_received(flow: &str, source: &str, outcome: &str) {
    metrics()
        .events
        .get_or_create(&EventLabels {
            flow: flow.into(),
            source: source.into(),
            outcome: outcome.into(),
        })
        .inc();
}

/// A poll of a backend for order events ended: `ok`, `failed` or `standby`.
pub fn events_polled(flow: &str, outcome: &str) {
    metrics()
        .event_polls
        .get_or_create(&FlowOutcome {
            flow: flow.into(),
            outcome: outcome.into(),
        })
        .inc();
}

/// An open order was asked for its state: `baseline`, `unchanged`, `changed`, `no_state` or
/// `failed`.
pub fn order_status_called(flow: &str, outcome: &str) {
    metrics()
        .order_status_calls
        .get_or_create(&FlowOutcome {
            flow: flow.into(),
            outcome: outcome.into(),
        })
        .inc();
}

/// An order's changed state was recorded as an event.
pub fn order_state_changed(flow: &str) {
    metrics()
        .order_state_changes
        .get_or_create(&FlowLabel { flow: flow.into() })
        .inc();
}

/// A claim was lost to another process (`request` or `delivery`); the result was dropped.
pub fn claim_lost(work: &str) {
    metrics()
        .claims_lost
        .get_or_create(&WorkLabel { work: work.into() })
        .inc();
}

/// A transaction's memory was read from the store for an action (or an event mapping) that
/// reads `transaction`; the others run without the read.
pub fn memory_read(flow: &str, action: &str) {
    metrics()
        .memory_reads
        .get_or_create(&FlowAction {
            flow: flow.into(),
            action: action.into(),
        })
        .inc();
}

/// A request taken over after its ttl was not run.
pub fn request_expired(flow: &str, action: &str) {
    metrics()
        .expired
        .get_or_create(&FlowAction {
            flow: flow.into(),
            action: action.into(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_in_prometheus_text() {
        request_answered("lab", "bpp", "search", None, Duration::from_micros(300));
        request_answered(
            "lab",
            "bpp",
            "search",
            Some("30000"),
            Duration::from_micros(100),
        );
        outbox_sampled(3, 1);
        let text = metrics().render();
        assert!(text.contains("adapter_requests_total{flow=\"lab\",role=\"bpp\",action=\"search\",outcome=\"ack\",code=\"\"}"), "{text}");
        assert!(text.contains("outcome=\"nack\",code=\"30000\""));
        assert!(text.contains("adapter_ack_seconds_bucket"));
        assert!(text.contains("adapter_outbox_pending 3"));
    }
}

/// The figures an overview page heads with, summed over every label but the outcome.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Headline {
    /// Requests answered, by `ack` or `nack <code>`.
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Calls an order sink refused for good (Ultra's refusal codes).
    pub sink_refusals: u64,
    /// Deliveries by outcome (`delivered`, `retry`, `dead`).
    pub deliveries: std::collections::BTreeMap<String, u64>,
}

/// The headline figures of the last [`recent::WINDOW_MINUTES`] minutes, in this process.
pub fn recent_headline() -> Headline {
    recent::RECENT.sum_at(recent::this_minute())
}

/// The headline figures, read from the metrics as they are exposed.
pub fn headline() -> Headline {
    let mut out = Headline::default();
    for line in metrics().render().lines() {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let label = |key: &str| {
            let start = name_labels.find(&format!("{key}=\""))? + key.len() + 2;
            let end = name_labels[start..].find('"')? + start;
            Some(name_labels[start..end].to_string())
        };
        let n = value as u64;
        if name_labels.starts_with("adapter_requests_total{") {
            let key = match (label("outcome"), label("code")) {
                (Some(o), Some(c)) if !c.is_empty() => format!("{o} {c}"),
                (Some(o), _) => o,
                _ => continue,
            };
            *out.requests.entry(key).or_default() += n;
        } else if name_labels.starts_with("adapter_sink_calls_total{")
            && label("result").as_deref() == Some("refused")
        {
            out.sink_refusals += n;
        } else if name_labels.starts_with("adapter_deliveries_total{")
            && let Some(o) = label("outcome")
        {
            *out.deliveries.entry(o).or_default() += n;
        }
    }
    out
}
