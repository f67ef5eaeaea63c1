//! The console in a real headless Chromium (see `webdriver.rs`; skipped where Chromium or
//! chromedriver is absent): the demo journey's transaction with its messages in order, a dead
//! letter sent again from the page and delivered, the playground following an edit of a
//! fixture to the template line, a reload with a broken template showing its diagnostic.
//! Screenshots of each page go to `target/console-screenshots/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use beckn_adapter::compile::Layout;
use beckn_adapter::demo::journey::Journey;
use beckn_adapter::demo::timeline::Timeline;
use beckn_adapter::demo::{NetworkOptions, SampleNetwork};
use serde_json::{Value, json};

use crate::common::{Inbox, Network, bind, copy_dir, record, repo, temp_tree};
use crate::console::poll;
use crate::webdriver::Browser;

/// The texts of the elements matching `css`, in page order.
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let v = browser
        .script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);",
            json!([css]),
        )
        .await;
    serde_json::from_value(v).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_the_demo_journey_with_its_messages_in_order() {
    let Some(browser) = Browser::start("console_shows_the_demo_journey").await else {
        return;
    };
    let net = SampleNetwork::start(
        &Layout::from_flows_dir(repo().join("flows")),
        NetworkOptions::default(),
    )
    .await
    .expect("the sample network starts");
    let mut out: Vec<u8> = Vec::new();
    let timeline = Timeline::new(&mut out, HashMap::new());
    Journey::new(&net, timeline)
        .play()
        .await
        .expect("the journey plays");

    // overview: the flows with role and address, the counters
    browser
        .goto(&format!("{}/console#overview", net.admin_url))
        .await;
    browser.wait_text("#flows", "greenfield-lab").await;
    browser.wait_text("#flows", "bap").await;
    browser.wait_text("#counters", "requests ack").await;
    browser.screenshot("overview").await;

    // the lab's transaction of the first order, found by its order id
    browser
        .goto(&format!("{}/console#transactions", net.admin_url))
        .await;
    browser.wait_for("#filters").await;
    let row = "#transactions tr[data-flow=greenfield-lab]";
    // The journey's last callback may still be on its way when the list is first shown (the
    // row then says `pending`): the list is asked again until the transaction is done.
    poll("the first order's transaction listed as done", || async {
        browser
            .script(
                "const f = document.getElementById('filters');
                 f.elements.order_id.value = 'GFSL-000001';
                 f.requestSubmit();",
                json!([]),
            )
            .await;
        let listed = browser.wait_text(row, "GFSL-000001").await;
        browser.text(&listed).await.contains("done").then_some(())
    })
    .await;
    browser.screenshot("transactions").await;
    browser.click_on(row).await;
    browser.wait_for("#timeline .entry").await;
    let wanted = [
        "select",
        "on_select",
        "init",
        "on_init",
        "confirm",
        "on_confirm",
    ];
    let actions = poll("the journey's messages in the timeline", || async {
        let actions = texts(&browser, "#timeline .entry code.action").await;
        let mut rest = wanted.iter();
        let mut next = rest.next();
        for a in &actions {
            if next == Some(&a.as_str()) {
                next = rest.next();
            }
        }
        next.is_none().then_some(actions)
    })
    .await;
    assert!(actions.iter().any(|a| a == "on_status"), "{actions:?}");
    // every callback was delivered, every request ACKed
    let acks = texts(&browser, "#timeline .entry.received .badge").await;
    assert!(
        !acks.is_empty() && acks.iter().all(|a| a.starts_with("ACK")),
        "{acks:?}"
    );
    browser.wait_text("#timeline .delivery", "delivered").await;
    // each request's backend calls, with their status and duration
    browser
        .wait_text("#timeline table.calls", "POST /quotes")
        .await;
    let shot = browser.screenshot("timeline").await;
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_retries_a_dead_letter_runs_the_playground_and_shows_a_broken_reload() {
    let Some(browser) = Browser::start("console_retries_a_dead_letter").await else {
        return;
    };
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    copy_dir(
        &repo().join("flows/tests"),
        &tree.path().join("flows/tests"),
    );
    // the buyer app's registered address: down (503) until it comes back. The port stays
    // bound throughout: released, it could be taken by another test's server meanwhile.
    let (listener, down_addr) = bind().await;
    let down_url = format!("http://{down_addr}");
    let up = Arc::new(AtomicBool::new(false));
    let inbox = Arc::new(Inbox::default());
    let receiver = {
        let up = up.clone();
        move |state: State<Arc<Inbox>>,
              action: UrlPath<String>,
              headers: HeaderMap,
              body: axum::body::Bytes| {
            let up = up.clone();
            async move {
                if !up.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                record(state, action, headers, body).await.into_response()
            }
        }
    };
    let router = Router::new()
        .route("/{action}", post(receiver))
        .with_state(inbox.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let net = Network::start_app(
        &tree.path().join("flows"),
        None,
        HashMap::from([("FARMER_APP_URL".to_string(), down_url.clone())]),
        Vec::new(),
        |_| {},
    )
    .await;
    let admin = format!("http://{}", net.admin_addr);

    // a search whose answer cannot be delivered before its ttl ends: a dead letter
    let txn = uuid::Uuid::new_v4().to_string();
    let mut body = net.request(
        "search",
        &txn,
        json!({"intent": {"fulfillment": {"type": "home",
        "stops": [{"location": {"area_code": "110081"}}]}}}),
    );
    body["context"]["bap_uri"] = json!(down_url);
    body["context"]["ttl"] = json!("PT1S");
    let (status, ack) = net
        .post_raw(
            "search",
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    let store = net.services.outbox.store.clone();
    let dead = poll("the callback buried as a dead letter", || {
        let store = store.clone();
        let txn = txn.clone();
        async move {
            let dead = store.dead_letters(10).await.ok()?;
            dead.into_iter().find(|d| d.transaction_id == txn)
        }
    })
    .await;

    // the receiver comes back; the dead letter is sent again from the page
    up.store(true, Ordering::SeqCst);
    browser.goto(&format!("{admin}/console#outbox")).await;
    browser.wait_text("#dead", &txn).await;
    browser.screenshot("outbox").await;
    browser.click_on(&format!("#retry-{}", dead.id)).await;
    browser
        .click_on(&format!("#confirm-retry-{}", dead.id))
        .await;
    let answer: Value = inbox
        .wait(
            "on_search",
            body["context"]["message_id"].as_str().unwrap(),
            Duration::from_secs(15),
        )
        .await;
    assert_eq!(answer["context"]["transaction_id"], txn.as_str());
    // the page follows: nothing dead any more
    browser.wait_text("main p", "0 dead").await;

    // the playground: a test file opened, its fixture's price changed, the new price shown
    // with the template line that wrote it
    browser.goto(&format!("{admin}/console#playground")).await;
    browser
        .wait_for("#play-file option[value='greenfield-lab.select.yaml']")
        .await;
    browser
        .script(
            "document.getElementById('play-file').value = 'greenfield-lab.select.yaml';",
            json!([]),
        )
        .await;
    browser.click_on("#play-open").await;
    let price = "#play-written tr[data-path='message.order.quote.price.value']";
    browser.wait_text(price, "647.82").await;
    browser
        .script(
            "const t = document.getElementById('play-fixtures');
             const f = JSON.parse(t.value);
             f.quote.body.total_paise = 70000;
             t.value = JSON.stringify(f, null, 2);
             t.dispatchEvent(new Event('input'));",
            json!([]),
        )
        .await;
    let row = browser.wait_text(price, "700.00").await;
    let shown = browser.text(&row).await;
    // the line of the template (here a macro of the reply's) that wrote the price
    assert!(shown.contains("mappings/soil/_common.j2:"), "{shown}");
    browser.screenshot("playground").await;

    // a reload with a broken template: refused, its diagnostic at file:line
    let broken = tree.path().join("mappings/soil/on_track.j2");
    std::fs::write(&broken, "{\n  \"tracking\": {\n    {% if %}\n  }\n}\n").unwrap();
    browser.goto(&format!("{admin}/console#overview")).await;
    browser.click_on("#reload-button").await;
    browser.wait_text("#reload-outcome", "rejected").await;
    let diagnostic = browser
        .wait_text("#reload .diagnostic", "on_track.j2:3")
        .await;
    let text = browser.text(&diagnostic).await;
    assert!(text.contains("mappings/soil/on_track.j2:3"), "{text}");
    browser.screenshot("reload-rejected").await;
    browser.quit().await;
}
