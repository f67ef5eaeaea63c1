//! Serving one listener's connections (HTTP/1.1, hyper) within limits: a client must finish
//! a request's headers within `header_timeout` of their first byte, and its body within
//! `body_timeout` of the headers; a connection with no request for `idle_timeout` is closed;
//! an answer the client does not take (its writes make no progress for `write_timeout`, a
//! reader that never reads) ends the connection; at most `max_connections` are open at once
//! (beyond, new ones wait in the kernel's backlog).
//!
//! A client too slow with its headers or body gets `408` with a NACK and the connection is
//! closed; an idle one is closed without a word. Requests hyper refuses itself, before any
//! handler runs (malformed or oversized headers: `400`, `414`, `431`), are answered with a NACK
//! as well, in place of hyper's empty answer.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::beckn::error::{BecknError, ErrorCode};

/// The most a connection buffers of a request's headers; beyond, `431`.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long clients may take and how many may be connected, per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// From the end of a request's headers to the end of its body.
    pub body_timeout: Duration,
    /// A keep-alive connection with no request in progress for this long is closed.
    pub idle_timeout: Duration,
    /// An answer whose writing makes no progress for this long (the client does not read)
    /// ends the connection, so a slow reader cannot hold a connection and its answer forever.
    pub write_timeout: Duration,
    /// Connections open at once on one listener.
    pub max_connections: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            // Longer than the 60 s idle timeout of common load balancers, so that they, not
            // the adapter, close a quiet connection (no request is lost in the race).
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// The NACK body for an answer with `status`: code 30000 for a client's mistake, 31001
/// otherwise.
fn nack_json(status: StatusCode, message: &str) -> String {
    let code = if status.is_server_error() {
        ErrorCode::InternalError
    } else {
        ErrorCode::InvalidRequest
    };
    serde_json::json!({
        "message": {"ack": {"status": "NACK"}},
        "error": BecknError::new(code, message),
    })
    .to_string()
}

