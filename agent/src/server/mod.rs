//! The server role: it holds the replicated state, orders writes through Raft, answers reads
//! with blocking in Consul's three consistency modes, and runs the leader's duties.
//!
//! Writes arrive typed at [`Server::write`] (see [`endpoints`]): a follower forwards them to
//! the leader, whose endpoint builds the command and commits it through Raft with
//! [`Server::propose`]; with no leader the write holds for `rpc_hold_timeout` waiting for one,
//! then fails with Consul's "No cluster leader". Reads execute a [`query::Read`]:
//! - default mode on the leader (forwarded there from followers);
//! - `?stale` on any server, with `X-Consul-LastContact` (forwarded to the leader when the
//!   server lags more than `?max_stale`);
//! - `?consistent` on the leader after it confirmed its leadership with a quorum
//!   (openraft's linearizable read).
//!
//! Why the pieces are shaped so:
//! - Every command passes through one batcher ([`Server::propose`]): commands that queue while
//!   earlier entries commit share the next entry, so concurrent writes cost one Raft round and one
//!   fsync instead of one each.
//! - A leader serves no leader or consistent read, and runs no duty, before it has committed a
//!   barrier in its own term (see [`Server::barrier`]), and serves nothing while its lease has
//!   lapsed ([`Server::lease_ok`]): openraft 0.9 gives neither guarantee on its own.
//! - openraft's election timer is off; [`prevote`] starts elections after a pre-vote round.
//! - A fatal Raft error stops the whole role ([`Server::failure`]): answering from a state machine
//!   that no longer follows the log would be worse than answering nothing.

pub mod acl_reads;
mod answers;
pub mod endpoints;
pub mod leader;
pub mod prepared;
pub mod prevote;
pub mod query;
pub mod requests;
pub mod rpc_routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_catalog::{Changes, Command, Response, State, Store};
use cairn_raft::log_store::LogStore;
use cairn_raft::state_machine::{ApplyObserver, StateMachine};
use cairn_raft::{Raft, ServerNode, node_id_from_uuid};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use tracing::{info, warn};

use crate::api::{Consistency, Error, QueryMeta, ReadOptions};
use crate::rpc;
use crate::watch::WatchHub;

/// Unix time in milliseconds, the clock carried inside commands.
///
/// Wall-clock time on purpose: the value travels in a command and every server applies the same
/// number, so only the proposer reads a clock. A clock set before 1970 reads 0 rather than failing
/// a write.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Wakes blocked readers when the state machine applies something, and forgets shared answers
/// when the state is replaced.
///
/// The first field wakes readers, the second is the shared-answer cache. Cached answers are keyed
/// by (read, index); rather than trust indexes across a replaced state (a restore, an installed
/// snapshot), the cache is emptied then.
struct HubObserver(Arc<WatchHub>, Arc<answers::Answers>);

impl ApplyObserver for HubObserver {
    // Runs inside the state machine between entries: both calls only take a short lock and signal,
    // never wait.
    fn applied(&self, changes: &Changes) {
        if changes.all {
            self.1.clear();
        }
        self.0.notify(changes);
    }
    fn reset(&self) {
        self.1.clear();
        self.0.notify_all();
    }
    fn skipped_unknown(&self, _index: u64, _tag: &str) {
        metrics::count_skipped_unknown();
    }
}

/// How to start a server.
pub struct ServerOptions {
    /// This server as Raft members see it.
    pub me: ServerNode,
    /// Datacenter.
    pub datacenter: String,
    /// Where Raft keeps its log and snapshots; `None` keeps everything in memory (`-dev`).
    /// In-process test clusters use memory too: nothing survives the process, and no fsync is on
    /// the write path.
    pub raft_dir: Option<PathBuf>,
    /// Timing multiplier (`performance.raft_multiplier`).
    /// Scales heartbeat (40 ms) and election timeouts (120-240 ms); clamped to 1..=10, the range
    /// Consul accepts. Consul's default 5 gives a 200 ms heartbeat and 600-1200 ms elections.
    pub raft_multiplier: u32,
    /// How long writes wait for a leader (`performance.rpc_hold_timeout`).
    /// Reads waiting for a leader's barrier, forwarded reads and writes waiting for a leader all
    /// give up after it, so an election shorter than this is invisible to clients.
    pub hold_timeout: Duration,
    /// Take a snapshot after this many log entries.
    pub snapshot_threshold: u64,
    /// Entries kept behind a snapshot for slow followers.
    pub trailing_logs: u64,
    /// Autopilot settings.
    pub autopilot: crate::config::Autopilot,
    /// A fixed election timeout instead of a random one in Raft's range (reproducible test
    /// runs draw it from their seed).
    /// `None` in production: openraft's configured range, with the pre-vote loop drawing a random
    /// timeout in it for each attempt.
    pub election_timeout_ms: Option<u64>,
    /// Where other datacenters' servers are (the WAN pool, once it runs).
    pub router: Arc<crate::wan::Router>,
    /// `session_ttl_min`: the shortest TTL a session may be created with.
    pub session_ttl_min: Duration,
    /// Token resolution (disabled unless `acl.enabled`).
    pub acl: crate::acl::Acl,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Raft storage problem.
    #[error("{0}")]
    Storage(String),
    /// Raft refused its configuration.
    #[error("raft: {0}")]
    Raft(String),
}

