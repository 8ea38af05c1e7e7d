//! The HTTP API's accept loop and connections: hyper's HTTP/1 server with the protections
//! `axum::serve` does not give.
//!
//! - **Per-client connection limit** (`limits.http_max_conns_per_client`, Consul's default 200,
//!   `0` for none): a client's connections beyond it get Consul's `429` text and are closed at
//!   once, so one address cannot hold every file descriptor of the agent.
//! - **Header-read timeout**: hyper's timer starts whenever a connection waits for a request
//!   head (a new connection, or a kept-alive one between requests) and closes it if no complete
//!   head arrived in time. It bounds both slow-header clients and idle keep-alive connections;
//!   a request being handled (a blocking query, a stream) is not affected.
//! - **Messages on hyper's own refusals**: hyper answers requests it cannot parse (malformed
//!   request line or headers: 400, a URI over 64 KiB: 414, a head too large: 431) by itself,
//!   with an empty body. `Io` gives those a plain-text message, as Go's server and therefore
//!   Consul do (see `Io` for how they are told apart from the API's own answers).
//!
//! - **HTTPS** ([`serve_tls`]): the TLS configuration is taken at each accept (a reload applies to
//!   new connections), the handshake must finish within [`crate::tls::HANDSHAKE_TIMEOUT`] of the
//!   accept (a client sending nothing, or its handshake a byte at a time, is closed then), and a
//!   client speaking plain HTTP to the HTTPS port gets Go's answer ("Client sent an HTTP request
//!   to an HTTPS server.") instead of a hang or a reset.
//!
//! Shutdown is graceful: once the stop signal fires, the loop stops accepting and every
//! connection finishes its request in flight before closing.
//!
//! Only HTTP/1 is served: Consul's API is plain HTTP/1.1 (Go's server speaks HTTP/2 only over
//! TLS), so no client of the plain-text port expects more. The loop is generic over the
//! service so that the tests below run it with a trivial one; the agent passes the API of
//! `super::service`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::connlimit::PerClient;

/// How long a connection may wait for a complete request head (idle time between requests
/// included) before it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest request head hyper buffers: Go's `http.DefaultMaxHeaderBytes` (1 MiB), which Consul
/// uses, plus the 4 KiB of slack Go allows, so that what Consul reads is read here too.
const MAX_HEAD_BYTES: usize = (1 << 20) + 4096;

/// Consul's answer to a client over its connection limit (hashicorp/go-connlimit).
const TOO_MANY_CONNECTIONS: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// How long writing the 429 to a refused connection, and reading what it sent, may take.
/// Short, because a refused client is by definition one that already holds many connections.
const REFUSE_TIMEOUT: Duration = Duration::from_millis(200);

/// Refused connections being answered at once; more are closed without an answer, so a flood
/// of refused connections cannot pile up descriptors either.
const MAX_REFUSING: usize = 256;

/// How the listener treats connections. One per listener; every listener of the agent reads
/// the same configuration.
#[derive(Clone)]
pub struct Limits {
    /// The per-client connection limit, read at each accept (so a reload applies);
    /// `0` means no limit.
    pub per_client: Arc<dyn Fn() -> u32 + Send + Sync>,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
}

/// Serves `service` on `listener` until `stop` turns true, then waits for the connections
/// to finish their requests in flight.
///
/// Every connection, served or refused, is a task in one `JoinSet`, so the wait at the end
/// covers them all; the caller bounds how long it is willing to wait (a blocking query in
/// flight may take minutes to answer).
pub async fn serve<S, F>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    stop: watch::Receiver<bool>,
) where
    S: Fn(Request) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    serve_inner(listener, service, limits, None, stop).await;
}

/// [`serve`] over TLS: every connection is a TLS handshake with the configuration `tls` holds
/// at its accept.
pub async fn serve_tls<S, F>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    tls: Arc<crate::tls::Current>,
    stop: watch::Receiver<bool>,
) where
    S: Fn(Request) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    serve_inner(listener, service, limits, Some(tls), stop).await;
}

