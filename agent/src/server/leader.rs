//! Leader duties: keep members in the catalog with their `serfHealth` check, expire sessions
//! whose TTL lapsed, and reap old KV tombstones. Everything goes through commands, and only the
//! leader runs these loops; timers start afresh when leadership changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_catalog::Command;
use cairn_catalog::command::{DeregisterRequest, RegisterRequest};
use cairn_catalog::model::{HealthCheck, HealthStatus, Service};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{SESSION_TTL_MULTIPLIER, Server, now_ms, parse_session_ttl};

pub use crate::api::{CONSUL_SERVICE, SERF_CHECK_ID};
/// Name of that check.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// Output while the member is alive.
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// Output once the member failed.
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";

/// Gossip status of a member, as the leader reconciles it.
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
    pub server_port: Option<u16>,
    /// Status.
    pub status: MemberStatus,
    /// Datacenter.
    pub datacenter: String,
    /// Node metadata published in gossip.
    pub meta: std::collections::BTreeMap<String, String>,
}

impl MemberInfo {
    /// This member as a Raft peer, when it is a server.
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
                _ => true,
            };
            exists && check_ok && svc_ok
        }
    };
    if in_sync {
        return;
    }
    debug!(node = %m.name, status = ?m.status, "reconciling member into the catalog");
    if let Err(e) = server.propose(reconcile_command(m, exists)).await {
        warn!(node = %m.name, error = %e, "failed to reconcile member");
    }
}

/// Session TTL timers, kept by the leader. Renewals reset them; expiry destroys the session.
#[derive(Default)]
pub struct SessionTimers {
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
    pub fn sync_with(&self, st: &cairn_catalog::State) {
        let sessions = st.sessions().1;
        let mut d = self.deadlines.lock().unwrap_or_else(|p| p.into_inner());
        d.retain(|id, _| sessions.iter().any(|s| s.id == *id));
        for s in sessions {
            if d.contains_key(&s.id) {
                continue;
            }
            if let Ok(Some(ttl)) = parse_session_ttl(&s.ttl) {
                d.insert(s.id.clone(), Instant::now() + ttl * SESSION_TTL_MULTIPLIER);
            }
        }
    }
}

/// Where the leader learns about members: the gossip pool (or just this node).
pub struct Membership {
    /// The current members.
    pub list: Box<dyn Fn() -> Vec<MemberInfo> + Send + Sync>,
    /// Signalled when membership changes, to reconcile at once.
    pub changed: tokio::sync::Notify,
}

/// Shared membership source.
pub type MemberSource = Arc<Membership>;

/// Runs the leader's duties while this server is the leader: started when it gains
/// leadership, stopped when it loses it, until `shutdown` fires.
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

async fn leader_loop(server: Arc<Server>, members: MemberSource) {
    // First commit an entry of this term: until then the state may miss acknowledged writes,
    // and neither reads nor the duties below may act on it.
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
    let timers = Arc::clone(&server.session_timers);
    // A new leader gives every session a full TTL from now, as Consul does.
    timers.clear_all();
    timers.sync_with(&server.state());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // (taken at, last index) samples for tombstone reaping: reap what is older than the TTL.
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
    caught_up_since: HashMap<u64, Instant>,
    /// When each voter was first seen failed.
    failed_since: HashMap<u64, Instant>,
}

/// How long a failed server stays a voter before it is removed.
pub const DEAD_SERVER_GRACE: Duration = Duration::from_secs(60);

impl Autopilot {
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
            if by_id(id).is_some() {
                continue;
            }
            info!(server = %node.name, addr = %node.addr, "autopilot: adding server as a learner");
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
            let matched = replication
                .get(id)
                .and_then(|l| l.as_ref())
                .map_or(0, |l| l.index);
            if !alive || matched + u64::from(settings.max_trailing_logs) < last {
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
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// How long KV tombstones are kept (Consul's `tombstone_ttl`).
const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
/// How often tombstone reaping is considered.
const TOMBSTONE_GRANULARITY: Duration = Duration::from_secs(30);