/// A server's state, Raft node and write path.
pub struct Server {
    /// Where the other servers are now, as gossip announced them (`rpc::ServerAddrs`): Raft
    /// messages and pre-votes go there rather than to the Raft configuration's old address.
    addrs: rpc::ServerAddrs,
    /// The applied state, published as one `Arc<State>` per applied command: readers take a
    /// snapshot and never hold a lock while they compute an answer.
    store: Arc<Store>,
    /// Blocked readers, woken by the state machine's observer on every applied change.
    hub: Arc<WatchHub>,
    raft: Raft,
    /// This server's Raft ID, derived from its node UUID (`node_id_from_uuid`), so every server
    /// computes the same ID for a peer from its gossip metadata.
    node_id: u64,
    me: ServerNode,
    /// Typed calls to other servers (forwarding, pre-votes, transfers); shared with the Raft
    /// network.
    rpc: rpc::Client,
    datacenter: String,
    /// Other datacenters' servers: requests for them are forwarded there.
    pub router: Arc<crate::wan::Router>,
    /// See [`ServerOptions::session_ttl_min`].
    pub session_ttl_min: Duration,
    /// See [`ServerOptions::hold_timeout`].
    hold_timeout: Duration,
    /// When this server last heard from the leader (append or heartbeat); monotonic (and
    /// virtual in whole-cluster tests).
    last_contact: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Session TTL timers (meaningful on the leader).
    pub session_timers: Arc<leader::SessionTimers>,
    /// Autopilot settings.
    pub autopilot: crate::config::Autopilot,
    /// Commands waiting to be committed (see [`Server::propose`]).
    /// Bounded: past 16 384 queued commands a proposer waits for room, which slows writers instead
    /// of growing memory without bound while a quorum is slow.
    proposals: tokio::sync::mpsc::Sender<Proposal>,
    /// The latest answer of each cacheable read.
    /// Only sound because every change that alters an answer moves that answer's index (see
    /// `query::Read::cache_index`); emptied whenever the state is replaced.
    answers: Arc<answers::Answers>,
    /// The term in which this server, as leader, committed its barrier (0: none): only then
    /// does its state hold every acknowledged write, so only then does it serve leader reads.
    ready_term: AtomicU64,
    /// Identities of the writes this server proposes (exactly-once across forwarding retries).
    requests: Arc<requests::Requests>,
    /// Resolves tokens to permissions for the endpoints, against this server's state.
    acl: crate::acl::Acl,
    /// The agent's data directory (`None` in `-dev`): where the ACL bootstrap reset file is.
    data_dir: Option<PathBuf>,
    /// Why the Raft node stopped for good, once it has: the server then serves nothing and
    /// the agent exits (see [`Server::failure`]).
    failed: tokio::sync::watch::Sender<Option<String>>,
    /// When a quorum last acknowledged this server as leader (`None`: never, or not leading).
    /// Written by `watch_metrics` from openraft's `millis_since_quorum_ack`, converted to an
    /// instant so the lease check is a subtraction on the read path, not a metrics borrow.
    quorum_acked_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// How long a quorum's acknowledgement keeps this leader's lease: the shortest election
    /// timeout, so a leader cut off from its quorum stops serving before another can be
    /// elected (Consul's `LeaderLeaseTimeout`).
    lease: Duration,
    /// The Raft log (shared with openraft), for its last log ID: openraft 0.9 does not expose
    /// it, and pre-votes compare it (`crate::server::prevote`).
    log: LogStore,
}

/// A command waiting to be committed, and where its result goes.
struct Proposal {
    cmd: Command,
    /// Answered by the batcher with the entry's index and this command's own result (a batch entry
    /// answers each command separately). Dropped unanswered only at shutdown.
    reply: tokio::sync::oneshot::Sender<Result<(u64, Response), Error>>,
}

/// How long a proposal waits for its entry to commit before its caller is answered with an
/// error: far beyond any healthy commit, short enough that a leader which lost its quorum
/// between the lease check and the proposal does not hold callers for good.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most commands in one batch entry.
/// Bounds the number of callers a single failed entry answers with an error, and the work of one
/// apply between two wake-ups of readers.
const MAX_BATCH: usize = 256;
/// Rough bound on the bytes of one batch entry: an entry must reach the followers within
/// openraft's append timeout (one heartbeat interval), so entries stay small.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Batch entries being committed at once.
/// More than one, so a batch can be collected while others replicate (pipelining), few enough that
/// a slow quorum pushes back on proposers through the bounded queue instead of piling up entries in
/// openraft.
const BATCHES_IN_FLIGHT: usize = 4;

/// Takes proposals as they come and commits them in batches: whatever queued while earlier
/// entries were being committed goes in the next entry.
async fn batcher(server: std::sync::Weak<Server>, mut rx: tokio::sync::mpsc::Receiver<Proposal>) {
    // The server is held weakly: the batcher must not keep a shut-down server alive. Each loop
    // upgrades it only for as long as it submits.
    let slots = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut size = first.cmd.encoded_size_bound();
        // A whole-archive restore replaces the state: batched with other commands, their results
        // would depend on whether they sort before or after it, and its size already fills an
        // entry.
        let alone = matches!(first.cmd.inner(), Command::Restore { .. });
        let mut batch = vec![first];
        while !alone && batch.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) if matches!(p.cmd.inner(), Command::Restore { .. }) => {
                    // A restore always travels alone: commit what is queued, then it.
                    let Some(s) = server.upgrade() else { return };
                    let queued = std::mem::take(&mut batch);
                    s.commit_batch(queued).await;
                    batch.push(p);
                    break;
                }
                Ok(p) => {
                    size += p.cmd.encoded_size_bound();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let Some(s) = server.upgrade() else { return };
        // Committed in its own task, holding a slot until done, so the next batch can be collected
        // while this one replicates. Batches in flight together may reach the log in either order:
        // none of their callers has been answered yet, so the writes are concurrent anyway.
        tokio::spawn(async move {
            s.commit_batch(batch).await;
            drop(permit);
        });
    }
}

