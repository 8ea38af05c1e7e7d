//! The WAN pool: the servers of every datacenter in one gossip pool, as Consul's WAN
//! federation, and the [`Router`] that tells a server where another datacenter's servers are.
//!
//! Only servers join it (port `ports.serf_wan`, 8302; `-1` turns it off), under the member name
//! `<node>.<datacenter>`, with memberlist's WAN timings (slower probes, longer suspicion) and the
//! configured gossip key (`encrypt`). A server learns every other datacenter's servers from it: their RPC
//! address is the member's address with the server port from its metadata.
//!
//! Joining one server of a datacenter brings in the whole datacenter: every server periodically
//! WAN-joins the servers of its own LAN pool that the WAN pool does not list yet, at their LAN
//! address and the `wan_join_port` they advertise (Consul's "flooder").
//!
//! A request for another datacenter is forwarded by the server that receives it (a client agent
//! hands it to one of its own servers first) to a server of that datacenter, which handles it as
//! a local request: see `Server::write` and `Server::query`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cairn_gossip::{Gossip, GossipConfig, GossipEvent, Member, MemberStatus, Role, Timings};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::Config;

/// Where the servers of each datacenter are, from the WAN pool.
///
/// Created before the pool (the server role holds it from its start) and given the pool once
/// it runs; until then, and on servers without one, only the local datacenter exists.
pub struct Router {
    local_dc: String,
    wan: OnceLock<Gossip>,
}

impl Router {
    /// A router for a server of `local_dc`, without a WAN pool yet.
    pub fn new(local_dc: &str) -> Arc<Router> {
        Arc::new(Router {
            local_dc: local_dc.to_string(),
            wan: OnceLock::new(),
        })
    }

    /// Hands the router its WAN pool (once; a second pool is ignored).
    pub fn set_pool(&self, wan: Gossip) {
        let _ = self.wan.set(wan);
    }

    /// The WAN pool, when this server has one.
    pub fn pool(&self) -> Option<&Gossip> {
        self.wan.get()
    }

    /// Whether `dc` is this server's own datacenter (empty counts as the own one). Datacenter
    /// names compare case-insensitively, as Consul lowercases them.
    pub fn is_local(&self, dc: &str) -> bool {
        dc.is_empty() || dc.eq_ignore_ascii_case(&self.local_dc)
    }

    /// Every known datacenter: the local one first, then the others by name.
    ///
    /// A datacenter is known while the WAN pool lists one of its servers that has not left
    /// (a failed server keeps its datacenter listed until it is reaped, as in Consul).
    /// Consul orders the others by estimated round-trip time; without network coordinates the
    /// order is by name, which is also Consul's order among datacenters at equal distance.
    pub fn datacenters(&self) -> Vec<String> {
        let mut others: Vec<String> = self
            .members()
            .iter()
            .filter(|m| m.status != MemberStatus::Left)
            .map(|m| m.meta.datacenter.clone())
            .filter(|dc| !self.is_local(dc))
            .collect();
        others.sort();
        others.dedup();
        let mut all = vec![self.local_dc.clone()];
        all.extend(others);
        all
    }

    /// RPC addresses of the alive servers of `dc`, in random order (so that the servers of a
    /// datacenter share the load of its remote requests); `None` when the datacenter is unknown.
    pub fn servers(&self, dc: &str) -> Option<Vec<String>> {
        let members: Vec<Member> = self
            .members()
            .into_iter()
            .filter(|m| {
                m.status != MemberStatus::Left && m.meta.datacenter.eq_ignore_ascii_case(dc)
            })
            .collect();
        if members.is_empty() {
            return None;
        }
        let mut alive: Vec<String> = members
            .iter()
            .filter(|m| m.status == MemberStatus::Alive && m.meta.ports.server_rpc != 0)
            .map(|m| SocketAddr::new(m.addr, m.meta.ports.server_rpc).to_string())
            .collect();
        crate::random::shuffle(&mut alive);
        Some(alive)
    }

