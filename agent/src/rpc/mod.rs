//! Server RPC on the server port (8300): Raft traffic between servers, and forwarding of
//! writes and reads from followers and client agents to the server that must answer them.
//!
//! The transport is HTTP/1.1 (hyper) with JSON bodies: framing, keep-alive connection pooling
//! and body bounds come from a well-tested stack. Every request carries the protocol version
//! in `X-Cairn-Rpc`; a server refuses versions it does not speak. Paths live under
//! `/v1/internal/`, which the HTTP API does not serve.

pub mod server;

use std::time::Duration;

use cairn_catalog::Command;
use cairn_raft::{ApplyResult, ServerNode, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::http::params::{Consistency, QueryOptions};
use crate::server::ReadMeta;
use crate::server::query::Read;

/// Version of the RPC protocol spoken by this build.
pub const RPC_VERSION: &str = "1";
/// Header carrying the protocol version.
pub const RPC_HEADER: &str = "x-cairn-rpc";
/// Largest RPC body (snapshot chunks included).
pub const MAX_RPC_BODY: usize = 64 * 1024 * 1024;

/// Read options as they travel between agents.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireQuery {
    /// Blocking index.
    pub min_index: u64,
    /// Wait in milliseconds.
    pub wait_ms: u64,
    /// `leader`, `stale` or `consistent`.
    pub consistency: String,
    /// Max staleness in milliseconds.
    pub max_stale_ms: Option<u64>,
    /// Filter expression.
    pub filter: Option<String>,
}

impl WireQuery {
    /// From the HTTP layer's options.
    pub fn from_opts(o: &QueryOptions) -> WireQuery {
        WireQuery {
            min_index: o.min_index,
            wait_ms: o.wait.as_millis() as u64,
            consistency: o.consistency.as_str().to_string(),
            max_stale_ms: o.max_stale.map(|d| d.as_millis() as u64),
            filter: o.filter.clone(),
        }
    }

    /// Back to the HTTP layer's options.
    pub fn to_opts(&self) -> QueryOptions {
        QueryOptions {
            min_index: self.min_index,
            wait: Duration::from_millis(self.wait_ms),
            consistency: match self.consistency.as_str() {
                "stale" => Consistency::Stale,
                "consistent" => Consistency::Consistent,
                _ => Consistency::Leader,
            },
            max_stale: self.max_stale_ms.map(Duration::from_millis),
            filter: self.filter.clone(),
            dc: None,
            pretty: false,
            hash: None,
        }
    }
}

/// Read metadata on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireMeta {
    /// Index.
    pub index: u64,
    /// Known leader.
    pub known_leader: bool,
    /// Last contact in ms.
    pub last_contact_ms: u64,
    /// Consistency used.
    pub consistency: String,
}

impl From<&ReadMeta> for WireMeta {
    fn from(m: &ReadMeta) -> WireMeta {
        WireMeta {
            index: m.index,
            known_leader: m.known_leader,
            last_contact_ms: m.last_contact_ms,
            consistency: m.consistency.as_str().to_string(),
        }
    }
}

impl From<&WireMeta> for ReadMeta {
    fn from(m: &WireMeta) -> ReadMeta {
        ReadMeta {
            index: m.index,
            known_leader: m.known_leader,
            last_contact_ms: m.last_contact_ms,
            consistency: match m.consistency.as_str() {
                "stale" => Consistency::Stale,
                "consistent" => Consistency::Consistent,
                _ => Consistency::Leader,
            },
        }
    }
}

/// An API error on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireError {
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
}

impl From<&ApiError> for WireError {
    fn from(e: &ApiError) -> WireError {
        WireError {
            status: e.status.as_u16(),
            message: e.message.clone(),
        }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> ApiError {
        ApiError::new(
            axum::http::StatusCode::from_u16(e.status)
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            e.message,
        )
    }
}

/// A forwarded write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The command.
    pub cmd: Command,
}

/// A forwarded read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadRequest {
    /// What to read.
    pub read: Read,
    /// How.
    pub query: WireQuery,
}

/// Answer to a forwarded read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadReply {
    /// Metadata.
    pub meta: WireMeta,
    /// The JSON answer.
    pub value: serde_json::Value,
}

/// Identifies a Raft peer by node UUID or RPC address (either may be empty).
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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DnsRequest {
    /// The query as received.
    pub packet: Vec<u8>,
    /// Whether it came over TCP.
    pub tcp: bool,
}

/// How a server answers forwarded DNS queries.
pub type DnsFn = std::sync::Arc<dyn Fn(&DnsRequest) -> DnsReply + Send + Sync>;

/// The server's answer to a forwarded DNS query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DnsReply {
    /// Response bytes to send back; `None` when the query is for the recursors or dropped.
    pub reply: Option<Vec<u8>>,
    /// The name is outside the domain: the client agent asks its recursors.
    pub forward: bool,
}

