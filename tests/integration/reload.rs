//! Hot reload under load: a changed mapping is taken without a failed request; a broken one is
//! rejected whole while the previous flows keep answering; fixing it is taken again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use beckn_adapter::reload::Reloader;
use serde_json::json;

use crate::common::{Network, temp_tree};

const TEMPLATE: &str = "mappings/soil/on_search.j2";
const ORIGINAL: &str = "Soil and water testing laboratory, ";

fn edit(root: &Path, from: &str, to: &str) {
    let path = root.join(TEMPLATE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in {TEMPLATE}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The network on the flows under `root`, its adapter reloading on file changes (100 ms after
/// the last).
async fn watched(root: &Path) -> Network {
    Network::start_app(
        &root.join("flows"),
        None,
        HashMap::new(),
        Vec::new(),
        |settings| settings.watch = Some(Duration::from_millis(100)),
    )
    .await
}

async fn short_desc(net: &Network) -> String {
    let on_search = net
        .call("search", &uuid::Uuid::new_v4().to_string(), json!({}))
        .await;
    on_search["message"]["catalog"]["providers"][0]["descriptor"]["short_desc"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn reloads_under_load_reject_broken_sets_and_recover() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let root = tree.path().to_path_buf();
    let net = Arc::new(watched(&root).await);
    let reloader = net.reloader.clone();

    // Steady load: signed searches, one after another, each must be ACKed and answered.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (net, stop, sent, failed) = (net.clone(), stop.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) && sent.load(Ordering::SeqCst) < 5_000 {
                let body = net.request("search", &uuid::Uuid::new_v4().to_string(), json!({}));
                let id = body["context"]["message_id"].as_str().unwrap().to_string();
                let (status, _) = net
                    .post_raw(
                        "search",
                        "application/json",
                        serde_json::to_vec(&body).unwrap(),
                    )
                    .await;
                sent.fetch_add(1, Ordering::SeqCst);
                if status != 200 {
                    failed.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let on_search = net
                    .bap
                    .wait("on_search", &id, Duration::from_secs(10))
                    .await;
                if on_search.get("error").is_some() {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    until("load to start", || sent.load(Ordering::SeqCst) > 20).await;
    assert_eq!(short_desc(&net).await, format!("{ORIGINAL}New Delhi"));

    // 1. A change is taken.
    let first = net.flows.load().hash.clone();
    edit(&root, ORIGINAL, "Accredited soil testing laboratory, ");
    until("the change to be taken", || net.flows.load().hash != first).await;
    assert_eq!(
        short_desc(&net).await,
        "Accredited soil testing laboratory, New Delhi"
    );

    // 2. A broken mapping is rejected whole; the previous set keeps answering.
    let taken = net.flows.load().hash.clone();
    edit(
        &root,
        "{%- for p in found.packages %}",
        "{%- for p in found.packages %}{{ oops(",
    );
    until("the broken set to be rejected", || {
        reloader.last_rejected().is_some()
    })
    .await;
    let rejected = reloader.last_rejected().unwrap();
    assert!(
        rejected
            .diagnostics
            .iter()
            .any(|d| d.file.ends_with(TEMPLATE) && d.line > 0),
        "{rejected:?}"
    );
    assert_eq!(net.flows.load().hash, taken, "the old set still serves");
    assert_eq!(
        short_desc(&net).await,
        "Accredited soil testing laboratory, New Delhi"
    );

    // 3. Fixing it is taken.
    edit(
        &root,
        "{%- for p in found.packages %}{{ oops(",
        "{%- for p in found.packages %}",
    );
    edit(
        &root,
        "Accredited soil testing laboratory, ",
        "Soil testing laboratory, ",
    );
    until("the fix to be taken", || net.flows.load().hash != taken).await;
    assert_eq!(short_desc(&net).await, "Soil testing laboratory, New Delhi");

    let at = sent.load(Ordering::SeqCst);
    until("more load after the last reload", || {
        sent.load(Ordering::SeqCst) > at + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let total = sent.load(Ordering::SeqCst);
    eprintln!(
        "reload under load: {total} requests, {} failed",
        failed.load(Ordering::SeqCst)
    );
    assert!(total > 60);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "no request failed across three reloads"
    );
}

/// Watches `reloader` for `window`, failing at once if a reload runs beyond `expected`.
async fn no_reload_beyond(reloader: &Reloader, expected: u64, window: Duration) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert_eq!(reloader.runs(), expected, "a reload ran without a change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn file_watcher_reloads_once_per_change_and_never_by_itself() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    let root = tree.path().to_path_buf();
    let net = watched(&root).await;
    let reloader = net.reloader.clone();

    // Idle: nothing changes, nothing is reloaded (a reload reads every watched file; those
    // reads must not count as changes).
    no_reload_beyond(&reloader, 0, Duration::from_secs(5)).await;

    // One change, one reload, and none after it.
    let first = net.flows.load().hash.clone();
    edit(&root, ORIGINAL, "Accredited soil testing laboratory, ");
    until("the change to be taken", || reloader.runs() == 1).await;
    assert_ne!(net.flows.load().hash, first);
    no_reload_beyond(&reloader, 1, Duration::from_secs(2)).await;

    // A broken file is rejected once, not again and again while it stays broken.
    edit(
        &root,
        "{%- for p in found.packages %}",
        "{%- for p in found.packages %}{{ oops(",
    );
    until("the broken set to be rejected", || reloader.runs() == 2).await;
    assert!(reloader.last_rejected().is_some());
    no_reload_beyond(&reloader, 2, Duration::from_secs(2)).await;
}
