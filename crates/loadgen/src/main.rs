//! Benchmark tools, all on loopback and bounded in time:
//! `run` sends pre-signed, distinct Beckn searches over N keep-alive connections and reports
//! throughput and latency; `sink` is a buyer app that counts (and checks) the callbacks it gets;
//! `ack-server` is a bare axum server that answers every POST with an ACK, the yardstick.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use beckn_adapter::beckn::signing::PrivateKey;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load: signed searches at `url` for `duration` over `connections` connections.
    Run {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 50)]
        connections: usize,
        #[arg(long, default_value = "10")]
        seconds: u64,
        /// Requests pre-signed before the clock starts (the run stops when they are used up).
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
        /// The buyer app's private key (base64).
        #[arg(long, env = "BENCH_BAP_KEY")]
        key: String,
        /// `subscriber_id|unique_key_id`.
        #[arg(long, default_value = "farmer-app.example|farmer-app-key-1")]
        key_id: String,
        #[arg(long, default_value = "farmer-app.example")]
        bap_id: String,
        #[arg(long)]
        bap_uri: String,
        /// Send unsigned bodies (for the bare ACK server).
        #[arg(long)]
        unsigned: bool,
    },
    /// A buyer app that ACKs callbacks and counts them; `GET /count` reports.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Answers every POST with an ACK and nothing else.
    AckServer {
        #[arg(long)]
        listen: SocketAddr,
    },
}

const ACK: &str = r#"{"message":{"ack":{"status":"ACK"}}}"#;

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Run {
            url,
            connections,
            seconds,
            requests,
            key,
            key_id,
            bap_id,
            bap_uri,
            unsigned,
        } => {
            let key = PrivateKey::from_base64(&key).expect("a base64 ed25519 key");
            run(
                url,
                connections,
                Duration::from_secs(seconds),
                requests,
                key,
                key_id,
                bap_id,
                bap_uri,
                unsigned,
            )
            .await
        }
        Command::Sink { listen } => sink(listen).await,
        Command::AckServer { listen } => {
            let app = Router::new().fallback(post(|| async {
                ([("content-type", "application/json")], ACK)
            }));
            let l = tokio::net::TcpListener::bind(listen).await.expect("bind");
            axum::serve(l, app).await.expect("serve");
        }
    }
}

/// A search with its own ids, signed when it is made: the run itself only sends bytes.
fn presign(
    n: usize,
    key: &PrivateKey,
    key_id: &str,
    bap_id: &str,
    bap_uri: &str,
    unsigned: bool,
) -> Vec<(Bytes, String)> {
    let now = jiff::Timestamp::now();
    let created = now.as_second();
    (0..n)
        .map(|_| {
            let body = json!({
                "context": {"domain": "agri.soil", "action": "search", "version": "1.1.0",
                    "bap_id": bap_id, "bap_uri": bap_uri,
                    "transaction_id": uuid::Uuid::new_v4().to_string(),
                    "message_id": uuid::Uuid::new_v4().to_string(),
                    "timestamp": now.to_string(), "ttl": "PT10M",
                    "location": {"country": {"code": "IND"}}},
                "message": {"intent": {"tags": [{"descriptor": {"code": "crop"},
                    "list": [{"descriptor": {"code": "name"}, "value": "wheat"}]}]}}
            });
            let bytes = Bytes::from(serde_json::to_vec(&body).expect("json"));
            let auth = if unsigned {
                String::new()
            } else {
                key.sign(&bytes, key_id, created, created + 600)
            };
            (bytes, auth)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn run(
    url: String,
    connections: usize,
    duration: Duration,
    requests: usize,
    key: PrivateKey,
    key_id: String,
    bap_id: String,
    bap_uri: String,
    unsigned: bool,
) {
    let uri: hyper::Uri = url.parse().expect("a URL");
    let addr = format!(
        "{}:{}",
        uri.host().expect("host"),
        uri.port_u16().unwrap_or(80)
    );
    eprintln!("pre-signing {requests} searches…");
    let bodies = Arc::new(presign(
        requests, &key, &key_id, &bap_id, &bap_uri, unsigned,
    ));
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // when the load began, for measures that end outside this process (callbacks at a sink)
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (bodies, next, errors, addr, uri) = (
            bodies.clone(),
            next.clone(),
            errors.clone(),
            addr.clone(),
            uri.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let stream = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).ok();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((body, auth)) = bodies.get(i) else {
                    break;
                };
                let mut req = Request::post(uri.path())
                    .header("host", addr.as_str())
                    .header("content-type", "application/json");
                if !auth.is_empty() {
                    req = req.header("authorization", auth.as_str());
                }
                let req = req.body(Full::new(body.clone())).expect("request");
                let sent = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes());
                        let acked = status == 200
                            && bytes
                                .as_ref()
                                .is_ok_and(|b| b.windows(5).any(|w| w == b"\"ACK\""));
                        if !acked && errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            // The first refusal says why the rest probably failed too.
                            let body = bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
                            eprintln!("first refusal: HTTP {status}: {}", body.unwrap_or_default());
                        }
                        hist.record(sent.elapsed().as_micros().max(1) as u64).ok();
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            hist
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    for t in tasks {
        if let Ok(h) = t.await {
            all.add(h).ok();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let done = all.len();
    let report = json!({
        "requests": done,
        "errors": errors.load(Ordering::Relaxed),
        "seconds": (elapsed * 100.0).round() / 100.0,
        "rps": (done as f64 / elapsed).round(),
        "p50_ms": all.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": all.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": all.max() as f64 / 1000.0,
        "started_ms": started_ms,
        "connections": connections,
    });
    println!("{report}");
}

async fn sink(listen: SocketAddr) {
    let received = Arc::new(AtomicU64::new(0));
    // callbacks that carry an `error` instead of a result: a run that produced them measured
    // the error path, not the flow
    let failed = Arc::new(AtomicU64::new(0));
    let (r1, r2, f1, f2) = (
        received.clone(),
        received.clone(),
        failed.clone(),
        failed.clone(),
    );
    let app = Router::new()
        .route(
            "/count",
            get(move || {
                let (r, f) = (r2.clone(), f2.clone());
                async move {
                    axum::Json(json!({"received": r.load(Ordering::Relaxed),
                        "errors": f.load(Ordering::Relaxed)}))
                }
            }),
        )
        .fallback(post(move |body: Bytes| {
            let (r, f) = (r1.clone(), f1.clone());
            async move {
                r.fetch_add(1, Ordering::Relaxed);
                let error = serde_json::from_slice::<serde_json::Value>(&body)
                    .map_or(true, |v| v.get("error").is_some());
                if error {
                    f.fetch_add(1, Ordering::Relaxed);
                }
                ([("content-type", "application/json")], ACK)
            }
        }));
    let l = tokio::net::TcpListener::bind(listen).await.expect("bind");
    axum::serve(l, app).await.expect("serve");
}