/// Watches the Raft node's metrics: records when a quorum last acknowledged this server as
/// leader (its lease, see [`Server::lease_ok`]), and fails the server role when the node stops
/// on a fatal error (storage failure, panic in a Raft task): serving on would answer from a
/// state that no longer follows the log.
async fn watch_metrics(server: std::sync::Weak<Server>) {
    let mut rx = match server.upgrade() {
        Some(s) => s.raft.metrics(),
        None => return,
    };
    loop {
        let (fatal, acked_ms_ago) = {
            let m = rx.borrow();
            let fatal = match &m.running_state {
                Ok(()) => None,
                Err(e) => Some(e.to_string()),
            };
            (fatal, m.millis_since_quorum_ack)
        };
        let Some(s) = server.upgrade() else { return };
        if let Some(why) = fatal {
            s.fail(&why);
            return;
        }
        // openraft reports an age, not an instant: converted at each metrics change, so the lease
        // starts from when the quorum answered, not from when the metrics were read. `None` (not
        // leading, or never acknowledged) clears the lease.
        let acked_at = acked_ms_ago
            .and_then(|ms| tokio::time::Instant::now().checked_sub(Duration::from_millis(ms)));
        *s.quorum_acked_at.lock().unwrap_or_else(|p| p.into_inner()) = acked_at;
        // Not held across the await: a server waiting on metrics must still be droppable.
        drop(s);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl Server {
    /// Opens the Raft storage and starts the Raft node (not yet bootstrapped).
    pub async fn start(
        opts: ServerOptions,
        hub: Arc<WatchHub>,
        rpc: rpc::Client,
    ) -> Result<Arc<Server>, ServerError> {
        let store = Arc::new(Store::new());
        let answers = Arc::new(answers::Answers::default());
        let observer: Arc<dyn ApplyObserver> =
            Arc::new(HubObserver(Arc::clone(&hub), Arc::clone(&answers)));
        let (log, sm) = match &opts.raft_dir {
            None => (
                LogStore::in_memory(),
                StateMachine::open(Arc::clone(&store), None, observer)
                    .map_err(|e| ServerError::Storage(e.to_string()))?,
            ),
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ServerError::Storage(format!("raft directory {}: {e}", dir.display()))
                })?;
                let log = LogStore::open(&dir.join("raft.db"))
                    .map_err(|e| ServerError::Storage(e.to_string()))?;
                let sm =
                    StateMachine::open(Arc::clone(&store), Some(dir.join("snapshots")), observer)
                        .map_err(|e| ServerError::Storage(format!("raft snapshot: {e}")))?;
                (log, sm)
            }
        };
        // Scaled by the multiplier as Consul scales its timings: heartbeat 40 ms, election
        // 120-240 ms per unit. A fixed timeout (reproducible tests) becomes the one-millisecond
        // range [t, t+1), since openraft requires max > min.
        let m = u64::from(opts.raft_multiplier.clamp(1, 10));
        let config = openraft::Config {
            cluster_name: format!("cairn-{}", opts.datacenter),
            heartbeat_interval: 40 * m,
            election_timeout_min: opts.election_timeout_ms.unwrap_or(120 * m),
            election_timeout_max: opts.election_timeout_ms.map_or(240 * m, |t| t + 1),
            // A snapshot chunk may be large and written to disk on arrival: far longer than an
            // append.
            install_snapshot_timeout: 30_000,
            // An upper bound only: the RPC client also cuts appends to about 1 MiB
            // (`rpc::cap_entries`).
            max_payload_entries: 512,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_threshold),
            max_in_snapshot_log_to_keep: opts.trailing_logs,
            // Elections are started by `crate::server::prevote`, after a pre-vote round.
            enable_elect: false,
            ..Default::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| ServerError::Raft(e.to_string()))?,
        );
        let node_id = node_id_from_uuid(&opts.me.id);
        let addrs = rpc::ServerAddrs::default();
        let network = rpc::Network {
            client: rpc.clone(),
            addrs: addrs.clone(),
        };
        // The shortest election timeout: no other server can have been elected sooner after the
        // last quorum acknowledgement, so a lease this long never overlaps a new leader's term.
        let lease = Duration::from_millis(config.election_timeout_min);
        // `-dev`: openraft compacts by entry count only; keep the in-memory log bounded in bytes.
        let memory_log = opts.raft_dir.is_none().then(|| log.clone());
        // Kept for `last_log_id` (pre-votes), which openraft 0.9 does not expose.
        let log_reader = log.clone();
        let raft = Raft::new(node_id, config, network, log, sm)
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?;
        if let Some(log) = memory_log {
            tokio::spawn(cairn_raft::log_store::bound_in_memory(
                raft.clone(),
                log,
                cairn_raft::log_store::IN_MEMORY_BUDGET,
            ));
        }
        let (proposals, proposal_rx) = tokio::sync::mpsc::channel(16_384);
        let server = Arc::new(Server {
            store,
            hub,
            raft,
            node_id,
            me: opts.me,
            rpc,
            datacenter: opts.datacenter,
            router: opts.router,
            session_ttl_min: opts.session_ttl_min,
            hold_timeout: opts.hold_timeout,
            last_contact: std::sync::Mutex::new(None),
            ready_term: AtomicU64::new(0),
            session_timers: Arc::new(leader::SessionTimers::default()),
            autopilot: opts.autopilot,
            proposals,
            answers,
            requests: requests::Requests::new(),
            acl: opts.acl,
            data_dir: opts
                .raft_dir
                .as_ref()
                .and_then(|d| d.parent())
                .map(|d| d.to_path_buf()),
            failed: tokio::sync::watch::channel(None).0,
            quorum_acked_at: std::sync::Mutex::new(None),
            lease,
            log: log_reader,
            addrs,
        });
        tokio::spawn(batcher(Arc::downgrade(&server), proposal_rx));
        tokio::spawn(watch_metrics(Arc::downgrade(&server)));
        Ok(server)
    }

    /// Marks the server role as failed for good (logged once) and returns the error every
    /// request gets from now on.
    fn fail(&self, why: &dyn std::fmt::Display) -> Error {
        let why = why.to_string();
        // Only the first reason is kept and logged: later failures are consequences of the first.
        let first = self.failed.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(why.clone());
                true
            } else {
                false
            }
        });
        if first {
            tracing::error!(error = %why, "the Raft node stopped on a fatal error; the server role is stopping");
        }
        Error::Fatal(why)
    }

    /// Fails when the server role has stopped for good.
    fn check_running(&self) -> Result<(), Error> {
        match self.failed.borrow().as_ref() {
            Some(why) => Err(Error::Fatal(why.clone())),
            None => Ok(()),
        }
    }

    /// Turns `Some(reason)` when the server role fails for good: the agent then stops and
    /// exits non-zero instead of answering every request with an error.
    pub fn failure(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.failed.subscribe()
    }

    /// Datacenter this server belongs to.
    pub fn datacenter(&self) -> &str {
        &self.datacenter
    }

    /// Where the other servers are now, by Raft ID (fed by the agent from gossip).
    pub fn server_addrs(&self) -> &rpc::ServerAddrs {
        &self.addrs
    }

    /// This server's Raft ID.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// This server as a Raft member.
    pub fn me(&self) -> &ServerNode {
        &self.me
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The RPC client.
    pub fn rpc(&self) -> &rpc::Client {
        &self.rpc
    }

    /// Bootstraps a cluster of the given servers (idempotent: a cluster that has a configuration
    /// already is left alone).
    ///
    /// `Ok(true)` when this call formed the cluster. Every server of `-bootstrap-expect` calls it
    /// with the same set; openraft refuses a second initialization as an API error, taken here as
    /// "already done" rather than a failure.
    pub async fn bootstrap(&self, members: Vec<ServerNode>) -> Result<bool, ServerError> {
        if self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ServerError::Raft(e.to_string()))?
        {
            return Ok(false);
        }
        let set: BTreeMap<u64, ServerNode> = members
            .into_iter()
            .map(|n| (node_id_from_uuid(&n.id), n))
            .collect();
        info!(servers = set.len(), "bootstrapping the Raft cluster");
        match self.raft.initialize(set).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(e)) => {
                warn!(error = %e, "bootstrap skipped");
                Ok(false)
            }
            Err(e) => Err(ServerError::Raft(e.to_string())),
        }
    }

    /// The ID of the last entry in this server's Raft log (purged or not).
    ///
    /// A pre-vote compares it, as Raft's vote does: a candidate behind a voter's log would lose the
    /// election anyway.
    pub fn last_log_id(&self) -> Option<cairn_raft::LogId> {
        self.log.last_log_id()
    }

    /// Records contact from the leader (called by the Raft RPC handlers).
    ///
    /// Not called for votes: a candidate is not a leader, and counting it would keep voters from
    /// granting pre-votes while no leader exists.
    pub fn touch_leader_contact(&self) {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(tokio::time::Instant::now());
    }

    /// Milliseconds since the leader was last heard from (0 on the leader).
    pub fn last_contact_ms(&self) -> u64 {
        if self.is_leader() {
            return 0;
        }
        match *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(at) => u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
            // Never heard from a leader: "very long ago", halved so adding a timeout to it cannot
            // overflow.
            None => u64::MAX / 2,
        }
    }

    /// The agent's data directory, if it has one (`-dev` and in-process clusters do not).
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// The current state view.
    pub fn state(&self) -> Arc<State> {
        self.store.read()
    }

    /// A copy of openraft's latest metrics, for callers that look at several fields; hot paths
    /// borrow in place instead (see `leading_in_term`).
    fn metrics(&self) -> openraft::RaftMetrics<u64, ServerNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The leader's Raft ID and node, if known.
    ///
    /// From this server's view: a follower cut off from the leader keeps reporting it until an
    /// election changes its term.
    pub fn leader_node(&self) -> Option<(u64, ServerNode)> {
        let m = self.metrics();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id).cloned()?;
        Some((id, node))
    }

    /// Address of the leader's server RPC endpoint, if there is a leader.
    pub fn leader(&self) -> Option<SocketAddr> {
        self.leader_node().and_then(|(_, n)| n.addr.parse().ok())
    }

    /// Server RPC addresses of the voting peers.
    pub fn peers(&self) -> Vec<SocketAddr> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id))
            .filter_map(|n| n.addr.parse().ok())
            .collect()
    }

    /// Every Raft member: (id, node, voter).
    pub fn members(&self) -> Vec<(u64, ServerNode, bool)> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, n.clone(), voters.contains(id)))
            .collect()
    }

    /// Whether this server is the leader.
    pub fn is_leader(&self) -> bool {
        self.leading_in_term().is_some()
    }

    /// The current term when this server leads (read in place: it is on every read's path).
    fn leading_in_term(&self) -> Option<u64> {
        let rx = self.raft.metrics();
        let m = rx.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.node_id))
            .then_some(m.current_term)
    }

    /// Orders, applies and publishes a command on this server, which must lead (the endpoints
    /// and the leader's own duties call it); returns its index and result. Commands proposed
    /// while an earlier entry is being committed are batched into one entry (one disk write,
    /// one replication round). A command gets a request identity here unless its write
    /// already has one.
    ///
    /// A command that could not apply on any server (a type this version does not know, a
    /// transaction verb that does not exist) is refused here, before it reaches the log.
    pub async fn propose(&self, cmd: Command) -> Result<(u64, Response), Error> {
        self.check_running()?;
        cmd.validate()?;
        // Commands from the leader's own duties get an identity here; endpoint commands already
        // carry the write's. The ticket keeps the floor below this request until it is answered.
        let (cmd, _in_flight) = self.requests.identify(cmd);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.proposals
            .send(Proposal { cmd, reply: tx })
            .await
            .map_err(|_| Error::Unavailable("the server is shutting down".into()))?;
        match tokio::time::timeout(COMMIT_TIMEOUT, rx).await {
            Ok(reply) => {
                reply.map_err(|_| Error::Unavailable("the server is shutting down".into()))?
            }
            // Raft never gives up on an entry it appended; the caller must not wait forever
            // for a quorum that is gone. The write may still commit later.
            Err(_) => Err(Error::Unavailable(format!(
                "the write did not commit within {COMMIT_TIMEOUT:?}; it may still be applied"
            ))),
        }
    }

    /// Commits one log entry (a single command or a batch) through Raft on this server, which
    /// must lead. Writes never travel between servers as commands: a follower forwards the
    /// typed request (see `endpoints`), so a server that lost the lead answers `NotLeader`.
    async fn submit(&self, cmd: &Command) -> Result<cairn_raft::ApplyResult, Error> {
        match self.raft.client_write(cmd.clone()).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(e)) => Err(Error::Internal(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(self.fail(&e)),
        }
    }

    /// Commits a batch of proposals and answers each.
    async fn commit_batch(&self, batch: Vec<Proposal>) {
        let (cmds, replies): (Vec<Command>, Vec<_>) =
            batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        // A single command goes as itself, not as a one-element batch: its entry then reads the
        // same as one written by a server that does not batch.
        let single = cmds.len() == 1;
        let entry = if single {
            cmds.into_iter().next().unwrap_or(Command::Noop)
        } else {
            Command::Batch(cmds)
        };
        let outcome = self.submit(&entry).await;
        let results: Vec<Result<(u64, Response), Error>> = match outcome {
            // The entry did not commit (lost leadership, fatal error): every command in it failed
            // alike. Their identities make a retry safe if it did commit after all.
            Err(e) => replies.iter().map(|_| Err(e.clone())).collect(),
            Ok(r) => match (single, r.result) {
                (true, result) => vec![result.map(|resp| (r.index, resp)).map_err(Error::from)],
                (false, Ok(Response::Batch(each))) => each
                    .into_iter()
                    .map(|x| x.map(|resp| (r.index, resp)).map_err(Error::from))
                    .collect(),
                // A batch entry always answers a `Batch` response with one result per command;
                // anything else means the state machine and the batcher disagree, so no caller is
                // told it succeeded.
                (false, other) => replies
                    .iter()
                    .map(|_| {
                        Err(Error::Internal(format!(
                            "unexpected batch result: {other:?}"
                        )))
                    })
                    .collect(),
            },
        };
        for (reply, result) in replies.into_iter().zip(results) {
            metrics::count_apply(result.is_ok());
            let _ = reply.send(result);
        }
    }

    /// Commits a no-op entry in the current term (a barrier) and, once it is applied, marks
    /// this leader ready for reads. A leader's committed index may lag behind what a majority
    /// acknowledged (always so for a leader that restarted and resumed its term, which openraft
    /// 0.9 allows without a new entry), so reads wait for this, as Consul's do.
    pub async fn barrier(&self) -> Result<(), Error> {
        // Not through `propose`: the barrier needs the term of its own entry, which `propose` does
        // not return, and must not queue behind the batcher's pending commands.
        match self.raft.client_write(Command::Noop).await {
            Ok(resp) => {
                let term = resp.log_id.leader_id.term;
                // Release pairs with the Acquire in `ready_for_reads`: a reader that sees the term
                // also sees the state the barrier's apply published.
                self.ready_term.store(term, Ordering::Release);
                tracing::debug!(term, index = resp.log_id.index, "leader barrier committed");
                Ok(())
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::NotLeader {
                    leader: f.leader_node.map(|n| n.addr),
                })
            }
            Err(RaftError::APIError(e)) => Err(Error::Internal(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(self.fail(&e)),
        }
    }

    /// Autopilot's settings: those in the replicated state once written (an operator may
    /// change them at run time), else this server's configuration.
    pub fn autopilot_settings(&self) -> crate::config::Autopilot {
        match self.state().autopilot().1 {
            Some(m) => self.autopilot.merged_with(&m),
            None => self.autopilot.clone(),
        }
    }

    /// Whether this server leads with a live lease: a quorum acknowledged it within the
    /// lease. A leader cut off from the majority keeps believing it leads (openraft 0.9 has no
    /// check-quorum step-down), so without this it would answer default reads from a state a
    /// new leader may already have moved past, and hold writes it can never commit.
    pub fn lease_ok(&self) -> bool {
        let acked = *self
            .quorum_acked_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        acked.is_some_and(|t| t.elapsed() <= self.lease)
    }

    /// Whether this server leads, holds its lease and has committed its barrier in the
    /// current term.
    fn ready_for_reads(&self) -> bool {
        self.leading_in_term() == Some(self.ready_term.load(Ordering::Acquire)) && self.lease_ok()
    }

    /// Waits (up to the hold timeout) until this leader is ready for reads. `Ok(false)` if it
    /// stopped leading meanwhile (the read goes to the new leader instead).
    async fn wait_ready(&self) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + self.hold_timeout;
        loop {
            if self.ready_for_reads() {
                return Ok(true);
            }
            if !self.is_leader() {
                return Ok(false);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(if self.lease_ok() {
                    Error::NotReady
                } else {
                    Error::NoLeader
                });
            }
            // Polling: barrier commits and lease changes arrive through openraft's metrics, and
            // 5 ms is short next to an election while costing little for the rare waiter.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Runs an authorized query with the requested consistency, blocking until its index
    /// passes `opts.min_index` or the wait expires (the read endpoint's second half).
    async fn run_query(
        &self,
        q: &crate::api::Query,
    ) -> Result<(QueryMeta, Arc<query::Answer>), Error> {
        let (read, opts) = (&q.read, &q.opts);
        let consistency = opts.consistency;
        self.check_running()?;
        // Stale reads are served by any server close enough to the leader; leader and
        // consistent reads only by a leader that committed its barrier and holds its lease.
        let local_ok = match consistency {
            Consistency::Stale => opts
                .max_stale
                .is_none_or(|max| u128::from(self.last_contact_ms()) <= max.as_millis()),
            Consistency::Leader | Consistency::Consistent => {
                self.is_leader() && self.wait_ready().await?
            }
        };
        // The rarer paths are boxed so that a parked blocking query (many thousands of them)
        // only holds the state of the local read, not that of an RPC or a quorum check.
        if !local_ok {
            return Box::pin(self.forward_read(q)).await;
        }
        // `?consistent`: openraft's linearizable read confirms leadership with a heartbeat round to
        // a quorum and waits for the state machine to reach the commit index it saw.
        if consistency == Consistency::Consistent {
            Box::pin(self.raft.ensure_linearizable())
                .await
                .map_err(|e| {
                    tracing::debug!(error = %e, "leadership not confirmed for a consistent read");
                    Error::NoLeader
                })?;
        }
        self.read_local(read, opts).await
    }

    /// Sends a read to the leader, waiting up to the hold timeout for one to be known and retrying
    /// transient failures. Serves it here instead when this server became the leader in the
    /// meantime.
    async fn forward_read(
        &self,
        q: &crate::api::Query,
    ) -> Result<(QueryMeta, Arc<query::Answer>), Error> {
        let (read, opts) = (&q.read, &q.opts);
        let deadline = tokio::time::Instant::now() + self.hold_timeout;
        loop {
            if let Some((id, node)) = self.leader_node() {
                if id == self.node_id && self.wait_ready().await? {
                    return self.read_local(read, opts).await;
                }
                let mut fwd = q.clone();
                // A stale read handed to the leader is served there in leader mode: the leader
                // neither forwards it again nor applies a staleness bound to itself.
                if fwd.opts.consistency == Consistency::Stale {
                    fwd.opts.consistency = Consistency::Leader;
                }
                match self.rpc.read(&node.addr, &fwd).await {
                    Ok((meta, value)) => return Ok((meta, Arc::new(query::Answer::new(value)))),
                    Err(e) if !e.is_transient() => return Err(e),
                    Err(e) => warn!(error = %e, "forwarding a read to the leader failed; retrying"),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a read against this server's state (the blocking loop).
    pub async fn read_local(
        &self,
        read: &query::Read,
        opts: &ReadOptions,
    ) -> Result<(QueryMeta, Arc<query::Answer>), Error> {
        let consistency = opts.consistency;
        let meta = |index: u64| QueryMeta {
            // Never 0, as Consul: a client passing 0 back as `?index` would not block and would
            // poll in a tight loop.
            index: index.max(1),
            known_leader: self.leader_node().is_some(),
            last_contact_ms: if consistency == Consistency::Stale {
                self.last_contact_ms().min(u64::from(u32::MAX))
            } else {
                0
            },
            consistency,
            filtered_by_acls: false,
        };
        let target = read.target();
        let deadline = tokio::time::Instant::now() + opts.wait_with_jitter();
        loop {
            // Subscribe and enable the wake-up before reading: a change applied between the read
            // and the wait then still wakes this reader instead of being missed until the timeout.
            let sub = self.hub.subscribe(&target);
            let changed = sub.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                // Scoped: a parked reader holds neither the state view nor its answer.
                let st = self.state();
                let (index, answer) = self.answer(read, &st)?;
                if opts.min_index == 0 || index > opts.min_index {
                    return Ok((meta(index), answer));
                }
            }
            tokio::select! {
                () = &mut changed => {}
                // The wait expired: answer with the current state whatever its index, as Consul
                // does, so the client sees the index it should block on next.
                () = tokio::time::sleep_until(deadline) => {
                    let st = self.state();
                    let (index, answer) = self.answer(read, &st)?;
                    return Ok((meta(index), answer));
                }
            }
        }
    }

    /// The answer to a read on a state view, reused from the cache when the same read was
    /// answered at the same index (every reader woken by one change shares one answer).
    fn answer(&self, read: &query::Read, st: &State) -> Result<(u64, Arc<query::Answer>), Error> {
        // The read's JSON form is the key: two requests share an answer only when they ask exactly
        // the same thing. Reads without a cache index (filters over data their index does not
        // cover, lists) are computed every time.
        let key = read
            .cache_index(st)
            .and_then(|i| serde_json::to_string(read).ok().map(|k| (k, i)));
        if let Some((k, i)) = &key
            && let Some(a) = self.answers.get(k, *i)
        {
            return Ok((*i, a));
        }
        let (index, reply) = read.execute(st)?;
        let answer = Arc::new(query::Answer::new(reply));
        if let Some((k, i)) = key
            // Kept only when the computed answer reflects the index it is filed under: otherwise a
            // later reader at that index could get an answer from a different state.
            && i == index
        {
            self.answers.put(k, index, Arc::clone(&answer));
        }
        Ok((index, answer))
    }

    /// Resets a session's TTL timer on the leader (forwarding when this server is not it).
    ///
    /// TTL timers live only on the leader (they are not replicated state): a renewal that reaches a
    /// follower must be forwarded or it would be lost.
    pub async fn renew_session(&self, id: &str, ttl: Duration) -> Result<(), Error> {
        if self.is_leader() {
            self.session_timers.reset(id, ttl);
            return Ok(());
        }
        let Some((_, node)) = self.leader_node() else {
            return Err(Error::NoLeader);
        };
        let _: () = self
            .rpc
            .call(
                &node.addr,
                "/v1/internal/session/renew",
                &rpc::RenewRequest {
                    id: id.to_string(),
                    ttl_ms: ttl.as_millis() as u64,
                    dc: None,
                },
                Duration::from_secs(5),
            )
            .await?;
        Ok(())
    }

    /// Removes a server from the Raft configuration (by node UUID or RPC address), on the
    /// leader (forwarded there when this server is not it).
    pub async fn remove_peer(&self, req: &rpc::PeerRequest) -> Result<(), Error> {
        if !self.is_leader() {
            let Some((_, node)) = self.leader_node() else {
                return Err(Error::NoLeader);
            };
            return self
                .rpc
                .call(
                    &node.addr,
                    "/v1/internal/raft/remove-peer",
                    req,
                    Duration::from_secs(30),
                )
                .await;
        }
        let target = self.members().into_iter().find(|(_, n, _)| {
            (!req.id.is_empty() && n.id == req.id)
                || (!req.address.is_empty() && n.addr == req.address)
        });
        let Some((id, node, voter)) = target else {
            return Err(Error::Invalid(format!(
                "id {:?} / address {:?} was not found in the Raft configuration",
                req.id, req.address
            )));
        };
        // `RemoveVoters` covers voters only: a learner is removed from the nodes instead.
        let ids: std::collections::BTreeSet<u64> = [id].into_iter().collect();
        let change = if voter {
            openraft::ChangeMembers::RemoveVoters(ids)
        } else {
            openraft::ChangeMembers::RemoveNodes(ids)
        };
        info!(server = %node.name, "removing a peer from the Raft configuration");
        self.raft
            // `retain = false`: a removed voter leaves the configuration entirely instead of
            // staying on as a learner that would still receive every entry.
            .change_membership(change, false)
            .await
            .map_err(|e| Error::Internal(format!("failed to remove peer: {e}")))?;
        Ok(())
    }

    /// Moves leadership to another voter (`id`: a node UUID; empty: the most up-to-date
    /// follower). The target campaigns; with the current leader's vote it wins in a 3-server
    /// cluster, and in larger ones once the other followers' leader leases lapse. Returns the
    /// new leader's RPC address.
    pub async fn transfer_leader(&self, req: &rpc::PeerRequest) -> Result<String, Error> {
        if !self.is_leader() {
            let Some((_, node)) = self.leader_node() else {
                return Err(Error::NoLeader);
            };
            return self
                .rpc
                .call(
                    &node.addr,
                    "/v1/internal/raft/transfer",
                    req,
                    Duration::from_secs(30),
                )
                .await;
        }
        let metrics = self.metrics();
        let replication = metrics.replication.clone().unwrap_or_default();
        let candidates: Vec<(u64, ServerNode)> = self
            .members()
            .into_iter()
            .filter(|(id, n, voter)| {
                *voter && *id != self.node_id && (req.id.is_empty() || n.id == req.id)
            })
            .map(|(id, n, _)| (id, n))
            .collect();
        // The follower with the highest matched index: its log is at least as recent as any other
        // voter's, so none refuses it a vote for being behind.
        let target = candidates.into_iter().max_by_key(|(id, _)| {
            replication
                .get(id)
                .and_then(|l| l.as_ref())
                .map_or(0, |l| l.index)
        });
        let Some((target_id, node)) = target else {
            return Err(Error::Invalid(if req.id.is_empty() {
                "no other voter to transfer leadership to".to_string()
            } else {
                format!("cannot find a voter with id {:?}", req.id)
            }));
        };
        info!(to = %node.name, "transferring leadership");
        let deadline = tokio::time::Instant::now() + self.hold_timeout;
        loop {
            let _: Result<(), _> = self
                .rpc
                .call(
                    &node.addr,
                    "/v1/internal/raft/campaign",
                    &(),
                    Duration::from_secs(5),
                )
                .await;
            // Asked again until it leads: voters still within their leader lease refuse its votes,
            // and a later campaign wins once those leases have lapsed.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if self.metrics().current_leader == Some(target_id) {
                return Ok(node.addr);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Internal(format!(
                    "leadership did not move to {} within {:?}",
                    node.name, self.hold_timeout
                )));
            }
        }
    }

    /// Starts an election on this server (the target of a leadership transfer).
    ///
    /// No pre-vote here: the leader asked for it, and the old leader's vote is what makes it win.
    pub async fn campaign(&self) -> Result<(), Error> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// What this server knows of the Raft cluster.
    pub async fn status(&self) -> rpc::ServerStatus {
        let leader = self.leader_node().map(|(id, _)| id);
        rpc::ServerStatus {
            node: self.me.name.clone(),
            datacenter: self.datacenter.clone(),
            initialized: self.raft.is_initialized().await.unwrap_or(false),
            leader: self.leader().map(|a| a.to_string()),
            voters: self.peers().iter().map(ToString::to_string).collect(),
            last_index: self.state().last_index(),
            config_index: self
                .metrics()
                .membership_config
                .log_id()
                .map_or(0, |l| l.index),
            servers: self
                .members()
                .into_iter()
                .map(|(id, n, voter)| rpc::RaftServer {
                    id: n.id,
                    node: n.name,
                    address: n.addr,
                    leader: Some(id) == leader,
                    voter,
                })
                .collect(),
        }
    }

    /// Stops Raft.
    ///
    /// The batcher and metrics watcher end on their own once the last `Arc<Server>` is gone (they
    /// hold it weakly).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "raft shutdown failed");
        }
    }
}