/// Fault injection for partition tests (the "fault-injecting transport"): when the environment
/// variable `CAIRN_RPC_FAULTS` names a file, RPC calls to every address listed in it (one per
/// line) fail as unreachable, so a test cuts a server off by writing the files of both sides.
/// The file is re-read at most every 100 ms; without the variable nothing is checked.
mod faults {
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};

    struct Faults {
        path: PathBuf,
        cache: Mutex<(Option<Instant>, Vec<String>)>,
    }

    fn faults() -> Option<&'static Faults> {
        static F: OnceLock<Option<Faults>> = OnceLock::new();
        F.get_or_init(|| {
            std::env::var_os("CAIRN_RPC_FAULTS").map(|p| Faults {
                path: PathBuf::from(p),
                cache: Mutex::new((None, Vec::new())),
            })
        })
        .as_ref()
    }

    /// Whether calls to `addr` are cut.
    pub fn blocked(addr: &str) -> bool {
        let Some(f) = faults() else { return false };
        let mut c = f.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.is_none_or(|t| t.elapsed() > Duration::from_millis(100)) {
            let text = std::fs::read_to_string(&f.path).unwrap_or_default();
            c.1 = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            c.0 = Some(Instant::now());
        }
        c.1.iter().any(|a| a == addr)
    }
}

/// An RPC client: pooled connections to servers.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

/// Failure of an RPC call.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server could not be reached (connection refused, timeout).
    #[error("server {addr} unreachable: {reason}")]
    Unreachable {
        /// Address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{0}")]
    Api(ApiError),
}

impl CallError {
    /// As an API error for the HTTP layer.
    pub fn into_api(self) -> ApiError {
        match self {
            CallError::Api(e) => e,
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client with pooled keep-alive connections.
    pub fn new() -> Client {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Client { http }
    }

    /// POSTs `body` to `path` on `addr` and decodes the reply.
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let url = format!("http://{addr}{path}");
        let unreachable = |reason: String| CallError::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        if faults::blocked(addr) {
            return Err(unreachable("cut off by injected fault".into()));
        }
        let resp = self
            .http
            .post(&url)
            .header(RPC_HEADER, RPC_VERSION)
            .json(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| unreachable(e.to_string()))?;
        if !status.is_success() {
            let err: WireError = serde_json::from_slice(&bytes).unwrap_or(WireError {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            });
            return Err(CallError::Api(err.into()));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Api(ApiError::internal(format!(
                "malformed RPC reply from {addr}: {e}"
            )))
        })
    }

    /// Sends a write to a server (which forwards it to the leader when it must).
    pub async fn apply(&self, addr: &str, cmd: Command) -> Result<ApplyResult, CallError> {
        self.call(
            addr,
            "/v1/internal/apply",
            &ApplyRequest { cmd },
            Duration::from_secs(30),
        )
        .await
    }

    /// Sends a write to the leader itself (no further hop).
    pub async fn apply_on_leader(
        &self,
        addr: &str,
        cmd: Command,
    ) -> Result<ApplyResult, CallError> {
        self.call(
            addr,
            "/v1/internal/apply-leader",
            &ApplyRequest { cmd },
            Duration::from_secs(30),
        )
        .await
    }

    /// Forwards a read (the server blocks as asked).
    pub async fn read(
        &self,
        addr: &str,
        read: &Read,
        opts: &QueryOptions,
    ) -> Result<(ReadMeta, serde_json::Value), CallError> {
        let req = ReadRequest {
            read: read.clone(),
            query: WireQuery::from_opts(opts),
        };
        // Longest wait plus its jitter plus slack for the network.
        let timeout = opts.wait + opts.wait / 16 + Duration::from_secs(10);
        let reply: ReadReply = self.call(addr, "/v1/internal/read", &req, timeout).await?;
        Ok(((&reply.meta).into(), reply.value))
    }

    /// A server's status.
    pub async fn status(&self, addr: &str) -> Result<ServerStatus, CallError> {
        self.call(addr, "/v1/internal/status", &(), Duration::from_secs(3))
            .await
    }
}

/// openraft's network: one connection object per peer, all sharing the pooled client.
#[derive(Clone)]
pub struct Network {
    /// The client.
    pub client: Client,
}

/// A peer as openraft sees it.
pub struct PeerConn {
    client: Client,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, _target: u64, node: &ServerNode) -> PeerConn {
        PeerConn {
            client: self.client.clone(),
            addr: node.addr.clone(),
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
        let reply: Result<Result<Resp, RaftError<u64, E>>, CallError> = self
            .client
            .call(&self.addr, path, req, option.hard_ttl())
            .await;
        match reply {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(RPCError::RemoteError(openraft::error::RemoteError::new(
                0, e,
            ))),
            Err(CallError::Unreachable { reason, .. }) => Err(RPCError::Unreachable(
                Unreachable::new(&std::io::Error::other(reason)),
            )),
            Err(CallError::Api(e)) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(e.message),
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
