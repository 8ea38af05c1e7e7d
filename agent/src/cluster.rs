//! The agent's place in the LAN gossip pool: starting the pool with this node's metadata,
//! joining (`-join`, `-retry-join`), turning member events into leader reconciliation and
//! user-event delivery, and forming the Raft cluster from the servers gossip discovers
//! (`-bootstrap-expect`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_gossip::{
    Gossip, GossipConfig, GossipEvent, Keyring, Member, MemberMeta, MemberStatus as GStatus, Ports,
    Role, Timings,
};
use cairn_raft::ServerNode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::CONSUL_COMPAT_VERSION;
use crate::agent::Agent;
use crate::config::Config;
use crate::events::{EventLog, Recipient, UserEvent};
use crate::server::leader::{MemberInfo, MemberStatus};

/// The metadata this agent publishes in gossip.
///
/// What other agents need before talking to this one: its role and datacenter (client agents pick
/// their servers by them), its ports, its node ID (the Raft ID of a server is derived from it) and,
/// on servers, the bootstrap tags Consul's members show.
pub fn local_meta(config: &Config, node_id: &str) -> MemberMeta {
    let mut tags = BTreeMap::new();
    if config.server {
        if config.bootstrap {
            tags.insert("bootstrap".to_string(), "1".to_string());
        }
        if config.bootstrap_expect > 0 {
            tags.insert("expect".to_string(), config.bootstrap_expect.to_string());
        }
        // Where the other servers of this datacenter WAN-join this one (see `crate::wan`).
        if let Some(p) = config.ports.serf_wan {
            tags.insert("wan_join_port".to_string(), p.to_string());
        }
    }
    MemberMeta {
        role: if config.server {
            Role::Server
        } else {
            Role::Client
        },
        datacenter: config.datacenter.clone(),
        // Consul's build tag shape (`<version>:<revision>`): tools that parse it read the API level
        // Cairn implements.
        build: format!("{CONSUL_COMPAT_VERSION}:cairn-{}", crate::VERSION),
        ports: Ports {
            // 0 marks a client: only servers answer server RPC.
            server_rpc: if config.server {
                config.ports.server
            } else {
                0
            },
            http: config.ports.http.unwrap_or(0),
            dns: config.ports.dns.unwrap_or(0),
            serf_lan: config.ports.serf_lan,
        },
        node_id: node_id.to_string(),
        node_meta: config.node_meta.clone(),
        tags,
    }
}

/// Starts the LAN pool, on the machine's sockets or (with `memory`) on an in-memory network
/// with the agent's seeded randomness.
pub async fn start(
    config: &Config,
    node_name: &str,
    node_id: &str,
    advertise: std::net::IpAddr,
    memory: Option<&crate::agent::MemoryNetworks>,
) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), String> {
    let bind = SocketAddr::new(config.bind_addr, config.ports.serf_lan);
    let mut g = GossipConfig::new(node_name, bind);
    g.advertise = Some(SocketAddr::new(advertise, config.ports.serf_lan));
    g.meta = local_meta(config, node_id);
    // `-dev` runs on loopback, like Consul's `-dev` gossip: fast probes cost nothing there and
    // detect failures sooner.
    g.timings = if config.dev {
        Timings::local()
    } else {
        Timings::lan()
    };
    // `reconnect_timeout`: how long a failed member stays listed before it is reaped.
    g.timings.reconnect_timeout = config.reconnect_timeout;
    // No pool label: Consul's default, so the pool accepts members without one.
    g.label = String::new();
    g.keyring = keyring(config)?;
    // Consul's rolling enablement of gossip encryption (both off, then outgoing, then both).
    g.encrypt_verify_incoming = config.encrypt_verify_incoming;
    g.encrypt_verify_outgoing = config.encrypt_verify_outgoing;
    launch(g, memory, "gossip")
        .await
        .map_err(|e| format!("gossip on {bind}: {e}"))
}

/// Starts a pool on the machine's sockets, or (with `memory`) on the in-memory network with a
/// seed drawn for this pool (`what` keeps the LAN and WAN pools' draws apart).
pub async fn launch(
    mut g: GossipConfig,
    memory: Option<&crate::agent::MemoryNetworks>,
    what: &str,
) -> Result<(Gossip, mpsc::Receiver<GossipEvent>), cairn_gossip::GossipError> {
    match memory {
        None => Gossip::start(g).await,
        Some(m) => {
            g.seed = Some(m.draw(&g.name, what));
            g.generation = Some(m.generation);
            Gossip::start_with(g, m.gossip.clone()).await
        }
    }
}

/// The LAN pool's keyring (`None`: plaintext).
///
/// A keyring saved by a previous run wins over `-encrypt`, so rotated keys survive restarts.
pub fn keyring(config: &Config) -> Result<Option<Keyring>, String> {
    let saved = config
        .data_dir
        .as_ref()
        .filter(|_| !config.dev)
        .and_then(|d| crate::keyring::load(d));
    if let Some(k) = saved {
        let others: Vec<&str> = k
            .keys
            .iter()
            .map(String::as_str)
            .filter(|x| *x != k.primary)
            .collect();
        return Keyring::from_base64(&k.primary, &others)
            .map(Some)
            .map_err(|e| format!("saved keyring is invalid: {e}"));
    }
    configured_key(config)
}

