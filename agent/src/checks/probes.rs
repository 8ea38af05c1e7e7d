//! One run of an interval check, bounded by the check's timeout and mapped to a status and
//! output as Consul does: the [`Probe`] enum dispatches to the HTTP(S), TCP, UDP, gRPC,
//! H2PING, script, Docker and OSService implementations; shared helpers format errors the way Go
//! (and so Consul) prints them and keep the tail of long outputs.
//!
//! A probe is prepared once per runner (URL parsed, TLS configuration built) and run many
//! times, so the per-run work is only the I/O. A definition that cannot be prepared becomes a
//! [`Probe::Fixed`] result instead of an error: the check exists in the catalog either way,
//! and its output is the one place the operator will look for the reason.
//!
//! Outputs imitate Go's error texts (`connection refused`, `i/o timeout`), which alerts and
//! runbooks written for Consul may match on.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use cairn_catalog::model::HealthStatus;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::docker::{DockerProbe, Engine};
use super::grpc::GrpcProbe;
use super::h2ping::H2PingProbe;
use super::http::HttpProbe;
use super::os_service;
use crate::local::defs::CheckKind;

/// A prepared probe.
#[derive(Debug)]
pub enum Probe {
    /// HTTP or HTTPS request.
    Http(Box<HttpProbe>),
    /// TCP connect.
    Tcp {
        /// Address (`host:port`).
        addr: String,
        /// Timeout.
        timeout: Duration,
    },
    /// UDP datagram.
    Udp {
        /// Address (`host:port`).
        addr: String,
        /// Timeout (how long to wait for an answer or an error).
        timeout: Duration,
    },
    /// gRPC health protocol.
    Grpc(GrpcProbe),
    /// HTTP/2 PING.
    H2ping(H2PingProbe),
    /// Local script.
    Script {
        /// Program and arguments.
        args: Vec<String>,
        /// Timeout.
        timeout: Duration,
        /// Output cap.
        max_output: usize,
    },
    /// A command run in a container through the Docker Engine API.
    Docker(DockerProbe),
    /// systemd unit state.
    OsService {
        /// Unit name.
        unit: String,
        /// `systemctl`, when found.
        systemctl: Option<PathBuf>,
        /// Timeout.
        timeout: Duration,
    },
    /// A fixed result (a kind Cairn cannot run, or a definition that cannot be prepared).
    Fixed(HealthStatus, String),
}

impl Probe {
    /// Prepares a probe for a check kind.
    ///
    /// `timeout` bounds each run; `max_output` caps what a run keeps of a body or of a
    /// script's output, so a chatty target cannot make the agent buffer without limit.
    pub fn new(kind: &CheckKind, timeout: Duration, max_output: usize) -> Probe {
        match kind {
            CheckKind::Http {
                url,
                method,
                header,
                body,
                tls_skip_verify,
                tls_server_name,
                disable_redirects,
            } => match HttpProbe::new(
                url,
                method,
                header,
                body,
                *tls_skip_verify,
                tls_server_name,
                !*disable_redirects,
                timeout,
                max_output,
            ) {
                Ok(p) => Probe::Http(Box::new(p)),
                Err(e) => Probe::Fixed(HealthStatus::Critical, e),
            },
            CheckKind::Tcp { addr } => Probe::Tcp {
                addr: addr.clone(),
                timeout,
            },
            CheckKind::Udp { addr } => Probe::Udp {
                addr: addr.clone(),
                timeout,
            },
            CheckKind::Grpc {
                target,
                tls,
                tls_skip_verify,
                tls_server_name,
            } => match GrpcProbe::new(target, *tls, *tls_skip_verify, tls_server_name, timeout) {
                Ok(p) => Probe::Grpc(p),
                Err(e) => Probe::Fixed(HealthStatus::Critical, e),
            },
            CheckKind::H2ping {
                addr,
                tls,
                tls_skip_verify,
                tls_server_name,
            } => match H2PingProbe::new(addr, *tls, *tls_skip_verify, tls_server_name, timeout) {
                Ok(p) => Probe::H2ping(p),
                Err(e) => Probe::Fixed(HealthStatus::Critical, e),
            },
            CheckKind::Script { args } => Probe::Script {
                args: args.clone(),
                timeout,
                max_output,
            },
            CheckKind::OsService { name } => Probe::OsService {
                unit: name.clone(),
                systemctl: os_service::find_systemctl(),
                timeout,
            },
            // Through the Docker Engine API on the socket `DOCKER_HOST` names.
            CheckKind::Docker {
                container,
                shell,
                args,
                script,
            } => Probe::Docker(DockerProbe::new(
                Engine::from_env(),
                container,
                shell,
                args,
                script,
                timeout,
                max_output,
            )),
            // These have their own runners and never get here; a fixed result rather than a
            // panic if one ever does.
            CheckKind::Ttl(_) | CheckKind::Alias { .. } | CheckKind::None => Probe::Fixed(
                HealthStatus::Critical,
                format!("{} checks do not run on an interval", kind.type_name()),
            ),
        }
    }