/// Metrics of the write path.
///
/// Process-wide atomics rather than fields of `Server`: the state machine's observer counts into
/// them and is built before the `Server` it reports for. On a client agent they stay 0.
pub mod metrics {
    use std::sync::atomic::{AtomicU64, Ordering};

    static APPLIED: AtomicU64 = AtomicU64::new(0);
    static FAILED: AtomicU64 = AtomicU64::new(0);
    static SKIPPED_UNKNOWN: AtomicU64 = AtomicU64::new(0);

    /// Counts one applied command.
    pub fn count_apply(ok: bool) {
        APPLIED.fetch_add(1, Ordering::Relaxed);
        if !ok {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one command of an unknown type skipped by the state machine (its writer, a newer
    /// server, allowed that).
    pub fn count_skipped_unknown() {
        SKIPPED_UNKNOWN.fetch_add(1, Ordering::Relaxed);
    }

    /// Commands of unknown types skipped by the state machine: non-zero means this server runs
    /// an older version than the one writing the log.
    pub fn skipped_unknown() -> u64 {
        SKIPPED_UNKNOWN.load(Ordering::Relaxed)
    }

    /// (commands applied, commands refused by the state machine).
    pub fn applied() -> (u64, u64) {
        (
            APPLIED.load(Ordering::Relaxed),
            FAILED.load(Ordering::Relaxed),
        )
    }
}

/// How long the leader keeps a session alive past its TTL (Consul's session TTL multiplier).
///
/// The TTL is a lower bound, as in Consul: a renewal that arrives late (a slow network, timers
/// restarted by a new leader) still finds the session alive.
pub const SESSION_TTL_MULTIPLIER: u32 = 2;

/// The TTL of a stored session: any positive duration (it was checked against the bound in
/// force when the session was created, which may have been lower than the default).
pub fn stored_session_ttl(ttl: &str) -> Result<Option<Duration>, Error> {
    parse_session_ttl_min(ttl, Duration::ZERO)
}

/// Consul's default `session_ttl_min`.
pub const SESSION_TTL_MIN: Duration = Duration::from_secs(10);

/// Parses a session TTL, enforcing Consul's bounds (`min`, the server's `session_ttl_min`, to
/// 24h) for creations; stored TTLs are read with [`stored_session_ttl`].
///
/// `Ok(None)`: no TTL (empty or zero), so the session lives until destroyed or invalidated by its
/// checks. The error text prints the duration in nanoseconds because Consul's does.
pub fn parse_session_ttl_min(ttl: &str, min: Duration) -> Result<Option<Duration>, Error> {
    if ttl.is_empty() {
        return Ok(None);
    }
    let d = cairn_catalog::duration::parse_go_duration(ttl)
        .map_err(|e| Error::Invalid(format!("Session TTL '{ttl}' invalid: {e}")))?;
    if d.is_zero() {
        return Ok(None);
    }
    if d < min || d > Duration::from_secs(86_400) {
        return Err(Error::Invalid(format!(
            "Invalid Session TTL '{}', must be between [{}=24h0m0s]",
            d.as_nanos(),
            cairn_catalog::duration::format_go_duration(min)
        )));
    }
    Ok(Some(d))
}
