//! Clusters of real agent processes on a loopback /24 of their own (127.x.y.2, .3, ...):
//! servers with `-bootstrap-expect`, client agents, restartable nodes and signals. Network
//! faults are tested in process, on the in-memory networks (`inproc`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::free_port;

/// One agent process (restartable with the same identity, addresses and data).
pub struct Node {
    /// Node name.
    pub name: String,
    /// Its loopback address.
    pub ip: String,
    /// Its directory (data, logs, config).
    pub dir: PathBuf,
    /// Its command line.
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn cairn");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill9();
    }
}

/// A cluster of agent processes sharing ports on distinct loopback addresses.
pub struct Cluster {
    /// The nodes, servers first.
    pub servers: Vec<Node>,
    /// HTTP port (same on every address).
    pub http_port: u16,
    /// Server RPC port.
    pub rpc_port: u16,
    /// Gossip port.
    pub serf_port: u16,
    client: reqwest::Client,
    root: PathBuf,
    net: String,
    ports: (u16, u16, u16, u16, u16),
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.signal("-CONT");
            s.kill9();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A loopback /24 of its own for each cluster, so parallel tests never share addresses.
fn subnet() -> String {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    format!("127.{}.{}", 20 + b[0] % 200, 1 + b[1] % 250)
}

/// How a node is started.
#[derive(Clone, Debug, Default)]
pub struct NodeSpec {
    /// A server (with `-bootstrap-expect=expect`) or a client agent.
    pub server: bool,
    /// Servers to expect before bootstrapping.
    pub expect: usize,
    /// Gossip encryption key.
    pub encrypt: Option<String>,
    /// Extra config merged into the node's config file.
    pub extra: Value,
}

impl Cluster {
    /// Starts `n` servers expecting `expect` for bootstrap, with extra config, and waits for an
    /// agreed leader.
    pub async fn start(n: usize, expect: usize, extra: Value) -> Cluster {
        let mut c = Cluster::empty();
        for _ in 0..n {
            c.add(NodeSpec {
                server: true,
                expect,
                encrypt: None,
                extra: extra.clone(),
            });
        }
        c.wait_leader(&c.indices(), Duration::from_secs(30)).await;
        c
    }

    /// A cluster with no node yet: its own addresses and ports.
    pub fn empty() -> Cluster {
        let ports = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        Cluster {
            servers: Vec::new(),
            http_port: ports.0,
            rpc_port: ports.2,
            serf_port: ports.3,
            client: super::client(),
            root: std::env::temp_dir().join(format!("cairn-cluster-{}", uuid::Uuid::new_v4())),
            net: subnet(),
            ports,
        }
    }

    /// Starts one more node (joining the first node's gossip address); returns its index.
    pub fn add(&mut self, spec: NodeSpec) -> usize {
        let i = self.servers.len();
        let (http, dns, rpc, serf, wan) = self.ports;
        let ip = format!("{}.{}", self.net, i + 2);
        let name = format!("{}{}", if spec.server { "s" } else { "c" }, i + 1);
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cfg = json!({
            "autopilot": {"server_stabilization_time": "1s"},
            "performance": {"rpc_hold_timeout": "3s"},
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut cfg, &spec.extra) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        let cfg_path = dir.join("extra.json");
        std::fs::write(&cfg_path, cfg.to_string()).expect("config");
        let mut args: Vec<String> = vec!["agent".into()];
        if spec.server {
            args.push("-server".into());
            args.push(format!("-bootstrap-expect={}", spec.expect));
        }
        if let Some(key) = &spec.encrypt {
            args.push("-encrypt".into());
            args.push(key.clone());
        }
        let rest: Vec<String> = [
            "-node",
            &name,
            "-bind",
            &ip,
            "-client",
            &ip,
            "-data-dir",
            &dir.join("data").display().to_string(),
            "-retry-join",
            &format!("{}.2:{serf}", self.net),
            "-retry-interval",
            "500ms",
            "-http-port",
            &http.to_string(),
            "-dns-port",
            &dns.to_string(),
            "-server-port",
            &rpc.to_string(),
            "-serf-lan-port",
            &serf.to_string(),
            "-serf-wan-port",
            &wan.to_string(),
            "-config-file",
            &cfg_path.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(rest);
        let mut n = Node {
            name,
            ip,
            dir,
            args,
            child: None,
        };
        n.spawn();
        self.servers.push(n);
        i
    }

    /// Members as node `i` sees them: name -> status (1 alive, 2 leaving, 3 left, 4 failed).
    pub async fn members(&self, i: usize) -> std::collections::BTreeMap<String, u64> {
        match self.get(i, "/v1/agent/members").await {
            Some((200, Value::Array(ms))) => ms
                .iter()
                .filter_map(|m| Some((m["Name"].as_str()?.to_string(), m["Status"].as_u64()?)))
                .collect(),
            _ => Default::default(),
        }
    }

    /// Waits until `pred` holds for node `i`'s member view.
    pub async fn wait_members(
        &self,
        i: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&std::collections::BTreeMap<String, u64>) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let m = self.members(i).await;
            if pred(&m) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what}; members: {m:?}\n{}",
                self.servers[i].name,
                tail(&self.servers[i].log())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn indices(&self) -> Vec<usize> {
        (0..self.servers.len()).collect()
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}:{}{path}", self.servers[i].ip, self.http_port)
    }

