//! The listeners themselves, driven over raw TCP: slow clients are answered 408 and closed
//! within the configured time limits while others are served; connections beyond the limit
//! wait; every refusal, even those made before a handler runs, carries a NACK.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beckn_adapter::server::ListenerLimits;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Network, bap_signature, repo};

const LIMITS: ListenerLimits = ListenerLimits {
    header_timeout: Duration::from_secs(1),
    body_timeout: Duration::from_secs(1),
    idle_timeout: Duration::from_secs(2),
    write_timeout: Duration::from_secs(1),
    max_connections: 64,
};

/// The network with every listener of its adapter within `limits`, and the address of its
/// provider flow.
async fn limited(limits: ListenerLimits) -> (Network, SocketAddr) {
    let net = Network::start_app(
        &repo().join("flows"),
        None,
        HashMap::new(),
        Vec::new(),
        |settings| settings.limits = limits,
    )
    .await;
    let gfsl = net.flows.load().flow("greenfield-lab").unwrap().listen;
    (net, gfsl)
}

/// Bytes to send, each chunk after its pause.
type Chunks = Vec<(Duration, Vec<u8>)>;

/// What came back on a connection and when it was closed.
struct Exchange {
    answer: String,
    closed_after: Duration,
}

impl Exchange {
    fn status(&self) -> Option<u16> {
        self.answer.get(9..12)?.parse().ok()
    }

    fn body(&self) -> Value {
        let body = self.answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or(Value::Null)
    }
}

