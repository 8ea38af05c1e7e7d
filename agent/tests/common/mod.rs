//! Shared helpers of the HTTP API integration tests: a real `cairn agent -dev` process on
//! loopback with free ports (killed on drop), an HTTP client returning status, headers and
//! JSON body, polling with a deadline, and a tiny HTTP server for HTTP checks.
//!
//! Every test starts its own agent, so tests run in parallel without sharing state.

#![allow(dead_code)]

pub mod cluster;
pub mod inproc;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an agent may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Upper bound of any single request (blocking queries included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

/// A port that was free a moment ago (bind port 0, take the port, release it).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
        if not_handed_out(port) {
            return port;
        }
    }
}

/// The kernel may return a port it returned a moment ago once that listener is closed: never
/// give the same port twice in one test process (two roles of one agent would collide).
pub fn not_handed_out(port: u16) -> bool {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    if given.contains(&port) {
        return false;
    }
    given.push(port);
    true
}

/// An HTTP answer: status, headers, raw body and the body as JSON (`Null` when empty or not
/// JSON).
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub bytes: Vec<u8>,
    /// Body decoded as JSON, `Value::Null` if it is not JSON.
    pub body: Value,
}

impl Resp {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    }

    /// `X-Consul-Index`, which must be present.
    pub fn index(&self) -> u64 {
        let v = self
            .header("X-Consul-Index")
            .unwrap_or_else(|| panic!("no X-Consul-Index in {self:?}"));
        v.parse().expect("X-Consul-Index is an integer")
    }

    /// Asserts the status, showing the body on failure; returns self for chaining.
    #[track_caller]
    pub fn expect_status(self, status: u16) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status, body: {:?}",
            self.text()
        );
        self
    }
}

/// Builds an agent with extra flags or a config file.
#[derive(Default)]
pub struct AgentBuilder {
    flags: Vec<String>,
    config: Option<Value>,
    node: Option<String>,
    ulimit: Option<String>,
    token: Option<String>,
}

impl AgentBuilder {
    /// Adds a command-line flag (and its value as a separate argument if needed).
    pub fn flag(mut self, f: &str) -> AgentBuilder {
        self.flags.push(f.to_string());
        self
    }

    /// Writes this JSON as a config file and passes `-config-file`.
    pub fn config(mut self, v: Value) -> AgentBuilder {
        self.config = Some(v);
        self
    }

    /// Starts the agent under these shell `ulimit` arguments (e.g. `-n 1024`).
    pub fn ulimit(mut self, args: &str) -> AgentBuilder {
        self.ulimit = Some(args.to_string());
        self
    }

    /// The ACL token the helpers send (`X-Consul-Token`), readiness checks included.
    pub fn token(mut self, t: &str) -> AgentBuilder {
        self.token = Some(t.to_string());
        self
    }

    /// Node name (default: a unique `test-...` name).
    pub fn node(mut self, name: &str) -> AgentBuilder {
        self.node = Some(name.to_string());
        self
    }

    /// Starts the agent and waits until it answers as the leader. Retries with new ports if
    /// a port was taken between choosing it and the agent binding it.
    pub async fn start(self) -> Agent {
        let mut last_log = String::new();
        for _ in 0..3 {
            match self.try_start().await {
                Ok(a) => return a,
                Err(log) => last_log = log,
            }
        }
        panic!("agent did not start; last log:\n{last_log}");
    }