/// Go's answer to plain HTTP on a TLS port (`net/http`), which Consul's HTTPS port gives.
const PLAIN_HTTP_TO_HTTPS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The TLS handshake of one accepted connection, bounded by the handshake timeout; `None` when
/// it failed (logged at debug: scanners and misconfigured clients are routine).
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let result = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before TLS",
            ));
        }
        if first[0] != crate::tls::HANDSHAKE_RECORD {
            // Not a TLS record: most likely plain HTTP. Answered, then closed; what the client
            // sent is read and dropped first (bounded by the handshake timeout), since closing
            // with unread data resets the connection and can destroy the answer in flight.
            stream.write_all(PLAIN_HTTP_TO_HTTPS).await?;
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 4096];
            let mut seen = 0usize;
            while seen < 64 * 1024 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen += n,
                }
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain HTTP on the HTTPS port",
            ));
        }
        tokio_rustls::TlsAcceptor::from(config).accept(stream).await
    })
    .await;
    match result {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

async fn serve_inner<S, F>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    tls: Option<Arc<crate::tls::Current>>,
    mut stop: watch::Receiver<bool>,
) where
    S: Fn(Request) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let clients = PerClient::new();
    let refusing = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING));
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
            // Reap finished connections so the set stays as large as what is open.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection that died in the
                // backlog: wait a little instead of spinning on the error.
                warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Counted per client IP; the slot goes with the connection's task and is given back
        // when the task ends, however it ends.
        let limit = (limits.per_client)();
        let Some(slot) = clients.try_acquire(peer.ip(), limit) else {
            debug!(%peer, limit, "too many HTTP connections from this client; refusing");
            // Without a permit the stream is dropped here: closed without an answer.
            if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                conns.spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        // No Nagle delay on small responses (Go's net package sets the same on every TCP
        // connection); a failure only costs latency.
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let stop = stop.clone();
        let timeout = limits.header_read_timeout;
        match &tls {
            None => {
                conns.spawn(async move {
                    serve_connection(stream, peer, service, timeout, stop).await;
                    drop(slot);
                });
            }
            Some(tls) => {
                // No certificate (a reload removed it): nothing can be served on this port.
                let Some(config) = tls.get() else {
                    warn!(%peer, "HTTPS connection refused: no TLS certificate is configured");
                    continue;
                };
                conns.spawn(async move {
                    if let Some(stream) = handshake(stream, peer, config).await {
                        serve_connection(stream, peer, service, timeout, stop).await;
                    }
                    drop(slot);
                });
            }
        }
    }
    // Closing the socket first makes new connection attempts fail at once instead of waiting
    // in the backlog for a loop that no longer accepts.
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Consul's refusal of a connection over the per-client limit: a `429` with its text, then
/// close. What the client already sent is read first (briefly), so that closing does not reset
/// the connection under a client still writing, which would then miss the answer.
async fn refuse(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY_CONNECTIONS}",
        TOO_MANY_CONNECTIONS.len()
    );
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        stream.write_all(answer.as_bytes()).await?;
        // Our side is done: the FIN tells the client no more comes. Then what it sent is read
        // and dropped, because closing a socket with unread data makes the kernel reset the
        // connection, and a reset can destroy the 429 before the client has read it.
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut seen = 0usize;
        while seen < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => seen += n,
            }
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

