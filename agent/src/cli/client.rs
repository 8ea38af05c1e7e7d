//! The HTTP client the subcommands share: the agent's address, the ACL token, the datacenter
//! and consistency options, and Consul's error texts (`Unexpected response code: 404 (body)`).
//!
//! Plain HTTP only: the agent serves no HTTPS yet, so `https://` addresses and unix sockets
//! are refused with a message instead of failing later in the connection. Every request has
//! a timeout, so a hung agent makes a command fail rather than wait forever; only streams
//! (`monitor`) and blocking queries (`watch`) wait longer, by design.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use serde::de::DeserializeOwned;

use super::progress::Progress;
use crate::flags::Parsed;

/// The address used when neither `-http-addr` nor `CONSUL_HTTP_ADDR` is given.
/// Consul's default: the agent's HTTP API on loopback.
pub(crate) const DEFAULT_ADDR: &str = "http://127.0.0.1:8500";

/// How long to wait for a TCP connection to the agent.
/// A wrong or firewalled address fails within this, not at the OS's much longer timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a non-blocking request may take.
/// Generous for one API call; the servers may need a leader election to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a snapshot transfer may take (progress is shown meanwhile).
/// Snapshots of a large state over a slow link take minutes; an hour still bounds a
/// transfer that stalled.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// Size of the pieces an upload is sent in (and its progress counted by).
/// Small enough for the progress line to move smoothly, large enough to cost nothing.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// A failed request.
#[derive(Debug)]
pub(crate) enum Error {
    /// No HTTP answer: connection refused, timeout, ...
    Transport {
        /// The method sent.
        method: Method,
        /// The URL requested.
        url: String,
        /// What went wrong.
        /// Go's wording (`dial tcp: connect: connection refused`) where possible.
        message: String,
    },
    /// The agent answered with a non-2xx status.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The response body (Consul's error text).
        body: String,
    },
    /// A 2xx answer whose body is not what was expected.
    Decode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport {
                method,
                url,
                message,
            } => {
                let verb = method.as_str();
                // Go's `url.Error` writes the method as `Get`, `Put`: Consul's messages show it so.
                let verb = format!("{}{}", &verb[..1], verb[1..].to_lowercase());
                write!(f, "{verb} \"{url}\": {message}")
            }
            Error::Status { status, body } => {
                write!(f, "Unexpected response code: {status} ({body})")
            }
            Error::Decode(m) => write!(f, "invalid response: {m}"),
        }
    }
}

/// A response with a 2xx status (or a 404 where the caller accepts one).
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// `X-Consul-Index`, 0 when absent.
    /// What a blocking query passes back as `index` to wait for the next change.
    pub index: u64,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// Decodes the body as JSON.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode(e.to_string()))
    }
}

/// A client of one agent.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    /// One connection pool for the command's requests.
    http: reqwest::Client,
    /// `http://host:port`, without a trailing slash.
    base: String,
    /// Sent as `X-Consul-Token`, not in the query string, so it stays out of URLs and
    /// access logs.
    token: Option<String>,
    /// `-datacenter`, sent as `?dc=` with every request.
    datacenter: Option<String>,
    /// `-stale`, sent with reads only.
    stale: bool,
}

/// Turns an `-http-addr` / `CONSUL_HTTP_ADDR` value into a base URL.
///
/// `host:port` gets `http://` as in Consul, or `https://` with `CONSUL_HTTP_SSL` set.
pub(crate) fn base_url(addr: &str, ssl: bool) -> Result<String, String> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        return Err("empty HTTP address".into());
    }
    if addr.starts_with("unix://") {
        return Err(format!(
            "{addr}: unix sockets are not supported by this client; use http://host:port"
        ));
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        return Ok(addr.to_string());
    }
    if addr.contains("://") {
        return Err(format!("{addr}: unknown protocol scheme"));
    }
    Ok(format!("{}://{addr}", if ssl { "https" } else { "http" }))
}

