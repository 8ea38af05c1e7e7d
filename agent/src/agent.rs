//! The running agent: composition of the server role, the local state and its anti-entropy
//! loop, check runners, user events and the HTTP API, with start-up and graceful shutdown.
//!
//! The agent owns what belongs to this node (its services, checks, maintenance and their
//! persistence) and reaches the replicated catalog only through its [`Backend`]: the same code runs
//! on a server (its own server role) and on a client agent (a server of the pool). Local state
//! changes first and the catalog follows through anti-entropy, so a registration survives a
//! leaderless cluster and reaches the catalog once one is back, as in Consul.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

use cairn_catalog::model::HealthStatus;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use crate::api::Error;
use crate::backend::{Backend, ServerPool};
use crate::checks::{CheckResult, Runners};
use crate::config::Config;
use crate::events::EventLog;
use crate::local::defs::{CheckDef, CheckKind, ScriptPolicy, ServiceDef, Source};
use crate::local::persist::{Persist, SavedCheck, SavedMaintenance, SavedService, SavedTtl};
use crate::local::sync::{self, CatalogView};
use crate::local::{LocalState, NodeRecord};
use crate::metrics::Metrics;
use crate::server::leader::{self, SessionTimers};
use crate::server::{Server, ServerOptions, now_ms};
use crate::watch::WatchHub;
use cairn_raft::ServerNode;

/// How long a registration waits for its catalog sync before answering anyway.
///
/// Long enough that a client reading the catalog right after registering usually sees its write;
/// short enough that a registration does not hang while no leader exists (the local state already
/// holds it and the sync loop keeps trying).
const SYNC_WAIT: Duration = Duration::from_secs(2);
/// Periodic full anti-entropy interval (Consul's `ae_interval` for clusters up to 128 nodes).
const AE_INTERVAL: Duration = Duration::from_secs(60);
/// Output-only changes of a check reach the catalog at most this often (`check_update_interval`).
///
/// A status change syncs at once; a check whose output changes on every run but whose status does
/// not would otherwise write to the log at each interval on every node.
const CHECK_UPDATE_INTERVAL: Duration = Duration::from_secs(300);

/// The periodic anti-entropy interval for a pool of `nodes`, as Consul scales it: one minute up
/// to 128 nodes, plus a minute for every doubling beyond, with up to 10 % random stagger so
/// agents do not sync in step.
pub fn ae_interval(nodes: usize) -> Duration {
    let scale = if nodes <= 128 {
        1
    } else {
        ((nodes as f64).log2() - 128f64.log2()).ceil() as u32 + 1
    };
    let base = AE_INTERVAL * scale;
    // Drawn from the agent's random source, so reproducible in seeded tests.
    let stagger_ms = crate::random::up_to(base.as_millis() as u64 / 10);
    base + Duration::from_millis(stagger_ms)
}

/// The networks an agent talks over: the machine's sockets, or in-memory networks shared by
/// every agent of one test process (a whole cluster in virtual time, reproducible from a seed).
#[derive(Clone, Default)]
pub enum Networks {
    /// TCP and UDP sockets.
    #[default]
    Sockets,
    /// In-memory networks (tests).
    Memory(MemoryNetworks),
}

/// The in-memory networks of one test process, and how to make a run reproducible.
#[derive(Clone)]
pub struct MemoryNetworks {
    /// Server RPC between agents.
    pub rpc: crate::rpc::transport::MemoryNet,
    /// LAN gossip.
    pub gossip: cairn_gossip::transport::memory::MemoryNetwork,
    /// Seeds this agent's randomness (gossip, Raft election timeouts).
    /// Mixed with each agent's name (see [`MemoryNetworks::draw`]), so agents sharing a test seed
    /// still draw differently.
    pub seed: u64,
    /// Gossip generation of this start (higher on every restart of a node).
    /// Given instead of gossip's wall-clock default, which would make two runs of one seed
    /// differ.
    pub generation: u64,
}

impl MemoryNetworks {
    /// A number drawn from the seed for one purpose of this agent.
    ///
    /// Each purpose gets its own stream: adding a draw for one purpose does not shift the values
    /// every other purpose gets, which keeps recorded seeds meaningful.
    pub fn draw(&self, name: &str, purpose: &str) -> u64 {
        // FNV-1a over the seed, the node and the purpose: stable across runs and builds.
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ self.seed;
        for b in name.bytes().chain([0]).chain(purpose.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }
}

/// A running agent.
pub struct Agent {
    /// Current configuration (replaced on reload).
    pub config: RwLock<Config>,
    /// This node's identity.
    pub node: NodeRecord,
    /// Where reads and writes go: this agent's server role or the servers it is a client of.
    pub backend: Backend,
    /// The server role, on servers.
    pub server: Option<Arc<Server>>,
    /// Blocking-query wake-ups.
    pub hub: Arc<WatchHub>,
    /// Services and checks owned by this agent.
    /// A std mutex, never held across an await: every change is a quick in-memory edit, and the
    /// catalog sync that follows works on a copy of what it needs.
    pub local: Mutex<LocalState>,
    /// Signalled on every local change (agent endpoints block on it).
    pub local_changed: Notify,
    /// Check runners.
    pub runners: Runners,
    /// Session TTL timers (leader duty).
    /// The server role's own timers on a server (an empty set on a client agent), read by the
    /// metrics endpoint.
    pub session_timers: Arc<SessionTimers>,
    /// User events received by this agent.
    pub events: EventLog,
    /// Metrics.
    pub metrics: Metrics,
    /// When the agent started.
    pub started: Instant,
    /// Addresses the HTTP API listens on.
    pub http_addrs: Mutex<Vec<SocketAddr>>,
    /// TLS for the HTTPS API and server RPC (see `crate::tls::State`).
    pub tls: crate::tls::State,
    /// The LAN gossip pool.
    pub gossip: cairn_gossip::Gossip,
    /// The WAN pool, on servers (see `crate::wan`).
    pub wan: Option<cairn_gossip::Gossip>,
    /// ACL settings (disabled unless `acl.enabled`).
    pub acl: crate::acl::Acl,
    /// The agent's own ACL tokens (`acl.tokens`, `PUT /v1/agent/token/:kind`).
    pub tokens: crate::acl::tokens::TokenStore,
    /// Tokens this client agent's servers resolved, for its own endpoints.
    pub acl_cache: crate::acl::RemoteCache,
    /// The token each service was registered with, by service ID: its syncs carry it.
    service_tokens: Mutex<BTreeMap<String, String>>,
    /// The WAN pool's events, taken by [`Agent::start`].
    wan_events: Mutex<Option<mpsc::Receiver<cairn_gossip::GossipEvent>>>,
    /// Where local registrations are kept across restarts (`None` in `-dev`).
    persist: Option<Persist>,
    /// Gossip membership as the leader reads it.
    /// Reads the gossip pool's current members; the leader reconciles them into the catalog.
    pub membership: leader::MemberSource,
    /// Taken by [`Agent::start`]: events are consumed only once the agent is fully built, and by
    /// exactly one task.
    gossip_events: Mutex<Option<mpsc::Receiver<cairn_gossip::GossipEvent>>>,
    /// One anti-entropy pass at a time: two passes diffing the same state would send the same
    /// writes twice.
    sync_lock: tokio::sync::Mutex<()>,
    /// Local-state version the last successful anti-entropy pass started from.
    /// A caller whose change has a version at or below this knows the catalog has it.
    synced_version: std::sync::atomic::AtomicU64,
    /// Asks the sync loop for a pass soon (check results, a changed catalog entry), without waiting
    /// for the periodic interval.
    sync_kick: Notify,
    shutdown: watch::Sender<bool>,
}

/// Why the agent could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration the runtime cannot serve.
    #[error("{0}")]
    Unsupported(String),
    /// A listener could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Data directory problem.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A service or check from the configuration is invalid.
    #[error("{0}")]
    Definition(String),
    /// The server role failed for good while running (its Raft node stopped).
    #[error("the server role failed: {0}")]
    ServerFailed(String),
}