    /// Runs once.
    pub async fn run(&self) -> (HealthStatus, String) {
        match self {
            Probe::Http(p) => p.run().await,
            Probe::Tcp { addr, timeout } => run_tcp(addr, *timeout).await,
            Probe::Udp { addr, timeout } => super::udp::run(addr, *timeout).await,
            Probe::Grpc(p) => p.run().await,
            Probe::H2ping(p) => p.run().await,
            Probe::Docker(p) => p.run().await,
            Probe::Script {
                args,
                timeout,
                max_output,
            } => run_script(args, *timeout, *max_output).await,
            Probe::OsService {
                unit,
                systemctl,
                timeout,
            } => os_service::run(systemctl.as_deref(), unit, *timeout).await,
            Probe::Fixed(status, output) => (*status, output.clone()),
        }
    }
}

/// Aborts a spawned task (a connection driver) when dropped.
///
/// hyper and h2 hand back a connection future that must be polled on its own task; tying
/// that task to this guard ends the connection with the run, so a probe never leaves a
/// connection (and its socket) behind when it times out or returns early.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Go's text for an I/O error (`connection refused`, `i/o timeout`, ...), as Consul's outputs
/// show them.
pub fn go_error(e: &io::Error) -> String {
    match e.kind() {
        // The kinds a probe meets most, spelled as Go's syscall errors are.
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::TimedOut => "i/o timeout".into(),
        io::ErrorKind::HostUnreachable => "no route to host".into(),
        io::ErrorKind::NetworkUnreachable => "network is unreachable".into(),
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            // Drop Rust's " (os error N)" suffix and lowercase like Go's strerror texts.
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// `dial <proto> <addr>: connect: <error>`, as Go's dialer reports a failed connect.
///
/// Go's shapes differ by failure, and Consul's outputs show them as is: a timeout has no
/// `connect:` part, a name that does not resolve reads `dial tcp: lookup <addr>: ...`.
pub fn dial_error(proto: &str, addr: &str, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut {
        return format!("dial {proto} {addr}: i/o timeout");
    }
    // An address that does not parse (no port, bad port) never reached a connect.
    if e.kind() == io::ErrorKind::InvalidInput {
        return format!("dial {proto} {addr}: {}", go_error(e));
    }
    if e.raw_os_error().is_none() {
        // Resolution errors carry no errno.
        return format!("dial {proto}: lookup {addr}: {}", go_error(e));
    }
    format!("dial {proto} {addr}: connect: {}", go_error(e))
}

/// Connects to `addr` (`host:port`, names resolved, every address tried in turn) within
/// `timeout`.
///
/// `TCP_NODELAY` is set: every probe writes a small request and waits for the answer, a
/// pattern where Nagle's algorithm only adds latency.
pub async fn connect_tcp(addr: &str, timeout: Duration) -> Result<tokio::net::TcpStream, String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(dial_error("tcp", addr, &e)),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Splits `host:port` (`[v6]:port` too) into the host as written (brackets kept) and the port.
///
/// The port is after the last colon; a host holding a colon must then be a bracketed
/// IPv6 literal, since `::1:80` cannot be split unambiguously. The host keeps its brackets
/// so that `host:port` can be rebuilt from it for a connect.
pub fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// Keeps the last `max` bytes written and counts all of them (Consul's circular output
/// buffer).
#[derive(Debug)]
pub struct Tail {
    /// The kept bytes, oldest first; never longer than `max`.
    buf: Vec<u8>,
    /// The cap (the check's OutputMaxSize).
    max: usize,
    /// Every byte ever pushed, for the `Captured N of M bytes` header.
    total: u64,
}

impl Tail {
    /// An empty buffer keeping at most `max` bytes.
    pub fn new(max: usize) -> Tail {
        Tail {
            buf: Vec::new(),
            max,
            total: 0,
        }
    }

    /// Appends bytes, dropping the oldest beyond the cap.
    pub fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        // Only the part of a large chunk that can survive is copied.
        let data = &data[data.len().saturating_sub(self.max)..];
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.max {
            let excess = self.buf.len() - self.max;
            self.buf.drain(..excess);
        }
    }

    /// The kept bytes as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Consul's script output: the text, prefixed with `Captured N of M bytes` when bytes were
    /// dropped.
    pub fn captured(&self) -> String {
        if self.total > self.buf.len() as u64 {
            format!(
                "Captured {} of {} bytes\n...\n{}",
                self.buf.len(),
                self.total,
                self.text()
            )
        } else {
            self.text()
        }
    }
}

/// A TCP check: passing when the connection is accepted, which is all Consul tests.
async fn run_tcp(addr: &str, timeout: Duration) -> (HealthStatus, String) {
    match connect_tcp(addr, timeout).await {
        Ok(_) => (
            HealthStatus::Passing,
            format!("TCP connect {addr}: Success"),
        ),
        Err(e) => (HealthStatus::Critical, e),
    }
}

/// Reads a pipe to its end into `tail`. A read error ends it like EOF: the script's exit
/// status, not its pipes, decides the result.
async fn drain<R: AsyncRead + Unpin>(reader: Option<R>, tail: &mut Tail) {
    let Some(mut r) = reader else { return };
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.push(&buf[..n]);
    }
}

