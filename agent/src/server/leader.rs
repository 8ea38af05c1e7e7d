//! Leader duties: keep members in the catalog with their `serfHealth` check, expire sessions
//! whose TTL lapsed, and reap old KV tombstones. Everything goes through commands, and only the
//! leader runs these loops; timers start afresh when leadership changes.
//!
//! Why on the leader, through commands: the catalog is replicated state, so a member's health must
//! be written by one server in log order; letting each server write what its own gossip sees would
//! make servers race with different views. Gossip is the source of truth for liveness, the log for
//! what the catalog says about it.
//!
//! Why timers start afresh: session TTL timers and tombstone samples are not replicated. A new
//! leader cannot know how far its predecessor's timers had run, so it gives every session a full
//! TTL (as Consul does) and starts sampling indexes anew; expiry may come late after a leader
//! change, never early.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_catalog::Command;
use cairn_catalog::command::{DeregisterRequest, RegisterRequest};
use cairn_catalog::model::{HealthCheck, HealthStatus, Service};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{SESSION_TTL_MULTIPLIER, Server, now_ms, stored_session_ttl};

pub use crate::api::{CONSUL_SERVICE, SERF_CHECK_ID};
/// Name of that check.
///
/// Consul's exact texts: UIs, scripts and `?filter` expressions written for Consul match on them.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// Output while the member is alive.
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// Output once the member failed.
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";

/// Gossip status of a member, as the leader reconciles it.
///
/// Gossip's `Leaving` counts as alive: the member still answers until it has left, and its catalog
/// entry goes only when the leave completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberStatus {
    /// Alive.
    Alive,
    /// Failed (unreachable).
    Failed,
    /// Left gracefully.
    Left,
}

/// What the leader knows of a member.
#[derive(Clone, Debug)]
pub struct MemberInfo {
    /// Node name.
    pub name: String,
    /// Node ID.
    pub id: String,
    /// Address.
    pub address: String,
    /// Whether it is a server, and its RPC port.
    /// `Some` makes the leader register the `consul` service on the node and lets autopilot add it
    /// to Raft.
    pub server_port: Option<u16>,
    /// Status.
    pub status: MemberStatus,
    /// Datacenter.
    /// Autopilot only adds servers of its own datacenter to Raft.
    pub datacenter: String,
    /// Node metadata published in gossip.
    pub meta: std::collections::BTreeMap<String, String>,
}

impl MemberInfo {
    /// This member as a Raft peer, when it is a server.
    ///
    /// `None` for a member without an RPC port, a parseable address or a node ID: the Raft ID is
    /// derived from the node ID, so a server without one cannot be a peer.
    pub fn server_node(&self) -> Option<cairn_raft::ServerNode> {
        let port = self.server_port?;
        let ip: std::net::IpAddr = self.address.parse().ok()?;
        (!self.id.is_empty()).then(|| cairn_raft::ServerNode {
            name: self.name.clone(),
            addr: std::net::SocketAddr::new(ip, port).to_string(),
            id: self.id.clone(),
        })
    }
}

/// The command that brings the catalog in line with one member's gossip status.
///
/// A member that left is deregistered with everything on it, as Consul does. An alive or failed one
/// is (re-)registered with its `serfHealth` check passing or critical; an alive server also gets
/// its `consul` service instance, a failed one keeps what it had, which its critical node check
/// marks unhealthy. Tagged addresses repeat the gossip address as `lan`/`wan` and their
/// `_ipv4`/`_ipv6` forms, the shape Consul gives a node registered by its agent.
pub fn reconcile_command(m: &MemberInfo, exists: bool) -> Command {
    match m.status {
        MemberStatus::Left => Command::Deregister {
            req: DeregisterRequest {
                node: m.name.clone(),
                ..DeregisterRequest::default()
            },
            now_ms: now_ms(),
        },
        MemberStatus::Alive | MemberStatus::Failed => {
            let alive = m.status == MemberStatus::Alive;
            let check = HealthCheck {
                node: m.name.clone(),
                check_id: SERF_CHECK_ID.into(),
                name: SERF_CHECK_NAME.into(),
                status: if alive {
                    HealthStatus::Passing
                } else {
                    HealthStatus::Critical
                },
                output: if alive {
                    SERF_ALIVE_OUTPUT
                } else {
                    SERF_FAILED_OUTPUT
                }
                .into(),
                ..HealthCheck::default()
            };
            let service = m.server_port.filter(|_| alive).map(|port| Service {
                id: CONSUL_SERVICE.into(),
                service: CONSUL_SERVICE.into(),
                port,
                ..Service::default()
            });
            let family = if m.address.contains(':') {
                "ipv6"
            } else {
                "ipv4"
            };
            let tagged_addresses = ["lan", "wan"]
                .into_iter()
                .flat_map(|t| [t.to_string(), format!("{t}_{family}")])
                .map(|k| (k, m.address.clone()))
                .collect();
            Command::Register {
                req: RegisterRequest {
                    id: m.id.clone(),
                    node: m.name.clone(),
                    address: m.address.clone(),
                    tagged_addresses,
                    node_meta: m.meta.clone(),
                    // The agent's anti-entropy owns the node record once it exists.
                    skip_node_update: exists,
                    service,
                    checks: vec![check],
                    ..RegisterRequest::default()
                },
                now_ms: now_ms(),
            }
        }
    }
}