/// Finds the address to advertise when bound to a wildcard: the source address of the default
/// route, else loopback.
///
/// Connecting a UDP socket sends nothing: it only makes the kernel choose the source address it
/// would route through, which is the address other machines can reach this one at. Any address
/// works as a destination as long as it is routed; loopback is the fallback for a machine without a
/// default route.
fn detect_private_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// This node's ID: configured, else the one saved in the data dir, else a new one saved there.
///
/// Kept across restarts because servers' Raft IDs are derived from it and gossip and the catalog
/// know the node by it: a node that changed ID on restart would look like a new member (and a
/// server like a new peer). Lowercased like the IDs the catalog stores. An agent without a data dir
/// gets a fresh one each run.
fn node_id(config: &Config) -> Result<String, StartError> {
    if !config.node_id.is_empty() {
        return Ok(config.node_id.to_lowercase());
    }
    let Some(dir) = &config.data_dir else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let path = dir.join("node-id");
    let err = |source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Ok(_) | Err(_) => {
            std::fs::create_dir_all(dir).map_err(err)?;
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id).map_err(err)?;
            Ok(id)
        }
    }
}

impl Agent {
    /// Builds the agent over the machine's sockets and opens its server role (no background
    /// tasks started yet).
    pub async fn new(config: Config) -> Result<Arc<Agent>, StartError> {
        Agent::new_on(config, Networks::Sockets).await
    }

    /// Builds the agent over the given networks. In memory, the Raft log and the agent's own
    /// registrations stay in memory too, and Raft's election timeout is drawn from the seed.
    ///
    /// Nothing is announced yet: gossip is started but has joined no one, and the server role has
    /// not bootstrapped. [`Agent::start`] does that once the HTTP listeners are bound.
    pub async fn new_on(config: Config, networks: Networks) -> Result<Arc<Agent>, StartError> {
        let memory = match &networks {
            Networks::Memory(m) => Some(m.clone()),
            Networks::Sockets => None,
        };
        let advertise = config.advertise_addr.unwrap_or_else(|| {
            if config.bind_addr.is_unspecified() {
                detect_private_ip()
            } else {
                config.bind_addr
            }
        });
        // Consul's tagged addresses for the node: `lan`/`wan` and their family-specific forms,
        // which DNS and clients choosing an address read.
        let wan = config.advertise_addr_wan.unwrap_or(advertise).to_string();
        let lan = advertise.to_string();
        let mut tagged = BTreeMap::new();
        let (lan_key, wan_key) = if advertise.is_ipv4() {
            ("lan_ipv4", "wan_ipv4")
        } else {
            ("lan_ipv6", "wan_ipv6")
        };
        tagged.insert("lan".to_string(), lan.clone());
        tagged.insert(lan_key.to_string(), lan.clone());
        tagged.insert("wan".to_string(), wan.clone());
        tagged.insert(wan_key.to_string(), wan);
        // `tagged_addresses` from the configuration, added to (or overriding) these, as Consul
        // merges them.
        tagged.extend(config.tagged_addresses.clone());
        let node = NodeRecord {
            name: config.node_name.clone(),
            id: node_id(&config)?,
            address: lan,
            datacenter: config.datacenter.clone(),
            tagged_addresses: tagged,
            meta: agent_node_meta(&config),
        };
        let hub = Arc::new(WatchHub::new());
        let me = ServerNode {
            name: node.name.clone(),
            addr: SocketAddr::new(advertise, config.ports.server).to_string(),
            id: node.id.clone(),
        };
        let raft_dir = if config.dev || memory.is_some() {
            None
        } else {
            config.data_dir.as_ref().map(|d| d.join("raft"))
        };
        let tls = crate::tls::State::default();
        let rpc = match &memory {
            Some(m) => crate::rpc::Client::with_transport(m.rpc.transport(&me.addr)),
            None => {
                let http = Arc::new(crate::rpc::transport::Http::new());
                tls.set_rpc_transport(Arc::clone(&http));
                crate::rpc::Client::with_transport(http)
            }
        };
        // Certificates are read before anything starts: a bad or expired one stops start-up
        // with its file named.
        tls.apply(&config).map_err(StartError::Unsupported)?;
        // A timeout drawn per node within Raft's range, fixed for the run.
        let election_timeout_ms = memory.as_ref().map(|m| {
            let m_ = u64::from(config.performance.raft_multiplier.clamp(1, 10));
            // Inside openraft's range [120, 240) ms times the multiplier, as a random draw would
            // be.
            120 * m_ + m.draw(&node.name, "election") % (120 * m_)
        });
        let router = crate::wan::Router::new(&config.datacenter);
        let server = if config.server {
            Some(
                Server::start(
                    ServerOptions {
                        me,
                        datacenter: config.datacenter.clone(),
                        raft_dir,
                        raft_multiplier: config.performance.raft_multiplier,
                        hold_timeout: config.performance.rpc_hold_timeout,
                        snapshot_threshold: u64::from(config.raft_snapshot_threshold),
                        trailing_logs: u64::from(config.raft_trailing_logs),
                        autopilot: config.autopilot.clone(),
                        election_timeout_ms,
                        router: Arc::clone(&router),
                        session_ttl_min: config.session_ttl_min,
                        acl: crate::acl::Acl::from_config(&config),
                    },
                    Arc::clone(&hub),
                    rpc.clone(),
                )
                .await
                .map_err(|e| StartError::Unsupported(format!("server: {e}")))?,
            )
        } else {
            None
        };
        let session_timers = server
            .as_ref()
            .map(|s| Arc::clone(&s.session_timers))
            .unwrap_or_default();
        // Gossip starts before the backend exists: a client agent finds its servers through it.
        let (gossip, gossip_rx) =
            crate::cluster::start(&config, &node.name, &node.id, advertise, memory.as_ref())
                .await
                .map_err(StartError::Unsupported)?;
        // Servers only (and not with `ports.serf_wan = -1`).
        let wan = crate::wan::start(&config, &node.name, &node.id, advertise, memory.as_ref())
            .await
            .map_err(StartError::Unsupported)?;
        let (wan, wan_rx) = match wan {
            Some((g, rx)) => {
                router.set_pool(g.clone());
                (Some(g), Some(rx))
            }
            None => (None, None),
        };
        let backend = match &server {
            Some(s) => Backend::Server(Arc::clone(s)),
            None => Backend::Client(Arc::new(ServerPool::new(
                gossip.clone(),
                &config.datacenter,
                rpc,
            ))),
        };
        let list_from = gossip.clone();
        let membership = Arc::new(leader::Membership {
            list: Box::new(move || {
                list_from
                    .members()
                    .iter()
                    .map(crate::cluster::member_info)
                    .collect()
            }),
            changed: Notify::new(),
        });
        // Check runners report here; the queue absorbs a burst (many checks due at once) without
        // blocking them.
        let (results_tx, results_rx) = mpsc::channel(1024);
        let (shutdown, _) = watch::channel(false);
        let agent = Arc::new(Agent {
            local: Mutex::new(LocalState::new(node.clone())),
            node,
            backend,
            server,
            hub,
            local_changed: Notify::new(),
            runners: Runners::new(results_tx),
            session_timers,
            events: EventLog::new(),
            metrics: Metrics::new(),
            started: Instant::now(),
            http_addrs: Mutex::new(Vec::new()),
            tls,
            persist: config
                .data_dir
                .as_ref()
                .filter(|_| !config.dev && memory.is_none())
                .map(|d| Persist::new(d)),
            gossip,
            wan,
            acl: crate::acl::Acl::from_config(&config),
            tokens: crate::acl::tokens::TokenStore::new(&config),
            acl_cache: crate::acl::RemoteCache::default(),
            service_tokens: Mutex::new(BTreeMap::new()),
            wan_events: Mutex::new(wan_rx),
            membership,
            gossip_events: Mutex::new(Some(gossip_rx)),
            sync_lock: tokio::sync::Mutex::new(()),
            synced_version: std::sync::atomic::AtomicU64::new(0),
            sync_kick: Notify::new(),
            shutdown,
            config: RwLock::new(config),
        });
        tokio::spawn(Arc::clone(&agent).consume_results(results_rx));
        agent
            .runners
            // Set before any check is loaded: alias checks started without a source report that
            // they cannot run.
            .set_alias_source(Arc::new(crate::checks::AgentAliasSource::new(&agent)));
        Ok(agent)
    }

