//! Real local targets for check tests, shared by the unit tests of `checks` and by
//! `agent/tests/checks.rs` (included there with `#[path]`, so this file uses external crates
//! only): a self-signed certificate, an HTTP/1.1 server with or without TLS that records what
//! it received, UDP echo and silent responders, an HTTP/2 server (h2c or TLS) that answers
//! PINGs, and a gRPC health server (tonic-health, the reference implementation).
//!
//! Everything binds 127.0.0.1 port 0 and stops when its handle is dropped.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// A self-signed certificate for `names` and its private key.
pub fn self_signed(names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("generate a certificate");
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    (cert, key)
}

/// A TLS acceptor (ring provider) serving `cert`, offering `alpn`.
pub fn tls_acceptor(
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .expect("server certificate");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`, `cairn.test` and
/// 127.0.0.1.
pub fn self_signed_acceptor(alpn: &[&[u8]]) -> TlsAcceptor {
    let (cert, key) = self_signed(&["localhost", "cairn.test", "127.0.0.1"]);
    tls_acceptor(&cert, &key, alpn)
}

/// Aborts a task when dropped.
///
/// A server outlives its test otherwise: tokio tasks are not cancelled when their
/// handle is dropped.
pub struct Task(pub JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request as an [`HttpServer`] saw it.
#[derive(Clone, Debug, Default)]
pub struct SeenRequest {
    /// The request head (request line and headers).
    pub head: String,
    /// The body.
    pub body: String,
    /// The SNI name of the TLS handshake, if any.
    pub sni: Option<String>,
}

/// An HTTP/1.1 server (TLS optional) answering every request with a settable status and a
/// fixed body, recording each request.
pub struct HttpServer {
    /// Its address.
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    _task: Task,
}

impl HttpServer {
    /// Starts on a free loopback port.
    pub async fn start(tls: Option<TlsAcceptor>, status: u16, body: &str) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let code = Arc::new(AtomicU16::new(status));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (code2, seen2, body) = (Arc::clone(&code), Arc::clone(&seen), body.to_string());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (code, seen, body, tls) = (
                    Arc::clone(&code2),
                    Arc::clone(&seen2),
                    body.clone(),
                    tls.clone(),
                );
                tokio::spawn(async move {
                    match tls {
                        None => serve_http1(sock, None, &code, &seen, &body).await,
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(sock).await {
                                let sni = s.get_ref().1.server_name().map(str::to_string);
                                serve_http1(s, sni, &code, &seen, &body).await;
                            }
                        }
                    }
                });
            }
        });
        HttpServer {
            addr,
            status: code,
            seen,
            _task: Task(task),
        }
    }

    /// Changes the status answered from now on.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `<scheme>://127.0.0.1:<port><path>`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }
}

/// Reads one request (head, then a `Content-Length` body) and answers it, closing the
/// connection. Just enough HTTP for the checks' one-request connections, and hand-written so
/// that a test sees the request head exactly as it came over the wire.
async fn serve_http1<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    sni: Option<String>,
    code: &AtomicU16,
    seen: &Mutex<Vec<SeenRequest>>,
    body: &str,
) {
    let mut buf = vec![0u8; 4096];
    let mut data = Vec::new();
    let head_end = loop {
        if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let req_body = String::from_utf8_lossy(&data[head_end..]).into_owned();
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(SeenRequest {
            head,
            body: req_body,
            sni,
        });
    let code = code.load(Ordering::SeqCst);
    let resp = format!(
        // A non-standard reason phrase, so tests see that the probe prints the server's.
        "HTTP/1.1 {code} Test Reason\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

/// An HTTP/1.1 server answering every request with `status` and `Location: <location>`
/// (`{addr}` in it is replaced by the server's own address, for loops), after reading the
/// request head; it counts the requests.
pub async fn redirector(status: u16, location: &str) -> (SocketAddr, Arc<AtomicU16>, Task) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let location = location.replace("{addr}", &addr.to_string());
    let hits = Arc::new(AtomicU16::new(0));
    let hits2 = Arc::clone(&hits);
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            hits2.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut data = Vec::new();
                while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, hits, Task(task))
}

/// A UDP socket that echoes every datagram back.
pub async fn udp_echo() -> (SocketAddr, Task) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let addr = sock.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    (addr, Task(task))
}

/// A bound UDP socket that never answers (keep it alive while testing).
pub async fn udp_silent() -> (SocketAddr, UdpSocket) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    (sock.local_addr().expect("addr"), sock)
}

/// A loopback UDP port with nothing bound (bound a moment ago, then released).
///
/// Another process could take the port in between; on loopback in a test that is rare
/// enough to accept.
pub fn udp_closed_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    s.local_addr().expect("addr")
}

/// An HTTP/2 server (h2c, or TLS with ALPN `h2`) that answers every request with 200 and
/// PINGs with PONGs.
pub async fn h2_server(tls: Option<TlsAcceptor>) -> (SocketAddr, Task) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve_h2(sock).await,
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(sock).await {
                            serve_h2(s).await;
                        }
                    }
                }
            });
        }
    });
    (addr, Task(task))
}

/// Serves one HTTP/2 connection: 200 to every request, PINGs answered by h2 itself.
async fn serve_h2<S: AsyncRead + AsyncWrite + Unpin>(io: S) {
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    // Polling `accept` also drives the connection, which answers PINGs.
    while let Some(Ok((_req, mut respond))) = conn.accept().await {
        let _ = respond.send_response(hyper::http::Response::new(()), true);
    }
}

/// A gRPC server with the standard health service (tonic-health).
pub struct GrpcServer {
    /// Its address.
    pub addr: SocketAddr,
    /// Sets the statuses served.
    pub reporter: tonic_health::server::HealthReporter,
    _task: Task,
}

impl GrpcServer {
    /// Starts on a free loopback port, over TLS when `tls` is given. The overall service
    /// (`""`) starts SERVING.
    pub async fn start(tls: Option<TlsAcceptor>) -> GrpcServer {
        let (reporter, service) = tonic_health::server::health_reporter();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = tonic::transport::Server::builder().add_service(service);
        let task = match tls {
            None => tokio::spawn(async move {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let _ = router.serve_with_incoming(incoming).await;
            }),
            Some(acceptor) => tokio::spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<TlsIo>>(16);
                let accept = tokio::spawn(async move {
                    while let Ok((sock, _)) = listener.accept().await {
                        let (acceptor, tx) = (acceptor.clone(), tx.clone());
                        tokio::spawn(async move {
                            if let Ok(s) = acceptor.accept(sock).await {
                                let _ = tx.send(Ok(TlsIo(s))).await;
                            }
                        });
                    }
                });
                let incoming = tokio_stream::wrappers::ReceiverStream::new(rx);
                let _ = router.serve_with_incoming(incoming).await;
                accept.abort();
            }),
        };
        GrpcServer {
            addr,
            reporter,
            _task: Task(task),
        }
    }
}

/// A server-side TLS stream tonic can serve.
///
/// tonic's `serve_with_incoming` needs its `Connected` trait; this wrapper provides it for a
/// tokio-rustls stream and only forwards the I/O.
pub struct TlsIo(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