    /// The pool's server members (none without a pool).
    fn members(&self) -> Vec<Member> {
        self.wan
            .get()
            .map(|g| {
                g.members()
                    .into_iter()
                    .filter(|m| m.meta.role == Role::Server)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The WAN pool's label, authenticated with every packet (the LAN pool has none, as Consul's).
pub const WAN_LABEL: &str = "cairn-wan";

/// The WAN member name of a server: `<node>.<datacenter>`.
pub fn member_name(node: &str, dc: &str) -> String {
    format!("{node}.{dc}")
}

/// Starts the WAN pool of a server (`None` on client agents and with `ports.serf_wan = -1`).
///
/// The same metadata as in the LAN pool (role, datacenter, ports, node ID), the configured
/// `encrypt` key, memberlist's WAN timings (the local ones in `-dev`, which runs on loopback).
pub async fn start(
    config: &Config,
    node_name: &str,
    node_id: &str,
    advertise: std::net::IpAddr,
    memory: Option<&crate::agent::MemoryNetworks>,
) -> Result<Option<(Gossip, mpsc::Receiver<GossipEvent>)>, String> {
    let Some(port) = config.ports.serf_wan.filter(|_| config.server) else {
        return Ok(None);
    };
    let bind = SocketAddr::new(config.bind_addr, port);
    let name = member_name(node_name, &config.datacenter);
    let mut g = GossipConfig::new(name, bind);
    g.advertise = Some(SocketAddr::new(
        config.advertise_addr_wan.unwrap_or(advertise),
        port,
    ));
    g.meta = crate::cluster::local_meta(config, node_id);
    g.timings = if config.dev {
        Timings::local()
    } else {
        Timings::wan()
    };
    // `reconnect_timeout_wan`: how long a failed server stays in the WAN pool.
    g.timings.reconnect_timeout = config.reconnect_timeout_wan;
    // A label of its own: a WAN member that reaches a LAN port by mistake (or the reverse)
    // is refused instead of merging the two pools.
    g.label = WAN_LABEL.to_string();
    // The configured key, not the LAN pool's saved keyring: `cairn keyring` rotations apply
    // to the LAN pool only for now (Consul fans them out to every datacenter's WAN pool), so
    // every server's WAN pool keeps the key it was started with, restarted or not.
    g.keyring = crate::cluster::configured_key(config)?;
    g.encrypt_verify_incoming = config.encrypt_verify_incoming;
    g.encrypt_verify_outgoing = config.encrypt_verify_outgoing;
    let started = crate::cluster::launch(g, memory, "wan-gossip").await;
    started
        .map(Some)
        .map_err(|e| format!("WAN gossip on {bind}: {e}"))
}

/// Logs the WAN pool's membership changes for the life of the pool.
///
/// The router reads members on demand, so nothing else needs the events; they are drained so
/// that the pool never counts them as dropped.
pub async fn consume(mut rx: mpsc::Receiver<GossipEvent>) {
    while let Some(ev) = rx.recv().await {
        match ev {
            GossipEvent::MemberUp(m) => {
                info!(member = %m.name, addr = %m.addr, "WAN member joined")
            }
            GossipEvent::MemberFailed(m) => warn!(member = %m.name, "WAN member failed"),
            GossipEvent::MemberLeft(m) => info!(member = %m.name, "WAN member left"),
            _ => {}
        }
    }
}

/// How often a server looks for servers of its LAN pool that the WAN pool lacks.
const FLOOD_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps every server of this server's LAN pool in the WAN pool (Consul's flooder): a LAN
/// server missing from the WAN pool is WAN-joined at its LAN address and its `wan_join_port`.
///
/// Joining one server of a datacenter to the WAN pool so brings all of them.
pub async fn flood(
    lan: Gossip,
    wan: Gossip,
    dc: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let known: Vec<String> = wan.members().into_iter().map(|m| m.name).collect();
        let missing: Vec<String> = lan
            .members()
            .into_iter()
            .filter(|m| {
                m.status == MemberStatus::Alive
                    && m.meta.role == Role::Server
                    && m.meta.datacenter.eq_ignore_ascii_case(&dc)
                    && !known.contains(&member_name(&m.name, &dc))
            })
            .filter_map(|m| {
                let port: u16 = m.meta.tags.get("wan_join_port")?.parse().ok()?;
                Some(SocketAddr::new(m.addr, port).to_string())
            })
            .collect();
        if !missing.is_empty() {
            match wan.join(&missing).await {
                Ok(n) => debug!(joined = n, "WAN pool: joined servers of the LAN pool"),
                Err(e) => debug!(error = %e, "WAN pool: joining LAN servers failed"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(FLOOD_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}
