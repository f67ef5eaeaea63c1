//! A small W3C WebDriver client over reqwest, for the console's browser tests: a headless
//! Chromium driven by chromedriver. The dozen commands the tests use are a few lines each;
//! a client crate would add its own HTTP stack for them.
//!
//! Tests call [`Browser::start`], which answers None (and says "skipped: no chromium") where
//! `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver is stopped when it is dropped.
pub struct Browser {
    http: reqwest::Client,
    driver: String,
    session: String,
    child: Child,
}

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    crate::common::repo().join("target/console-screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or None where they are absent.
    pub async fn start(test: &str) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            eprintln!("{test}: skipped: no chromium ({CHROMIUM} and {CHROMEDRIVER} are needed)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{driver}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1400,1000"]
            }
        }}});
        let mut browser = Browser {
            http,
            driver,
            session: String::new(),
            child,
        };
        let created = browser.command("POST", "/session", caps).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Some(browser)
    }

    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.driver);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req.send().await.expect("chromedriver reachable");
        let v: Value = resp.json().await.expect("a WebDriver answer");
        v["value"].clone()
    }

    async fn session_command(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.command(method, &path, body).await
    }

    pub async fn goto(&self, url: &str) {
        self.session_command("POST", "/url", json!({"url": url}))
            .await;
    }

    /// The elements matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<String> {
        let v = self
            .session_command(
                "POST",
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
            .collect()
    }

    /// Waits (up to 15 s) for an element matching `css` whose text contains `text`.
    pub async fn wait_text(&self, css: &str, text: &str) -> String {
        let started = Instant::now();
        loop {
            for el in self.all(css).await {
                if self.text(&el).await.contains(text) {
                    return el;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no `{css}` with text `{text}` appeared; the page shows:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 15 s) for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> String {
        self.wait_text(css, "").await
    }

    pub async fn text(&self, element: &str) -> String {
        let v = self
            .session_command("GET", &format!("/element/{element}/text"), Value::Null)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    pub async fn body_text(&self) -> String {
        let body = self.all("body").await;
        match body.first() {
            Some(b) => self.text(b).await,
            None => String::new(),
        }
    }

    /// Clicks the first element matching `css` as soon as there is one (found and clicked in
    /// one step, so a page that redraws itself cannot leave a stale element in between).
    pub async fn click_on(&self, css: &str) {
        let started = Instant::now();
        loop {
            let clicked = self
                .script(
                    "const e = document.querySelector(arguments[0]); if (!e) return false; e.click(); return true;",
                    json!([css]),
                )
                .await;
            if clicked == true {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "nothing to click at `{css}`; the page shows:\n{}",
                self.body_text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` in the page with `args`; what it returns.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.session_command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Saves a PNG of the window as `target/console-screenshots/<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self
            .session_command("GET", "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the session (the browser closes), then the driver.
    /// Ends the session and stops the driver. Whatever the driver answers to the session's
    /// end (it may close the connection as the browser goes) is not the test's concern.
    pub async fn quit(mut self) {
        let url = format!("{}/session/{}", self.driver, self.session);
        let _ = self.http.delete(url).send().await;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test ends here without `quit`: end the session over a plain socket (no
        // runtime may be left), which closes the browser, then stop the driver.
        if let Some(addr) = self.driver.strip_prefix("http://")
            && let Ok(mut s) = std::net::TcpStream::connect(addr)
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = std::io::Read::read(&mut s, &mut [0u8; 256]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