/// The TLS settings from the flags and Consul's environment variables (a flag wins).
fn api_tls(p: &Parsed) -> crate::tls::ApiClientTls {
    let pick = |flag: &str, var: &str| {
        p.text(flag)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| env(var))
    };
    crate::tls::ApiClientTls {
        ca_file: pick("ca-file", "CONSUL_CACERT").map(Into::into),
        ca_path: pick("ca-path", "CONSUL_CAPATH").map(Into::into),
        client_cert: pick("client-cert", "CONSUL_CLIENT_CERT").map(Into::into),
        client_key: pick("client-key", "CONSUL_CLIENT_KEY").map(Into::into),
        server_name: pick("tls-server-name", "CONSUL_TLS_SERVER_NAME"),
        verify: env("CONSUL_HTTP_SSL_VERIFY")
            .and_then(|v| crate::flags::parse_bool(&v))
            .unwrap_or(true),
    }
}

/// An environment variable; set but empty counts as unset, as in Consul.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The token in a file, without the newline editors add.
fn read_token_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("failed to read token file {path}: {e}"))
}

/// Percent-encodes a path, keeping `/` and the characters Go's `url.URL` keeps.
///
/// KV keys and service IDs go in the path; escaping like Go keeps the URLs identical to
/// Consul's CLI (`:` and `@` stay as they are, a space becomes `%20`, never `+`).
pub(crate) fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'/'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Client {
    /// Builds a client from the shared HTTP flags, falling back on Consul's environment
    /// variables (`CONSUL_HTTP_ADDR`, `CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`,
    /// `CONSUL_HTTP_SSL`).
    pub(crate) fn from_flags(p: &Parsed) -> Result<Client, String> {
        let addr = p
            .text("http-addr")
            .map(str::to_string)
            .or_else(|| env("CONSUL_HTTP_ADDR"))
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let ssl = env("CONSUL_HTTP_SSL")
            .and_then(|v| crate::flags::parse_bool(&v))
            .unwrap_or(false);
        let base = base_url(&addr, ssl)?;
        // Consul's precedence: `-token`, `-token-file`, `CONSUL_HTTP_TOKEN`, then
        // `CONSUL_HTTP_TOKEN_FILE`.
        let token = match (p.text("token"), p.text("token-file")) {
            (Some(t), _) if !t.is_empty() => Some(t.to_string()),
            (_, Some(f)) if !f.is_empty() => Some(read_token_file(f)?),
            _ => match env("CONSUL_HTTP_TOKEN") {
                Some(t) => Some(t),
                None => match env("CONSUL_HTTP_TOKEN_FILE") {
                    Some(f) => Some(read_token_file(&f)?),
                    None => None,
                },
            },
        };
        let mut builder = crate::tls::http_client_builder().connect_timeout(CONNECT_TIMEOUT);
        // Certificates are read only for HTTPS: a plain-HTTP command with stale TLS variables
        // in its environment keeps working.
        if base.starts_with("https://") {
            let tls = crate::tls::api_client_config(&api_tls(p))?;
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Client {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
            datacenter: p.text("datacenter").map(str::to_string),
            stale: p.bool("stale"),
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)], read: bool) -> String {
        let mut url = format!("{}{}", self.base, escape_path(path));
        let mut q = form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (k, v) in query {
            q.append_pair(k, v);
            any = true;
        }
        if let Some(dc) = &self.datacenter {
            q.append_pair("dc", dc);
            any = true;
        }
        // `stale` only on reads: a write always goes to the leader.
        if read && self.stale {
            q.append_pair("stale", "");
            any = true;
        }
        if any {
            url.push('?');
            url.push_str(&q.finish());
        }
        url
    }

    /// Sends one request; any status is returned as a [`Reply`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let read = method == Method::GET;
        let url = self.url(path, query, read);
        let mut req = self.http.request(method.clone(), &url).timeout(timeout);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let transport = |e: reqwest::Error| Error::Transport {
            method: method.clone(),
            url: url.clone(),
            message: error_chain(&e),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let index = header_index(resp.headers());
        let body = resp.bytes().await.map_err(transport)?;
        Ok(Reply {
            status,
            index,
            body,
        })
    }

    /// Sends a request and turns a non-2xx status into [`Error::Status`], except a 404 when
    /// `allow_404` (KV reads: a missing key).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        allow_404: bool,
    ) -> Result<Reply, Error> {
        let reply = self
            .send(method, path, query, body, REQUEST_TIMEOUT)
            .await?;
        check(reply, allow_404)
    }

    /// `GET` a JSON document.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        self.call(Method::GET, path, query, None, false)
            .await?
            .json()
    }

    /// `GET` that accepts a 404 (returned as a reply with status 404).
    pub(crate) async fn get_allow_404(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Reply, Error> {
        self.call(Method::GET, path, query, None, true).await
    }

    /// `PUT` with an optional body.
    pub(crate) async fn put(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Reply, Error> {
        self.call(Method::PUT, path, query, body, false).await
    }

    /// `DELETE`.
    pub(crate) async fn delete(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Reply, Error> {
        self.call(Method::DELETE, path, query, None, false).await
    }

    /// `GET` a streamed body, handing each piece to `each` as it arrives, until the agent
    /// ends it (`/v1/agent/monitor`).
    ///
    /// No timeout: the stream runs until the agent ends it or the user interrupts.
    pub(crate) async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), Error> {
        let url = self.url(path, query, false);
        let transport = |e: reqwest::Error| Error::Transport {
            method: Method::GET,
            url: url.clone(),
            message: error_chain(&e),
        };
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let mut resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = resp.bytes().await.map_err(transport)?;
            return Err(Error::Status {
                status,
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            each(&chunk);
        }
        Ok(())
    }

    /// `GET` a large body (a snapshot), reporting progress as it arrives.
    pub(crate) async fn download(&self, path: &str) -> Result<Reply, Error> {
        let url = self.url(path, &[], true);
        let transport = |e: reqwest::Error| Error::Transport {
            method: Method::GET,
            url: url.clone(),
            message: error_chain(&e),
        };
        let mut req = self.http.get(&url).timeout(TRANSFER_TIMEOUT);
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        // The servers take the snapshot before the first byte arrives: say so while waiting.
        // On stderr, so that scripts reading stdout see only the result.
        let started = std::time::Instant::now();
        let send = req.send();
        tokio::pin!(send);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut resp = loop {
            tokio::select! {
                r = &mut send => break r.map_err(transport)?,
                _ = tick.tick() => eprintln!(
                    "Waiting for the servers to take the snapshot ({} s)",
                    started.elapsed().as_secs()
                ),
            }
        };
        let status = resp.status().as_u16();
        let index = header_index(resp.headers());
        let mut progress = Progress::new("received", resp.content_length());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            progress.add(chunk.len());
            body.extend_from_slice(&chunk);
        }
        progress.finish();
        check(
            Reply {
                status,
                index,
                body: Bytes::from(body),
            },
            false,
        )
    }

    /// `PUT` a large body (a snapshot), reporting progress as it is sent.
    pub(crate) async fn upload(&self, path: &str, body: Vec<u8>) -> Result<Reply, Error> {
        let url = self.url(path, &[], false);
        let transport = |e: reqwest::Error| Error::Transport {
            method: Method::PUT,
            url: url.clone(),
            message: error_chain(&e),
        };
        let total = body.len() as u64;
        let body = Bytes::from(body);
        let mut progress = Progress::new("sent", Some(total));
        let chunks: Vec<Bytes> = (0..body.len())
            .step_by(UPLOAD_CHUNK)
            .map(|at| body.slice(at..(at + UPLOAD_CHUNK).min(body.len())))
            .collect();
        let stream = tokio_stream::iter(chunks.into_iter().map(move |c| {
            progress.add(c.len());
            if progress.is_complete() {
                progress.finish();
            }
            Ok::<Bytes, std::io::Error>(c)
        }));
        let mut req = self
            .http
            .put(&url)
            .timeout(TRANSFER_TIMEOUT)
            // A streamed body would otherwise go chunked; with the length the agent knows the
            // size before reading it.
            .header(reqwest::header::CONTENT_LENGTH, total)
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let index = header_index(resp.headers());
        let body = resp.bytes().await.map_err(transport)?;
        check(
            Reply {
                status,
                index,
                body,
            },
            false,
        )
    }

    /// A blocking `GET`: waits until the result's index passes `index` (or the server's
    /// default wait elapses). A 404 is accepted (a watched key may not exist).
    pub(crate) async fn get_blocking(
        &self,
        path: &str,
        query: &[(&str, String)],
        index: u64,
    ) -> Result<Reply, Error> {
        let mut q: Vec<(&str, String)> = query.to_vec();
        if index > 0 {
            q.push(("index", index.to_string()));
        }
        // The server waits at most 10 minutes plus jitter (wait/16).
        let reply = self
            .send(Method::GET, path, &q, None, Duration::from_secs(700))
            .await?;
        check(reply, true)
    }
}

/// `X-Consul-Index`, 0 when absent.
///
/// 0 makes the next blocking query return at once, which is the right fallback for an
/// endpoint that does not block.
fn header_index(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The status check of every call; the body of an error is Consul's text, kept for the
/// message.
fn check(reply: Reply, allow_404: bool) -> Result<Reply, Error> {
    if (200..300).contains(&reply.status) || (allow_404 && reply.status == 404) {
        Ok(reply)
    } else {
        Err(Error::Status {
            status: reply.status,
            body: String::from_utf8_lossy(&reply.body).trim_end().to_string(),
        })
    }
}

/// A transport error as Go's client words it: `dial tcp: connect: <cause>` for a refused or
/// unreachable agent, the innermost cause otherwise.
fn error_chain(e: &reqwest::Error) -> String {
    let mut inner: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    let cause = inner.to_string();
    if e.is_timeout() {
        format!("timeout: {cause}")
    } else if e.is_connect() {
        format!("dial tcp: connect: {cause}")
    } else {
        cause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bare `host:port` gets `http://` (`https://` with `CONSUL_HTTP_SSL`); unix sockets and
    /// other schemes are refused.
    #[test]
    fn addresses() {
        assert_eq!(
            base_url("127.0.0.1:8500", false).as_deref(),
            Ok("http://127.0.0.1:8500")
        );
        assert_eq!(
            base_url("http://localhost:1/", false).as_deref(),
            Ok("http://localhost:1")
        );
        assert_eq!(base_url("https://x:1", false).as_deref(), Ok("https://x:1"));
        assert_eq!(base_url("x:1", true).as_deref(), Ok("https://x:1"));
        assert_eq!(base_url("http://x:1", true).as_deref(), Ok("http://x:1"));
        assert!(base_url("unix:///tmp/s", false).is_err());
        assert!(base_url("ftp://x", false).is_err());
    }

    /// Reserved and non-ASCII bytes are percent-encoded, `/` kept.
    #[test]
    fn paths_are_escaped() {
        assert_eq!(
            escape_path("/v1/kv/a b/c?d#e%"),
            "/v1/kv/a%20b/c%3Fd%23e%25"
        );
        assert_eq!(escape_path("/v1/kv/ünï"), "/v1/kv/%C3%BCn%C3%AF");
    }

    #[test]
    fn status_error_text() {
        let e = Error::Status {
            status: 400,
            body: "Missing key name".into(),
        };
        assert_eq!(
            e.to_string(),
            "Unexpected response code: 400 (Missing key name)"
        );
    }
}