/// Applies one member's status to the catalog if it differs.
pub async fn reconcile_member(server: &Server, m: &MemberInfo) {
    let st = server.state();
    let exists = st.node(&m.name).is_some();
    // Compared with the catalog first: reconciliation runs every second for every member, and an
    // unconditional register would put one entry per member per second in the log.
    let in_sync = match m.status {
        MemberStatus::Left => !exists,
        MemberStatus::Alive | MemberStatus::Failed => {
            let want = if m.status == MemberStatus::Alive {
                HealthStatus::Passing
            } else {
                HealthStatus::Critical
            };
            let check_ok = st
                .check(&m.name, SERF_CHECK_ID)
                .is_some_and(|c| c.status == want);
            let svc_ok = match m.server_port {
                Some(port) if m.status == MemberStatus::Alive => st
                    .service(&m.name, CONSUL_SERVICE)
                    .is_some_and(|s| s.port == port),
                // Clients have no `consul` service, and a failed server keeps the instance it had
                // (its critical `serfHealth` check already marks it unhealthy).
                _ => true,
            };
            exists && check_ok && svc_ok
        }
    };
    if in_sync {
        return;
    }
    debug!(node = %m.name, status = ?m.status, "reconciling member into the catalog");
    // A failure is only logged: the next pass (within `RECONCILE_INTERVAL`) tries again.
    if let Err(e) = server.propose(reconcile_command(m, exists)).await {
        warn!(node = %m.name, error = %e, "failed to reconcile member");
    }
}

/// Session TTL timers, kept by the leader. Renewals reset them; expiry destroys the session.
///
/// Kept in memory on the leader only: expiring a session is a command, so the replicated state
/// learns of it in log order, and the timers themselves need no replication.
#[derive(Default)]
pub struct SessionTimers {
    /// Session ID to the instant its TTL (times the multiplier) runs out, on tokio's clock so that
    /// whole-cluster tests expire sessions in virtual time.
    deadlines: Mutex<HashMap<String, Instant>>,
}

impl SessionTimers {
    /// Arms or re-arms the timer of a session with a TTL.
    pub fn reset(&self, id: &str, ttl: Duration) {
        let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        d.insert(
            id.to_string(),
            Instant::now() + ttl * SESSION_TTL_MULTIPLIER,
        );
    }

    /// Forgets a session's timer.
    pub fn clear(&self, id: &str) {
        let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        d.remove(id);
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes and returns the sessions whose deadline has passed. Removed here, before the destroy
    /// is proposed: a destroy that fails is not retried by this timer; a session still in the state
    /// gets a new full TTL at the next `sync_with`.
    fn take_expired(&self, now: Instant) -> Vec<String> {
        let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        let expired: Vec<String> = d
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            d.remove(id);
        }
        expired
    }

