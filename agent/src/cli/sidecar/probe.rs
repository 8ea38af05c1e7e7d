//! Health probes with Consul's result mapping: an HTTP GET (2xx passing, 429 warning, anything
//! else critical), a TCP connect (connected passing, else critical) and a shell command (exit 0
//! passing, 1 warning, anything else critical). Outputs are capped at 4 KB, as the agent's.
//!
//! The mappings are Consul's so that a service's health means the same whether the agent
//! runs the check or the sidecar feeds it.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use cairn_catalog::duration::format_go_duration;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Command;

/// The most output kept from one probe (Consul's default `OutputMaxSize`).
pub(crate) const OUTPUT_MAX: usize = 4096;

/// A check status as the agent API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Healthy.
    Passing,
    /// Degraded.
    Warning,
    /// Unhealthy.
    Critical,
}

impl Status {
    /// `passing`, `warning` or `critical`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// One kind of health probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// `GET` this URL.
    Http(String),
    /// Connect to this `host:port`.
    Tcp(String),
    /// Run this through `sh -c`.
    Cmd(String),
}

impl Probe {
    /// A short description for notes and logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Probe::Http(u) => format!("HTTP GET {u}"),
            Probe::Tcp(a) => format!("TCP connect {a}"),
            Probe::Cmd(c) => format!("command {c:?}"),
        }
    }
}

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The status it maps to.
    pub status: Status,
    /// What it said (capped at [`OUTPUT_MAX`] bytes).
    pub output: String,
}

impl Outcome {
    fn new(status: Status, output: impl Into<String>) -> Outcome {
        Outcome {
            status,
            output: truncate(output.into()),
        }
    }
}

/// Consul's HTTP check mapping: 2xx passing, 429 warning, anything else critical.
pub(crate) fn http_status(code: u16) -> Status {
    match code {
        200..=299 => Status::Passing,
        429 => Status::Warning,
        _ => Status::Critical,
    }
}

/// Consul's script check mapping: exit 0 passing, 1 warning, anything else (or a signal)
/// critical.
pub(crate) fn exit_status(code: Option<i32>) -> Status {
    match code {
        Some(0) => Status::Passing,
        Some(1) => Status::Warning,
        _ => Status::Critical,
    }
}

/// Cuts `s` to at most [`OUTPUT_MAX`] bytes on a character boundary.
///
/// A character boundary keeps the output valid UTF-8 for the JSON it is sent in.
pub(crate) fn truncate(mut s: String) -> String {
    if s.len() > OUTPUT_MAX {
        let mut end = OUTPUT_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Runs probes with a per-run timeout.
#[derive(Clone, Debug)]
pub(crate) struct Prober {
    http: reqwest::Client,
    timeout: Duration,
}

impl Prober {
    /// A prober whose runs time out after `timeout`. HTTP redirects are not followed and no
    /// proxy from the environment is used: the target is a local endpoint.
    ///
    /// Without `no_proxy`, an `HTTP_PROXY` in the environment would send a probe of
    /// `127.0.0.1` through the proxy and test the proxy instead of the service.
    pub(crate) fn new(timeout: Duration) -> Result<Prober, String> {
        let http = crate::tls::http_client_builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("failed to build the HTTP client: {e}"))?;
        Ok(Prober { http, timeout })
    }

    /// Runs one probe.
    pub(crate) async fn run(&self, probe: &Probe) -> Outcome {
        match probe {
            Probe::Http(url) => self.http(url).await,
            Probe::Tcp(addr) => self.tcp(addr).await,
            Probe::Cmd(cmd) => self.cmd(cmd).await,
        }
    }

    async fn http(&self, url: &str) -> Outcome {
        let sent = self
            .http
            .get(url)
            // Its own User-Agent, so the service's logs tell the sidecar's probes from the agent's
            // checks.
            .header("User-Agent", "Cairn Sidecar Health Check")
            .header("Accept", "text/plain, text/*, */*")
            .timeout(self.timeout)
            .send()
            .await;
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_timeout() {
                    format!(
                        "timed out after {} (Client.Timeout exceeded)",
                        format_go_duration(self.timeout)
                    )
                } else {
                    innermost(&e)
                };
                return Outcome::new(Status::Critical, format!("Get {url:?}: {why}"));
            }
        };
        let code = resp.status();
        // Keep at most OUTPUT_MAX bytes of the body; a body that fails midway still counts.
        let mut body = Vec::new();
        while body.len() < OUTPUT_MAX {
            match tokio::time::timeout(self.timeout, resp.chunk()).await {
                // Each read is bounded too: a stalled body ends the read, and what arrived is
                // kept for the output.
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(OUTPUT_MAX);
        let text = String::from_utf8_lossy(&body);
        Outcome::new(
            http_status(code.as_u16()),
            format!(
                "HTTP GET {url}: {} {} Output: {}",
                code.as_u16(),
                code.canonical_reason().unwrap_or(""),
                text.trim_end()
            ),
        )
    }

    async fn tcp(&self, addr: &str) -> Outcome {
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Outcome::new(Status::Passing, format!("TCP connect {addr}: Success")),
            Ok(Err(e)) => Outcome::new(Status::Critical, format!("dial tcp {addr}: {e}")),
            Err(_) => Outcome::new(Status::Critical, format!("dial tcp {addr}: i/o timeout")),
        }
    }

    async fn cmd(&self, cmd: &str) -> Outcome {
        let child = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a timeout kills what the shell started along with it.
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                return Outcome::new(
                    Status::Critical,
                    format!("failed to run the health command: {e}"),
                );
            }
        };
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let text = text.trim_end().to_string();
                let text = if text.is_empty() {
                    match (out.status.code(), out.status.signal()) {
                        (Some(c), _) => format!("health command exited with code {c}"),
                        (None, Some(s)) => format!("health command killed by signal {s}"),
                        _ => "health command ended".to_string(),
                    }
                } else {
                    text
                };
                Outcome::new(exit_status(out.status.code()), text)
            }
            Ok(Err(e)) => Outcome::new(
                Status::Critical,
                format!("failed to wait for the health command: {e}"),
            ),
            Err(_) => {
                // The shell was killed on drop; end whatever it started too.
                if let Some(pid) = pid {
                    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                }
                Outcome::new(
                    Status::Critical,
                    format!(
                        "Timed out ({}) running check",
                        format_go_duration(self.timeout)
                    ),
                )
            }
        }
    }
}

/// The innermost cause of an error (`connection refused` rather than a chain of wrappers).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    inner.to_string()
}
