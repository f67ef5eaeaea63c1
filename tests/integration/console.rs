//! The console's JSON APIs and their protection, over HTTP against the adapter as `serve`
//! builds it: the admin token (bearer, or a session cookie given once), the CSRF token on every
//! POST, payloads masked as the payload logs mask them, mapping test files only under the
//! tests directory.

use std::collections::HashMap;
use std::time::Duration;

use beckn_adapter::app::AdminSettings;
use beckn_adapter::config::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Network, bind, repo, temp_tree};

const TOKEN: &str = "test-only-console-token";

/// A network whose admin listener requires [`TOKEN`], as `serve` requires off loopback.
async fn guarded_network() -> Network {
    let (admin, addr) = bind().await;
    Network::start_app(
        &repo().join("flows"),
        None,
        HashMap::new(),
        vec![admin],
        move |s| {
            s.admin = Some(AdminSettings {
                listen: addr,
                token: Some(Secret::new(TOKEN)),
            })
        },
    )
    .await
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Waits (up to 15 s) until `check` gives a value.
pub async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CSRF token the console page carries for a caller with `headers`.
pub async fn csrf(net: &Network, cookie: Option<&str>) -> String {
    let mut req = net.http.get(format!("http://{}/console", net.admin_addr));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let page = req.send().await.unwrap().text().await.unwrap();
    let start = page
        .find("name=\"console-csrf\" content=\"")
        .expect("csrf meta")
        + 29;
    page[start..start + 48].to_string()
}

#[tokio::test]
async fn console_refused_without_token_off_loopback() {
    let net = guarded_network().await;
    let base = format!("http://{}", net.admin_addr);
    let http = no_redirects();

    // no token: the APIs refuse, the page is the login form
    for path in [
        "/console/api/overview",
        "/console/api/transactions",
        "/console/api/outbox",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let r = http
        .post(format!("{base}/console/api/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let page = http.get(format!("{base}/console")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let text = page.text().await.unwrap();
    assert!(text.contains("action=\"/console/login\"") && !text.contains("console-csrf"));

    // a made-up cookie and a wrong token get nothing
    let r = http
        .get(format!("{base}/console/api/overview"))
        .header("cookie", "beckn_console=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(format!("{base}/console/login"))
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());

    // the token given once: an HttpOnly, SameSite=Strict session cookie, not the token
    let r = http
        .post(format!("{base}/console/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let r = http
        .get(format!("{base}/console/api/overview"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let overview: Value = r.json().await.unwrap();
    assert!(!overview["set"]["flows"].as_array().unwrap().is_empty());

    // `?token=` is exchanged for a cookie and dropped from the address
    let r = http
        .get(format!("{base}/console?token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/console");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );

    // a bearer token works as for /admin
    let r = http
        .get(format!("{base}/console/api/outbox"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn console_post_without_csrf_refused() {
    let net = guarded_network().await;
    let base = format!("http://{}", net.admin_addr);
    let http = no_redirects();
    let login = http
        .post(format!("{base}/console/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let session = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let reload = |csrf: Option<String>| {
        let mut req = http
            .post(format!("{base}/console/api/reload"))
            .header("cookie", &session);
        if let Some(c) = csrf {
            req = req.header("x-console-csrf", c);
        }
        req.send()
    };
    let runs = net.reloader.runs();
    assert_eq!(reload(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        reload(Some("0".repeat(48))).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // another session's token is not this one's
    let other = http
        .post(format!("{base}/console/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let other_cookie = other.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let others = csrf(&net, Some(&other_cookie)).await;
    assert_eq!(
        reload(Some(others)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        net.reloader.runs(),
        runs,
        "no refused POST reloaded anything"
    );
    // retry and drop are POSTs too
    let r = http
        .post(format!("{base}/console/api/outbox/1/retry"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let mine = csrf(&net, Some(&session)).await;
    let r = reload(Some(mine)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(net.reloader.runs(), runs + 1);
}

#[tokio::test]
async fn console_payloads_are_redacted() {
    let net = Network::start().await;
    let txn = uuid::Uuid::new_v4().to_string();
    let order = json!({"order": {
        "provider": {"id": "GFSL"},
        "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
        "fulfillments": [{"type": "home", "stops": [{"type": "start",
            "location": {"address": "Plot 7, Kanjhawala village", "area_code": "110081", "gps": "28.7370,77.0120"},
            "contact": {"phone": "+91-98100-22222", "email": "asha@example.org"},
            "person": {"name": "Asha Devi"}}]}],
        "billing": {"name": "Asha Devi", "phone": "+91-98100-22222", "email": "asha@example.org",
                    "address": "Plot 7, Kanjhawala village"},
        "payments": [{"collected_by": "BPP", "type": "ON-FULFILLMENT"}]
    }});
    let answer = net.call("init", &txn, order).await;
    assert_eq!(answer["context"]["action"], "on_init");

    let url = format!(
        "http://{}/console/api/transactions/greenfield-lab/{txn}",
        net.admin_addr
    );
    let timeline = poll("the callback delivered in the timeline", || {
        let url = url.clone();
        let http = net.http.clone();
        async move {
            let t: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            let delivered =
                t["entries"].as_array().into_iter().flatten().any(|e| {
                    e["action"] == "on_init" && e["deliveries"][0]["state"] == "delivered"
                });
            delivered.then_some(t)
        }
    })
    .await;
    let text = timeline.to_string();
    for personal in [
        "+91-98100-22222",
        "asha@example.org",
        "Asha Devi",
        "Kanjhawala",
        "28.7370",
    ] {
        assert!(!text.contains(personal), "`{personal}` shown in {text}");
    }
    let entries = timeline["entries"].as_array().unwrap();
    let init = entries
        .iter()
        .find(|e| e["action"] == "init")
        .expect("the request");
    assert_eq!(init["ack"], "ACK");
    // the backend calls it made, kept with its answer
    let calls = init["calls"].as_array().expect("the init's backend calls");
    assert!(!calls.is_empty(), "{init}");
    assert!(
        calls
            .iter()
            .all(|c| c["method"].is_string() && c["took_ms"].is_u64()),
        "{calls:?}"
    );
    assert_eq!(init["body"]["message"]["order"]["billing"]["phone"], "***");
    assert!(init["signature"].as_str().unwrap().starts_with("verified"));
    let auth = init["headers"]["authorization"].as_str().unwrap();
    assert!(auth.contains("(signature redacted)"), "{auth}");
    // the request comes before its callback
    let pos = |a: &str| entries.iter().position(|e| e["action"] == a).unwrap();
    assert!(pos("init") < pos("on_init"));

    // listed, newest first, and found by subscriber and action
    let list: Value = net
        .http
        .get(format!(
            "http://{}/console/api/transactions?subscriber=farmer-app.example&action=init",
            net.admin_addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let found = &list["transactions"][0];
    assert_eq!(found["transaction_id"], txn.as_str());
    assert_eq!(found["outcome"], "done");
    assert_eq!(found["last_action"], "on_init");
    let none: Value = net
        .http
        .get(format!(
            "http://{}/console/api/transactions?transaction_id={txn}&action=confirm",
            net.admin_addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["transactions"], json!([]));
}

#[tokio::test]
async fn playground_paths_outside_the_tests_directory_are_refused_on_open_and_save() {
    let tree = temp_tree(&["greenfield-lab.yaml"]);
    crate::common::copy_dir(
        &repo().join("flows/tests"),
        &tree.path().join("flows/tests"),
    );
    let net = Network::start_tree(&tree.path().join("flows"), None).await;
    let base = format!("http://{}", net.admin_addr);
    let token = csrf(&net, None).await;
    for path in [
        "../greenfield-lab.yaml",
        "/etc/passwd",
        "data/../../greenfield-lab.yaml",
    ] {
        let r = net
            .http
            .get(format!("{base}/console/api/playground/open"))
            .query(&[("path", path)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "open {path}");
    }
    let case = |path: &str| {
        json!({"path": path, "flow": "greenfield-lab", "action": "search",
               "request": {"context": {}, "message": {"intent": {}}}})
    };
    for path in [
        "../escaped.yaml",
        "/tmp/escaped.yaml",
        "data/../../escaped.yaml",
        "x.sh",
    ] {
        let r = net
            .http
            .post(format!("{base}/console/api/playground/save"))
            .header("x-console-csrf", &token)
            .json(&case(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "save {path}");
    }
    assert!(!tree.path().join("flows/escaped.yaml").exists());
    assert!(!tree.path().join("escaped.yaml").exists());

    // inside: opened with its request and fixture files folded in, and saved as a test that
    // `test` runs
    let opened: Value = net
        .http
        .get(format!("{base}/console/api/playground/open"))
        .query(&[("path", "greenfield-lab.select.yaml")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(opened["flow"], "greenfield-lab");
    assert!(
        opened["request"]["message"]["order"].is_object(),
        "{opened}"
    );
    assert!(opened["fixtures"]["quote"]["body"]["total_paise"].is_number());
    let mut save = opened.clone();
    save["path"] = json!("from-console.yaml");
    let r = net
        .http
        .post(format!("{base}/console/api/playground/save"))
        .header("x-console-csrf", &token)
        .json(&save)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let saved = tree.path().join("flows/tests/from-console.yaml");
    let layout = beckn_adapter::compile::Layout::from_flows_dir(tree.path().join("flows"));
    let set = net.flows.load_full();
    let result = beckn_adapter::mapping_test::run_file(&layout, &set, &saved).await;
    assert!(
        result.problems.is_empty(),
        "the saved test fails: {} problem(s)",
        result.problems.len()
    );
}

#[tokio::test]
async fn playground_renders_as_render_does_with_the_line_of_each_value() {
    let net = Network::start().await;
    let base = format!("http://{}", net.admin_addr);
    let token = csrf(&net, None).await;
    let opened: Value = net
        .http
        .get(format!("{base}/console/api/playground/open"))
        .query(&[("path", "greenfield-lab.select.yaml")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut case = opened.clone();
    case["fixtures"]["quote"]["body"]["total_paise"] = json!(70000);
    let r: Value = net
        .http
        .post(format!("{base}/console/api/playground/render"))
        .header("x-console-csrf", &token)
        .json(&case)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["callback"]["message"]["order"]["quote"]["price"]["value"], "700.00",
        "{r}"
    );
    let written = r["written"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["path"] == "message.order.quote.price.value")
        .expect("the price's origin");
    let line = written["line"].as_str().unwrap();
    assert!(line.contains(".j2:"), "{line}");
    let quote = r["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "quote");
    assert_eq!(quote.expect("the quote call")["status"], 200, "{r}");

    // a case that cannot run says why
    let r = net
        .http
        .post(format!("{base}/console/api/playground/render"))
        .header("x-console-csrf", &token)
        .json(&json!({"flow": "greenfield-lab", "action": "dance", "request": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let why: Value = r.json().await.unwrap();
    assert!(why["error"].as_str().unwrap().contains("dance"), "{why}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL (BECKN_TEST_POSTGRES_URL); run with --ignored"]
async fn console_timeline_shows_messages_two_processes_handled_on_one_postgres() {
    let db = crate::postgres::TestDb::create().await;
    let flows = repo().join("flows");
    let start = |url: String| {
        Network::start_app(&flows, None, HashMap::new(), Vec::new(), move |s| {
            s.store_url = url
        })
    };
    let a = start(db.url.clone()).await;
    let b = start(db.url.clone()).await;
    let txn = uuid::Uuid::new_v4().to_string();
    a.call(
        "search",
        &txn,
        json!({"intent": {"fulfillment": {"type": "home",
            "stops": [{"location": {"area_code": "110081"}}]}}}),
    )
    .await;
    b.call(
        "select",
        &txn,
        json!({"order": {"provider": {"id": "GFSL"},
            "items": [{"id": "soil-npk-package", "quantity": {"selected": {"count": 1}}}],
            "fulfillments": [{"type": "home", "stops": [{"type": "start",
                "location": {"area_code": "110081"}}]}]}}),
    )
    .await;
    // either process's console tells the whole story, in order
    for net in [&a, &b] {
        let url = format!(
            "http://{}/console/api/transactions/greenfield-lab/{txn}",
            net.admin_addr
        );
        let actions = poll("both processes' messages in one timeline", || {
            let (http, url) = (net.http.clone(), url.clone());
            async move {
                let t: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                let entries = t["entries"].as_array()?.clone();
                let delivered = entries
                    .iter()
                    .filter(|e| e["deliveries"][0]["state"] == "delivered")
                    .count();
                (delivered == 2).then(|| {
                    entries
                        .iter()
                        .map(|e| e["action"].as_str().unwrap_or_default().to_string())
                        .collect::<Vec<_>>()
                })
            }
        })
        .await;
        assert_eq!(actions, ["search", "on_search", "select", "on_select"]);
    }
}