/// The keyring of the configured `encrypt` key alone (`None`: plaintext).
pub fn configured_key(config: &Config) -> Result<Option<Keyring>, String> {
    match &config.encrypt {
        Some(key) => Keyring::from_base64(key, &[])
            .map(Some)
            .map_err(|e| format!("encrypt: invalid gossip key: {e}")),
        None => Ok(None),
    }
}

/// A gossip member as the leader reconciles it.
pub fn member_info(m: &Member) -> MemberInfo {
    MemberInfo {
        name: m.name.clone(),
        id: m.meta.node_id.clone(),
        address: m.addr.to_string(),
        server_port: (m.meta.role == Role::Server && m.meta.ports.server_rpc != 0)
            .then_some(m.meta.ports.server_rpc),
        status: match m.status {
            // A leaving member still answers until it has left: it keeps its catalog entry until
            // then.
            GStatus::Alive | GStatus::Leaving => MemberStatus::Alive,
            GStatus::Failed => MemberStatus::Failed,
            GStatus::Left => MemberStatus::Left,
        },
        datacenter: m.meta.datacenter.clone(),
        meta: m.meta.node_meta.clone(),
    }
}

/// A server member as a Raft peer.
///
/// Requires the node ID: a server's Raft ID is derived from it, so without one every server would
/// compute a different ID for the same peer.
pub fn server_node(m: &Member) -> Option<ServerNode> {
    (m.meta.role == Role::Server && m.meta.ports.server_rpc != 0 && !m.meta.node_id.is_empty())
        .then(|| ServerNode {
            name: m.name.clone(),
            addr: SocketAddr::new(m.addr, m.meta.ports.server_rpc).to_string(),
            id: m.meta.node_id.clone(),
        })
}