    pub fn rpc_addr(&self, i: usize) -> String {
        format!("{}:{}", self.servers[i].ip, self.rpc_port)
    }

    pub async fn get(&self, i: usize, path: &str) -> Option<(u16, Value)> {
        let r = self
            .client
            .get(self.url(i, path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let body = r.json().await.unwrap_or(Value::Null);
        Some((status, body))
    }

    pub async fn put(&self, i: usize, path: &str, body: &str) -> Option<(u16, String)> {
        let r = self
            .client
            .put(self.url(i, path))
            .body(body.to_string())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        Some((status, r.text().await.unwrap_or_default()))
    }

    /// Index of the server that all of `among` agree is the leader.
    pub async fn wait_leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let mut seen = BTreeSet::new();
            for &i in among {
                match self.get(i, "/v1/status/leader").await {
                    Some((200, Value::String(l))) if !l.is_empty() => {
                        seen.insert(l);
                    }
                    _ => {
                        seen.insert(String::new());
                    }
                }
            }
            if seen.len() == 1 && !seen.contains("") {
                let leader = seen.iter().next().cloned().unwrap_or_default();
                if let Some(i) = among.iter().copied().find(|&i| self.rpc_addr(i) == leader) {
                    return i;
                }
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = among
                    .iter()
                    .map(|&i| {
                        format!(
                            "--- {} ---\n{}",
                            self.servers[i].name,
                            tail(&self.servers[i].log())
                        )
                    })
                    .collect();
                panic!(
                    "no agreed leader among {among:?}: {seen:?}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a stale read of `key` on server `i` returns `value`.
    pub async fn wait_value(&self, i: usize, key: &str, value: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some((200, body)) = self.get(i, &format!("/v1/kv/{key}?stale")).await {
                let got = body[0]["Value"].as_str().map(decode_b64);
                if got.as_deref() == Some(value) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw {key}={value}\n{}",
                self.servers[i].name,
                tail(&self.servers[i].log())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Keys under a prefix, read with `?consistent` from server `i`.
    pub async fn consistent_keys(&self, i: usize, prefix: &str) -> BTreeSet<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some((status, body)) = self
                .get(i, &format!("/v1/kv/{prefix}?keys&consistent"))
                .await
            {
                if status == 200 {
                    return body
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                }
                if status == 404 {
                    return BTreeSet::new();
                }
            }
            assert!(Instant::now() < deadline, "consistent read never succeeded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn decode_b64(s: &str) -> String {
    use base64::Engine;
    String::from_utf8_lossy(
        &base64::engine::general_purpose::STANDARD
            .decode(s)
            .unwrap_or_default(),
    )
    .into_owned()
}

pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
