//! Server RPC on the server port (8300): Raft traffic between servers, and typed writes and
//! reads from followers and client agents to the server that must answer them. Commands never
//! travel here outside Raft's own messages: a write is forwarded as the typed request, and the
//! leader's endpoint builds its command.
//!
//! Messages are JSON bodies posted to paths under `/v1/internal/` through a [`Transport`]:
//! HTTP/1.1 (hyper) in production, whose framing, keep-alive pooling and body bounds come from
//! a well-tested stack, or an in-memory network with seeded faults in tests. Every request
//! carries the protocol version in `X-Cairn-Rpc`; a server refuses versions it does not speak.
//! Paths live under `/v1/internal/`, which the HTTP API does not serve.

pub mod listener;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use cairn_raft::{ServerNode, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::{Error, QueryMeta, Write, Written};
pub use transport::Transport;

/// Version of the RPC protocol spoken by this build.
///
/// Raised whenever a message changes shape incompatibly: servers of different versions then refuse
/// each other outright instead of misreading each other. Version 2 carries typed `api::Error`s.
pub const RPC_VERSION: &str = "2";
/// Header carrying the protocol version.
pub const RPC_HEADER: &str = "x-cairn-rpc";
/// Largest RPC body (snapshot chunks included).
///
/// A bound on memory per request rather than a working size: appends are cut to about 1 MiB and
/// write batches stay near that, so only an unusually large single command or snapshot chunk comes
/// near it.
pub const MAX_RPC_BODY: usize = 64 * 1024 * 1024;

/// The answer to a write: the index it was applied at and what it answered.
pub type WriteReply = (u64, Written);

/// How long a forwarded write may take, the leader's own wait for the log included.
///
/// The same 30 s as the leader's commit timeout (`COMMIT_TIMEOUT`), which bounds how long the
/// leader itself holds a write. A timeout leaves the outcome unknown; the write's identity makes
/// the retry safe.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Answer to a forwarded read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadReply {
    /// Metadata.
    pub meta: QueryMeta,
    /// The typed reply.
    pub reply: crate::api::Reply,
}

/// Identifies a Raft peer by node UUID or RPC address (either may be empty).
///
/// Either field identifies the peer: operators know addresses, tools know node IDs (Consul's
/// `remove-peer -address` / `-id`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PeerRequest {
    /// Node UUID.
    pub id: String,
    /// RPC address.
    pub address: String,
}

/// A session renewal forwarded to the leader, which keeps the TTL timers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RenewRequest {
    /// Session ID.
    pub id: String,
    /// Its TTL in milliseconds.
    pub ttl_ms: u64,
    /// The session's datacenter (`None`: the answering server's).
    #[serde(default)]
    pub dc: Option<String>,
}

/// What a server reports about itself and its view of Raft.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Node name.
    pub node: String,
    /// Datacenter.
    pub datacenter: String,
    /// Whether Raft has a configuration (the cluster was bootstrapped).
    pub initialized: bool,
    /// Leader's RPC address, if known.
    pub leader: Option<String>,
    /// Voters' RPC addresses.
    pub voters: Vec<String>,
    /// Last applied index.
    pub last_index: u64,
    /// Raft members as `/v1/operator/raft/configuration` lists them.
    pub servers: Vec<RaftServer>,
    /// Log index of the current Raft configuration: the `Index` Consul's raft configuration
    /// reports (0 from a server that predates the field).
    #[serde(default)]
    pub config_index: u64,
}

/// Which datacenter's status a status call asks for. The route also takes an empty or `null`
/// body (the answering server's own), as older callers send.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatusRequest {
    /// Another datacenter, answered by one of its servers.
    #[serde(default)]
    pub dc: Option<String>,
}

/// One Raft member.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RaftServer {
    /// Node UUID.
    pub id: String,
    /// Node name.
    pub node: String,
    /// RPC address.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it votes.
    pub voter: bool,
}

/// A DNS query a client agent hands to a server.
///
/// Handed over whole (the packet as received) so the server parses and answers it exactly as it
/// would its own, with the catalog it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DnsRequest {
    /// The query as received.
    pub packet: Vec<u8>,
    /// Whether it came over TCP.
    /// Decides the size the answer must fit: the EDNS size (512 bytes without EDNS) over UDP,
    /// up to 64 KiB over TCP.
    pub tcp: bool,
    /// The asking agent's DNS token (`acl.tokens.dns`, else its default token).
    #[serde(default)]
    pub token: Option<crate::api::Token>,
}

