//! Whole clusters in one test process: servers and client agents built from the library
//! (`cairn::agent::Agent`) on in-memory networks (server RPC and gossip), with paused tokio time
//! and every random choice drawn from one seed, so a run is reproducible. Requests go to an
//! agent's HTTP API as a tower service: no socket is opened anywhere.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use cairn::agent::{Agent, MemoryNetworks, Networks};
use cairn::rpc::transport::MemoryNet;
use cairn_gossip::transport::memory::MemoryNetwork;
use serde_json::Value;

/// One agent of the cluster.
pub struct Member {
    /// Node name.
    pub name: String,
    /// Its address.
    pub ip: String,
    /// Whether it is a server.
    pub server: bool,
    /// The running agent (`None` while crashed).
    pub agent: Option<Arc<Agent>>,
    args: Vec<String>,
    starts: u64,
}

impl Member {
    /// Its server RPC address.
    pub fn rpc_addr(&self) -> String {
        format!("{}:8300", self.ip)
    }

    /// Its gossip address.
    pub fn gossip_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip.parse().expect("an IP"), 8301)
    }
}

/// An answer of the HTTP API.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `X-Consul-Index`, when present.
    pub index: Option<u64>,
    /// The body as text.
    pub text: String,
}

impl Answer {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A cluster of agents on in-memory networks.
pub struct InProc {
    /// The members: servers first, then client agents.
    pub members: Vec<Member>,
    /// Server RPC network.
    pub rpc: MemoryNet,
    /// Gossip network.
    pub gossip: MemoryNetwork,
    seed: u64,
}

impl InProc {
    /// Starts `servers` servers (bootstrapping together) and `clients` client agents, all
    /// joining the first server, and waits for a leader. The agents' random draws on this
    /// thread are seeded too (run it on a current-thread runtime).
    pub async fn start(seed: u64, servers: usize, clients: usize) -> InProc {
        cairn::random::seed_thread(seed);
        let mut c = InProc {
            members: Vec::new(),
            rpc: MemoryNet::new(seed),
            gossip: MemoryNetwork::new(seed),
            seed,
        };
        for i in 0..servers + clients {
            let server = i < servers;
            let name = format!("{}{}", if server { "s" } else { "c" }, i + 1);
            let ip = format!("10.0.0.{}", i + 1);
            let mut args: Vec<String> = vec![
                "-node".into(),
                name.clone(),
                "-node-id".into(),
                format!(
                    "00000000-0000-4000-8000-{:012x}",
                    seed.wrapping_mul(31) % (1 << 40) + i as u64
                ),
                "-bind".into(),
                ip.clone(),
                "-client".into(),
                ip.clone(),
                "-data-dir".into(),
                "/nonexistent/in-memory".into(),
                "-retry-join".into(),
                "10.0.0.1".into(),
                "-retry-interval".into(),
                "1s".into(),
                "-log-level".into(),
                "warn".into(),
                // One datacenter: no WAN pool.
                "-serf-wan-port=-1".into(),
            ];
            if server {
                args.push("-server".into());
                args.push(format!("-bootstrap-expect={servers}"));
            }
            c.members.push(Member {
                name,
                ip,
                server,
                agent: None,
                args,
                starts: 0,
            });
        }
        for i in 0..c.members.len() {
            c.boot(i).await;
        }
        c.wait_leader(&c.servers(), Duration::from_secs(30)).await;
        c.wait_joined(Duration::from_secs(30)).await;
        c
    }

    /// Waits (in virtual time) until every running member sees every running member alive.
    pub async fn wait_joined(&self, within: Duration) {
        let running: Vec<&Member> = self.members.iter().filter(|m| m.agent.is_some()).collect();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let all = running.iter().all(|m| {
                let seen = m.agent.as_ref().map_or(Vec::new(), |a| a.gossip.members());
                running.iter().all(|other| {
                    seen.iter().any(|x| {
                        x.name == other.name && x.status == cairn_gossip::MemberStatus::Alive
                    })
                })
            });
            if all {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "members did not all see each other within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Indices of the servers.
    pub fn servers(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].server)
            .collect()
    }