    /// Forgets every timer.
    pub fn clear_all(&self) {
        self.deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Arms timers for sessions that have none yet and drops timers of sessions that are gone.
    ///
    /// Run every tick: sessions this leader did not create itself (created under a previous leader,
    /// restored from an archive) get a timer, and a destroyed session's timer goes with it.
    /// Existing timers are left as they are, so this never extends a TTL.
    pub fn sync_with(&self, st: &cairn_catalog::State) {
        let sessions = st.sessions().1;
        let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        d.retain(|id, _| sessions.iter().any(|s| s.id == *id));
        for s in sessions {
            if d.contains_key(&s.id) {
                continue;
            }
            // Sessions without a TTL (or with one that no longer parses) never expire by time.
            if let Ok(Some(ttl)) = stored_session_ttl(&s.ttl) {
                d.insert(s.id.clone(), Instant::now() + ttl * SESSION_TTL_MULTIPLIER);
            }
        }
    }
}

/// Where the leader learns about members: the gossip pool (or just this node).
///
/// A closure rather than the gossip handle: the leader needs only a snapshot of members, and tests
/// can give a fixed list.
pub struct Membership {
    /// The current members.
    pub list: Box<dyn Fn() -> Vec<MemberInfo> + Send + Sync>,
    /// Signalled when membership changes, to reconcile at once.
    /// A member event makes the next tick reconcile at once instead of waiting out
    /// `RECONCILE_INTERVAL`.
    pub changed: tokio::sync::Notify,
}

/// Shared membership source.
pub type MemberSource = Arc<Membership>;

/// Runs the leader's duties while this server is the leader: started when it gains
/// leadership, stopped when it loses it, until `shutdown` fires.
///
/// Driven by openraft's metrics channel, so a change of leadership starts or stops the duties
/// within one metrics update. Stopping aborts the task mid-pass; its commands only restate what
/// gossip and the timers say, so a new leader doing them again is harmless.
pub async fn supervise(
    server: Arc<Server>,
    members: MemberSource,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut metrics = server.raft().metrics();
    let mut duty: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let leader = server.is_leader();
        match (&duty, leader) {
            (None, true) => {
                tracing::info!("gained leadership: starting leader duties");
                duty = Some(tokio::spawn(leader_loop(
                    Arc::clone(&server),
                    Arc::clone(&members),
                )));
            }
            (Some(_), false) => {
                tracing::info!("lost leadership: stopping leader duties");
                if let Some(d) = duty.take() {
                    d.abort();
                }
            }
            _ => {}
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    if let Some(d) = duty.take() {
        d.abort();
    }
}

/// The duties of one leadership term, until the task is aborted: a barrier first, then every 250 ms
/// (or at once on a membership change): reconcile members (at most every `RECONCILE_INTERVAL`), run
/// autopilot, expire sessions, and reap tombstones older than their TTL.
async fn leader_loop(server: Arc<Server>, members: MemberSource) {
    // First commit an entry of this term: until then the state may miss acknowledged writes,
    // and neither reads nor the duties below may act on it.
    // Retried until it commits: a leader without its barrier is of no use, and a lost leadership
    // aborts this task anyway.
    let mut backoff = Duration::from_millis(10);
    while let Err(e) = server.barrier().await {
        warn!(error = %e, "leader barrier failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    // The first leader records autopilot's settings from its configuration, as Consul's does;
    // from then on they live in the replicated state.
    if server.state().autopilot().1.is_none() {
        let cmd = Command::AutopilotSet {
            config: server.autopilot.to_model(),
            cas: Some(0),
        };
        if let Err(e) = server.propose(cmd).await {
            warn!(error = %e, "could not record autopilot's settings");
        }
    }
    // With ACLs on, the built-in policies, the anonymous token and the configured initial
    // management token exist from the first leader on.
    if let Some(settings) = server.acl().settings() {
        let initial = settings.initial_management.as_ref().map(|t| t.0.as_str());
        if initial.is_some_and(|t| uuid::Uuid::parse_str(t).is_err()) {
            warn!(
                "acl.tokens.initial_management is not a UUID; Consul accepts it, but clients may not"
            );
        }
        let cmds = crate::server::endpoints::acl_init_commands(
            &server.state(),
            initial,
            crate::server::now_ms(),
        );
        for cmd in cmds {
            if let Err(e) = server.propose(cmd).await {
                warn!(error = %e, "could not create the built-in ACL objects");
            }
        }
    }
    let timers = Arc::clone(&server.session_timers);
    // A new leader gives every session a full TTL from now, as Consul does.
    timers.clear_all();
    timers.sync_with(&server.state());
    // 250 ms: session expiry within a quarter second of its deadline, cheap enough since each tick
    // only compares the state with what it should be.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // A slow pass (proposals waiting on a quorum) must not be followed by a burst of catch-up
    // ticks.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (taken at, last index) samples for tombstone reaping: reap what is older than the TTL.
    // Tombstones carry the index of their deletion, not a time: the leader maps time to indexes by
    // sampling the last index every `TOMBSTONE_GRANULARITY`, and reaps up to the newest sample
    // older than the TTL, as Consul's tombstone GC does.
    let mut samples: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let mut last_sample = Instant::now();
    let mut last_reconcile: Option<Instant> = None;
    let mut autopilot = Autopilot::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = members.changed.notified() => last_reconcile = None,
        }
        if last_reconcile.is_none_or(|t| t.elapsed() >= RECONCILE_INTERVAL) {
            last_reconcile = Some(Instant::now());
            let list = (members.list)();
            for m in &list {
                reconcile_member(&server, m).await;
            }
            reconcile_reaped(&server, &list).await;
            autopilot.step(&server, &list).await;
        }
        timers.sync_with(&server.state());
        for id in timers.take_expired(Instant::now()) {
            debug!(session = %id, "session TTL expired");
            let cmd = Command::SessionDestroy {
                id,
                now_ms: now_ms(),
            };
            if let Err(e) = server.propose(cmd).await {
                warn!(error = %e, "failed to expire session");
            }
        }
        if last_sample.elapsed() >= TOMBSTONE_GRANULARITY {
            last_sample = Instant::now();
            // Reaping is one command up to an index: every server drops the same tombstones at the
            // same log position, although only the leader looked at a clock.
            samples.push_back((last_sample, server.state().last_index()));
            let mut reap_to = None;
            while let Some((t, idx)) = samples.front().copied() {
                if t.elapsed() < TOMBSTONE_TTL {
                    break;
                }
                reap_to = Some(idx);
                samples.pop_front();
            }
            if let Some(up_to) = reap_to
                && let Err(e) = server.propose(Command::ReapTombstones { up_to }).await
            {
                warn!(error = %e, "failed to reap tombstones");
            }
        }
    }
}

/// Deregisters nodes that gossip no longer knows (reaped), when they carry a `serfHealth`
/// check (nodes registered through the catalog API have none and are left alone).
///
/// Gossip forgets (reaps) a failed member after a timeout; without this its node would stay in the
/// catalog, critical, forever.
async fn reconcile_reaped(server: &Server, members: &[MemberInfo]) {
    let st = server.state();
    let (_, nodes) = st.nodes();
    for n in nodes {
        if members.iter().any(|m| m.name == n.node) || st.check(&n.node, SERF_CHECK_ID).is_none() {
            continue;
        }
        info!(node = %n.node, "deregistering a node gossip no longer knows");
        let cmd = Command::Deregister {
            req: DeregisterRequest {
                node: n.node.clone(),
                ..DeregisterRequest::default()
            },
            now_ms: now_ms(),
        };
        if let Err(e) = server.propose(cmd).await {
            warn!(node = %n.node, error = %e, "failed to deregister a reaped node");
        }
    }
}

/// Autopilot: servers discovered in gossip join Raft as learners and become voters once caught
/// up and stable; servers that left are removed at once, failed ones after a grace period while
/// a healthy majority remains.
#[derive(Default)]
pub struct Autopilot {
    /// When each learner was first seen caught up.
    /// Reset when the learner falls behind or is not alive, so it must stay caught up for the whole
    /// `server_stabilization_time` before it gets a vote.
    caught_up_since: HashMap<u64, Instant>,
    /// When each voter was first seen failed.
    /// A server absent from gossip counts as failed too (it may have been reaped).
    failed_since: HashMap<u64, Instant>,
}

/// How long a failed server stays a voter before it is removed.
///
/// Long enough to ride out a restart or a short partition, after which the server rejoins as the
/// same voter; removing it sooner would shrink the quorum, then have to add it back.
pub const DEAD_SERVER_GRACE: Duration = Duration::from_secs(60);

impl Autopilot {
    /// One autopilot pass: add new servers as learners, promote stable learners, remove departed
    /// servers. Membership changes go one at a time through openraft, which refuses a change while
    /// another is in progress; a refused change is tried again at the next pass.
    async fn step(&mut self, server: &Server, members: &[MemberInfo]) {
        use openraft::ChangeMembers;
        use std::collections::BTreeSet;
        let dc = server.datacenter().to_string();
        let settings = &server.autopilot_settings();
        let raft = server.raft();
        let metrics = raft.metrics().borrow().clone();
        let current = server.members();
        let by_id = |id: u64| current.iter().find(|(i, _, _)| *i == id);
        // New servers become learners.
        for m in members {
            if m.status != MemberStatus::Alive || m.datacenter != dc {
                continue;
            }
            let Some(node) = m.server_node() else {
                continue;
            };
            let id = cairn_raft::node_id_from_uuid(&node.id);
            if let Some((_, known, _)) = by_id(id) {
                // Back at another address (a container restarted on a new IP): the configuration
                // follows, as Consul's leader replaces a server's stale address. Raft messages
                // already go to the new one (`rpc::ServerAddrs`); this fixes forwarding and what
                // `list-peers` shows.
                if known.addr != node.addr {
                    info!(server = %node.name, from = %known.addr, to = %node.addr,
                        "autopilot: updating a server's address");
                    let nodes = [(id, node)].into_iter().collect();
                    if let Err(e) = raft
                        .change_membership(ChangeMembers::SetNodes(nodes), false)
                        .await
                    {
                        warn!(error = %e, "autopilot: address update failed");
                    }
                }
                continue;
            }
            info!(server = %node.name, addr = %node.addr, "autopilot: adding server as a learner");
            // `blocking = false`: the pass does not wait for the learner to catch up (that can take
            // a snapshot transfer); promotion checks its progress on later passes.
            if let Err(e) = raft.add_learner(id, node, false).await {
                warn!(error = %e, "autopilot: add learner failed");
            }
        }
        // Learners that are caught up and stable become voters.
        let last = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        for (id, node, voter) in &current {
            if *voter {
                continue;
            }
            let alive = members
                .iter()
                .any(|m| m.name == node.name && m.status == MemberStatus::Alive);
            // `None` until the learner has acknowledged an append: a server the leader cannot
            // reach (its TLS certificate refused, say) never counts as caught up, however short
            // the log.
            let matched = replication
                .get(id)
                .and_then(|l| l.as_ref())
                .map(|l| l.index);
            // Caught up means within `max_trailing_logs` entries of the leader's last log index, as
            // Consul's autopilot judges server health.
            let Some(matched) = matched.filter(|_| alive) else {
                self.caught_up_since.remove(id);
                continue;
            };
            if matched + u64::from(settings.max_trailing_logs) < last {
                self.caught_up_since.remove(id);
                continue;
            }
            let since = *self.caught_up_since.entry(*id).or_insert_with(Instant::now);
            if since.elapsed() < settings.server_stabilization_time {
                continue;
            }
            info!(server = %node.name, "autopilot: promoting server to voter");
            let ids: BTreeSet<u64> = [*id].into_iter().collect();
            match raft
                .change_membership(ChangeMembers::AddVoterIds(ids), true)
                .await
            {
                Ok(_) => {
                    self.caught_up_since.remove(id);
                }
                Err(e) => warn!(error = %e, "autopilot: promotion failed"),
            }
        }
        // Departed servers are removed.
        let voters: Vec<u64> = current
            .iter()
            .filter(|(_, _, v)| *v)
            .map(|(i, _, _)| *i)
            .collect();
        let healthy = current
            .iter()
            .filter(|(_, n, v)| {
                *v && members
                    .iter()
                    .any(|m| m.name == n.name && m.status == MemberStatus::Alive)
            })
            .count();
        for (id, node, voter) in &current {
            // The leader never removes itself: it leaves through `Agent::leave` when it means to.
            if *id == server.node_id() {
                continue;
            }
            let status = members
                .iter()
                .find(|m| m.name == node.name)
                .map(|m| m.status);
            let remove = match status {
                Some(MemberStatus::Left) => true,
                Some(MemberStatus::Failed) | None => {
                    let since = *self.failed_since.entry(*id).or_insert_with(Instant::now);
                    // Removal must leave a working cluster: a healthy majority of the voters that
                    // remain, and at least `min_quorum` of them; else the dead server stays until
                    // replaced.
                    let remaining = voters.len().saturating_sub(usize::from(*voter));
                    settings.cleanup_dead_servers
                        && since.elapsed() >= DEAD_SERVER_GRACE
                        && healthy > remaining / 2
                        && remaining >= settings.min_quorum as usize
                }
                Some(MemberStatus::Alive) => {
                    self.failed_since.remove(id);
                    false
                }
            };
            if !remove {
                continue;
            }
            info!(server = %node.name, "autopilot: removing departed server from Raft");
            let ids: BTreeSet<u64> = [*id].into_iter().collect();
            let change = if *voter {
                ChangeMembers::RemoveVoters(ids)
            } else {
                ChangeMembers::RemoveNodes(ids)
            };
            match raft.change_membership(change, false).await {
                Ok(_) => {
                    self.failed_since.remove(id);
                }
                Err(e) => warn!(error = %e, "autopilot: removal failed"),
            }
        }
    }
}

/// How often the leader reconciles every member into the catalog.
///
/// Consul reconciles every 60 s and on member events; Cairn reconciles on events too, and this
/// short period bounds how long a missed event (or a failed proposal) leaves the catalog behind
/// gossip. Each pass only proposes what differs.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// How long KV tombstones are kept (Consul's `tombstone_ttl`).
///
/// A deleted key leaves a tombstone so that the index of a prefix holding it does not go back: a
/// reader blocked with an index from before the delete must still see it move. 15 minutes covers
/// the longest blocking wait (10 minutes) with room to spare.
const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
/// How often tombstone reaping is considered.
///
/// Consul's `TombstoneTTLGranularity`: tombstones are reaped in 30 s steps, so one lives between
/// the TTL and the TTL plus 30 s.
const TOMBSTONE_GRANULARITY: Duration = Duration::from_secs(30);
