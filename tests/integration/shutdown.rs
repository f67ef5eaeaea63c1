//! How a running adapter stops: a service manager (systemd, Docker, Kubernetes) sends SIGTERM
//! and expects an orderly exit, not a process killed by the signal.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::repo;
use crate::durability::free_port;

/// Regression: only SIGINT stopped `serve` in order; SIGTERM, what service managers send,
/// killed it outright (no answers under way finished, no last spans exported).
#[tokio::test]
async fn sigterm_stops_serve_in_order_with_exit_status_0() {
    let (listen, admin) = (free_port().await, free_port().await);
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_beckn-adapter"))
        .args([
            "serve",
            "bench/flows",
            "--mappings",
            "mappings",
            "--schemas",
            "schemas",
            "--store",
            &format!("sqlite://{}", dir.path().join("store.db").display()),
            "--admin",
            &admin.to_string(),
            "--no-watch",
        ])
        .current_dir(repo())
        .env("BENCH_ACK_LISTEN", listen.to_string())
        .env("BECKN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("adapter starts");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("http://{admin}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "adapter did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -TERM");
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("adapter status") {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("SIGTERM did not stop the adapter within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "stopped by SIGTERM without an orderly exit: {status:?}"
    );
}
