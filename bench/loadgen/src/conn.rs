//! One HTTP/1.1 keep-alive connection per client, on hyper's connection-level API (no pool, no
//! hidden extra connections), reconnecting after an error.
//!
//! With `LOADGEN_TLS_CA` set (a PEM CA file), every connection is HTTPS, checked against that CA
//! for the name `LOADGEN_TLS_NAME` (default `server.dc1.consul`, what `cairn tls cert create
//! -server` writes), presenting `LOADGEN_TLS_CERT`/`LOADGEN_TLS_KEY` when set: the TLS
//! benchmarks of the HTTPS API. Each connection pays one handshake, then keeps it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::Error;

/// A request to send: method, path and query, body.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Req {
            method: Method::GET,
            path: path.into(),
            body: Bytes::new(),
        }
    }

    pub fn with(method: Method, path: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Req {
            method,
            path: path.into(),
            body: body.into(),
        }
    }
}

/// A full response: status, the `X-Consul-Index` header when present, and the body.
pub struct Resp {
    pub status: u16,
    pub index: Option<u64>,
    pub body: Bytes,
}

/// A keep-alive connection to one server.
pub struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// The ACL token every request carries: `CONSUL_HTTP_TOKEN`, as Consul's clients read it
/// (the ACL benchmark runs the same load with and without it).
fn token() -> Option<&'static str> {
    static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            std::env::var("CONSUL_HTTP_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
        })
        .as_deref()
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            host: addr.to_string(),
            sender: None,
        }
    }

    /// Connects now (otherwise the first request connects).
    pub async fn connect(&mut self) -> Result<(), Error> {
        if self.sender.is_none() {
            self.sender = Some(open(self.addr).await?);
        }
        Ok(())
    }

    /// Sends a request and returns its response head, leaving the body to stream.
    pub async fn send_streaming(&mut self, req: &Req) -> Result<Response<Incoming>, Error> {
        self.connect().await?;
        let sender = self.sender.as_mut().ok_or("not connected")?;
        let mut b = Request::builder()
            .method(req.method.clone())
            .uri(&req.path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = token() {
            b = b.header("x-consul-token", t);
        }
        let r = b.body(Full::new(req.body.clone()))?;
        match sender.send_request(r).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.sender = None;
                Err(e.into())
            }
        }
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, req: &Req) -> Result<Resp, Error> {
        let resp = self.send_streaming(req).await?;
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(e.into());
            }
        };
        Ok(Resp {
            status,
            index,
            body,
        })
    }
}

/// The TLS client configuration from the environment, read once (`None`: plain HTTP).
fn tls() -> Option<(
    Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
)> {
    static TLS: OnceLock<
        Option<(
            Arc<rustls::ClientConfig>,
            rustls::pki_types::ServerName<'static>,
        )>,
    > = OnceLock::new();
    TLS.get_or_init(|| {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let ca = std::env::var("LOADGEN_TLS_CA")
            .ok()
            .filter(|s| !s.is_empty())?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&ca).ok()?.flatten() {
            roots.add(cert).ok()?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots);
        let config = match (
            std::env::var("LOADGEN_TLS_CERT"),
            std::env::var("LOADGEN_TLS_KEY"),
        ) {
            (Ok(cert), Ok(key)) => {
                let chain: Vec<_> = CertificateDer::pem_file_iter(&cert)
                    .ok()?
                    .flatten()
                    .collect();
                let key = PrivateKeyDer::from_pem_file(&key).ok()?;
                builder.with_client_auth_cert(chain, key).ok()?
            }
            _ => builder.with_no_client_auth(),
        };
        let name = std::env::var("LOADGEN_TLS_NAME").unwrap_or_else(|_| "server.dc1.consul".into());
        Some((Arc::new(config), ServerName::try_from(name).ok()?))
    })
    .clone()
}

async fn open(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let sender = match tls() {
        None => {
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        }
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        }
    };
    Ok(sender)
}

/// One request on a fresh connection (for polling a server that may not be up yet).
pub async fn once(addr: SocketAddr, req: &Req) -> Result<Resp, Error> {
    Conn::new(addr).send(req).await
}