/// How a server answers forwarded DNS queries.
/// Asynchronous, because a question about another datacenter is passed on to a server there.
pub type DnsFn = std::sync::Arc<
    dyn Fn(DnsRequest) -> std::pin::Pin<Box<dyn std::future::Future<Output = DnsReply> + Send>>
        + Send
        + Sync,
>;

/// A user event to fire in a datacenter (`?dc=` on `/v1/event/fire`): a server of that
/// datacenter spreads it through its LAN pool.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventRequest {
    /// The target datacenter (`None`: the answering server's).
    pub dc: Option<String>,
    /// The event, as the receiving agent created and checked it.
    pub event: crate::events::UserEvent,
}

/// How a server fires an event in its own datacenter (its agent's gossip pool).
pub type EventFn = std::sync::Arc<
    dyn Fn(
            crate::events::UserEvent,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<crate::events::UserEvent, Error>> + Send>,
        > + Send
        + Sync,
>;

/// The server's answer to a forwarded DNS query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DnsReply {
    /// Response bytes to send back; `None` when the query is for the recursors or dropped.
    pub reply: Option<Vec<u8>>,
    /// The name is outside the domain: the client agent asks its recursors.
    pub forward: bool,
}

/// An RPC client: typed calls to servers over a [`Transport`].
///
/// Cheap to clone: every clone shares the transport and so its pooled connections.
#[derive(Clone)]
pub struct Client {
    transport: Arc<dyn Transport>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client over HTTP with pooled keep-alive connections.
    pub fn new() -> Client {
        Client::with_transport(Arc::new(transport::Http::new()))
    }

    /// A client over the given transport (an in-memory network in tests).
    pub fn with_transport(transport: Arc<dyn Transport>) -> Client {
        Client { transport }
    }

    /// POSTs `body` to `path` on `addr` and decodes the reply. A server that cannot be
    /// reached, or whose answer does not arrive, is [`Error::Unavailable`]; an error the server
    /// answered comes back as it sent it.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, Error> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(format!("failed to encode an RPC request: {e}")))?;
        let (status, bytes) = self
            .transport
            .post(addr, path, body, timeout)
            .await
            .map_err(|reason| Error::Unavailable(format!("server {addr} unreachable: {reason}")))?;
        // A server answers errors as a serialized `api::Error` with a non-success status; anything
        // else (a proxy's page, an older server) becomes `Internal` with the text, for the logs.
        if !status.is_success() {
            return Err(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                Error::Internal(format!(
                    "server {addr} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ))
            }));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("malformed RPC reply from {addr}: {e}")))
    }

    /// Sends a write to a server, which forwards it to its leader when it must.
    pub async fn write(&self, addr: &str, w: &Write) -> Result<WriteReply, Error> {
        self.call(addr, "/v1/internal/write", w, WRITE_TIMEOUT)
            .await
    }

    /// Sends a write to the leader itself (no further hop: a server that no longer leads
    /// answers [`Error::NotLeader`]).
    pub async fn write_on_leader(&self, addr: &str, w: &Write) -> Result<WriteReply, Error> {
        self.call(addr, "/v1/internal/write-leader", w, WRITE_TIMEOUT)
            .await
    }

    /// Forwards a read (the server blocks as asked).
    pub async fn read(
        &self,
        addr: &str,
        q: &crate::api::Query,
    ) -> Result<(QueryMeta, crate::api::Reply), Error> {
        // Longest wait plus its jitter plus slack for the network.
        // The server may legitimately hold the request for the whole blocking wait, so a shorter
        // timeout would cut healthy blocking queries and retry them on another server.
        // A read that does not block has no wait to cover: a server that took the request and
        // went silent (a partition) is given up on after the slack alone.
        let wait = if q.opts.min_index > 0 {
            q.opts.wait + q.opts.wait / 16
        } else {
            Duration::ZERO
        };
        let timeout = wait + Duration::from_secs(10);
        let reply: ReadReply = self.call(addr, "/v1/internal/read", q, timeout).await?;
        Ok((reply.meta, reply.reply))
    }

    /// Asks a server to answer a DNS query from its catalog.
    pub async fn dns(&self, addr: &str, req: &DnsRequest) -> Result<DnsReply, Error> {
        self.call(addr, "/v1/internal/dns", req, Duration::from_secs(5))
            .await
    }

    /// Asks a server to fire a user event (in the datacenter the request names).
    pub async fn fire_event(
        &self,
        addr: &str,
        req: &EventRequest,
    ) -> Result<crate::events::UserEvent, Error> {
        self.call(addr, "/v1/internal/event", req, Duration::from_secs(10))
            .await
    }

    /// What a server knows of a token, for a client agent's own authorization checks.
    pub async fn acl_resolve(
        &self,
        addr: &str,
        token: Option<&crate::api::Token>,
    ) -> Result<crate::acl::Resolved, Error> {
        self.call(
            addr,
            "/v1/internal/acl/resolve",
            &token,
            Duration::from_secs(5),
        )
        .await
    }

    /// The datacenters a server knows, its own first.
    pub async fn datacenters(&self, addr: &str) -> Result<Vec<String>, Error> {
        self.call(
            addr,
            "/v1/internal/datacenters",
            &(),
            Duration::from_secs(5),
        )
        .await
    }

    /// The status of `dc`'s servers as a server there reports it (`None`: `addr`'s own).
    pub async fn status_in(&self, addr: &str, dc: Option<&str>) -> Result<ServerStatus, Error> {
        let req = StatusRequest {
            dc: dc.map(str::to_string),
        };
        self.call(addr, "/v1/internal/status", &req, Duration::from_secs(5))
            .await
    }

    /// Asks a server to reset a session's TTL timer (forwarded to the leader of the session's
    /// datacenter).
    pub async fn renew(&self, addr: &str, req: &RenewRequest) -> Result<(), Error> {
        // Longer than a server's own 5 s forward to the leader, so a renewal forwarded through
        // a follower is not cut short.
        self.call(
            addr,
            "/v1/internal/session/renew",
            req,
            Duration::from_secs(10),
        )
        .await
    }

    /// A server's status.
    pub async fn status(&self, addr: &str) -> Result<ServerStatus, Error> {
        // Short: callers poll status in loops (`-bootstrap-expect`, operator views) and a missing
        // server should not stall them.
        self.call(addr, "/v1/internal/status", &(), Duration::from_secs(3))
            .await
    }
}

