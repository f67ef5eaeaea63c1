//! Admission at capacity: a request beyond `max_in_flight` waits briefly for a running one to
//! finish before it is refused, so a burst on a cold process is slowed down, not turned away.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use tokio::sync::watch;

use crate::common::{Network, bind, temp_tree};

/// An ERP that holds every call until it is opened, then answers 400 (the flow answers with
/// an error: what matters here is how long the request runs).
struct Gate {
    calls: AtomicUsize,
    open: watch::Sender<bool>,
}

async fn gated(State(gate): State<Arc<Gate>>) -> StatusCode {
    gate.calls.fetch_add(1, Ordering::SeqCst);
    let mut open = gate.open.subscribe();
    let _ = open.wait_for(|o| *o).await;
    StatusCode::BAD_REQUEST
}

/// Regression: from a cold start, a burst filled `max_in_flight` while the first flows ran and
/// every request beyond it was refused at once with 503 ("at capacity"); it now waits for a
/// slot, and is ACKed as soon as one frees.
#[tokio::test]
async fn a_request_beyond_max_in_flight_waits_for_a_slot_instead_of_a_refusal() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let path = tree.path().join("flows/greenfield-lab.yaml");
    let flow = std::fs::read_to_string(&path).expect("flow file");
    std::fs::write(&path, format!("{flow}\nlimits:\n  max_in_flight: 1\n")).expect("flow file");
    let gate = Arc::new(Gate {
        calls: AtomicUsize::new(0),
        open: watch::channel(false).0,
    });
    let (listener, addr) = bind().await;
    let router = Router::new().fallback(gated).with_state(gate.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let net = Network::start_tree(
        &tree.path().join("flows"),
        Some(format!("http://{addr}/api/v1/labs/GFSL")),
    )
    .await;
    let search = |net: &Network| {
        let body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
        serde_json::to_vec(&body).unwrap()
    };

    let (status, ack) = net
        .post_raw("search", "application/json", search(&net))
        .await;
    assert_eq!(status, 200, "{ack}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.calls.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first search never called the ERP"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The only slot is held by the first search, stuck at its ERP call.
    let second = net.post_raw("search", "application/json", search(&net));
    tokio::pin!(second);
    let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
    assert!(
        early.is_err(),
        "answered while the slot was held: {early:?}"
    );
    gate.open.send_replace(true);
    let (status, ack) = second.await;
    assert_eq!(status, 200, "the second search was refused: {ack}");
    assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
}

/// The value of an unlabelled series in the Prometheus text, 0 when it is not there.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Requests arriving together share the work that can be shared: their signatures are
/// verified in ed25519 batches and their records made durable by group commits, and the
/// metrics say how many went together (`adapter_signature_batch_size`,
/// `adapter_store_commit_size`) so an operator can see it under real load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_together_share_signature_batches_and_commits_on_the_metrics() {
    let net = Network::start().await;
    let metrics = || async {
        let url = format!("http://{}/metrics", net.admin_addr);
        net.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = metrics().await;
    let n = 40;
    let sends = (0..n).map(|_| {
        let body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
        net.post_raw(
            "search",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
    });
    for (status, ack) in futures::future::join_all(sends).await {
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["message"]["ack"]["status"], "ACK", "{ack}");
    }
    let after = metrics().await;
    let grew = |series: &str| sample(&after, series) - sample(&before, series);
    // The registry is the process's: other tests running alongside add to it, never take away.
    assert!(
        grew("adapter_signature_batch_size_sum") >= f64::from(n),
        "every signature was checked, in a batch or alone:\n{after}"
    );
    assert!(grew("adapter_signature_batch_size_count") >= 1.0, "{after}");
    assert!(
        grew("adapter_store_commit_size_sum") >= f64::from(n),
        "every accept was committed:\n{after}"
    );
    assert!(grew("adapter_store_commit_size_count") >= 1.0, "{after}");
}
