//! HTTP and HTTPS checks as Consul runs them: one request per run on a fresh connection
//! (Consul disables keep-alives so a dead listener is never hidden by a pooled connection),
//! redirects followed as Go's HTTP client follows them (up to 10; `DisableRedirects` turns
//! that off), `2xx` passing, `429` warning, anything else critical, and the output
//! `HTTP <method> <url>: <code> <reason> Output: <body>` with the last OutputMaxSize bytes of
//! the final response's body.
//!
//! The request goes over hyper's HTTP/1.1 client on a TCP or TLS ([`TlsClient`]) stream, so
//! `TLSServerName` sets both the SNI and the verified name while the connection still goes to
//! the URL's host, as Go's `tls.Config.ServerName` does.
//!
//! Error outputs follow Go's `net/http` client (`Get "<url>": dial tcp ...`), since Consul
//! reports the client's error as the check output.

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
    /// `GET` unless the check sets one.
    method: Method,
    /// The URL as registered, for outputs.
    url: String,
    /// Where the first request goes.
    first: Target,
    /// `Host` set by the check's headers; sent instead of the URL's authority, also after a
    /// redirect to a relative location (as Go keeps `Request.Host` then).
    host_override: Option<String>,
    /// Headers sent besides `Host`.
    headers: HeaderMap,
    body: Bytes,
    /// `TLSSkipVerify`, for a TLS client made when a redirect leads to `https`.
    tls_skip_verify: bool,
    /// `TLSServerName`, likewise.
    tls_server_name: String,
    /// Set at preparation for `https` URLs, else on the first redirect to `https`.
    tls: std::sync::OnceLock<Result<TlsClient, String>>,
    /// Follow redirects (Consul's default; `DisableRedirects` clears it).
    follow_redirects: bool,
    timeout: Duration,
    /// Cap on the body kept for the output.
    max_output: usize,
}

/// Where one request of a run goes.
#[derive(Clone, Debug)]
struct Target {
    /// The absolute URL, to resolve a relative `Location` against.
    url: String,
    /// Over TLS.
    https: bool,
    /// Host to connect to (and to verify over TLS); an IPv6 literal keeps its brackets.
    host: String,
    /// Port to connect to: the URL's, or the scheme's default.
    port: u16,
    /// Request target: path and query, `/` when empty.
    path: String,
    /// `Host` sent: the port appears only when the URL has one, as Go sends it.
    authority: String,
}

/// Most redirects followed in one run: Go's client default, which Consul keeps.
const MAX_REDIRECTS: usize = 10;