/// The servers' current RPC addresses by Raft ID, as gossip last announced them.
///
/// The Raft configuration keeps the address a server had when it was added; a server that comes
/// back at another address (a container restarted on a new IP) is found here instead, as
/// Consul's Raft transport asks Serf for a server's current address (`ServerAddressProvider`).
#[derive(Clone, Default)]
pub struct ServerAddrs(Arc<std::sync::RwLock<std::collections::HashMap<u64, String>>>);

impl ServerAddrs {
    /// Records a server's current address.
    pub fn set(&self, id: u64, addr: String) {
        let mut m = self.0.write().unwrap_or_else(|p| p.into_inner());
        m.insert(id, addr);
    }

    /// The server's current address, or `known` (the Raft configuration's) when gossip has not
    /// announced one.
    pub fn resolve(&self, id: u64, known: &str) -> String {
        let m = self.0.read().unwrap_or_else(|p| p.into_inner());
        m.get(&id).cloned().unwrap_or_else(|| known.to_string())
    }
}

/// The query parameter naming the Raft ID a Raft message is meant for.
///
/// The receiver refuses a message for another ID: an address that changed hands (a restarted
/// container got another server's old IP, or its own old one went to another) must not deliver
/// one server's messages to another, or a restarted leader to itself.
pub const TARGET_PARAM: &str = "target";

/// openraft's network: one connection object per peer, all sharing the pooled client.
///
/// openraft asks its factory for a connection per peer; since the transport pools connections
/// itself, a "connection" is only the peer's ID and address.
#[derive(Clone)]
pub struct Network {
    /// The client.
    pub client: Client,
    /// Where each server is now.
    pub addrs: ServerAddrs,
}

/// A peer as openraft sees it.
pub struct PeerConn {
    client: Client,
    /// The peer's Raft ID, sent with every message.
    target: u64,
    /// The address in the Raft configuration, used until gossip says where the peer is.
    addr: String,
    addrs: ServerAddrs,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, target: u64, node: &ServerNode) -> PeerConn {
        PeerConn {
            client: self.client.clone(),
            target,
            addr: node.addr.clone(),
            addrs: self.addrs.clone(),
        }
    }
}

