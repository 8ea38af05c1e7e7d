//! HTTP and HTTPS checks as Consul runs them: one request per run on a fresh connection
//! (Consul disables keep-alives so a dead listener is never hidden by a pooled connection),
//! redirects not followed, `2xx` passing, `429` warning, anything else critical, and the
//! output `HTTP <method> <url>: <code> <reason> Output: <body>` with the last OutputMaxSize
//! bytes of the body.
//!
//! The request goes over hyper's HTTP/1.1 client on a TCP or TLS ([`TlsClient`]) stream, so
//! `TLSServerName` sets both the SNI and the verified name while the connection still goes to
//! the URL's host, as Go's `tls.Config.ServerName` does.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use cairn_catalog::model::HealthStatus;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONNECTION, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::probes::{AbortOnDrop, Tail, connect_tcp};
use super::tls::{ALPN_HTTP1, TlsClient};

/// `User-Agent` sent unless the check sets one: Consul's, since services and proxies
/// recognize health checks by it.
pub const USER_AGENT_VALUE: &str = "Consul Health Check";
/// `Accept` sent unless the check sets one (Consul's).
pub const ACCEPT_VALUE: &str = "text/plain, text/*, */*";

/// A prepared HTTP(S) check.
#[derive(Debug)]
pub struct HttpProbe {
    method: Method,
    url: String,
    host: String,
    port: u16,
    path: String,
    host_header: String,
    headers: HeaderMap,
    body: Bytes,
    tls: Option<TlsClient>,
    timeout: Duration,
    max_output: usize,
}

impl HttpProbe {
    /// Prepares a check of `url`; errors are the output a run would report (critical).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        url: &str,
        method: &str,
        header: &BTreeMap<String, Vec<String>>,
        body: &str,
        tls_skip_verify: bool,
        tls_server_name: &str,
        timeout: Duration,
        max_output: usize,
    ) -> Result<HttpProbe, String> {
        let method = if method.is_empty() { "GET" } else { method };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("net/http: invalid method {method:?}"))?;
        // Fragments are never sent.
        let without_fragment = url.split('#').next().unwrap_or(url);
        let uri: Uri = without_fragment
            .parse()
            .map_err(|e| format!("parse {url:?}: {e}"))?;
        let op = go_op(&method);
        let (tls, default_port) = match uri.scheme_str() {
            Some("http") => (None, 80),
            Some("https") => (
                Some(TlsClient::new(
                    tls_skip_verify,
                    tls_server_name,
                    &[ALPN_HTTP1],
                )?),
                443,
            ),
            Some(other) => {
                return Err(format!(
                    "{op} {url:?}: unsupported protocol scheme {other:?}"
                ));
            }
            None => return Err(format!("{op} {url:?}: unsupported protocol scheme \"\"")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("{op} {url:?}: http: no Host in request URL"));
        };
        let host = authority.host().to_string();
        if host.is_empty() {
            return Err(format!("{op} {url:?}: http: no Host in request URL"));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        let mut host_header = match authority.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let mut headers = HeaderMap::new();
        for (k, vs) in header {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("net/http: invalid header field name {k:?}"))?;
            for v in vs {
                if name == HOST {
                    host_header = v.clone();
                    continue;
                }
                let value = HeaderValue::from_str(v)
                    .map_err(|_| format!("net/http: invalid header field value for {k:?}"))?;
                headers.append(name.clone(), value);
            }
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_VALUE));
        }
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        HeaderValue::from_str(&host_header)
            .map_err(|_| format!("net/http: invalid Host header {host_header:?}"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        Ok(HttpProbe {
            method,
            url: url.to_string(),
            host,
            port,
            path,
            host_header,
            headers,
            body: Bytes::from(body.to_string()),
            tls,
            timeout,
            max_output,
        })
    }

    /// Runs once.
    pub async fn run(&self) -> (HealthStatus, String) {
        let deadline = Instant::now() + self.timeout;
        let op = go_op(&self.method);
        let url = &self.url;
        let (resp, _conn) = match tokio::time::timeout_at(deadline, self.send()).await {
            Err(_) => {
                return (
                    HealthStatus::Critical,
                    format!(
                        "{op} {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                    ),
                );
            }
            Ok(Err(e)) => return (HealthStatus::Critical, format!("{op} {url:?}: {e}")),
            Ok(Ok(r)) => r,
        };
        let code = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| code.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let status_text = if reason.is_empty() {
            code.as_u16().to_string()
        } else {
            format!("{} {reason}", code.as_u16())
        };
        let mut tail = Tail::new(self.max_output);
        let mut body = resp.into_body();
        // A body cut by the deadline or an error still reports what arrived, as Consul does.
        let _ = tokio::time::timeout_at(deadline, async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    tail.push(d);
                }
            }
        })
        .await;
        let status = if code.is_success() {
            HealthStatus::Passing
        } else if code.as_u16() == 429 {
            HealthStatus::Warning
        } else {
            HealthStatus::Critical
        };
        (
            status,
            format!(
                "HTTP {} {url}: {status_text} Output: {}",
                self.method,
                tail.text()
            ),
        )
    }

    async fn send(&self) -> Result<(Response<Incoming>, AbortOnDrop), String> {
        let addr = format!("{}:{}", self.host, self.port);
        let stream = connect_tcp(&addr, self.timeout).await?;
        match &self.tls {
            None => self.exchange(stream).await,
            Some(tls) => {
                let s = tls.connect(stream, &self.host).await?;
                self.exchange(s).await
            }
        }
    }

    async fn exchange<T>(&self, io: T) -> Result<(Response<Incoming>, AbortOnDrop), String>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| error_chain(&e))?;
        let conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .body(Full::new(self.body.clone()))
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        headers.clone_from(&self.headers);
        if let Ok(h) = HeaderValue::from_str(&self.host_header) {
            headers.insert(HOST, h);
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| error_chain(&e))?;
        Ok((resp, conn))
    }
}