/// A member as `/v1/agent/members` shows it.
///
/// Consul's shape, with the Serf tags and protocol numbers a Consul agent reports: tools such as
/// `consul members` and dashboards read the role and version from them.
pub fn member_json(m: &Member) -> Value {
    let meta = &m.meta;
    let mut tags: BTreeMap<&str, String> = BTreeMap::new();
    tags.insert("build", meta.build.clone());
    tags.insert("dc", meta.datacenter.clone());
    tags.insert("id", meta.node_id.clone());
    tags.insert("segment", String::new());
    tags.insert("vsn", "2".into());
    tags.insert("vsn_min", "2".into());
    tags.insert("vsn_max", "3".into());
    match meta.role {
        Role::Server => {
            // Consul calls servers `consul` and clients `node` in this tag.
            tags.insert("role", "consul".into());
            tags.insert("port", meta.ports.server_rpc.to_string());
            tags.insert("raft_vsn", "3".into());
            for (k, v) in &meta.tags {
                if k == "bootstrap" || k == "expect" || k == "wan_join_port" {
                    tags.insert(k.as_str(), v.clone());
                }
            }
        }
        Role::Client => {
            tags.insert("role", "node".into());
        }
    }
    json!({
        "Name": m.name,
        "Addr": m.addr.to_string(),
        "Port": m.port,
        "Tags": tags,
        // Consul's numeric member status: the gossip crate numbers its statuses the same way.
        "Status": m.status as u8,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// Converts a gossip user event to the API's form.
///
/// An empty payload is `null` in the API, as Consul shows it.
fn api_event(ev: &cairn_gossip::UserEvent) -> UserEvent {
    UserEvent {
        id: ev.id.to_string(),
        name: ev.name.clone(),
        payload: (!ev.payload.is_empty()).then(|| ev.payload.clone()),
        node_filter: ev.node_filter.clone(),
        service_filter: ev.service_filter.clone(),
        tag_filter: ev.tag_filter.clone(),
        version: u32::from(ev.version),
        ltime: ev.ltime,
    }
}

/// Converts an API event to gossip's form (a new ID is kept as given).
///
/// The Lamport time is carried over only for the record: gossip stamps a fired event with its own
/// clock (see `Agent::fire_event`, which keeps that stamp).
pub fn gossip_event(ev: &UserEvent) -> cairn_gossip::UserEvent {
    let mut g =
        cairn_gossip::UserEvent::new(ev.name.clone(), ev.payload.clone().unwrap_or_default());
    // The ID the event log gave it: the copy gossip hands back is then recognised as the same event
    // and not listed twice.
    if let Ok(id) = uuid::Uuid::parse_str(&ev.id) {
        g.id = id;
    }
    g.node_filter = ev.node_filter.clone();
    g.service_filter = ev.service_filter.clone();
    g.tag_filter = ev.tag_filter.clone();
    g.ltime = ev.ltime;
    g
}

/// Delivers an event to this agent if its filters select it.
///
/// Filters are matched against this agent's own node name and local services, so every member
/// decides for itself, as in Consul.
pub fn deliver(agent: &Agent, ev: UserEvent) {
    let services = {
        let l = agent.local.lock().unwrap_or_else(|p| p.into_inner());
        l.services
            .values()
            .map(|s| (s.service.service.clone(), s.service.tags.clone()))
            .collect()
    };
    let to = Recipient {
        node: &agent.node.name,
        services,
    };
    if EventLog::matches(&ev, &to) {
        agent.events.receive(ev);
    }
}

/// Consumes gossip events for the life of the agent.
///
/// Every membership event makes the leader reconcile at once; updates and reaps included, since
/// both change what the catalog should say.
pub async fn consume(agent: Arc<Agent>, mut rx: mpsc::Receiver<GossipEvent>) {
    while let Some(ev) = rx.recv().await {
        match ev {
            // Internal: applied, never listed as a user event.
            GossipEvent::UserEvent(e) if e.name == crate::keyring::KEYRING_EVENT => {
                agent.keyring_event(&e.payload).await;
            }
            GossipEvent::UserEvent(e) => deliver(&agent, api_event(&e)),
            GossipEvent::MemberUp(m) => {
                info!(member = %m.name, addr = %m.addr, "member joined");
                agent.server_seen(&m);
                agent.membership_changed();
            }
            GossipEvent::MemberFailed(m) => {
                warn!(member = %m.name, "member failed");
                agent.membership_changed();
            }
            GossipEvent::MemberLeft(m) => {
                info!(member = %m.name, "member left");
                agent.membership_changed();
            }
            GossipEvent::MemberUpdate(m) => {
                agent.server_seen(&m);
                agent.membership_changed();
            }
            GossipEvent::MemberReaped(_) => {
                agent.membership_changed();
            }
        }
    }
}

/// Joins the given addresses once; returns how many were contacted.
///
/// Joining one member is enough: gossip then learns every other member from it.
pub async fn join(gossip: &Gossip, addrs: &[String]) -> Result<usize, String> {
    gossip.join(addrs).await.map_err(|e| e.to_string())
}

/// `-retry-join`: keeps trying until one address answers (or `max` attempts, 0 = forever).
///
/// Runs in the background so the agent serves its local API while the cluster is not reachable yet,
/// as Consul's `-retry-join` does.
pub async fn retry_join(gossip: Gossip, addrs: Vec<String>, interval: Duration, max: u32) {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match gossip.join(&addrs).await {
            Ok(n) if n > 0 => {
                info!(contacted = n, "retry-join: joined the cluster");
                return;
            }
            Ok(_) => warn!(attempt, "retry-join: no address answered"),
            Err(e) => warn!(attempt, error = %e, "retry-join failed"),
        }
        if max > 0 && attempt >= max {
            warn!("retry-join: giving up after {attempt} attempts");
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// `-bootstrap-expect=N`: once N servers of this datacenter are alive in gossip and none of
/// them already belongs to a Raft cluster, every one of them bootstraps the same cluster
/// (the N servers with the lowest node IDs, so all choose the same set).
///
/// Each server checks first that none of the chosen ones is already initialized, so a server
/// restarted with `-bootstrap-expect` next to a running cluster waits to be added by its autopilot
/// instead of forming a second cluster. Only a server among the chosen set bootstraps; the others
/// join through autopilot too.
pub async fn bootstrap_expect(
    agent: Arc<Agent>,
    server: Arc<crate::server::Server>,
    gossip: Gossip,
    expect: u32,
) {
    let dc = server.datacenter().to_string();
    let mut shutdown = agent.shutdown_signal();
    loop {
        if server.raft().is_initialized().await.unwrap_or(false) {
            return;
        }
        let mut servers: Vec<ServerNode> = gossip
            .members()
            .iter()
            .filter(|m| m.status == GStatus::Alive && m.meta.datacenter == dc)
            .filter_map(server_node)
            .collect();
        if servers.len() >= expect as usize {
            // Every server sorts the same members the same way, so all choose the same set without
            // talking to each other, and all bootstrap with the same configuration.
            servers.sort_by(|a, b| a.id.cmp(&b.id));
            servers.truncate(expect as usize);
            let mut already = false;
            // Asked over RPC rather than read from gossip: whether a server holds a Raft
            // configuration is not published in its tags.
            for s in &servers {
                if let Ok(st) = server.rpc().status(&s.addr).await
                    && st.initialized
                {
                    already = true;
                }
            }
            if already {
                debug!("bootstrap-expect: a cluster exists already; waiting to be added");
            } else if servers.iter().any(|s| s.id == agent.node.id) {
                match server.bootstrap(servers.clone()).await {
                    Ok(true) => {
                        info!(
                            servers = servers.len(),
                            "bootstrap-expect: cluster bootstrapped"
                        );
                        return;
                    }
                    Ok(false) => return,
                    Err(e) => warn!(error = %e, "bootstrap-expect failed"),
                }
            }
        } else {
            debug!(
                have = servers.len(),
                expect, "bootstrap-expect: waiting for servers"
            );
        }
        tokio::select! {
            // Polls gossip: cheap, and a cluster forms within half a second of its last server
            // appearing.
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