impl PeerConn {
    async fn raft_call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, ServerNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let addr = self.addrs.resolve(self.target, &self.addr);
        let path = format!("{path}?{TARGET_PARAM}={}", self.target);
        let reply: Result<Result<Resp, RaftError<u64, E>>, Error> =
            self.client.call(&addr, &path, req, option.hard_ttl()).await;
        match reply {
            Ok(Ok(r)) => Ok(r),
            // The peer answered with openraft's own error: handed back as a remote error. The
            // peer's Raft ID is not kept per connection (`new_client` ignores it), hence 0; it only
            // labels the error.
            Ok(Err(e)) => Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                0, e,
            ))),
            // Unreachable lets openraft back off from that peer (it cannot answer at all); other
            // failures are plain network errors.
            Err(Error::Unavailable(reason)) => Err(RPCError::Unreachable(Unreachable::new(
                &std::io::Error::other(reason),
            ))),
            Err(e) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(e.to_string()),
            ))),
        }
    }
}

/// Rough encoded bytes of the entries one `append` request may carry. openraft hands up to
/// `max_payload_entries` entries whatever their size (a catching-up follower may be owed many
/// large batches or restore pieces) and gives the request one heartbeat interval to complete
/// (200 ms by default), dropping it after that: a request must be sent, decoded and written
/// well within that time, or a lagging follower never catches up.
const MAX_APPEND_BYTES: usize = 1024 * 1024;

/// Bound of an entry's encoded size: its command's (base64 and JSON included), plus room for
/// the log id and the entry's own JSON.
fn entry_weight(e: &cairn_raft::Entry) -> usize {
    let payload = match &e.payload {
        openraft::EntryPayload::Normal(cmd) => cmd.encoded_size_bound(),
        // Blank and membership entries: small, with room for a large membership.
        _ => 1024,
    };
    payload + 256
}

/// Cuts `entries` to the longest prefix within [`MAX_APPEND_BYTES`] (at least one entry);
/// returns the last log id kept when something was cut.
fn cap_entries(entries: &mut Vec<cairn_raft::Entry>) -> Option<cairn_raft::LogId> {
    let mut total = 0usize;
    let mut keep = 0usize;
    for e in entries.iter() {
        let w = entry_weight(e);
        // The first entry always goes, even over the bound: a request with nothing in it would make
        // no progress at all.
        if keep > 0 && total + w > MAX_APPEND_BYTES {
            break;
        }
        total += w;
        keep += 1;
    }
    if keep >= entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, ServerNode, RaftError<u64>>> {
        let cut = cap_entries(&mut rpc.entries);
        let resp = self
            .raft_call("/v1/internal/raft/append", &rpc, &option)
            .await?;
        // The follower took everything sent: that is a prefix of what openraft asked for.
        // Telling openraft about the cut (`PartialSuccess` with the last entry sent) makes it send
        // the rest in the next request instead of believing the follower holds everything.
        Ok(match (resp, cut) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (other, _) => other,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, ServerNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.raft_call("/v1/internal/raft/snapshot", &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, ServerNode, RaftError<u64>>> {
        self.raft_call("/v1/internal/raft/vote", &rpc, &option)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_catalog::Command;

    fn entry(index: u64, bytes: usize) -> cairn_raft::Entry {
        openraft::Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(Command::RestoreChunk {
                id: "r".into(),
                offset: 0,
                data: vec![0; bytes],
            }),
        }
    }

    // The bound is what lets a lagging follower catch up: each request fits in a heartbeat interval
    // whatever the entries owed.
    #[test]
    fn append_requests_are_cut_to_a_bounded_prefix() {
        // Small entries all go.
        let mut small: Vec<_> = (1..=100).map(|i| entry(i, 1000)).collect();
        assert_eq!(cap_entries(&mut small), None);
        assert_eq!(small.len(), 100);
        // Large pieces: a few per request, the cut reported.
        let mut big: Vec<_> = (1..=50).map(|i| entry(i, 200 << 10)).collect();
        let last = cap_entries(&mut big).expect("cut");
        assert!(!big.is_empty() && big.len() < 50);
        assert_eq!(last.index, big.len() as u64);
        let weight: usize = big.iter().map(entry_weight).sum();
        assert!(weight <= MAX_APPEND_BYTES);
        // One entry over the bound still goes, alone.
        let mut huge = vec![entry(1, 4 << 20), entry(2, 10)];
        assert_eq!(cap_entries(&mut huge).map(|l| l.index), Some(1));
        assert_eq!(huge.len(), 1);
    }
}