/// Go's `url.Error` operation: the method with only its first letter upper-case (`Get`).
fn go_op(method: &Method) -> String {
    let m = method.as_str();
    let mut chars = m.chars();
    match chars.next() {
        Some(f) => f
            .to_uppercase()
            .chain(chars.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_servers::{HttpServer, self_signed_acceptor};
    use HealthStatus::*;

    fn probe(url: &str, skip: bool, name: &str) -> HttpProbe {
        HttpProbe::new(
            url,
            "",
            &BTreeMap::new(),
            "",
            skip,
            name,
            Duration::from_secs(5),
            4096,
        )
        .expect("valid")
    }

    #[tokio::test]
    async fn plain_http_statuses_and_output() {
        let s = HttpServer::start(None, 200, "all good").await;
        let url = s.url("http", "/health?x=1");
        let (st, out) = probe(&url, false, "").run().await;
        assert_eq!(st, Passing);
        assert_eq!(
            out,
            format!("HTTP GET {url}: 200 Test Reason Output: all good")
        );
        s.set_status(429);
        assert_eq!(probe(&url, false, "").run().await.0, Warning);
        s.set_status(503);
        assert_eq!(probe(&url, false, "").run().await.0, Critical);
        s.set_status(302);
        assert_eq!(
            probe(&url, false, "").run().await.0,
            Critical,
            "no redirects"
        );
        let head = &s.seen()[0].head;
        assert!(head.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {}", s.addr)), "{head}");
        assert!(head.contains("user-agent: Consul Health Check"), "{head}");
        assert!(head.contains("accept: text/plain, text/*, */*"), "{head}");
    }

    #[tokio::test]
    async fn method_headers_and_body_are_sent() {
        let s = HttpServer::start(None, 200, "").await;
        let mut h = BTreeMap::new();
        h.insert(
            "X-Token".to_string(),
            vec!["a".to_string(), "b".to_string()],
        );
        h.insert("Host".to_string(), vec!["svc.example".to_string()]);
        h.insert("User-Agent".to_string(), vec!["mine".to_string()]);
        let p = HttpProbe::new(
            &s.url("http", "/"),
            "POST",
            &h,
            "{\"ping\":1}",
            false,
            "",
            Duration::from_secs(5),
            4096,
        )
        .expect("valid");
        assert_eq!(p.run().await.0, Passing);
        let seen = &s.seen()[0];
        assert!(seen.head.starts_with("POST / HTTP/1.1"), "{}", seen.head);
        assert!(
            seen.head.contains("x-token: a\r\nx-token: b"),
            "{}",
            seen.head
        );
        assert!(seen.head.contains("host: svc.example"), "{}", seen.head);
        assert!(seen.head.contains("user-agent: mine"), "{}", seen.head);
        assert_eq!(seen.body, "{\"ping\":1}");
    }

    #[tokio::test]
    async fn https_needs_trust_or_skip_verify() {
        let s = HttpServer::start(Some(self_signed_acceptor(&[])), 200, "secure").await;
        let url = s.url("https", "/health");
        let (st, out) = probe(&url, true, "").run().await;
        assert_eq!(
            (st, out.as_str()),
            (
                Passing,
                format!("HTTP GET {url}: 200 Test Reason Output: secure").as_str()
            )
        );
        let (st, out) = probe(&url, false, "").run().await;
        assert_eq!(st, Critical);
        assert!(
            out.starts_with(&format!("Get {url:?}: tls: ")) && out.contains("certificate"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn tls_server_name_is_the_sni() {
        let s = HttpServer::start(Some(self_signed_acceptor(&[])), 200, "").await;
        let url = format!("https://localhost:{}/", s.addr.port());
        assert_eq!(probe(&url, true, "cairn.test").run().await.0, Passing);
        assert_eq!(probe(&url, true, "").run().await.0, Passing);
        let sni: Vec<Option<String>> = s.seen().into_iter().map(|r| r.sni).collect();
        assert_eq!(
            sni,
            vec![
                Some("cairn.test".to_string()),
                Some("localhost".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn body_is_capped_to_its_tail() {
        let body = format!("{}END", "x".repeat(10_000));
        let s = HttpServer::start(None, 200, &body).await;
        let p = HttpProbe::new(
            &s.url("http", "/"),
            "GET",
            &BTreeMap::new(),
            "",
            false,
            "",
            Duration::from_secs(5),
            8,
        )
        .expect("valid");
        let (_, out) = p.run().await;
        assert!(out.ends_with("Output: xxxxxEND"), "{out}");
    }

    #[tokio::test]
    async fn errors_and_timeouts_are_critical() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let url = format!("http://127.0.0.1:{port}/");
        let (st, out) = probe(&url, false, "").run().await;
        assert_eq!(st, Critical);
        assert_eq!(
            out,
            format!("Get {url:?}: dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
        // A listener that never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", l.local_addr().expect("addr"));
        let p = HttpProbe::new(
            &url,
            "",
            &BTreeMap::new(),
            "",
            false,
            "",
            Duration::from_millis(300),
            4096,
        )
        .expect("valid");
        let started = Instant::now();
        let (st, out) = p.run().await;
        assert_eq!(st, Critical);
        assert!(out.contains("Client.Timeout exceeded"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let e = HttpProbe::new(
            "ftp://x/",
            "",
            &BTreeMap::new(),
            "",
            false,
            "",
            Duration::from_secs(1),
            4096,
        )
        .expect_err("scheme");
        assert_eq!(e, "Get \"ftp://x/\": unsupported protocol scheme \"ftp\"");
    }
}