    /// Records the token a service was registered with (empty: none; its syncs then use the
    /// agent's default token).
    pub fn set_service_token(&self, id: &str, token: &str) {
        let mut t = self
            .service_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if token.is_empty() {
            t.remove(id);
        } else {
            t.insert(id.to_string(), token.to_string());
        }
    }

    /// The token a service was registered with, if any.
    pub fn service_token(&self, id: &str) -> Option<String> {
        self.service_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The token an anti-entropy write carries, as in Consul: a service's (and its checks')
    /// registration token, else the default token; node-level writes the agent token, else the
    /// default one.
    fn sync_token(&self, op: &crate::api::WriteOp) -> Option<crate::api::Token> {
        use crate::api::WriteOp;
        if !self.acl.is_enabled() {
            return None;
        }
        let service_id = match op {
            WriteOp::Register(req) => req.service.as_ref().map(|s| s.id.clone()).or_else(|| {
                req.check
                    .iter()
                    .chain(&req.checks)
                    .map(|c| c.service_id.clone())
                    .find(|s| !s.is_empty())
            }),
            WriteOp::Deregister(req) if !req.service_id.is_empty() => Some(req.service_id.clone()),
            _ => None,
        };
        let own = service_id.and_then(|id| {
            self.service_tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .cloned()
        });
        let token = match own {
            Some(t) => Some(t),
            None if matches!(op, WriteOp::Register(r) if r.service.is_none()
                && r.check.iter().chain(&r.checks).all(|c| c.service_id.is_empty())) =>
            {
                self.tokens
                    .get("agent")
                    .or_else(|| self.tokens.get("default"))
            }
            None => self.tokens.get("default"),
        };
        token.map(crate::api::Token)
    }

    /// Whether ACLs are enabled.
    pub fn acl_enabled(&self) -> bool {
        self.acl.is_enabled()
    }