/// Sends `chunks`, each after its pause, and reads until the server closes (at most 15 s).
async fn exchange(addr: SocketAddr, chunks: Chunks) -> Exchange {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for (pause, chunk) in chunks {
            tokio::time::sleep(pause).await;
            if write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // keep the write side open: the client is slow, not gone
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(read_all.is_ok(), "the connection was never closed");
    Exchange {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        closed_after: start.elapsed(),
    }
}

fn now(bytes: &[u8]) -> (Duration, Vec<u8>) {
    (Duration::ZERO, bytes.to_vec())
}

const HEAD: &str = "POST /search HTTP/1.1\r\nhost: lab\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";

#[tokio::test]
async fn slow_clients_are_answered_408_and_closed_while_others_are_served() {
    let (net, addr) = limited(LIMITS).await;
    let slow_body: Chunks = std::iter::once(now(HEAD.as_bytes()))
        .chain((0..30).map(|_| (Duration::from_millis(200), b"x".to_vec())))
        .collect();
    let cases: Vec<(&str, Chunks, Duration)> = vec![
        (
            "a partial request line",
            vec![now(b"POST /sea")],
            LIMITS.header_timeout,
        ),
        (
            "unfinished headers",
            vec![now(b"POST /search HTTP/1.1\r\nhost: lab\r\ncontent-ty")],
            LIMITS.header_timeout,
        ),
        (
            "headers sent a byte at a time",
            HEAD.bytes()
                .map(|b| (Duration::from_millis(100), vec![b]))
                .collect(),
            LIMITS.header_timeout,
        ),
        (
            "headers without the body",
            vec![now(HEAD.as_bytes())],
            LIMITS.body_timeout,
        ),
        ("a body at 5 bytes a second", slow_body, LIMITS.body_timeout),
        (
            "a Content-Length larger than the body",
            vec![now(format!("{HEAD}{{}}").as_bytes())],
            LIMITS.body_timeout,
        ),
    ];
    let slow: Vec<_> = cases
        .into_iter()
        .map(|(what, chunks, limit)| {
            tokio::spawn(async move { (what, limit, exchange(addr, chunks).await) })
        })
        .collect();

    // Meanwhile a well-behaved client is served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body =
        serde_json::to_vec(&net.request("search", &uuid::Uuid::new_v4().to_string(), json!({})))
            .unwrap();
    let resp = net
        .http
        .post(format!("http://{addr}/search"))
        .header("content-type", "application/json")
        .header("authorization", bap_signature(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ack: Value = resp.json().await.unwrap();
    assert_eq!(ack["message"]["ack"]["status"], "ACK");

    for task in slow {
        let (what, limit, got) = task.await.unwrap();
        assert_eq!(got.status(), Some(408), "{what}: {}", got.answer);
        let nack = got.body();
        assert_eq!(
            nack["message"]["ack"]["status"], "NACK",
            "{what}: {}",
            got.answer
        );
        assert_eq!(nack["error"]["code"], "30000", "{what}");
        assert!(
            got.closed_after >= limit && got.closed_after < limit + Duration::from_millis(1500),
            "{what}: closed after {:?}, the limit is {limit:?}",
            got.closed_after
        );
    }

    // A connection that sends nothing, or nothing more after an answer, is closed when idle,
    // without a word.
    let idle = exchange(addr, vec![]).await;
    assert_eq!(idle.answer, "");
    let after = exchange(
        addr,
        vec![now(b"GET /health HTTP/1.1\r\nhost: lab\r\n\r\n")],
    )
    .await;
    assert_eq!(after.status(), Some(200), "{}", after.answer);
    for got in [idle, after] {
        assert!(
            got.closed_after >= LIMITS.idle_timeout
                && got.closed_after < LIMITS.idle_timeout + Duration::from_millis(1500),
            "closed after {:?}",
            got.closed_after
        );
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let (_net, addr) = limited(ListenerLimits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(30),
        ..LIMITS
    })
    .await;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    // The third is queued by the kernel, not served, while both are open.
    let third = tokio::spawn(exchange(
        addr,
        vec![now(
            b"GET /health HTTP/1.1\r\nhost: lab\r\nconnection: close\r\n\r\n",
        )],
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection was served");
    drop(first);
    let got = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert_eq!(got.status(), Some(200), "{}", got.answer);
}

#[tokio::test]
async fn every_refusal_of_a_beckn_listener_carries_a_nack() {
    let (_net, addr) = limited(LIMITS).await;
    let huge = format!(
        "POST /search HTTP/1.1\r\nhost: lab\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let many = format!("POST /search HTTP/1.1\r\nhost: lab\r\n{many}\r\n");
    let cases: Vec<(&str, String, u16)> = vec![
        ("wrong method", "GET /search HTTP/1.1\r\nhost: lab\r\nconnection: close\r\n\r\n".into(), 405),
        ("wrong method with a body", "PUT /search HTTP/1.1\r\nhost: lab\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into(), 405),
        ("a path that is not UTF-8", "POST /%FF%FE HTTP/1.1\r\nhost: lab\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into(), 400),
        ("headers over 64 KiB", huge, 431),
        ("too many headers", many, 431),
        ("not HTTP", "GARBAGE\r\n\r\n".into(), 400),
        ("a header line that is not a header", "POST /search HTTP/1.1\r\nhost lab\r\n\r\n".into(), 400),
    ];
    for (what, request, status) in cases {
        let got = exchange(addr, vec![now(request.as_bytes())]).await;
        assert_eq!(got.status(), Some(status), "{what}: {}", got.answer);
        if status == 405 {
            assert!(
                got.answer.contains("allow: POST\r\n"),
                "{what}: {}",
                got.answer
            );
            assert!(got.answer.contains("take POST"), "{what}: {}", got.answer);
        }
        let nack = got.body();
        assert_eq!(
            nack["message"]["ack"]["status"], "NACK",
            "{what}: {}",
            got.answer
        );
        assert!(nack["error"]["code"].is_string(), "{what}: {}", got.answer);
        assert!(
            !nack["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{what}: {}",
            got.answer
        );
    }
}

/// A client that asks and never reads (here: the metrics, a few kilobytes each, asked many
/// times pipelined, their answers filling every buffer between) cannot hold the connection:
/// once the answers make no progress for `write_timeout`, the connection ends.
#[tokio::test]
async fn reader_that_never_reads_is_cut_off_after_the_write_timeout() {
    let (net, _) = limited(LIMITS).await;
    let addr = net.admin_addr;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let asked = 5_000;
    let request = b"GET /metrics HTTP/1.1\r\nhost: lab\r\n\r\n";
    let requests: Vec<u8> = request.repeat(asked);
    // The writes stop when the server stops reading; they are not waited for.
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&requests).await;
        writer
    });
    // The client reads nothing for longer than the write timeout (the scenario itself).
    tokio::time::sleep(LIMITS.write_timeout * 5).await;
    let started = Instant::now();
    let mut answered = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => {
                tail.extend_from_slice(&buf[..n]);
                answered += tail.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
                let keep = tail.len().saturating_sub(11);
                tail.drain(..keep);
            }
        }
    };
    sending.abort();
    assert!(
        ended,
        "the connection was still open {:?} after reading began, {answered} of {asked} answered",
        started.elapsed()
    );
    assert!(answered < asked, "every answer was written: {answered}");
}