/// Runs hyper's HTTP/1 server on one connection until it closes: the client goes away, the
/// header-read timeout fires, hyper refuses a request, or `stop` turns true (then the request
/// in flight finishes first).
async fn serve_connection<T, S, F>(
    stream: T,
    peer: SocketAddr,
    service: S,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let progress = Arc::new(Progress::default());
    let io = TokioIo::new(Io::new(stream, Arc::clone(&progress)));
    let hyper_service = hyper::service::service_fn(move |req: hyper::Request<_>| {
        // Counted before the service runs, so that from now on until the response body is
        // done, [`Io`] knows that what hyper writes is the API's answer.
        progress.calls.fetch_add(1, Ordering::Relaxed);
        let fut = service(req.map(Body::new));
        let progress = Arc::clone(&progress);
        async move {
            let resp = match fut.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp.map(|body| TrackedBody {
                inner: body,
                progress,
            }))
        }
    });
    // `max_buf_size` lets hyper buffer a head as large as Go would read (its default is about
    // 400 KB); `max_header_size` states the same bound for the head itself. The timer is
    // required for the header-read timeout to run at all.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(io, hyper_service);
    tokio::pin!(conn);
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    // On stop, hyper closes an idle connection at once and lets a busy one finish its
    // response, then close.
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = &mut stopped => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    // Clients that vanish, time out or send garbage are routine: not worth more than debug.
    if let Err(e) = result {
        debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}

/// What the API service has produced on one connection, for [`Io`]: requests handed to it,
/// and responses whose bodies hyper is done with.
/// Counts rather than flags: [`Io`] records `calls` at a clean flush, so a later call to the
/// service shows as a change without anyone having to reset anything.
#[derive(Debug, Default)]
struct Progress {
    /// Requests handed to the service.
    calls: AtomicU64,
    /// Responses whose body hyper has dropped (written out, or abandoned).
    done: AtomicU64,
}

/// A response body that reports when hyper is done with it (all of it encoded, or dropped
/// unread as for `HEAD`).
struct TrackedBody {
    /// The API's response body, passed through unchanged.
    inner: Body,
    /// Where the end of this body is reported.
    progress: Arc<Progress>,
}

/// Counted on drop rather than at the last frame: hyper also drops bodies it never reads to
/// the end (a `HEAD` answer, a connection closing mid-response), and those end the API's
/// output as well.
impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.progress.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Pure delegation: size hints included, so hyper still sends `Content-Length` for bodies of
/// known size instead of switching to chunked encoding.
impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket as hyper sees it, adding a message to hyper's own error answers.
///
/// How an answer is known to be hyper's: hyper serves one request at a time and reads the next
/// head only once the previous response is entirely written and flushed. So when a flush
/// completes while every request handed to the service has had its response body finished
/// (`calls == done`), everything the API produced is on the wire; anything hyper writes after
/// that and before the service is called again can only be its automatic answer to a head it
/// could not parse (it writes nothing else on its own: a timeout or a shutdown just closes).
/// That answer is `HTTP/1.1 <status> ...` with `content-length: 0`; it is replaced by the same
/// status with a `text/plain` message. Should the bookkeeping ever be off (a body dropped late),
/// the condition does not hold and hyper's bytes pass unchanged: the failure mode is an empty
/// body, never a changed API answer.
struct Io<T> {
    /// The client's connection (TCP, or TLS over TCP).
    stream: T,
    /// What the API service has produced on this connection.
    progress: Arc<Progress>,
    /// `calls` when a flush last left nothing of the API's output unwritten, if it did.
    clean_at: Option<u64>,
    /// A rewritten answer still to be written out.
    pending: Vec<u8>,
}

impl<T: AsyncWrite + Unpin> Io<T> {
    fn new(stream: T, progress: Arc<Progress>) -> Io<T> {
        Io {
            stream,
            progress,
            // Nothing produced yet: a first head hyper cannot parse gets a message too.
            clean_at: Some(0),
            pending: Vec::new(),
        }
    }

    /// Writes what is pending; `Ready(Ok)` once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    /// Whether a write now can only be hyper's own answer (see the type's documentation).
    fn is_hyper_answer(&self) -> bool {
        self.clean_at == Some(self.progress.calls.load(Ordering::Relaxed))
    }
}

/// The message for one of hyper's automatic answers, in the form of Go's server
/// (`<code> <reason>: <detail>`). Only the statuses hyper produces on its own are listed; any
/// other status is never rewritten.
fn refusal_message(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "400 Bad Request: malformed request line or headers",
        414 => "414 URI Too Long: the request URI is longer than 65534 bytes",
        431 => {
            "431 Request Header Fields Too Large: the request head is over 1 MiB or has more than 100 headers"
        }
        _ => return None,
    })
}