    /// The permissions of `token` for this agent's own endpoints: the recovery token locally,
    /// anything else as this agent's servers resolve it (on a server, its own state; on a client
    /// agent, a server's answer cached for a second). When no server answers, `down_policy`
    /// decides, as in Consul.
    pub async fn authorize_token(
        &self,
        token: Option<&crate::api::Token>,
    ) -> Result<crate::acl::Authorizer, crate::api::Error> {
        if !self.acl.is_enabled() {
            return Ok(crate::acl::Authorizer::allow_all());
        }
        let secret = token.map(|t| t.0.as_str()).unwrap_or("");
        if !secret.is_empty() && self.tokens.get("agent_recovery").as_deref() == Some(secret) {
            return Ok(crate::acl::recovery_authorizer(&self.node.name));
        }
        if let Some(s) = &self.server {
            return s.authorize(token);
        }
        let authenticated = !secret.is_empty();
        if let Some(r) = self.acl_cache.fresh(secret) {
            return Ok(r.authorizer(authenticated));
        }
        match self.backend.acl_resolve(token).await {
            Ok(r) => {
                let a = r.authorizer(authenticated);
                self.acl_cache.put(secret, r);
                Ok(a)
            }
            Err(crate::api::Error::PermissionDenied(m)) => {
                self.acl_cache.forget(secret);
                Err(crate::api::Error::PermissionDenied(m))
            }
            Err(e) if e.is_transient() || matches!(e, crate::api::Error::NoServers) => {
                let down = self.config().acl.down_policy;
                let default_allow = self.acl.settings().is_some_and(|s| s.default_allow);
                match down.as_str() {
                    "allow" => Ok(crate::acl::Authorizer::from_rules(
                        crate::acl::rules::Rules::default(),
                        true,
                        None,
                        authenticated,
                    )),
                    "deny" => Ok(crate::acl::Authorizer::from_rules(
                        crate::acl::rules::Rules::default(),
                        false,
                        None,
                        authenticated,
                    )),
                    _ => Ok(match self.acl_cache.stale(secret) {
                        Some(r) => r.authorizer(authenticated),
                        None => crate::acl::Authorizer::from_rules(
                            crate::acl::rules::Rules::default(),
                            default_allow,
                            None,
                            authenticated,
                        ),
                    }),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The current configuration.
    ///
    /// A copy: callers never hold the lock across an await, and a reload swaps the whole value at
    /// once, so a caller sees either the old configuration or the new one.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Script-check permissions.
    ///
    /// Read at each registration, so a reload that changes `enable_script_checks` applies to the
    /// next one; checks already running keep going.
    pub fn script_policy(&self) -> ScriptPolicy {
        let c = self.config.read().unwrap_or_else(|p| p.into_inner());
        ScriptPolicy {
            any: c.enable_script_checks,
            local: c.enable_local_script_checks,
        }
    }

    /// A receiver that turns true when shutdown starts.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Starts a graceful shutdown (idempotent).
    ///
    /// `send_replace` stores the value even when nobody listens yet: a receiver created later
    /// reads it, and `wait_for` then returns at once.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Registers itself in the catalog, loads configured services and checks and starts the
    /// background loops.
    pub async fn start(self: &Arc<Agent>) -> Result<(), StartError> {
        let config = self.config();
        if let Some(server) = &self.server
            // A cluster of one: formed at once, before anything needs a leader. Larger clusters
            // form through `-bootstrap-expect` once their servers have found each other in gossip.
            && (config.bootstrap || config.dev || config.bootstrap_expect == 1)
        {
            server
                .bootstrap(vec![server.me().clone()])
                .await
                .map_err(|e| StartError::Unsupported(format!("bootstrap: {e}")))?;
        }
        let rx = self
            .gossip_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(rx) = rx {
            tokio::spawn(crate::cluster::consume(Arc::clone(self), rx));
        }
        // `-join` must succeed (Consul exits when it fails); `-retry-join` keeps trying in the
        // background.
        if !config.start_join.is_empty() {
            let n = crate::cluster::join(&self.gossip, &config.start_join)
                .await
                .map_err(|e| StartError::Unsupported(format!("-join: {e}")))?;
            info!(contacted = n, "joined the cluster");
        }
        if !config.retry_join.is_empty() {
            tokio::spawn(crate::cluster::retry_join(
                self.gossip.clone(),
                config.retry_join.clone(),
                config.retry_interval,
                config.retry_max,
            ));
        }
        if let Some(wan) = &self.wan {
            let rx = self
                .wan_events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(rx) = rx {
                tokio::spawn(crate::wan::consume(rx));
            }
            tokio::spawn(crate::wan::flood(
                self.gossip.clone(),
                wan.clone(),
                config.datacenter.clone(),
                self.shutdown_signal(),
            ));
            // `-join-wan` / `retry_join_wan`: retried in the background, as Consul does.
            if !config.retry_join_wan.is_empty() {
                tokio::spawn(crate::cluster::retry_join(
                    wan.clone(),
                    config.retry_join_wan.clone(),
                    config.retry_interval_wan,
                    config.retry_max_wan,
                ));
            }
        } else if !config.retry_join_wan.is_empty() {
            warn!(
                "retry_join_wan is set but this agent has no WAN pool (not a server, or ports.serf_wan = -1)"
            );
        }
        if let Some(server) = &self.server {
            if config.bootstrap_expect > 1 {
                tokio::spawn(crate::cluster::bootstrap_expect(
                    Arc::clone(self),
                    Arc::clone(server),
                    self.gossip.clone(),
                    config.bootstrap_expect,
                ));
            }
            tokio::spawn(leader::supervise(
                Arc::clone(server),
                Arc::clone(&self.membership),
                self.shutdown_signal(),
            ));
            // The election timer (openraft's own is off): elections after a pre-vote round.
            tokio::spawn(crate::server::prevote::run(
                Arc::clone(server),
                self.shutdown_signal(),
            ));
        }
        // Saved registrations first, then the configuration's: a definition present in both ends up
        // as the configuration says.
        self.restore_local_state();
        self.load_config_definitions()?;
        // The first sync needs a leader; a single server elects itself within milliseconds,
        // a cluster may take longer, and then the sync loop keeps retrying.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sync_now()).await;
        // Publishes this member's key fingerprints in gossip, so keyring listings count it.
        self.keyring_publish().await;
        tokio::spawn(Arc::clone(self).sync_loop());
        tokio::spawn(Arc::clone(self).node_watch_loop());
        tokio::spawn(Arc::clone(self).reap_loop());
        Ok(())
    }

    /// Registers the `services[]` and `checks[]` of the configuration (source: config).
    /// Services and checks previously loaded from config but no longer present are removed.
    ///
    /// Each definition is decoded and validated before the local state is touched, so a malformed
    /// one changes nothing; only a check naming a missing service is found later, once the services
    /// are in. Definitions registered through the API are never removed here, whatever the
    /// configuration says.
    pub fn load_config_definitions(&self) -> Result<(), StartError> {
        let config = self.config();
        let scripts = self.script_policy();
        let mut services = Vec::new();
        for v in &config.services {
            let def: ServiceDef = crate::api::decode::decode_value(v.clone())
                .map_err(|e| StartError::Definition(format!("service definition: {e}")))?;
            let parsed = def
                .validate(&self.node.name, scripts, Source::Config)
                .map_err(|e| StartError::Definition(format!("service {:?}: {}", def.name, e)))?;
            services.push(parsed);
        }
        let mut checks = Vec::new();
        for v in &config.checks {
            let def: CheckDef = crate::api::decode::decode_value(v.clone())
                .map_err(|e| StartError::Definition(format!("check definition: {e}")))?;
            let id = if def.given_id().is_empty() {
                def.name.clone()
            } else {
                def.given_id().to_string()
            };
            let (check, spec) = def
                .validate(
                    &self.node.name,
                    id,
                    def.name.clone(),
                    scripts,
                    Source::Config,
                )
                .map_err(|e| StartError::Definition(format!("check {:?}: {}", def.name, e)))?;
            if check.name.is_empty() {
                return Err(StartError::Definition(
                    "check definition: missing check name".into(),
                ));
            }
            checks.push((check, spec));
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let stale_services: Vec<String> = local
            .services
            .iter()
            .filter(|(id, s)| {
                s.source == Source::Config && !services.iter().any(|(n, _)| n.id == **id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale_services {
            for cid in local.remove_service(&id).unwrap_or_default() {
                self.runners.stop(&cid);
            }
        }
        let stale_checks: Vec<String> = local
            .checks
            .iter()
            .filter(|(id, c)| {
                c.source == Source::Config
                    && c.check.service_id.is_empty()
                    && !checks.iter().any(|(n, _)| n.check_id == **id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale_checks {
            local.remove_check(&id);
            self.runners.stop(&id);
        }
        for (svc, svc_checks) in services {
            let specs: Vec<(String, _)> = svc_checks
                .iter()
                .map(|(c, s)| (c.check_id.clone(), s.clone()))
                .collect();
            // `true`: the definition replaces the service's checks, so a check removed from the
            // file goes away on reload.
            local.add_service(svc, svc_checks, Source::Config, true);
            for (id, spec) in specs {
                self.runners.start(&id, &spec);
            }
        }
        for (check, spec) in checks {
            // Services are all in by now, so a check may name any service of the configuration,
            // whatever the order of the file.
            if !check.service_id.is_empty() && !local.services.contains_key(&check.service_id) {
                return Err(StartError::Definition(format!(
                    "check {:?}: ServiceID {:?} does not exist",
                    check.check_id, check.service_id
                )));
            }
            let id = check.check_id.clone();
            local.add_check(check, Some(spec.clone()), Source::Config);
            self.runners.start(&id, &spec);
        }
        // Released before waking watchers, which will lock the local state to read it.
        drop(local);
        self.local_changed.notify_waiters();
        Ok(())
    }

    /// Registers a service with its checks on this agent.
    ///
    /// The definition is saved as received, not as validated: on restart it goes through the same
    /// validation again, under the rules of the version then running.
    pub async fn register_service(
        &self,
        def: ServiceDef,
        replace_checks: bool,
    ) -> Result<(), Error> {
        let id = self.add_service_local(&def, replace_checks)?;
        if let Some(p) = &self.persist {
            p.save_service(&SavedService {
                id,
                definition: serde_json::to_value(&def).unwrap_or_default(),
            });
        }
        self.changed().await;
        Ok(())
    }

    /// Validates a service definition into the local state and starts its checks; no sync.
    fn add_service_local(&self, def: &ServiceDef, replace_checks: bool) -> Result<String, Error> {
        let (service, checks) = def.validate(&self.node.name, self.script_policy(), Source::Api)?;
        let id = service.id.clone();
        let specs: Vec<(String, _)> = checks
            .iter()
            .map(|(c, s)| (c.check_id.clone(), s.clone()))
            .collect();
        {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            for id in local.add_service(service, checks, Source::Api, replace_checks) {
                self.runners.stop(&id);
            }
        }
        for (id, spec) in specs {
            self.runners.start(&id, &spec);
        }
        Ok(id)
    }

    /// Removes a service and its checks. Unknown IDs are a no-op, as in Consul.
    pub async fn deregister_service(&self, id: &str) {
        let removed = {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            local.remove_service(id)
        };
        if let Some(checks) = removed {
            for c in checks {
                self.runners.stop(&c);
                if let Some(p) = &self.persist {
                    p.remove_check(&c);
                }
            }
            if let Some(p) = &self.persist {
                p.remove_service(id);
                // The service's maintenance reason goes with it: a service registered again later
                // under the same ID must not come back in maintenance.
                self.save_maintenance(p);
            }
            self.changed().await;
        }
    }

    /// Registers a check on this agent.
    ///
    /// Saved as received, like services, so a restart validates it again.
    pub async fn register_check(&self, def: CheckDef) -> Result<(), Error> {
        let id = self.add_check_local(&def)?;
        if let Some(p) = &self.persist {
            p.save_check(&SavedCheck {
                id,
                definition: serde_json::to_value(&def).unwrap_or_default(),
            });
        }
        self.changed().await;
        Ok(())
    }

    /// Validates a check definition into the local state and starts it; no sync.
    fn add_check_local(&self, def: &CheckDef) -> Result<String, Error> {
        if def.name.is_empty() {
            return Err(Error::Invalid("Missing check name".into()));
        }
        let id = if def.given_id().is_empty() {
            def.name.clone()
        } else {
            def.given_id().to_string()
        };
        let (check, spec) = def.validate(
            &self.node.name,
            id.clone(),
            def.name.clone(),
            self.script_policy(),
            Source::Api,
        )?;
        // Consul's text: a check must have something to run or a TTL to be fed.
        if matches!(spec.kind, CheckKind::None) {
            return Err(Error::Invalid(
                "Must provide TTL or Script/DockerContainerID/HTTP/TCP/UDP/GRPC/H2PING/AliasNode/AliasService and Interval".into(),
            ));
        }
        {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            if !check.service_id.is_empty() && !local.services.contains_key(&check.service_id) {
                return Err(Error::Invalid(format!(
                    "ServiceID {:?} does not exist",
                    check.service_id
                )));
            }
            local.add_check(check, Some(spec.clone()), Source::Api);
        }
        self.runners.start(&id, &spec);
        Ok(id)
    }

    /// Removes a check. Unknown IDs are a no-op.
    pub async fn deregister_check(&self, id: &str) {
        let found = {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            local.remove_check(id)
        };
        self.runners.stop(id);
        if found {
            if let Some(p) = &self.persist {
                p.remove_check(id);
            }
            self.changed().await;
        }
    }

    /// Sets a TTL check's status (`check/pass|warn|fail|update`) and resets its timer.
    ///
    /// Only a change (status or output) reaches the catalog; feeding the same status again just
    /// re-arms the timer, so a service heartbeating every second does not write to the log.
    pub async fn update_ttl(
        &self,
        id: &str,
        status: HealthStatus,
        output: &str,
    ) -> Result<(), Error> {
        let changed = self.set_ttl_status(id, status, output, None)?;
        if changed {
            self.changed().await;
        }
        Ok(())
    }

    /// Records a TTL status and re-arms the timer (`remaining` overrides the full TTL, for a
    /// status restored from disk). Returns whether anything changed.
    fn set_ttl_status(
        &self,
        id: &str,
        status: HealthStatus,
        output: &str,
        remaining: Option<Duration>,
    ) -> Result<bool, Error> {
        let ttl = {
            let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            let Some(c) = local.checks.get(id) else {
                return Err(Error::NotFound(format!(
                    "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
                )));
            };
            match c.spec.as_ref().map(|s| &s.kind) {
                Some(CheckKind::Ttl(ttl)) => *ttl,
                _ => {
                    return Err(Error::Invalid(format!(
                        "CheckID {id:?} does not have associated TTL"
                    )));
                }
            }
        };
        // A restored status keeps only the TTL time it had left when the agent stopped: a restart
        // must not extend a TTL that a dead service can no longer feed.
        let arm = remaining.unwrap_or(ttl);
        let output = if self.discards_output() { "" } else { output };
        // The timer is re-armed even when the status is unchanged: feeding a TTL check with the
        // same status is what keeps it alive.
        self.runners.reset_ttl_with_output(id, arm, output);
        let changed = {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            local.update_check(id, status, output)
        };
        if let Some(p) = &self.persist
            // A restored status is already on disk with its original expiry; saving it again would
            // push that expiry out.
            && remaining.is_none()
        {
            p.save_ttl(&SavedTtl {
                id: id.to_string(),
                status: status.as_str().to_string(),
                output: output.to_string(),
                expires_ms: now_ms() + arm.as_millis() as u64,
            });
        }
        Ok(changed.is_some())
    }

    /// Turns maintenance on or off for the node or a service.
    ///
    /// Maintenance is a local critical check (`_node_maintenance` or `_service_maintenance:<id>`),
    /// synced like any other, as in Consul; it is saved so a restart does not silently end it.
    pub async fn set_maintenance(
        &self,
        service: Option<&str>,
        enable: bool,
        reason: &str,
    ) -> Result<(), Error> {
        let ok = {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            local.set_maintenance(service, enable, reason)
        };
        if !ok {
            return Err(Error::NotFound(format!(
                "Unknown service ID {:?}",
                service.unwrap_or_default()
            )));
        }
        if let Some(p) = &self.persist {
            self.save_maintenance(p);
        }
        self.changed().await;
        Ok(())
    }

    /// Writes the current maintenance reasons.
    ///
    /// Rebuilt from the maintenance checks in the local state each time, so the file cannot drift
    /// from what the agent actually serves.
    fn save_maintenance(&self, p: &Persist) {
        let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let mut m = SavedMaintenance::default();
        for c in local.checks.values() {
            if c.check.check_id == crate::local::NODE_MAINT_ID {
                m.node = Some(c.check.notes.clone());
            } else if let Some(sid) = c
                .check
                .check_id
                .strip_prefix(crate::local::SERVICE_MAINT_PREFIX)
            {
                m.services.insert(sid.to_string(), c.check.notes.clone());
            }
        }
        drop(local);
        p.save_maintenance(&m);
    }

    /// Restores the registrations saved by a previous run: services, checks, TTL statuses
    /// still within their TTL, and maintenance.
    ///
    /// Anything that no longer validates is skipped with a warning rather than stopping the agent:
    /// one bad saved file must not keep a node out of service.
    pub fn restore_local_state(&self) {
        let Some(p) = &self.persist else { return };
        let loaded = p.load();
        for s in &loaded.services {
            let restored = crate::api::decode::decode_value::<ServiceDef>(s.definition.clone())
                .and_then(|def| self.add_service_local(&def, false));
            if let Err(e) = restored {
                warn!(service = %s.id, error = %e, "cannot restore a saved service");
            }
        }
        for c in &loaded.checks {
            let restored = crate::api::decode::decode_value::<CheckDef>(c.definition.clone())
                .and_then(|def| self.add_check_local(&def));
            if let Err(e) = restored {
                warn!(check = %c.id, error = %e, "cannot restore a saved check");
            }
        }
        let now = now_ms();
        // After the checks they belong to (a status for a check that is gone fails and is skipped).
        // An expired one is dropped: the check starts as a newly registered one does.
        for t in loaded.ttl.values() {
            let Some(status) = HealthStatus::parse(&t.status) else {
                continue;
            };
            if t.expires_ms <= now {
                continue;
            }
            let remaining = Duration::from_millis(t.expires_ms - now);
            let _ = self.set_ttl_status(&t.id, status, &t.output, Some(remaining));
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &loaded.maintenance.node {
            local.set_maintenance(None, true, reason);
        }
        for (sid, reason) in &loaded.maintenance.services {
            local.set_maintenance(Some(sid), true, reason);
        }
        let n = (local.services.len(), local.checks.len());
        drop(local);
        info!(
            services = n.0,
            checks = n.1,
            "restored the agent's saved local state"
        );
    }

    /// After a local change: wake local watchers and sync to the catalog (bounded wait).
    ///
    /// Concurrent changes share passes: a caller only needs a pass that started after its change,
    /// so callers queued behind a running pass are all covered by the next one.
    async fn changed(&self) {
        self.local_changed.notify_waiters();
        self.metrics.local_changes.inc();
        // The local state's version after this caller's change: any pass that started at or after
        // it carries the change.
        let mine = self.local.lock().unwrap_or_else(|p| p.into_inner()).version;
        let wait = async {
            loop {
                if self
                    .synced_version
                    .load(std::sync::atomic::Ordering::Acquire)
                    >= mine
                {
                    return;
                }
                // A failed pass ends the wait: the caller answers now and the sync loop retries
                // later.
                if !self.sync_now().await {
                    return;
                }
            }
        };
        if tokio::time::timeout(SYNC_WAIT, wait).await.is_err() {
            debug!("catalog sync still running; answering without waiting further");
        }
    }

    /// Runs one anti-entropy pass now; false when a catalog update failed.
    pub async fn sync_now(&self) -> bool {
        // Callers queue here; each pass diffs the local state as it is when the pass starts, so one
        // pass covers every change made before it.
        let _guard = self.sync_lock.lock().await;
        // Read before the catalog: a change made while the pass runs has a higher version and is
        // not counted as synced by it.
        let started_at = self.local.lock().unwrap_or_else(|p| p.into_inner()).version;
        let view = match self.catalog_view().await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "anti-entropy: cannot read the catalog");
                return false;
            }
        };
        // One instant for the diff and the stamps below, so a deferred output's window starts when
        // it was decided.
        let now = Instant::now();
        let plan = {
            let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            sync::diff(&local, &view, now, CHECK_UPDATE_INTERVAL)
        };
        // Nothing to do: the catalog already matches, which is a successful pass.
        if plan.commands.is_empty() && plan.adopt_tags.is_empty() {
            self.synced_version
                .fetch_max(started_at, std::sync::atomic::Ordering::AcqRel);
            return true;
        }
        let mut ok = true;
        // One write per command, in the plan's order; a failure is logged and the rest still go, so
        // one bad entry does not hold every other one back.
        for op in plan.commands {
            let done = synced_line(&op);
            let token = self.sync_token(&op);
            match self
                .backend
                .write(crate::api::Write::new(op).with_token(token))
                .await
            {
                Ok(_) => done(),
                Err(e) => {
                    warn!(error = %e, "anti-entropy: catalog update failed");
                    ok = false;
                }
            }
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        // EnableTagOverride: tags changed in the catalog by someone else become the local tags, so
        // the next diff agrees instead of writing the agent's tags back.
        for (id, tags) in plan.adopt_tags {
            if let Some(s) = local.services.get_mut(&id) {
                s.service.tags = tags;
            }
        }
        // The catalog now has what was registered here: from now on, with EnableTagOverride, tags
        // changed in the catalog are adopted. Not if the tags changed again meanwhile (a
        // registration during this pass), whose tags still have to go out.
        for (id, tags) in plan.tags_written {
            if let Some(s) = local.services.get_mut(&id)
                && s.service.tags == tags
                && ok
            {
                s.tags_pending = false;
            }
        }
        if ok {
            // Only after every write succeeded: a failed write must not start an output deferral
            // for a check whose output never reached the catalog.
            for id in plan.output_written {
                if let Some(c) = local.checks.get_mut(&id) {
                    c.output_synced_at = Some(now);
                }
            }
        }
        self.metrics.syncs.inc();
        if ok {
            self.synced_version
                .fetch_max(started_at, std::sync::atomic::Ordering::AcqRel);
        }
        ok
    }

    /// What the catalog holds for this node (read from the leader).
    async fn catalog_view(&self) -> Result<CatalogView, Error> {
        let v = self
            .backend
            // Default consistency, so from the leader: diffing against a lagging follower would
            // send writes that are already in the log, or miss what is not.
            .node_view(&self.node.name, &crate::api::ReadOptions::default())
            .await?
            .value;
        Ok(CatalogView {
            node: v.node,
            services: v.services,
            checks: v.checks,
        })
    }

    /// Blocks on this node's catalog entry and runs anti-entropy when it changes, so that an
    /// entry written or removed behind the agent's back is repaired at once rather than at the
    /// next periodic pass. The agent's own writes wake it too; the diff is then empty.
    async fn node_watch_loop(self: Arc<Agent>) {
        let mut shutdown = self.shutdown_signal();
        // 0 until the first answer: that answer only records the index; a pass then runs on each
        // later change.
        let mut index = 0u64;
        loop {
            let opts = crate::api::ReadOptions {
                min_index: index,
                // Stale is enough: a wake-up is only a hint, and the pass it triggers reads from
                // the leader.
                consistency: crate::api::Consistency::Stale,
                ..crate::api::ReadOptions::default()
            };
            let result = tokio::select! {
                r = self.backend.node_view(&self.node.name, &opts) => r,
                _ = shutdown.changed() => return,
            };
            match result {
                Ok(view) => {
                    if index != 0 && view.meta.index != index {
                        self.sync_kick.notify_one();
                    }
                    index = view.meta.index;
                }
                // No server or leader for now: retry after a pause rather than spin.
                Err(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }

    /// Runs anti-entropy: when kicked (check results, a changed catalog entry), at the periodic
    /// interval, and sooner after a failure.
    async fn sync_loop(self: Arc<Agent>) {
        let mut shutdown = self.shutdown_signal();
        // After a failed pass, retry sooner: 1 s doubling up to the full interval.
        // Starts as a retry: the start-up sync may have failed (no leader yet), and waiting a full
        // interval before the first real pass would leave the node out of the catalog that long.
        let mut retry: Option<Duration> = Some(Duration::from_secs(1));
        loop {
            // The interval is recomputed each time: it scales with the pool size, which changes.
            let wait = retry.unwrap_or_else(|| ae_interval(self.gossip.members().len()));
            tokio::select! {
                () = self.sync_kick.notified() => {
                    // Let a burst of check results settle into one pass.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            retry = if self.sync_now().await {
                None
            } else {
                Some((wait * 2).min(ae_interval(self.gossip.members().len())))
            };
        }
    }

    /// Applies check results to the local state and kicks the sync loop when something changed.
    /// `discard_check_output`: check outputs are dropped before they are stored, so only
    /// status changes cost catalog writes (Consul applies it to every check, TTL ones included).
    fn discards_output(&self) -> bool {
        self.config.read().is_ok_and(|c| c.discard_check_output)
    }

    async fn consume_results(self: Arc<Agent>, mut rx: mpsc::Receiver<CheckResult>) {
        while let Some(r) = rx.recv().await {
            // A result from a runner that has since been replaced (the check re-registered) or
            // stopped is stale: applying it could overwrite a newer status.
            if !self.runners.is_current(&r.check_id, r.generation) {
                continue;
            }
            // `discard_check_output`: only statuses reach the catalog, so a check whose output
            // changes on every run costs no write.
            let output = if self.discards_output() {
                ""
            } else {
                r.output.as_str()
            };
            let changed = {
                let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
                local.update_check(&r.check_id, r.status, output)
            };
            if let Some(status_changed) = changed {
                if status_changed {
                    info!(check = %r.check_id, status = r.status.as_str(), "check status changed");
                }
                self.local_changed.notify_waiters();
                self.sync_kick.notify_one();
            }
        }
    }

    /// Deregisters services critical longer than their DeregisterCriticalServiceAfter.
    async fn reap_loop(self: Arc<Agent>) {
        let dev = self.config().dev;
        // Consul: reaper every 30 s, minimum 1 m; -dev: every 1 s, no minimum.
        // The minimum is Consul's floor on `DeregisterCriticalServiceAfter`; `-dev` drops it so the
        // behaviour can be tried without waiting.
        let (every, min) = if dev {
            (Duration::from_secs(1), Duration::ZERO)
        } else {
            (Duration::from_secs(30), Duration::from_secs(60))
        };
        let mut shutdown = self.shutdown_signal();
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let doomed = {
                let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
                local.services_to_reap(Instant::now(), min)
            };
            for id in doomed {
                info!(service = %id, "deregistering service: critical longer than DeregisterCriticalServiceAfter");
                self.deregister_service(&id).await;
            }
        }
    }

    /// A member joined or changed: if it is a server of this datacenter, its RPC address is where
    /// this server's Raft messages to it go from now on (it may have come back at a new address).
    pub fn server_seen(&self, m: &cairn_gossip::Member) {
        let Some(server) = &self.server else {
            return;
        };
        if m.meta.datacenter != self.config().datacenter {
            return;
        }
        if let Some(node) = crate::cluster::server_node(m) {
            let id = cairn_raft::node_id_from_uuid(&node.id);
            server.server_addrs().set(id, node.addr);
        }
    }

    /// Gossip membership changed: the leader reconciles at once.
    ///
    /// `notify_one` stores a permit: an event that arrives while the leader is busy reconciling
    /// still triggers the next pass.
    pub fn membership_changed(&self) {
        self.membership.changed.notify_one();
    }

    /// `/v1/agent/members`.
    pub fn members_json(&self) -> Vec<serde_json::Value> {
        self.gossip
            .members()
            .iter()
            .map(crate::cluster::member_json)
            .collect()
    }

    /// `PUT /v1/agent/join/:addr`.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, Error> {
        self.join_pool(&self.gossip, addrs).await
    }

    /// Joins the WAN pool (`-wan`): servers only, Consul's errors otherwise.
    pub async fn join_wan(&self, addrs: &[String]) -> Result<usize, Error> {
        if self.server.is_none() {
            return Err(Error::Internal(
                "Must be a server to join WAN cluster".into(),
            ));
        }
        let Some(wan) = &self.wan else {
            return Err(Error::Internal("WAN Federation is disabled".into()));
        };
        self.join_pool(wan, addrs).await
    }

    /// Joins `pool` through `addrs`.
    async fn join_pool(
        &self,
        pool: &cairn_gossip::Gossip,
        addrs: &[String],
    ) -> Result<usize, Error> {
        crate::cluster::join(pool, addrs).await.map_err(|e| {
            Error::Internal(format!(
                // Consul's multi-error text, which clients show verbatim.
                "1 error occurred:\n\t* Failed to join {}: {e}",
                addrs.join(", ")
            ))
        })
    }

    /// `PUT /v1/agent/force-leave/:node`.
    ///
    /// Moves a failed member to left, so the leader deregisters it now instead of after gossip's
    /// reap timeout; `prune` also makes every member forget it. Refused for this agent itself,
    /// which must leave gracefully instead.
    pub async fn force_leave(&self, node: &str, prune: bool) -> Result<(), Error> {
        // This agent's own name and alive members are accepted, as in Consul (whose leave
        // intent they refute): gossip leaves them as they are.
        if node != self.node.name && !self.gossip.members().iter().any(|m| m.name == node) {
            return Err(Error::NotFound(format!(
                "agent: No node found with name '{node}'"
            )));
        }
        self.gossip
            .force_leave(node, prune)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        // The leader deregisters the node at once instead of at its next periodic pass.
        self.membership_changed();
        Ok(())
    }

    /// `force-leave -wan`: the same in the WAN pool, where members are `<node>.<dc>`. An agent
    /// without a WAN pool knows no WAN member.
    pub async fn force_leave_wan(&self, node: &str, prune: bool) -> Result<(), Error> {
        let Some(wan) = &self.wan else {
            return Err(Error::NotFound(format!(
                "agent: No node found with name '{node}'"
            )));
        };
        let me = crate::wan::member_name(&self.node.name, &self.config().datacenter);
        if node != me && !wan.members().iter().any(|m| m.name == node) {
            return Err(Error::NotFound(format!(
                "agent: No node found with name '{node}'"
            )));
        }
        wan.force_leave(node, prune)
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Fires a user event: delivered here at once and to every member through gossip.
    pub async fn fire_event(
        &self,
        ev: crate::events::UserEvent,
    ) -> Result<crate::events::UserEvent, Error> {
        let sent = self
            .gossip
            .fire_event(crate::cluster::gossip_event(&ev))
            .await
            .map_err(|e| Error::Invalid(format!("Failed to fire event: {e}")))?;
        let ev = crate::events::UserEvent {
            ltime: sent.ltime,
            ..ev
        };
        // Delivered here at once, so `/v1/event/list` on this agent shows it in the answer's wake;
        // gossip hands it back later too, and the log drops that copy by its ID.
        crate::cluster::deliver(self, ev.clone());
        Ok(ev)
    }

    /// Leaves the cluster gracefully: a server hands leadership over and leaves the Raft
    /// configuration; then the gossip pool learns this member left.
    pub async fn leave(&self) {
        if let Some(server) = &self.server
            && server.is_leader()
            // Only the leader changes the configuration; a follower that leaves gossip is removed
            // by the leader's autopilot once gossip reports it left. A lone server keeps its
            // configuration: it is the last voter, which cannot be removed.
            && server.members().len() > 1
        {
            info!("leaving: removing this server from the Raft configuration");
            let ids: std::collections::BTreeSet<u64> = [server.node_id()].into_iter().collect();
            if let Err(e) = server
                .raft()
                .change_membership(openraft::ChangeMembers::RemoveVoters(ids), false)
                .await
            {
                warn!(error = %e, "failed to leave the Raft configuration");
            }
        }
        // The WAN pool first: the other datacenters then see this server leave rather than fail.
        if let Some(wan) = &self.wan
            && let Err(e) = wan.leave().await
        {
            warn!(error = %e, "failed to leave the WAN pool");
        }
        if let Err(e) = self.gossip.leave().await {
            warn!(error = %e, "failed to leave the gossip pool");
        }
    }

    /// Final work before exit: stop checks, gossip and Raft.
    ///
    /// Checks first: nothing then reports into an agent that is stopping.
    pub async fn stop(&self) {
        self.runners.stop_all();
        if let Some(wan) = &self.wan {
            wan.shutdown().await;
        }
        self.gossip.shutdown().await;
        if let Some(server) = &self.server {
            server.shutdown().await;
        }
    }
}

/// What to log once an anti-entropy command is in the catalog, as Consul's "Synced service"
/// lines: services at info, checks (whose status changes often) at debug.
fn synced_line(op: &crate::api::WriteOp) -> Box<dyn FnOnce() + Send> {
    use crate::api::WriteOp;
    match op {
        WriteOp::Register(req) => {
            if let Some(s) = &req.service {
                let id = s.id.clone();
                Box::new(move || info!(service = %id, "synced service"))
            } else {
                let ids: Vec<String> = req
                    .check
                    .iter()
                    .chain(&req.checks)
                    .map(|c| c.check_id.clone())
                    .collect();
                Box::new(move || {
                    for id in ids {
                        debug!(check = %id, "synced check");
                    }
                })
            }
        }
        WriteOp::Deregister(req) if !req.service_id.is_empty() => {
            let id = req.service_id.clone();
            Box::new(move || info!(service = %id, "deregistered service"))
        }
        WriteOp::Deregister(req) if !req.check_id.is_empty() => {
            let id = req.check_id.clone();
            Box::new(move || info!(check = %id, "deregistered check"))
        }
        _ => Box::new(|| {}),
    }
}

/// The agent's node metadata: the configured `node_meta` plus the keys Consul's agents add,
/// which clients read (`consul-version` to tell agents' versions apart, the network segment,
/// empty outside Enterprise).
fn agent_node_meta(config: &Config) -> BTreeMap<String, String> {
    let mut meta = config.node_meta.clone();
    meta.insert("consul-network-segment".into(), String::new());
    meta.insert(
        "consul-version".into(),
        crate::CONSUL_COMPAT_VERSION.to_string(),
    );
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    // The bounds include the 10 % stagger: one minute up to 128 nodes, then one more minute per
    // doubling of the pool.
    #[test]
    fn anti_entropy_interval_scales_with_the_pool() {
        let within = |d: Duration, mins: u64| {
            d >= Duration::from_secs(60 * mins) && d <= Duration::from_secs(66 * mins)
        };
        assert!(within(ae_interval(1), 1));
        assert!(within(ae_interval(128), 1));
        assert!(within(ae_interval(129), 2));
        assert!(within(ae_interval(256), 2));
        assert!(within(ae_interval(257), 3));
        assert!(within(ae_interval(1024), 4));
    }
}