impl Target {
    /// The target of `url` (fragment already removed); errors are Go's texts.
    fn parse(url: &str, op: &str, shown: &str) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| format!("parse {shown:?}: {e}"))?;
        let (https, default_port) = match uri.scheme_str() {
            Some("http") => (false, 80),
            Some("https") => (true, 443),
            Some(other) => {
                return Err(format!(
                    "{op} {shown:?}: unsupported protocol scheme {other:?}"
                ));
            }
            // A URL without a scheme (`localhost:8080/health`) gets Go's message for it.
            None => return Err(format!("{op} {shown:?}: unsupported protocol scheme \"\"")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("{op} {shown:?}: http: no Host in request URL"));
        };
        let host = authority.host().to_string();
        if host.is_empty() {
            return Err(format!("{op} {shown:?}: http: no Host in request URL"));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        let authority = match authority.port_u16() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .filter(|p| !p.is_empty())
            // An HTTP/1.1 request target is never empty: `http://host` asks for `/`.
            .unwrap_or_else(|| "/".into());
        Ok(Target {
            url: url.to_string(),
            https,
            host,
            port,
            path,
            authority,
        })
    }
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
        follow_redirects: bool,
        timeout: Duration,
        max_output: usize,
    ) -> Result<HttpProbe, String> {
        // Any token is a valid method (Consul passes it through), so only its syntax is checked.
        let method = if method.is_empty() { "GET" } else { method };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("net/http: invalid method {method:?}"))?;
        // Fragments are never sent.
        let without_fragment = url.split('#').next().unwrap_or(url);
        let op = go_op(&method);
        let mut first = Target::parse(without_fragment, &op, url)?;
        // Errors name the URL as registered, fragment included, as Go prints it.
        first.url = url.to_string();
        let tls = std::sync::OnceLock::new();
        if first.https {
            // Made now so that a TLS set-up error fails the check once, at preparation.
            let client = TlsClient::new(tls_skip_verify, tls_server_name, &[ALPN_HTTP1])?;
            let _ = tls.set(Ok(client));
        }
        let mut host_override = None;
        let mut headers = HeaderMap::new();
        for (k, vs) in header {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("net/http: invalid header field name {k:?}"))?;
            for v in vs {
                // `Host` is not a header for hyper but the request's authority: kept apart
                // and set on the request, the last value winning.
                if name == HOST {
                    host_override = Some(v.clone());
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
        // One connection per run, never reused: a pooled connection could keep a check
        // passing after the service stopped accepting new ones.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        // Checked now so that a bad `Host` fails the check once, at preparation.
        let host_header = host_override.as_deref().unwrap_or(&first.authority);
        HeaderValue::from_str(host_header)
            .map_err(|_| format!("net/http: invalid Host header {host_header:?}"))?;
        Ok(HttpProbe {
            method,
            url: url.to_string(),
            first,
            host_override,
            headers,
            body: Bytes::from(body.to_string()),
            tls_skip_verify,
            tls_server_name: tls_server_name.to_string(),
            tls,
            follow_redirects,
            timeout,
            max_output,
        })
    }

    /// Runs once.
    pub async fn run(&self) -> (HealthStatus, String) {
        // One deadline covers connect, TLS, headers and body, as Go's `Client.Timeout` does.
        let deadline = Instant::now() + self.timeout;
        let op = go_op(&self.method);
        let url = &self.url;
        // `_conn` keeps the connection task alive while the body is read.
        let (resp, _conn) = match tokio::time::timeout_at(deadline, self.follow()).await {
            Err(_) => {
                return (
                    HealthStatus::Critical,
                    format!(
                        // Go's text when the timeout hits before the response headers.
                        "{op} {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                    ),
                );
            }
            // Go names the URL of the request that failed (after redirects, the last one).
            Ok(Err((at, e))) => return (HealthStatus::Critical, format!("{op} {at:?}: {e}")),
            Ok(Ok(r)) => r,
        };
        let code = resp.status();
        // The server's own reason phrase when it sent one (Go prints the status line as
        // received), else the standard phrase.
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
        // Consul: Too Many Requests is a warning, since the service is up but shedding load.
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

    /// Sends the request and follows redirects as Go's client does: 301, 302 and 303 turn
    /// the method into `GET` (`HEAD` stays) without a body, 307 and 308 repeat method and
    /// body, a relative `Location` resolves against the URL asked, a 3xx without `Location`
    /// is the answer, and the eleventh redirect is an error.
    ///
    /// An error comes with the URL of the request that failed.
    async fn follow(&self) -> Result<(Response<Incoming>, AbortOnDrop), (String, String)> {
        let mut target = self.first.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        let mut host = self.host_override.clone();
        let mut referer: Option<String> = None;
        let mut redirects = 0;
        loop {
            let (resp, conn) = self
                .send(&target, &method, &body, host.as_deref(), referer.as_deref())
                .await
                .map_err(|e| (target.url.clone(), e))?;
            let code = resp.status().as_u16();
            if !self.follow_redirects || !matches!(code, 301 | 302 | 303 | 307 | 308) {
                return Ok((resp, conn));
            }
            let Some(location) = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .filter(|l| !l.is_empty())
                .map(str::to_string)
            else {
                return Ok((resp, conn));
            };
            if redirects == MAX_REDIRECTS {
                return Err((
                    target.url.clone(),
                    format!("stopped after {MAX_REDIRECTS} redirects"),
                ));
            }
            redirects += 1;
            let next = url::Url::parse(&target.url)
                .and_then(|base| base.join(&location))
                .map_err(|e| {
                    let e = format!("failed to parse Location header {location:?}: {e}");
                    (target.url.clone(), e)
                })?;
            let mut next_url = next.to_string();
            if let Some(i) = next_url.find('#') {
                next_url.truncate(i);
            }
            let op = go_op(&method);
            let next_target =
                Target::parse(&next_url, &op, &next_url).map_err(|e| (next_url.clone(), e))?;
            // Go keeps a custom `Host` only when the location is relative to the same host.
            let relative = url::Url::parse(&location).is_err() && !location.starts_with("//");
            if !relative {
                host = None;
            }
            // No `Referer` from `https` to plain `http`, as Go's `refererForURL`.
            referer = (!target.https || next_target.https).then(|| target.url.clone());
            if matches!(code, 301..=303) {
                if method != Method::GET && method != Method::HEAD {
                    method = Method::GET;
                }
                body = Bytes::new();
            }
            target = next_target;
        }
    }

    /// Connects (TCP, then TLS for `https`) and sends one request.
    async fn send(
        &self,
        target: &Target,
        method: &Method,
        body: &Bytes,
        host: Option<&str>,
        referer: Option<&str>,
    ) -> Result<(Response<Incoming>, AbortOnDrop), String> {
        let addr = format!("{}:{}", target.host, target.port);
        let stream = connect_tcp(&addr, self.timeout).await?;
        let host = host.unwrap_or(&target.authority);
        let req = self.request(target, method, body, host, referer)?;
        if !target.https {
            return exchange(stream, req).await;
        }
        let tls = self
            .tls
            .get_or_init(|| {
                TlsClient::new(self.tls_skip_verify, &self.tls_server_name, &[ALPN_HTTP1])
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let s = tls.connect(stream, &target.host).await?;
        exchange(s, req).await
    }

    /// One request: the check's headers, with `Host` and (after a redirect) `Referer`.
    fn request(
        &self,
        target: &Target,
        method: &Method,
        body: &Bytes,
        host: &str,
        referer: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(target.path.as_str())
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        // Prepared once per probe; each request clones them.
        headers.clone_from(&self.headers);
        if let Ok(h) = HeaderValue::from_str(host) {
            headers.insert(HOST, h);
        }
        if let Some(r) = referer.and_then(|r| HeaderValue::from_str(r).ok()) {
            headers.insert(hyper::header::REFERER, r);
        }
        Ok(req)
    }
}

/// One HTTP/1.1 exchange on `io`; the connection task is returned so the caller keeps the
/// connection open while it reads the body.
async fn exchange<T>(
    io: T,
    req: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, AbortOnDrop), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| error_chain(&e))?;
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| error_chain(&e))?;
    Ok((resp, conn))
}

/// Go's `url.Error` operation: the method with only its first letter upper-case (`Get`).
///
/// Go's error texts start with it (`Get "http://...": ...`), and Consul shows them as is.
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

/// An error with its sources, `: `-separated as Go wraps errors: hyper's top-level
/// messages alone (`connection error`) would hide the cause.
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

    /// A GET probe of `url` with a 5 s timeout.
    fn probe(url: &str, skip: bool, name: &str) -> HttpProbe {
        HttpProbe::new(
            url,
            "",
            &BTreeMap::new(),
            "",
            skip,
            name,
            true,
            Duration::from_secs(5),
            4096,
        )
        .expect("valid")
    }

    /// Status classes map as in Consul (a redirect without `Location` is the answer), and
    /// Consul's default headers are sent.
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
            "a 302 without Location is not followed"
        );
        let head = &s.seen()[0].head;
        assert!(head.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {}", s.addr)), "{head}");
        assert!(head.contains("user-agent: Consul Health Check"), "{head}");
        assert!(head.contains("accept: text/plain, text/*, */*"), "{head}");
    }

    /// Redirects are followed as Go's client does: to the final answer, with the original
    /// URL in the output; 303 turns a POST into a bodyless GET, 307 keeps both; more than 10
    /// redirects fail the check; `DisableRedirects` reports the redirect itself.
    #[tokio::test]
    async fn redirects_are_followed_up_to_ten() {
        use crate::checks::test_servers::redirector;
        let s = HttpServer::start(None, 200, "landed").await;
        let (raddr, _, _r) = redirector(302, &s.url("http", "/ui/")).await;
        let url = format!("http://{raddr}/");
        let (st, out) = probe(&url, false, "").run().await;
        assert_eq!(st, Passing, "{out}");
        assert_eq!(
            out,
            format!("HTTP GET {url}: 200 Test Reason Output: landed")
        );
        let seen = s.seen();
        assert!(
            seen[0].head.starts_with("GET /ui/ HTTP/1.1\r\n"),
            "{}",
            seen[0].head
        );
        assert!(
            seen[0].head.contains(&format!("referer: {url}")),
            "{}",
            seen[0].head
        );

        let post = |url: &str, follow: bool| {
            HttpProbe::new(
                url,
                "POST",
                &BTreeMap::new(),
                "payload",
                false,
                "",
                follow,
                Duration::from_secs(5),
                4096,
            )
            .expect("valid")
        };
        // A relative location, resolved against the redirecting URL.
        let (a303, _, _r303) = redirector(303, "/after-post").await;
        let target = s.url("http", "/kept");
        let (a307, _, _r307) = redirector(307, &target).await;
        assert_eq!(
            post(&format!("http://{a307}/"), true).run().await.0,
            Passing
        );
        let kept = s.seen().pop().expect("a request");
        assert!(
            kept.head.starts_with("POST /kept HTTP/1.1"),
            "{}",
            kept.head
        );
        assert_eq!(kept.body, "payload");
        // 303 to a path on the redirector itself: it answers 303 again, forever.
        let (st, out) = post(&format!("http://{a303}/"), true).run().await;
        assert_eq!(st, Critical);
        assert_eq!(
            out,
            format!("Post \"http://{a303}/after-post\": stopped after 10 redirects")
        );
        let (st, out) = post(&format!("http://{a303}/"), false).run().await;
        assert_eq!(st, Critical);
        assert!(out.contains(": 303 Moved Output: "), "{out}");
    }

    /// Custom method, repeated headers, a `Host` override, a custom User-Agent and a body.
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
            true,
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

    /// A self-signed server passes only with TLSSkipVerify; otherwise the output names the
    /// certificate problem.
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

    /// TLSServerName replaces the URL's host in the SNI; without it the host is sent.
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

    /// The output keeps the end of a long body, where errors usually are.
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
            true,
            Duration::from_secs(5),
            8,
        )
        .expect("valid");
        let (_, out) = p.run().await;
        assert!(out.ends_with("Output: xxxxxEND"), "{out}");
    }

    /// Refused connections and silent servers are critical with Go's texts, and the timeout
    /// holds even when the server never answers.
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
            true,
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
            true,
            Duration::from_secs(1),
            4096,
        )
        .expect_err("scheme");
        assert_eq!(e, "Get \"ftp://x/\": unsupported protocol scheme \"ftp\"");
    }
}