/// hyper's answer `head` rewritten with a message, if it is one of those [`refusal_message`]
/// knows and carries no body.
///
/// Deliberately strict: a write that is not one complete, bodiless `HTTP/1.1` head (a partial
/// write, a body chunk) is left alone. The new head says `Connection: close`, which is what
/// hyper does after these answers.
fn with_message(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    if !text.ends_with("\r\n\r\n") || !text.to_ascii_lowercase().contains("content-length: 0\r\n") {
        return None;
    }
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let reason = rest.lines().next()?.get(4..)?.trim();
    let message = refusal_message(status)?;
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{message}",
            message.len()
        )
        .into_bytes(),
    )
}

/// Reads pass through untouched: only what hyper writes is looked at.
impl<T: AsyncRead + Unpin> AsyncRead for Io<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

/// Every method writes out what is pending first, so a rewritten answer is never overtaken
/// by later bytes.
impl<T: AsyncWrite + Unpin> AsyncWrite for Io<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if self.is_hyper_answer()
            && let Some(answer) = with_message(buf)
        {
            self.clean_at = None;
            self.pending = answer;
            // hyper's bytes are consumed whole; ours go out from `pending`. What the socket does
            // not take now goes out on the next write, flush or shutdown, which all drain
            // `pending` first (and hyper flushes after its answer).
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's automatic answer is one buffer; look at it like a plain write.
        if self.is_hyper_answer()
            && let Some(first) = bufs.iter().find(|b| !b.is_empty())
        {
            let first: &[u8] = first;
            return self.poll_write(cx, first);
        }
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    /// The socket's own answer, so hyper keeps using vectored writes where they help; the
    /// check above copes with a head split over several buffers by passing it through.
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    /// The one place `clean_at` is set: a completed flush with every response body finished
    /// means the API's output is all on the wire.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        std::task::ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        let calls = self.progress.calls.load(Ordering::Relaxed);
        if self.progress.done.load(Ordering::Relaxed) == calls {
            self.clean_at = Some(calls);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Real sockets on loopback: what is tested is how hyper and the kernel behave on the wire
/// (timeouts, refusals, resets), which an in-memory stream would not reproduce. Every wait
/// is bounded, so a regression fails instead of hanging.
#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A service that answers every request with 200 "ok" (and its path).
    async fn ok(req: Request) -> Result<Response, Infallible> {
        Ok(Response::new(Body::from(format!(
            "ok {}",
            req.uri().path()
        ))))
    }

    /// A listener on a free loopback port; keep the sender alive, or the loop stops.
    async fn start(per_client: u32, timeout: Duration) -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        let limits = Limits {
            per_client: Arc::new(move || per_client),
            header_read_timeout: timeout,
        };
        tokio::spawn(serve(listener, ok, limits, rx));
        (addr, tx)
    }

    /// Connects from `source` (any 127/8 address is local on Linux), so that one test can play
    /// several clients: the limit is per source IP.
    async fn connect(addr: SocketAddr, source: [u8; 4]) -> TcpStream {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(SocketAddr::from((source, 0)))
            .expect("bind source");
        sock.connect(addr).await.expect("connect")
    }

    /// Sends one request and reads one `Content-Length` response; the whole answer as text.
    async fn request(s: &mut TcpStream, path: &str) -> String {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("send");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("answer in time")
                .expect("read");
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out).to_string();
            if n == 0 {
                return text;
            }
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return text;
                }
            }
        }
    }

    /// Reads until the server closes; fails if it does not within `limit`.
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => panic!("connection still open after {limit:?}"),
            }
        }
    }

    /// The header-read timeout covers a connection that never speaks, one that never finishes
    /// its head (slowloris) and a kept-alive one left idle after a request.
    #[tokio::test]
    async fn idle_and_slow_header_connections_are_closed() {
        let (addr, _stop) = start(0, Duration::from_millis(300)).await;
        // Never sends anything.
        let mut idle = connect(addr, [127, 0, 0, 1]).await;
        // Starts a request and never finishes its head.
        let mut slow = connect(addr, [127, 0, 0, 1]).await;
        slow.write_all(b"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("partial head");
        // Sends one request, then stays idle on the kept-alive connection.
        let mut kept = connect(addr, [127, 0, 0, 1]).await;
        assert!(request(&mut kept, "/a").await.contains("ok /a"));
        for s in [&mut idle, &mut slow, &mut kept] {
            closed_within(s, Duration::from_secs(5)).await;
        }
    }

    /// The limit is per client: the fourth connection from one address gets Consul's text,
    /// another address is unaffected, and closing a connection frees a place.
    #[tokio::test]
    async fn one_client_over_its_limit_gets_consuls_429_and_others_are_served() {
        let (addr, _stop) = start(3, Duration::from_secs(30)).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = connect(addr, [127, 0, 0, 1]).await;
            assert!(request(&mut s, "/x").await.starts_with("HTTP/1.1 200"));
            held.push(s);
        }
        let mut over = connect(addr, [127, 0, 0, 1]).await;
        let answer = request(&mut over, "/x").await;
        assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
        assert!(answer.ends_with(TOO_MANY_CONNECTIONS), "{answer}");
        // Another client is not affected.
        let mut other = connect(addr, [127, 0, 0, 2]).await;
        assert!(request(&mut other, "/y").await.contains("ok /y"));
        // A closed connection gives its place back.
        drop(held.pop());
        common_eventually(|| async {
            let mut s = connect(addr, [127, 0, 0, 1]).await;
            request(&mut s, "/z").await.contains("ok /z")
        })
        .await;
    }

    /// Polls `f` until it holds (5 s at most): a closed connection's slot comes back only once
    /// the server notices the close, a moment after the client's drop.
    async fn common_eventually<F, Fut>(mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f().await {
            assert!(Instant::now() < deadline, "condition not met in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Each refusal hyper makes on its own (400, 414, 431) gets a body, on a fresh connection
    /// and after a served request alike, while the service's own answers pass byte for byte.
    #[tokio::test]
    async fn hypers_own_refusals_carry_a_message_and_api_answers_are_untouched() {
        let (addr, _stop) = start(0, Duration::from_secs(30)).await;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "400"),
            (b"GET /a HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(), "400"),
            (
                format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
                "414",
            ),
            (
                format!(
                    "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                    "a".repeat(1_100_000)
                )
                .into_bytes(),
                "431",
            ),
        ];
        for (req, status) in cases {
            // A refusal after a served request on the same connection, too.
            for first in [false, true] {
                let mut s = connect(addr, [127, 0, 0, 1]).await;
                if first {
                    assert!(request(&mut s, "/ok").await.contains("ok /ok"));
                }
                s.write_all(&req).await.expect("send");
                let out =
                    String::from_utf8_lossy(&closed_within(&mut s, Duration::from_secs(10)).await)
                        .to_string();
                assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
                let (_, body) = out.split_once("\r\n\r\n").expect("a head");
                assert!(body.starts_with(status), "{status}: body {body:?}");
            }
        }
        // The API's own answers pass as they are, body included, over many requests.
        let mut s = connect(addr, [127, 0, 0, 1]).await;
        for i in 0..20 {
            let out = request(&mut s, &format!("/r{i}")).await;
            assert!(out.ends_with(&format!("ok /r{i}")), "{out}");
        }
    }

    /// The rewrite needs all three: a status hyper produces, `content-length: 0`, a whole head.
    #[test]
    fn only_bodiless_known_refusals_are_rewritten() {
        let head = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(with_message(head).expect("rewritten")).expect("text");
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(out.ends_with("414 URI Too Long: the request URI is longer than 65534 bytes"));
        assert!(with_message(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(with_message(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\n").is_none());
        assert!(with_message(b"some body bytes").is_none());
    }
}
