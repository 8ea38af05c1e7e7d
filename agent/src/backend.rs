//! Where an agent's reads and writes go: its own server role, or (on a client agent) the
//! servers of its datacenter found through gossip.
//!
//! A client agent keeps one preferred server and moves to another when it stops answering,
//! as Consul's client agents do; every server forwards to the leader when it must.
//!
//! Only a server that cannot be reached sends a call to the next one; an error a server answered (a
//! refusal, "No cluster leader" after its own hold) is the answer. Servers hold and forward for a
//! leader themselves, so a client agent never needs to know who leads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_gossip::{Gossip, MemberStatus, Role};

use crate::api::read::NodeView;
use crate::api::{Error, Indexed, QueryMeta, ReadOptions, Write, Written};
use crate::rpc::{self, ServerStatus};
use crate::server::Server;
use crate::server::query::{Answer, Read};

/// The servers a client agent talks to.
pub struct ServerPool {
    gossip: Gossip,
    datacenter: String,
    rpc: rpc::Client,
    /// The server that answered last: calls go there first, so a client agent's requests keep using
    /// the same server and its pooled connections until it stops answering.
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
    ///
    /// Read from gossip at each call, so servers that joined or failed are taken into account at
    /// once. Shuffled, so the client agents of a pool spread over the servers instead of all
    /// failing over to the same one.
    pub fn servers(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .gossip
            .members()
            .iter()
            .filter(|m| {
                m.status == MemberStatus::Alive
                    && m.meta.role == Role::Server
                    && m.meta.datacenter == self.datacenter
                    // A server advertising no RPC port cannot be called.
                    && m.meta.ports.server_rpc != 0
            })
            .map(|m| std::net::SocketAddr::new(m.addr, m.meta.ports.server_rpc).to_string())
            .collect();
        crate::random::shuffle(&mut all);
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

    /// Runs `f` against servers until one answers (an error a server answered is an answer;
    /// only a server that could not be reached sends the call to the next one).
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(rpc::Client, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let mut last = None;
        for addr in servers {
            match f(self.rpc.clone(), addr.clone()).await {
                Ok(v) => {
                    *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
                    return Ok(v);
                }
                // Sequential, not in parallel: a write sent to two servers at once would be
                // proposed twice (applied once thanks to its identity, but at twice the cost).
                Err(Error::Unavailable(why)) => {
                    tracing::debug!(server = %addr, error = %why, "server unreachable; trying another");
                    last = Some(why);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable(format!(
            "no server answered: {}",
            last.unwrap_or_default()
        )))
    }
}

/// Reads and writes of an agent.
///
/// Cheap to clone: both variants are an `Arc`.
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

    /// Runs a write: through this agent's server role, or sent to a server of the pool (which
    /// forwards it to its leader). The write gets its identity here, before any attempt, so a
    /// retry on another server after a failure in transit cannot apply it twice.
    pub async fn write(&self, mut w: Write) -> Result<(u64, Written), Error> {
        match self {
            Backend::Server(s) => s.write(w).await,
            Backend::Client(p) => {
                let _in_flight = match w.id {
                    Some(_) => None,
                    None => {
                        let (id, ticket) = p.requests.next();
                        w.id = Some(id);
                        Some(ticket)
                    }
                };
                p.call(|c, addr| {
                    let w = w.clone();
                    async move { c.write(&addr, &w).await }
                })
                .await
            }
        }
    }

    /// Runs a read with the requested consistency and blocking.
    pub async fn read(
        &self,
        read: &Read,
        opts: &ReadOptions,
    ) -> Result<(QueryMeta, Arc<Answer>), Error> {
        self.query(&crate::api::Query::new(read.clone(), opts.clone()))
            .await
    }

    /// Runs a query (its datacenter and token included) with its consistency and blocking.
    pub async fn query(&self, q: &crate::api::Query) -> Result<(QueryMeta, Arc<Answer>), Error> {
        match self {
            Backend::Server(s) => s.query(q).await,
            Backend::Client(p) => {
                // Boxed: a parked blocking query holds this future for minutes, and the RPC state
                // would otherwise be inlined into every caller's future.
                let (meta, reply): (QueryMeta, crate::api::Reply) = Box::pin(p.call(|c, addr| {
                    let q = q.clone();
                    async move { c.read(&addr, &q).await }
                }))
                .await?;
                Ok((meta, Arc::new(Answer::new(reply))))
            }
        }
    }

    /// What the catalog holds for one node (the anti-entropy and alias-check view).
    pub async fn node_view(
        &self,
        node: &str,
        opts: &ReadOptions,
    ) -> Result<Indexed<NodeView>, Error> {
        let read = Read::NodeView {
            node: node.to_string(),
        };
        let (meta, answer) = self.read(&read, opts).await?;
        match &answer.reply {
            crate::api::Reply::NodeView(v) => Ok(Indexed {
                meta,
                value: v.clone(),
            }),
            other => Err(crate::api::read::unexpected("NodeView", other)),
        }
    }

    /// Pieces of an archive larger than this go in separate writes (entries): one piece must
    /// replicate within a heartbeat interval.
    ///
    /// The same 1 MiB the RPC client caps appends at: a piece is one entry, so a follower catching
    /// up receives it within one request.
    pub const RESTORE_PIECE: usize = 1024 * 1024;

    /// Restores an operator archive through `backend`: checked first, then in one write, or piece
    /// by piece followed by the swap (the pieces are dropped if any step fails). Logs progress
    /// of large restores.
    pub async fn restore_archive(
        &self,
        data: &[u8],
        dc: Option<&str>,
        token: Option<crate::api::Token>,
    ) -> Result<(), Error> {
        // Checked before anything is written: a damaged archive fails here, without staging pieces
        // that would then need dropping.
        cairn_catalog::snapshot::read(data)
            .map_err(|e| Error::Invalid(format!("Invalid snapshot: {e}")))?;
        let write = |op| Write::new(op).in_dc(dc).with_token(token.clone());
        if data.len() <= Self::RESTORE_PIECE {
            self.write(write(crate::api::WriteOp::Restore {
                data: data.to_vec(),
            }))
            .await?;
            return Ok(());
        }
        // Names the staged pieces: a second restore started meanwhile supersedes this one instead
        // of mixing its pieces in.
        let id = uuid::Uuid::new_v4().to_string();
        let pieces = data.len().div_ceil(Self::RESTORE_PIECE);
        tracing::info!(restore = %id, bytes = data.len(), pieces, "restoring a snapshot in pieces");
        let started = std::time::Instant::now();
        let mut last_report = started;
        let result = async {
            for (n, chunk) in data.chunks(Self::RESTORE_PIECE).enumerate() {
                self.write(write(crate::api::WriteOp::RestorePiece {
                    restore: id.clone(),
                    offset: (n * Self::RESTORE_PIECE) as u64,
                    data: chunk.to_vec(),
                }))
                .await?;
                if last_report.elapsed() >= std::time::Duration::from_secs(2) {
                    last_report = std::time::Instant::now();
                    tracing::info!(restore = %id, piece = n + 1, pieces, "restore progress");
                }
            }
            self.write(write(crate::api::WriteOp::RestoreFinish {
                restore: id.clone(),
                len: data.len() as u64,
            }))
            .await
        }
        .await;
        match result {
            Ok(_) => {
                tracing::info!(
                    restore = %id,
                    seconds = started.elapsed().as_secs_f64(),
                    "snapshot restored"
                );
                Ok(())
            }
            Err(e) => {
                // Pieces staged in the replicated state would otherwise stay there (and in every
                // Raft snapshot) until another restore replaced them.
                if let Err(abort) = self
                    .write(write(crate::api::WriteOp::RestoreAbort {
                        restore: id.clone(),
                    }))
                    .await
                {
                    tracing::warn!(restore = %id, error = %abort, "could not drop the staged pieces");
                }
                Err(e)
            }
        }
    }

    /// The Raft view of the cluster: leader, voters, members.
    ///
    /// From a client agent this is the view of whichever server answers, which is the view of the
    /// cluster as long as that server follows a leader.
    pub async fn status(&self) -> Result<ServerStatus, Error> {
        self.status_in(None).await
    }

    /// The status of `dc`'s servers (`None`: this datacenter's), as a server there reports it.
    pub async fn status_in(&self, dc: Option<&str>) -> Result<ServerStatus, Error> {
        match self {
            Backend::Server(s) => s.status_in(dc).await,
            Backend::Client(p) => {
                p.call(|c, addr| async move { c.status_in(&addr, dc).await })
                    .await
            }
        }
    }

    /// The known datacenters, the local one first: a server's own view of the WAN pool, or a
    /// server's for a client agent (which is in no WAN pool).
    pub async fn datacenters(&self) -> Result<Vec<String>, Error> {
        match self {
            Backend::Server(s) => Ok(s.router.datacenters()),
            Backend::Client(p) => {
                p.call(|c, addr| async move { c.datacenters(&addr).await })
                    .await
            }
        }
    }

    /// What the servers know of a token (for a client agent's own checks).
    pub async fn acl_resolve(
        &self,
        token: Option<&crate::api::Token>,
    ) -> Result<crate::acl::Resolved, Error> {
        match self {
            Backend::Server(s) => s.acl().describe(&s.state(), token, crate::server::now_ms()),
            Backend::Client(p) => {
                let token = token.cloned();
                p.call(|c, addr| {
                    let token = token.clone();
                    async move { c.acl_resolve(&addr, token.as_ref()).await }
                })
                .await
            }
        }
    }

    /// Fires a user event in another datacenter `dc` (a client agent hands it to one of its
    /// servers, which sends it on).
    pub async fn fire_event_in(
        &self,
        dc: &str,
        event: crate::events::UserEvent,
    ) -> Result<crate::events::UserEvent, Error> {
        match self {
            Backend::Server(s) => s.event_remote(dc, event).await,
            Backend::Client(p) => {
                let req = rpc::EventRequest {
                    dc: Some(dc.to_string()),
                    event,
                };
                p.call(|c, addr| {
                    let req = req.clone();
                    async move { c.fire_event(&addr, &req).await }
                })
                .await
            }
        }
    }

    /// Resets a session's TTL timer on the leader.
    pub async fn renew_session(
        &self,
        dc: Option<&str>,
        id: &str,
        ttl: Duration,
    ) -> Result<(), Error> {
        match self {
            Backend::Server(s) => s.renew_session_in(dc, id, ttl).await,
            Backend::Client(p) => {
                let req = rpc::RenewRequest {
                    id: id.to_string(),
                    ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                    dc: dc.map(str::to_string),
                };
                p.call(|c, addr| {
                    let req = req.clone();
                    async move { c.renew(&addr, &req).await }
                })
                .await
            }
        }
    }

    /// Removes a Raft peer.
    pub async fn remove_peer(&self, req: &rpc::PeerRequest) -> Result<(), Error> {
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
    pub async fn transfer_leader(&self, req: &rpc::PeerRequest) -> Result<String, Error> {
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
    pub async fn dns(&self, req: &rpc::DnsRequest) -> Result<rpc::DnsReply, Error> {
        match self {
            // A server's DNS answers from its own state and never asks another server; reaching
            // here is a bug.
            Backend::Server(_) => Err(Error::Internal(
                "a server answers DNS from its own state".into(),
            )),
            Backend::Client(p) => {
                p.call(|c, addr| {
                    let req = req.clone();
                    async move { c.dns(&addr, &req).await }
                })
                .await
            }
        }
    }
}
