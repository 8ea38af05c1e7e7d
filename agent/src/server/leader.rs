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
use tracing::{debug, warn};

use super::{SESSION_TTL_MULTIPLIER, Server, now_ms, parse_session_ttl};

/// ID of the gossip health check of every node.
pub const SERF_CHECK_ID: &str = "serfHealth";
/// Name of that check.
pub const SERF_CHECK_NAME: &str = "Serf Health Status";
/// Output while the member is alive.
pub const SERF_ALIVE_OUTPUT: &str = "Agent alive and reachable";
/// Output once the member failed.
pub const SERF_FAILED_OUTPUT: &str = "Agent not live or unreachable";
/// ID and name of the service every server registers.
pub const CONSUL_SERVICE: &str = "consul";

/// Gossip status of a member, as the leader reconciles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // Failed and Left come from gossip, wired in with the LAN pool.
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
            Command::Register {
                req: RegisterRequest {
                    id: m.id.clone(),
                    node: m.name.clone(),
                    address: m.address.clone(),
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

/// Where the leader learns about members (gossip, or just this node before gossip runs).
pub type MemberSource = Arc<dyn Fn() -> Vec<MemberInfo> + Send + Sync>;

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
    loop {
        tick.tick().await;
        if last_reconcile.is_none_or(|t| t.elapsed() >= RECONCILE_INTERVAL) {
            last_reconcile = Some(Instant::now());
            for m in members() {
                reconcile_member(&server, &m).await;
            }
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

/// How often the leader reconciles every member into the catalog.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// How long KV tombstones are kept (Consul's `tombstone_ttl`).
const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
/// How often tombstone reaping is considered.
const TOMBSTONE_GRANULARITY: Duration = Duration::from_secs(30);