    async fn try_start(&self) -> Result<Agent, String> {
        let node = self
            .node
            .clone()
            .unwrap_or_else(|| format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let dir = std::env::temp_dir().join(format!("cairn-apitest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create test dir");
        let config_path = dir.join("config.json");
        let log_path = dir.join("agent.log");
        let http_port = free_port();
        let mut args: Vec<String> = vec![
            "agent".into(),
            "-dev".into(),
            "-node".into(),
            node.clone(),
            "-http-port".into(),
            http_port.to_string(),
            "-dns-port".into(),
            free_port().to_string(),
            "-server-port".into(),
            free_port().to_string(),
            "-serf-lan-port".into(),
            free_port().to_string(),
            "-serf-wan-port".into(),
            free_port().to_string(),
        ];
        if let Some(cfg) = &self.config {
            write_json(&config_path, cfg);
            args.push("-config-file".into());
            args.push(config_path.display().to_string());
        }
        args.extend(self.flags.iter().cloned());
        let log = std::fs::File::create(&log_path).expect("create log file");
        let mut command = match &self.ulimit {
            None => Command::new(env!("CARGO_BIN_EXE_cairn")),
            Some(limits) => {
                // The shell sets the limit and becomes the agent (same pid).
                let mut c = Command::new("/bin/sh");
                c.arg("-c")
                    .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_cairn"));
                c
            }
        };
        let child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn cairn");
        let mut agent = Agent {
            child: Some(child),
            http_port,
            base: format!("http://127.0.0.1:{http_port}"),
            node,
            dir,
            config_path,
            client: client(),
            token: self.token.clone(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = agent.try_wait() {
                let log = agent.log();
                agent.child = None;
                return Err(format!("agent exited with {status} during start:\n{log}"));
            }
            if Instant::now() > deadline {
                return Err(format!("agent not ready in time:\n{}", agent.log()));
            }
            if agent.is_ready().await {
                return Ok(agent);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("encode config"))
        .expect("write config");
}

/// A client that neither follows redirects nor uses proxies from the environment.
pub fn client() -> reqwest::Client {
    // reqwest builds a rustls configuration even for plain HTTP; Cairn uses ring, installed
    // here as the process's provider since a test has no `main` of Cairn's.
    cairn::tls::install_default_provider();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build HTTP client")
}

/// A running `cairn agent -dev`, killed when dropped.
pub struct Agent {
    child: Option<Child>,
    /// HTTP port.
    pub http_port: u16,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Node name.
    pub node: String,
    /// Private directory (config file, log).
    pub dir: PathBuf,
    /// Path of the config file (written only when the builder had one).
    pub config_path: PathBuf,
    client: reqwest::Client,
    /// The token the helpers send, if any.
    pub token: Option<String>,
}

impl Agent {
    /// A plain `-dev` agent.
    pub async fn start() -> Agent {
        AgentBuilder::default().start().await
    }

    /// A builder for an agent with extra flags or a config file.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// This agent answers, as itself (not another process on a reused port), with a leader.
    async fn is_ready(&self) -> bool {
        let mut req = self.client.get(self.url("/v1/agent/self"));
        if let Some(t) = &self.token {
            req = req.header("X-Consul-Token", t);
        }
        let Ok(r) = req.send().await else {
            return false;
        };
        let Ok(v) = r.json::<Value>().await else {
            return false;
        };
        if v["Config"]["NodeName"] != Value::String(self.node.clone()) {
            return false;
        }
        let Ok(r) = self.client.get(self.url("/v1/status/leader")).send().await else {
            return false;
        };
        r.status().is_success() && r.json::<String>().await.is_ok_and(|l| !l.is_empty())
    }

    /// Full URL of a path (`/v1/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The HTTP client used by the helpers (no redirects, no proxy).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Any request with an optional raw body.
    pub async fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Resp {
        let mut rb = self.client.request(method.clone(), self.url(path));
        if let Some(t) = &self.token {
            rb = rb.header("X-Consul-Token", t);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        into_resp(r).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, None).await
    }

    /// PUT with a raw body.
    pub async fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.request(Method::PUT, path, Some(body.into())).await
    }

    /// PUT with a JSON body.
    pub async fn put_json(&self, path: &str, v: &Value) -> Resp {
        self.put(path, serde_json::to_vec(v).expect("encode body"))
            .await
    }

    /// PUT without a body.
    pub async fn put_empty(&self, path: &str) -> Resp {
        self.request(Method::PUT, path, None).await
    }

    /// POST with a raw body.
    pub async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.request(Method::POST, path, Some(body.into())).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, None).await
    }

    /// Registers a service through the agent API, asserting success.
    pub async fn register_service(&self, v: &Value) {
        self.put_json("/v1/agent/service/register", v)
            .await
            .expect_status(200);
    }

    /// Registers a check through the agent API, asserting success.
    pub async fn register_check(&self, v: &Value) {
        self.put_json("/v1/agent/check/register", v)
            .await
            .expect_status(200);
    }

    /// The agent's checks (`/v1/agent/checks`).
    pub async fn checks(&self) -> Value {
        self.get("/v1/agent/checks").await.expect_status(200).body
    }

    /// One agent check's JSON (`Null` when absent).
    pub async fn check(&self, id: &str) -> Value {
        self.checks().await[id].clone()
    }

    /// Polls `f` every 25 ms until it returns `Some`, failing after `timeout`.
    pub async fn eventually<T, F, Fut>(&self, what: &str, timeout: Duration, f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        eventually(what, timeout, f).await
    }

    /// The agent's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The process's exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("query child status"))
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Rewrites the config file (for reload tests).
    pub fn write_config(&self, v: &Value) {
        write_json(&self.config_path, v);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "---- agent {} log (last lines) ----\n{}",
                self.node,
                tail.join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("read body").to_vec();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        bytes,
        body,
    }
}

/// Polls `f` every 25 ms until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A minimal HTTP server answering every request with a settable status (for HTTP checks).
pub struct StatusServer {
    /// Its address.
    pub addr: SocketAddr,
    status: Arc<AtomicU16>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusServer {
    /// Starts on a free loopback port, answering `status`.
    pub async fn start(status: u16) -> StatusServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test HTTP server");
        let addr = listener.local_addr().expect("local addr");
        let code = Arc::new(AtomicU16::new(status));
        let shared = Arc::clone(&code);
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let code = shared.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    // Read the request head; the checks send no body.
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = format!("status {code}");
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        StatusServer {
            addr,
            status: code,
            task,
        }
    }

    /// Changes the status answered from now on.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts that a JSON object has exactly these keys.
#[track_caller]
pub fn assert_keys(v: &Value, keys: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let mut have: Vec<&str> = obj.keys().map(String::as_str).collect();
    have.sort_unstable();
    let mut want: Vec<&str> = keys.to_vec();
    want.sort_unstable();
    assert_eq!(have, want, "keys of {v}");
}

/// Asserts that a JSON object has at least these keys.
#[track_caller]
pub fn assert_has_keys(v: &Value, keys: &[&str]) {
    for k in keys {
        assert!(v.get(k).is_some(), "{k:?} missing in {v}");
    }
}

/// Base64 of a string, as KV values travel.
pub fn b64(s: &str) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
