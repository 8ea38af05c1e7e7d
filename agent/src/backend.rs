//! Where an agent's reads and writes go: its own server role, or (on a client agent) the
//! servers of its datacenter found through gossip.
//!
//! A client agent keeps one preferred server and moves to another when it stops answering,
//! as Consul's client agents do; every server forwards to the leader when it must.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_catalog::{Command, Response};
use cairn_gossip::{Gossip, MemberStatus, Role};
use rand::seq::SliceRandom;
use serde_json::Value;

use crate::http::error::ApiError;
use crate::http::params::QueryOptions;
use crate::rpc::{self, CallError, ServerStatus};
use crate::server::query::{Answer, Read};
use crate::server::{ReadMeta, Server};

/// Consul's message when a client agent knows no server.
pub const NO_SERVERS: &str = "No known Consul servers";

/// The servers a client agent talks to.
pub struct ServerPool {
    gossip: Gossip,
    datacenter: String,
    rpc: rpc::Client,
    preferred: Mutex<Option<String>>,
    /// Identities of the writes this agent proposes: a write retried on another server after
    /// a failure in transit is still applied once.
    requests: Arc<crate::server::requests::Requests>,
}

impl ServerPool {
    /// A pool over the servers gossip knows in `datacenter`.
    pub fn new(gossip: Gossip, datacenter: &str, rpc: rpc::Client) -> ServerPool {
        ServerPool {
            gossip,
            datacenter: datacenter.to_string(),
            rpc,
            preferred: Mutex::new(None),
            requests: crate::server::requests::Requests::new(),
        }
    }

    /// RPC addresses of alive servers, the preferred one first.
    pub fn servers(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .gossip
            .members()
            .iter()
            .filter(|m| {
                m.status == MemberStatus::Alive
                    && m.meta.role == Role::Server
                    && m.meta.datacenter == self.datacenter
                    && m.meta.ports.server_rpc != 0
            })
            .map(|m| std::net::SocketAddr::new(m.addr, m.meta.ports.server_rpc).to_string())
            .collect();
        all.shuffle(&mut rand::rng());
        let preferred = self
            .preferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(p) = preferred
            && let Some(pos) = all.iter().position(|a| *a == p)
        {
            all.swap(0, pos);
        }
        all
    }

    /// Runs `f` against servers until one answers (an API error is an answer).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ApiError>
    where
        F: Fn(rpc::Client, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(ApiError::internal(NO_SERVERS));
        }
        let mut last = String::new();
        for addr in servers {
            match f(self.rpc.clone(), addr.clone()).await {
                Ok(v) => {
                    *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
                    return Ok(v);
                }
                Err(CallError::Api(e)) => return Err(e),
                Err(e) => {
                    tracing::debug!(server = %addr, error = %e, "server unreachable; trying another");
                    last = e.to_string();
                }
            }
        }
        Err(ApiError::internal(format!("{NO_SERVERS} answered: {last}")))
    }
}

/// Reads and writes of an agent.
#[derive(Clone)]
pub enum Backend {
    /// This agent is a server.
    Server(Arc<Server>),
    /// This agent is a client of the servers in the pool.
    Client(Arc<ServerPool>),
}

impl Backend {
    /// The local server role, if this agent has one.
    pub fn local(&self) -> Option<&Arc<Server>> {
        match self {
            Backend::Server(s) => Some(s),
            Backend::Client(_) => None,
        }
    }

    /// Datacenter served.
    pub fn datacenter(&self) -> &str {
        match self {
            Backend::Server(s) => s.datacenter(),
            Backend::Client(p) => &p.datacenter,
        }
    }

    /// Orders and applies a command in the cluster.
    pub async fn propose(&self, cmd: Command) -> Result<(u64, Response), ApiError> {
        match self {
            Backend::Server(s) => s.propose(cmd).await,
            Backend::Client(p) => {
                cmd.validate()?;
                let (cmd, _in_flight) = p.requests.identify(cmd);
                let r = p
                    .call(|c, addr| {
                        let cmd = cmd.clone();
                        async move { c.apply(&addr, cmd).await }
                    })
                    .await?;
                crate::server::metrics::count_apply(r.result.is_ok());
                Ok((r.index, r.result?))
            }
        }
    }

    /// Runs a read with the requested consistency and blocking.
    pub async fn read(
        &self,
        read: &Read,
        opts: &QueryOptions,
    ) -> Result<(ReadMeta, Arc<Answer>), ApiError> {
        match self {
            Backend::Server(s) => s.read(read, opts).await,
            Backend::Client(p) => {
                let (meta, value): (ReadMeta, Value) = Box::pin(p.call(|c, addr| {
                    let (read, opts) = (read.clone(), opts.clone());
                    async move { c.read(&addr, &read, &opts).await }
                }))
                .await?;
                Ok((meta, Arc::new(Answer::new(value))))
            }
        }
    }

    /// The Raft view of the cluster: leader, voters, members.
    pub async fn status(&self) -> Result<ServerStatus, ApiError> {
        match self {
            Backend::Server(s) => Ok(s.status().await),
            Backend::Client(p) => p.call(|c, addr| async move { c.status(&addr).await }).await,
        }
    }

    /// Resets a session's TTL timer on the leader.
    pub async fn renew_session(&self, id: &str, ttl: Duration) -> Result<(), ApiError> {
        match self {
            Backend::Server(s) => s.renew_session(id, ttl).await,
            Backend::Client(p) => {
                let req = rpc::RenewRequest {
                    id: id.to_string(),
                    ttl_ms: ttl.as_millis() as u64,
                };
                p.call(|c, addr| {
                    let req = req.clone();
                    async move {
                        c.call::<_, ()>(
                            &addr,
                            "/v1/internal/session/renew",
                            &req,
                            Duration::from_secs(10),
                        )
                        .await
                    }
                })
                .await
            }
        }
    }

    /// Removes a Raft peer.
    pub async fn remove_peer(&self, req: &rpc::PeerRequest) -> Result<(), ApiError> {
        match self {
            Backend::Server(s) => s.remove_peer(req).await,
            Backend::Client(p) => {
                p.call(|c, addr| {
                    let req = req.clone();
                    async move {
                        c.call(
                            &addr,
                            "/v1/internal/raft/remove-peer",
                            &req,
                            Duration::from_secs(30),
                        )
                        .await
                    }
                })
                .await
            }
        }
    }

    /// Moves Raft leadership; returns the new leader's RPC address.
    pub async fn transfer_leader(&self, req: &rpc::PeerRequest) -> Result<String, ApiError> {
        match self {
            Backend::Server(s) => s.transfer_leader(req).await,
            Backend::Client(p) => {
                p.call(|c, addr| {
                    let req = req.clone();
                    async move {
                        c.call(
                            &addr,
                            "/v1/internal/raft/transfer",
                            &req,
                            Duration::from_secs(30),
                        )
                        .await
                    }
                })
                .await
            }
        }
    }

    /// Answers a DNS query from the catalog (a client agent asks a server).
    pub async fn dns(&self, req: &rpc::DnsRequest) -> Result<rpc::DnsReply, ApiError> {
        match self {
            Backend::Server(_) => Err(ApiError::internal(
                "a server answers DNS from its own state",
            )),
            Backend::Client(p) => {
                p.call(|c, addr| {
                    let req = req.clone();
                    async move {
                        c.call(&addr, "/v1/internal/dns", &req, Duration::from_secs(5))
                            .await
                    }
                })
                .await
            }
        }
    }
}