/// A script check: exit 0 passing, 1 warning, anything else (or a signal) critical, as
/// Consul maps exit codes. The program is run directly, without a shell, as Consul runs
/// `Args`.
async fn run_script(args: &[String], timeout: Duration, max: usize) -> (HealthStatus, String) {
    let Some((prog, rest)) = args.split_first() else {
        return (HealthStatus::Critical, "empty script arguments".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(rest)
        // No stdin: a script that reads input would otherwise share the agent's.
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // If the runner is aborted mid-run (check removed, agent stopping), the child dies
        // with it instead of being left behind.
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
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let mut out = Tail::new(max);
    let mut err = Tail::new(max);
    let finished = {
        // Both pipes are drained together so a chatty stderr cannot block the script.
        let collect = async {
            tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err));
            child.wait().await
        };
        tokio::time::timeout(timeout, collect).await
    };
    // The output is stdout's tail followed by stderr's, capped together: with both over
    // the cap, stderr's end (usually the error) is what remains. The total counts both
    // streams, so the header stays exact.
    let mut all = Tail::new(max);
    all.push(&out.buf);
    all.push(&err.buf);
    all.total = out.total + err.total;
    match finished {
        Err(_) => {
            // Kill it and wait, so the next run never overlaps this one.
            let _ = child.start_kill();
            // Bounded: a process stuck in the kernel can outlive SIGKILL for a while, and the
            // runner must not hang with it.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let mut msg = format!("Timed out ({timeout:?}) running check");
            let text = all.captured();
            if !text.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&text);
            }
            (HealthStatus::Critical, msg)
        }
        Ok(status) => {
            let st = match status.ok().and_then(|s| s.code()) {
                Some(0) => HealthStatus::Passing,
                Some(1) => HealthStatus::Warning,
                _ => HealthStatus::Critical,
            };
            (st, all.captured())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    /// The buffer keeps the newest bytes and reports what it dropped.
    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        assert_eq!(t.captured(), "ab");
        t.push(b"cdef");
        assert_eq!(t.text(), "cdef");
        t.push(b"0123456789");
        assert_eq!(t.captured(), "Captured 4 of 16 bytes\n...\n6789");
    }

    /// IPv6 needs brackets; a missing host or an out-of-range port is refused.
    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("a.b:80"), Some(("a.b", 80)));
        assert_eq!(split_host_port("[::1]:8080"), Some(("[::1]", 8080)));
        assert_eq!(split_host_port("::1"), None);
        assert_eq!(split_host_port("host"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("h:99999"), None);
    }

    /// Error texts match Go's, errno 111 being ECONNREFUSED on Linux.
    #[test]
    fn errors_read_like_go() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(go_error(&e), "connection refused");
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(
            dial_error("tcp", "127.0.0.1:1", &e),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }

    #[tokio::test]
    async fn tcp_open_and_closed() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let (st, out) = run_tcp(&addr, Duration::from_secs(2)).await;
        assert_eq!((st, out), (Passing, format!("TCP connect {addr}: Success")));
        drop(l);
        let (st, out) = run_tcp(&addr, Duration::from_secs(2)).await;
        assert_eq!(st, Critical);
        assert!(out.ends_with("connect: connection refused"), "{out}");
    }

    /// Exit codes map as in Consul; large outputs keep their tail; a timeout kills the script
    /// and keeps what it printed; a missing program is critical.
    #[tokio::test]
    async fn script_exit_codes_and_output() {
        let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".to_string(), s.to_string()];
        let t = Duration::from_secs(5);
        assert_eq!(
            run_script(&sh("echo ok"), t, 4096).await,
            (Passing, "ok\n".into())
        );
        assert_eq!(
            run_script(&sh("echo w >&2; exit 1"), t, 4096).await.0,
            Warning
        );
        assert_eq!(run_script(&sh("exit 2"), t, 4096).await.0, Critical);
        let (st, out) = run_script(&sh("head -c 100000 /dev/zero | tr '\\0' x"), t, 10).await;
        assert_eq!(st, Passing);
        assert_eq!(out, "Captured 10 of 100000 bytes\n...\nxxxxxxxxxx");
        let (st, out) = run_script(
            &sh("echo before; sleep 5"),
            Duration::from_millis(300),
            4096,
        )
        .await;
        assert_eq!(st, Critical);
        assert_eq!(out, "Timed out (300ms) running check\n\nbefore\n");
        let (st, out) = run_script(&["/nonexistent/x".to_string()], t, 4096).await;
        assert_eq!(st, Critical);
        assert!(out.starts_with("Failed to start"), "{out}");
    }
}