/// A Beckn NACK answer with `status`.
pub fn nack_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(nack_json(status, message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The same NACK as raw HTTP/1.1 bytes, closing the connection: for answers written before
/// or instead of hyper's.
fn nack_bytes(status: StatusCode, message: &str) -> Vec<u8> {
    let body = nack_json(status, message);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// Accepts connections on `listener` and serves `router` on them until `stop` turns true,
/// then lets the open ones finish their requests.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Warned once each time the limit is reached, not for every connection that waits.
    let mut at_limit = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => {
                at_limit = false;
                p
            }
            Err(_) => {
                if !at_limit {
                    tracing::warn!(listen = %addr, max_connections = limits.max_connections, "connection limit reached; new connections wait until one closes");
                    at_limit = true;
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stopped(&mut stop) => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to be freed.
                    tracing::warn!(listen = %addr, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(stream, router, limits, stop).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: having them all back means all ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What the connection's reader and its request handling tell each other.
#[derive(Default)]
struct Progress {
    /// Requests whose headers were complete (handed to the router).
    started: AtomicU64,
    /// Requests answered by the router.
    finished: AtomicU64,
    /// When the last request was answered.
    answered_at: Mutex<Option<Instant>>,
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ListenerLimits,
    mut stop: watch::Receiver<bool>,
) {
    let progress = Arc::new(Progress::default());
    let io = TokioIo::new(Guarded::new(stream, progress.clone(), limits));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let router = router.clone();
        let progress = progress.clone();
        async move {
            progress.started.fetch_add(1, Ordering::SeqCst);
            let timed_out = Arc::new(AtomicBool::new(false));
            let deadline = Instant::now() + limits.body_timeout;
            let request = request.map(|body| {
                Body::new(DeadlineBody {
                    inner: body,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                    timed_out: timed_out.clone(),
                })
            });
            let response = match router.oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            let response = if timed_out.load(Ordering::SeqCst) {
                let mut r = nack_response(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "the request body did not arrive within {} s",
                        limits.body_timeout.as_secs_f64()
                    ),
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            } else {
                response
            };
            *progress
                .answered_at
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            progress.finished.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // A request's headers may take up to MAX_HEAD_BYTES, and a connection buffers at most
    // twice that (hyper's default is about 400 KiB): Beckn headers are a few hundred bytes,
    // and every open connection may hold this much.
    builder
        .keep_alive(true)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(2 * MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stopped(&mut stop) => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A request body that fails once its deadline has passed, noting that it did.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(self.deadline.as_mut().poll(cx));
        self.timed_out.store(true, Ordering::SeqCst);
        Poll::Ready(Some(Err("the request body did not arrive in time".into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, keeping the time limits between requests: the headers of a
/// request begun must be complete within `header_timeout` (else `408`, written here, and the
/// connection ends), and a connection with nothing begun ends after `idle_timeout`. While a
/// request is with the router it keeps no time (its body has its own deadline).
struct Guarded {
    stream: TcpStream,
    progress: Arc<Progress>,
    limits: ListenerLimits,
    /// `progress.started` when the current head began to arrive.
    seen_started: u64,
    /// When the first byte of a request head not yet complete arrived.
    head_since: Option<Instant>,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    /// A NACK being written in place of one of hyper's own empty answers.
    replacement: Option<(Vec<u8>, usize)>,
    /// The connection timed out: reads end.
    closed: bool,
    /// While writing makes no progress (the client's window is full): the timer that ends
    /// the connection `write_timeout` after the stall began.
    write_stalled: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(stream: TcpStream, progress: Arc<Progress>, limits: ListenerLimits) -> Self {
        let now = Instant::now();
        Guarded {
            stream,
            progress,
            limits,
            seen_started: 0,
            head_since: None,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            replacement: None,
            closed: false,
            write_stalled: None,
        }
    }

    /// Writes `buf` to the socket, failing once writing has made no progress for
    /// `write_timeout`.
    fn write_within(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                self.write_stalled = None;
                self.last_activity = Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.limits.write_timeout;
                let timer = self
                    .write_stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(timer.as_mut().poll(cx));
                tracing::info!(
                    timeout_s = limit.as_secs_f64(),
                    "the client took no part of an answer in time; connection closed"
                );
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not read the answer in time",
                )))
            }
        }
    }

    /// Notes a request the router took since the last look: its head is complete.
    fn catch_up(&mut self) {
        let started = self.progress.started.load(Ordering::SeqCst);
        if started != self.seen_started {
            self.seen_started = started;
            self.head_since = None;
            self.last_activity = Instant::now();
        }
    }

    fn busy(&self) -> bool {
        self.progress.finished.load(Ordering::SeqCst)
            != self.progress.started.load(Ordering::SeqCst)
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        if me.closed {
            return Poll::Ready(Ok(()));
        }
        me.catch_up();
        let busy = me.busy();
        let before = buf.filled().len();
        match Pin::new(&mut me.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    me.last_activity = Instant::now();
                    if !busy && me.head_since.is_none() {
                        me.head_since = Some(me.last_activity);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if busy => Poll::Pending,
            Poll::Pending => {
                let deadline = match me.head_since {
                    Some(since) => since + me.limits.header_timeout,
                    None => {
                        let answered = *me
                            .progress
                            .answered_at
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        answered.map_or(me.last_activity, |a| a.max(me.last_activity))
                            + me.limits.idle_timeout
                    }
                };
                if me.timer.deadline() != deadline {
                    me.timer.as_mut().reset(deadline);
                }
                if me.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if me.head_since.is_some() {
                    let answer = nack_bytes(
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "the request headers did not arrive within {} s",
                            me.limits.header_timeout.as_secs_f64()
                        ),
                    );
                    // Best effort: a fresh connection's send buffer takes it whole.
                    let _ = me.stream.try_write(&answer);
                    tracing::info!(status = 408, "request headers too slow; connection closed");
                }
                me.closed = true;
                // The end of input: hyper ends the connection.
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Hyper's own answer to a request it refused before any handler ran: a 4xx status line,
/// `content-length: 0` and nothing after the headers.
fn automatic_answer(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    if !status.is_client_error() || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    head.contains("\r\ncontent-length: 0\r\n").then_some(status)
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = &mut *self;
        me.catch_up();
        if me.replacement.is_none()
            && me.head_since.is_some()
            && !me.busy()
            && let Some(status) = automatic_answer(buf)
        {
            let message = match status {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request headers are too large",
                StatusCode::URI_TOO_LONG => "the request URI is too long",
                _ => "the request is not well-formed HTTP/1.1",
            };
            me.replacement = Some((nack_bytes(status, message), 0));
        }
        if let Some((bytes, mut sent)) = me.replacement.take() {
            while sent < bytes.len() {
                match me.write_within(cx, &bytes[sent..]) {
                    Poll::Pending => {
                        me.replacement = Some((bytes, sent));
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => sent += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                }
            }
            me.last_activity = Instant::now();
            return Poll::Ready(Ok(buf.len()));
        }
        me.write_within(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    // Hyper then writes a response head and body as one buffer, which is how its own
    // empty answers are recognised.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_answers_are_recognised() {
        assert_eq!(
            automatic_answer(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
            ),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        assert_eq!(
            automatic_answer(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}"),
            None
        );
        assert_eq!(
            automatic_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }
}