    /// Starts member `i` (again, after a crash: its state is gone, as with `-dev`).
    pub async fn boot(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.starts += 1;
        let config = cairn::config::load(&m.args).expect("config");
        let networks = Networks::Memory(MemoryNetworks {
            rpc: self.rpc.clone(),
            gossip: self.gossip.clone(),
            seed: self.seed,
            generation: m.starts,
        });
        let agent = Agent::new_on(config, networks).await.expect("agent");
        if let Some(server) = &agent.server {
            let router = cairn::run::server_rpc(&agent, server);
            self.rpc.serve(&m.rpc_addr(), router);
        }
        agent.start().await.expect("start");
        m.agent = Some(agent);
    }

    /// Stops member `i` at once, as a crash: its RPC endpoint and gossip vanish.
    pub async fn crash(&mut self, i: usize) {
        let m = &mut self.members[i];
        self.rpc.unserve(&m.rpc_addr());
        if let Some(a) = m.agent.take() {
            a.begin_shutdown();
            a.stop().await;
        }
    }

    /// The agent of member `i`.
    pub fn agent(&self, i: usize) -> &Arc<Agent> {
        self.members[i].agent.as_ref().expect("a running member")
    }

    /// Sends a request to member `i`'s HTTP API.
    pub async fn request(&self, i: usize, method: Method, path: &str, body: &str) -> Answer {
        let api = cairn::http::service(Arc::clone(self.agent(i)));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = tower::ServiceExt::oneshot(api, req)
            .await
            .expect("infallible");
        let status = resp.status().as_u16();
        let index = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        Answer {
            status,
            index,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET path` on member `i`.
    pub async fn get(&self, i: usize, path: &str) -> Answer {
        self.request(i, Method::GET, path, "").await
    }

    /// `PUT path` with `body` on member `i`.
    pub async fn put(&self, i: usize, path: &str, body: &str) -> Answer {
        self.request(i, Method::PUT, path, body).await
    }

    /// The member among `among` that leads, if exactly one does.
    pub fn leader(&self, among: &[usize]) -> Option<usize> {
        let leading: Vec<usize> = among
            .iter()
            .copied()
            .filter(|i| {
                self.members[*i]
                    .agent
                    .as_ref()
                    .and_then(|a| a.server.as_ref())
                    .is_some_and(|s| s.is_leader())
            })
            .collect();
        (leading.len() == 1).then(|| leading[0])
    }

    /// Waits (in virtual time) until one of `among` leads and the others agree on it.
    pub async fn wait_leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leader(among) {
                let agreed = among.iter().all(|i| {
                    let want = self.members[l].rpc_addr();
                    self.members[*i]
                        .agent
                        .as_ref()
                        .and_then(|a| a.server.as_ref())
                        .and_then(|s| s.leader())
                        .is_some_and(|a| a.to_string() == want)
                });
                if agreed {
                    return l;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader among {among:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cuts `a` off from `b` on both networks, both ways.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        let rpc = |g: &[usize]| -> Vec<String> {
            g.iter().map(|i| self.members[*i].rpc_addr()).collect()
        };
        let (ra, rb) = (rpc(a), rpc(b));
        let ra: Vec<&str> = ra.iter().map(String::as_str).collect();
        let rb: Vec<&str> = rb.iter().map(String::as_str).collect();
        self.rpc.partition(&ra, &rb);
        let ga: Vec<_> = a.iter().map(|i| self.members[*i].gossip_addr()).collect();
        let gb: Vec<_> = b.iter().map(|i| self.members[*i].gossip_addr()).collect();
        self.gossip.partition(&ga, &gb);
    }

    /// Removes every cut.
    pub fn heal(&self) {
        self.rpc.heal();
        self.gossip.heal();
    }

    /// The Raft term member `i` is in.
    pub fn term(&self, i: usize) -> u64 {
        self.agent(i)
            .server
            .as_ref()
            .map_or(0, |s| s.raft().metrics().borrow().current_term)
    }
}
