//! One run of an interval check: HTTP request, TCP connect or local script, bounded by the
//! check's timeout, mapped to a status and output as Consul does.

use std::time::Duration;

use cairn_catalog::model::HealthStatus;
use tokio::io::AsyncReadExt;

use crate::local::defs::{CheckKind, DEFAULT_OUTPUT_MAX};
use crate::local::truncate_output;

/// A prepared probe.
pub enum Probe {
    /// HTTP.
    Http {
        /// Client (redirects off).
        client: reqwest::Client,
        /// Method.
        method: reqwest::Method,
        /// URL.
        url: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: String,
        /// Timeout.
        timeout: Duration,
    },
    /// TCP connect.
    Tcp {
        /// Address.
        addr: String,
        /// Timeout.
        timeout: Duration,
    },
    /// Local script.
    Script {
        /// Program and arguments.
        args: Vec<String>,
        /// Timeout.
        timeout: Duration,
    },
    /// Nothing to run.
    Unsupported,
}

impl Probe {
    /// Prepares a probe for a check kind.
    pub fn new(kind: &CheckKind, timeout: Duration, client: reqwest::Client) -> Probe {
        match kind {
            CheckKind::Http {
                url,
                method,
                header,
                body,
                ..
            } => Probe::Http {
                client,
                method: reqwest::Method::from_bytes(method.as_bytes())
                    .unwrap_or(reqwest::Method::GET),
                url: url.clone(),
                headers: header
                    .iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                    .collect(),
                body: body.clone(),
                timeout,
            },
            CheckKind::Tcp { addr } => Probe::Tcp {
                addr: addr.clone(),
                timeout,
            },
            CheckKind::Script { args } => Probe::Script {
                args: args.clone(),
                timeout,
            },
            _ => Probe::Unsupported,
        }
    }

    /// Runs once.
    pub async fn run(&self) -> (HealthStatus, String) {
        match self {
            Probe::Http {
                client,
                method,
                url,
                headers,
                body,
                timeout,
            } => {
                let mut req = client.request(method.clone(), url).timeout(*timeout);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                if !body.is_empty() {
                    req = req.body(body.clone());
                }
                match req.send().await {
                    Err(e) => (
                        HealthStatus::Critical,
                        format!("Get {url:?}: {}", error_chain(&e)),
                    ),
                    Ok(resp) => {
                        let code = resp.status();
                        let text = match tokio::time::timeout(*timeout, resp.bytes()).await {
                            Ok(Ok(b)) => {
                                String::from_utf8_lossy(&b[..b.len().min(DEFAULT_OUTPUT_MAX)])
                                    .into_owned()
                            }
                            _ => String::new(),
                        };
                        let status = if code.is_success() {
                            HealthStatus::Passing
                        } else if code.as_u16() == 429 {
                            HealthStatus::Warning
                        } else {
                            HealthStatus::Critical
                        };
                        (
                            status,
                            format!("HTTP {method} {url}: {code} Output: {text}"),
                        )
                    }
                }
            }
            Probe::Tcp { addr, timeout } => {
                match tokio::time::timeout(*timeout, tokio::net::TcpStream::connect(addr.as_str()))
                    .await
                {
                    Ok(Ok(_)) => (
                        HealthStatus::Passing,
                        format!("TCP connect {addr}: Success"),
                    ),
                    Ok(Err(e)) => (HealthStatus::Critical, format!("dial tcp {addr}: {e}")),
                    Err(_) => (
                        HealthStatus::Critical,
                        format!("dial tcp {addr}: i/o timeout"),
                    ),
                }
            }
            Probe::Script { args, timeout } => run_script(args, *timeout).await,
            Probe::Unsupported => (HealthStatus::Critical, "unsupported check".into()),
        }
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

async fn run_script(args: &[String], timeout: Duration) -> (HealthStatus, String) {
    let Some((prog, rest)) = args.split_first() else {
        return (HealthStatus::Critical, "empty script arguments".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                HealthStatus::Critical,
                format!("Failed to start {prog}: {e}"),
            );
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let collect = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut out).await;
        }
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(64 * 1024).read_to_end(&mut err).await;
        }
        let status = child.wait().await;
        out.extend_from_slice(&err);
        (status, out)
    };
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => (
            HealthStatus::Critical,
            format!("Timed out ({timeout:?}) running check"),
        ),
        Ok((status, out)) => {
            let text = truncate_output(&String::from_utf8_lossy(&out), DEFAULT_OUTPUT_MAX);
            let code = status.ok().and_then(|s| s.code());
            let st = match code {
                Some(0) => HealthStatus::Passing,
                Some(1) => HealthStatus::Warning,
                _ => HealthStatus::Critical,
            };
            (st, text)
        }
    }
}
