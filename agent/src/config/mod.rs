//! Agent configuration: Consul-compatible flags, JSON and HCL config files, defaults and
//! validation, merged into one [`Config`].
//!
//! Precedence, lowest first: built-in defaults, `-dev` defaults, config files and directories
//! (in the order given; files of a directory in lexical order), then command-line flags.
//!
//! Lists (`retry_join`, `recursors`, `services`, `checks`, ...) are appended across sources,
//! blocks (`ports {}`, `node_meta {}`, ...) are merged key by key, and other values are replaced
//! by later sources. List flags (`-retry-join`, `-recursor`, ...) come before the lists of config
//! files, as in Consul; `-hcl` snippets come after the config files. Unknown keys produce
//! warnings ([`Config::warnings`]); invalid values stop start-up with a [`ConfigError`] that
//! names the file or flag and the key.
//!
//! Layout: `flags` (the agent's flag table, read by the crate's parser `crate::flags`),
//! `file` (JSON/HCL files and directories), `schema` (known keys, per-source checks, merging),
//! `values` (typed value readers), `build` (defaults and checks across keys).
//!
//! Every source is checked on its own before anything is merged, so that a message can name
//! the file or flag a bad value came from; the merged map is then read once by `build`, which
//! can trust each value's type and only checks rules that span keys (a port used twice,
//! `bootstrap` with `bootstrap_expect`). Problems are collected rather than returned at the
//! first one, so a broken config is fixed in one round instead of one error per restart.

mod build;
mod consul_keys;
mod file;
mod flags;
mod schema;
mod tls;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Map;

pub use self::tls::{TlsConfig, TlsMinVersion, TlsProtocol};

use self::file::Format;
use self::schema::{Origin, Report};
use crate::flags::ParseError;

/// Everything the agent needs to start, after merging all sources.
#[derive(Clone, Debug)]
pub struct Config {
    /// `-dev`: in-memory single-node server with UI and DNS.
    pub dev: bool,
    /// `-server`: hold the replicated state.
    pub server: bool,
    /// `-bootstrap`: elect itself without peers.
    pub bootstrap: bool,
    /// `-bootstrap-expect`: servers to wait for before bootstrapping (0: not set).
    pub bootstrap_expect: u32,
    /// `-node` / `node_name`.
    pub node_name: String,
    /// Node UUID (`node_id`); generated and persisted when empty.
    pub node_id: String,
    /// `-datacenter` / `datacenter`, lowercase.
    /// Consul lowercases it too; the name appears in DNS questions (`web.service.east.consul`),
    /// where case does not matter, so `East` and `east` must be the same datacenter.
    pub datacenter: String,
    /// `primary_datacenter`.
    /// Defaults to `datacenter`: a single-datacenter cluster is its own primary (the datacenter
    /// that holds the ACL state in Consul).
    pub primary_datacenter: String,
    /// `-domain` / `domain` (default `consul.`).
    pub domain: String,
    /// `alt_domain`.
    pub alt_domain: String,
    /// `-bind` / `bind_addr`: cluster (gossip, RPC) listen address.
    /// Default `0.0.0.0` (all interfaces), `127.0.0.1` with `-dev` so that a development agent
    /// is not reachable from the network.
    pub bind_addr: IpAddr,
    /// `-advertise` / `advertise_addr`: address others use to reach this agent.
    /// `None`: the bind address, or a detected private address when binding to all
    /// interfaces. `0.0.0.0` itself is refused here, since no other agent could dial it.
    pub advertise_addr: Option<IpAddr>,
    /// `-advertise-wan` / `advertise_addr_wan`.
    pub advertise_addr_wan: Option<IpAddr>,
    /// `-client` / `client_addr`: HTTP and DNS listen addresses (space separated in Consul).
    /// Default `127.0.0.1`: the HTTP API can register services and run script checks, so it is
    /// not exposed beyond the host unless asked for.
    pub client_addrs: Vec<IpAddr>,
    /// `ports {}` and the port flags.
    pub ports: Ports,
    /// `addresses {}`: per-listener overrides of `client_addr`.
    pub addresses: Addresses,
    /// `-data-dir` / `data_dir`.
    /// Required except with `-dev`, which keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// `-pid-file` / `pid_file`.
    pub pid_file: Option<PathBuf>,
    /// `-log-level` / `log_level` (trace, debug, info, warn, error).
    pub log_level: String,
    /// `-log-json` / `log_json`.
    pub log_json: bool,
    /// `-ui` / `ui_config { enabled }`.
    pub ui: bool,
    /// `-enable-script-checks`.
    pub enable_script_checks: bool,
    /// `-enable-local-script-checks`.
    pub enable_local_script_checks: bool,
    /// `-encrypt` / `encrypt`: base64 gossip key.
    /// Checked to decode to 16, 24 or 32 bytes (AES-128/192/256); never echoed in messages.
    pub encrypt: Option<String>,
    /// `-join` / `start_join`.
    /// Joined once at start-up; a failure stops the agent, unlike `retry_join`.
    pub start_join: Vec<String>,
    /// `-retry-join` / `retry_join`.
    pub retry_join: Vec<String>,
    /// `-retry-interval` / `retry_interval` (default 30s).
    pub retry_interval: Duration,
    /// `-retry-max` / `retry_max` (0: forever).
    pub retry_max: u32,
    /// `-join-wan` / `retry_join_wan`.
    pub retry_join_wan: Vec<String>,
    /// `-recursor` / `recursors`.
    /// As `ip:port` (port 53 when not given), without duplicates, in the order given: the DNS
    /// server tries them in this order.
    pub recursors: Vec<String>,
    /// `node_meta {}`.
    /// Checked against Consul's rules (key length and characters, value length, the reserved
    /// `consul-` prefix) while each source is read, so the message names the file or flag.
    pub node_meta: BTreeMap<String, String>,
    /// `services[]` / `service {}` definitions, as JSON with keys as written (decoded by the
    /// agent with the same code as `PUT /v1/agent/service/register`).
    pub services: Vec<serde_json::Value>,
    /// `checks[]` / `check {}` definitions, as JSON (decoded like `PUT /v1/agent/check/register`).
    pub checks: Vec<serde_json::Value>,
    /// `dns_config {}`.
    pub dns: DnsConfig,
    /// `performance {}`.
    pub performance: Performance,
    /// `autopilot {}`.
    pub autopilot: Autopilot,
    /// `raft_snapshot_threshold`: log entries between Raft snapshots (16384).
    /// Consul's defaults for these two are kept, so that an operator's tuning carries over.
    pub raft_snapshot_threshold: u32,
    /// `raft_trailing_logs`: entries kept behind a snapshot for slow followers (10240).
    pub raft_trailing_logs: u32,
    /// `acl {}`.
    pub acl: AclConfig,
    /// `telemetry {}`.
    pub telemetry: Telemetry,
    /// `limits {}`.
    pub limits: Limits,
    /// `encrypt_verify_incoming` (true): with a gossip key, plaintext gossip is refused. Off,
    /// with `encrypt_verify_outgoing` off too, during a rolling enablement of encryption.
    pub encrypt_verify_incoming: bool,
    /// `encrypt_verify_outgoing` (true): with a gossip key, gossip is sent encrypted.
    pub encrypt_verify_outgoing: bool,
    /// `tls {}` and the deprecated top-level TLS keys, resolved per protocol.
    pub tls: TlsConfig,
    /// `http_config.response_headers`: added to every HTTP API response (CORS headers, say).
    pub http_response_headers: BTreeMap<String, String>,
    /// `discard_check_output`: checks report no output (saves catalog writes).
    pub discard_check_output: bool,
    /// `tagged_addresses`: more tagged addresses of this node (or overrides of `lan`/`wan`).
    pub tagged_addresses: BTreeMap<String, String>,
    /// `session_ttl_min`: the shortest session TTL the servers accept (10 s).
    pub session_ttl_min: Duration,
    /// `default_query_time`: how long a blocking query waits without `?wait` (5 min).
    pub default_query_time: Duration,
    /// `max_query_time`: the longest a blocking query waits (10 min, the most Cairn allows).
    pub max_query_time: Duration,
    /// `translate_wan_addrs`: answers about other datacenters carry their WAN addresses.
    pub translate_wan_addrs: bool,
    /// `leave_on_terminate` (default: false for servers, true for clients).
    /// The defaults differ by role as in Consul: a server that left on every signal would shrink
    /// the Raft configuration and could cost the cluster its quorum during a rolling restart.
    pub leave_on_terminate: bool,
    /// `skip_leave_on_interrupt` (default: true for servers, false for clients).
    pub skip_leave_on_interrupt: bool,
    /// `reconnect_timeout_wan` (default 72h, at least 8h as Consul requires).
    pub reconnect_timeout_wan: Duration,
    /// `reconnect_timeout` (default 72h).
    /// At least 8h, Consul's minimum. Not passed to the gossip layer yet, which reaps a
    /// failed member after its own default (also 72h).
    pub reconnect_timeout: Duration,
    /// `-retry-interval-wan` / `retry_interval_wan` (default 30s).
    pub retry_interval_wan: Duration,
    /// `-retry-max-wan` / `retry_max_wan` (0: forever).
    pub retry_max_wan: u32,
    /// `-rejoin` / `rejoin_after_leave`: rejoin at start-up even after a graceful leave.
    pub rejoin_after_leave: bool,
    /// `-disable-host-node-id` / `disable_host_node_id` (default true, as in Consul): the node
    /// ID is random rather than derived from the host.
    /// Cairn never derives the ID from the host: a new ID is random (and kept in the data
    /// directory), so `false` is accepted and changes nothing.
    pub disable_host_node_id: bool,
    // `disable_update_check` and other accepted-but-inert keys are not kept.
    /// In the order they were applied, directory entries expanded.
    /// Config files that were read, for `/v1/agent/self` and reload.
    pub config_sources: Vec<PathBuf>,
    /// The `cairn agent` arguments this configuration was built from; [`reload`] reuses them.
    pub args: Vec<String>,
    /// Non-fatal findings (unknown or unsupported keys, risky settings), for the agent to log.
    pub warnings: Vec<String>,
}

/// Listener ports (`ports {}`); -1 in Consul disables a listener, here `None`.
/// The defaults are Consul's, so that tools and firewall rules written for Consul work
/// unchanged against a Cairn agent.
#[derive(Clone, Debug)]
pub struct Ports {
    /// HTTP API (8500).
    pub http: Option<u16>,
    /// HTTPS API (disabled unless set; 8501 by convention). Needs a certificate
    /// (`tls.https.cert_file`/`key_file`, or `tls.defaults`).
    pub https: Option<u16>,
    /// DNS (8600).
    pub dns: Option<u16>,
    /// Server RPC and Raft (8300).
    pub server: u16,
    /// LAN gossip (8301).
    pub serf_lan: u16,
    /// WAN gossip (8302; `None` when disabled).
    pub serf_wan: Option<u16>,
    /// gRPC (disabled unless set, also in -dev). No listener serves it yet: a port set here
    /// only takes part in the check that two listeners do not share a port.
    pub grpc: Option<u16>,
}

/// Per-listener addresses (`addresses {}`); empty means `client_addr`.
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    /// HTTP listen addresses.
    pub http: Vec<IpAddr>,
    /// DNS listen addresses.
    pub dns: Vec<IpAddr>,
    /// HTTPS listen addresses.
    pub https: Vec<IpAddr>,
}

/// `dns_config {}` with Consul's defaults.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// `allow_stale` (true).
    pub allow_stale: bool,
    /// `max_stale` (87600h).
    /// Accepted for compatibility: DNS answers always come from the local state (see
    /// `crate::dns`), so neither this nor `allow_stale` changes them yet.
    pub max_stale: Duration,
    /// `node_ttl` (0s).
    pub node_ttl: Duration,
    /// `service_ttl` map: exact names and `prefix*` wildcards, `*` as default.
    /// The longest matching prefix wins over `*`; an exact name wins over any prefix.
    pub service_ttl: BTreeMap<String, Duration>,
    /// `only_passing` (false).
    pub only_passing: bool,
    /// `enable_truncate` (false).
    pub enable_truncate: bool,
    /// `udp_answer_limit` (3).
    /// At least 1, since 0 would leave plain UDP answers empty; the DNS engine also caps
    /// it at 8, as Consul does.
    pub udp_answer_limit: u32,
    /// `a_record_limit` (0: none).
    pub a_record_limit: u32,
    /// `disable_compression` (false).
    pub disable_compression: bool,
    /// `enable_additional_node_meta_txt` (true).
    pub enable_additional_node_meta_txt: bool,
    /// `recursor_timeout` (2s).
    pub recursor_timeout: Duration,
    /// `soa {}`.
    pub soa: Soa,
}

/// SOA record values.
#[derive(Clone, Debug)]
pub struct Soa {
    /// refresh (3600).
    pub refresh: u32,
    /// retry (600).
    pub retry: u32,
    /// expire (86400).
    pub expire: u32,
    /// min_ttl (0).
    pub min_ttl: u32,
}

/// `performance {}`.
#[derive(Clone, Debug)]
pub struct Performance {
    /// `raft_multiplier` (5; 1 in -dev).
    /// Scales Raft's timeouts, 1 to 10 as in Consul: larger values ride out slow or loaded
    /// machines at the cost of slower failure detection.
    pub raft_multiplier: u32,
    /// `leave_drain_time` (5s).
    pub leave_drain_time: Duration,
    /// `rpc_hold_timeout` (7s).
    pub rpc_hold_timeout: Duration,
}

/// `autopilot {}` with Consul's defaults.
#[derive(Clone, Debug)]
pub struct Autopilot {
    /// `cleanup_dead_servers` (true).
    pub cleanup_dead_servers: bool,
    /// `last_contact_threshold` (200ms).
    pub last_contact_threshold: Duration,
    /// `max_trailing_logs` (250).
    pub max_trailing_logs: u32,
    /// `min_quorum` (0).
    pub min_quorum: u32,
    /// `server_stabilization_time` (10s).
    pub server_stabilization_time: Duration,
}

impl Autopilot {
    /// These settings in the replicated form (`/v1/operator/autopilot/configuration`).
    /// Durations are written as Go duration strings, the form Consul's API returns.
    pub fn to_model(&self) -> cairn_catalog::model::AutopilotConfig {
        use cairn_catalog::duration::format_go_duration;
        cairn_catalog::model::AutopilotConfig {
            cleanup_dead_servers: self.cleanup_dead_servers,
            last_contact_threshold: format_go_duration(self.last_contact_threshold),
            max_trailing_logs: u64::from(self.max_trailing_logs),
            min_quorum: self.min_quorum,
            server_stabilization_time: format_go_duration(self.server_stabilization_time),
            ..Default::default()
        }
    }

    /// Settings from the replicated form; durations that do not parse keep these values.
    /// Used after an operator changed them over the API: the replicated values win over the
    /// config file's. A `max_trailing_logs` beyond `u32` saturates rather than wrapping.
    pub fn merged_with(&self, m: &cairn_catalog::model::AutopilotConfig) -> Autopilot {
        use cairn_catalog::duration::parse_go_duration;
        Autopilot {
            cleanup_dead_servers: m.cleanup_dead_servers,
            last_contact_threshold: parse_go_duration(&m.last_contact_threshold)
                .unwrap_or(self.last_contact_threshold),
            max_trailing_logs: u32::try_from(m.max_trailing_logs).unwrap_or(u32::MAX),
            min_quorum: m.min_quorum,
            server_stabilization_time: parse_go_duration(&m.server_stabilization_time)
                .unwrap_or(self.server_stabilization_time),
        }
    }
}

impl Default for Autopilot {
    fn default() -> Self {
        Autopilot {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
        }
    }
}

/// `acl {}`.
///
/// `Debug` by hand: the tokens are secrets and never printed.
#[derive(Clone)]
pub struct AclConfig {
    /// `enabled` (false).
    pub enabled: bool,
    /// `default_policy` (allow).
    pub default_policy: String,
    /// `down_policy` (extend-cache).
    pub down_policy: String,
    /// `enable_key_list_policy` (false): recursive KV reads need `key:list` on the prefix.
    pub enable_key_list_policy: bool,
    /// `enable_token_persistence` (false): tokens set through the API survive restarts.
    pub enable_token_persistence: bool,
    /// `tokens { initial_management, default, agent, ... }`.
    /// Under their current names only: the legacy `master` and `agent_master` are renamed
    /// (to `initial_management` and `agent_recovery`), and empty tokens are left out, since
    /// Consul treats an empty token as not set.
    pub tokens: BTreeMap<String, String>,
}

/// `telemetry {}`.
#[derive(Clone, Debug)]
pub struct Telemetry {
    /// `prometheus_retention_time` (0: Prometheus format refused, as Consul does; 60s in -dev).
    /// Consul sets up its Prometheus sink only when this is positive; the refusal mirrors it.
    pub prometheus_retention_time: Duration,
    /// `disable_hostname`.
    pub disable_hostname: bool,
    /// `metrics_prefix` (consul).
    pub metrics_prefix: String,
}

/// `limits {}`.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `http_max_conns_per_client` (200).
    pub http_max_conns_per_client: u32,
    /// `kv_max_value_size` (512 KiB).
    /// Bounds one KV value: the whole value goes through the Raft log and every server's memory.
    pub kv_max_value_size: u64,
    /// `txn_max_req_len` (512 KiB).
    /// Bounds a transaction body, for the same reason.
    pub txn_max_req_len: u64,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            http: Some(8500),
            https: None,
            dns: Some(8600),
            server: 8300,
            serf_lan: 8301,
            serf_wan: Some(8302),
            grpc: None,
        }
    }
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            allow_stale: true,
            max_stale: Duration::from_secs(87_600 * 3600),
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            only_passing: false,
            enable_truncate: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            disable_compression: false,
            enable_additional_node_meta_txt: true,
            recursor_timeout: Duration::from_secs(2),
            soa: Soa::default(),
        }
    }
}

impl Default for Soa {
    fn default() -> Self {
        Soa {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

impl Default for Performance {
    fn default() -> Self {
        Performance {
            raft_multiplier: 5,
            leave_drain_time: Duration::from_secs(5),
            rpc_hold_timeout: Duration::from_secs(7),
        }
    }
}

impl std::fmt::Debug for AclConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclConfig")
            .field("enabled", &self.enabled)
            .field("default_policy", &self.default_policy)
            .field("down_policy", &self.down_policy)
            .field("enable_key_list_policy", &self.enable_key_list_policy)
            .field("enable_token_persistence", &self.enable_token_persistence)
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            default_policy: "allow".into(),
            down_policy: "extend-cache".into(),
            enable_key_list_policy: false,
            enable_token_persistence: false,
            tokens: BTreeMap::new(),
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            prometheus_retention_time: Duration::ZERO,
            disable_hostname: false,
            metrics_prefix: "consul".into(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_max_conns_per_client: 200,
            kv_max_value_size: 512 * 1024,
            txn_max_req_len: 512 * 1024,
        }
    }
}

/// A configuration that cannot be used; the message names the flag or key.
///
/// `cairn agent -h` is reported as an error too: its message is the help text, and
/// [`ConfigError::is_help`] tells it apart (print it to stdout and exit 0).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// True when this "error" is the answer to `-h` / `-help`: the message is the usage text.
    #[allow(dead_code)]
    pub fn is_help(&self) -> bool {
        self.0.starts_with(HELP_PREFIX)
    }
}

/// The first words of [`usage`]; how [`ConfigError::is_help`] tells the help text from a
/// real error without a second error type in every caller's signature.
const HELP_PREFIX: &str = "Usage: cairn agent";

/// The help text of `cairn agent -h`: every flag with a line of explanation.
#[allow(dead_code)]
pub fn usage() -> String {
    flags::usage()
}

/// Builds the configuration from `cairn agent` arguments (program name and `agent` excluded).
///
/// Reads the config files and directories named by the flags; several problems are reported
/// together, one per line.
pub fn load(args: &[String]) -> Result<Config, ConfigError> {
    let parsed = match flags::parse(args) {
        Ok(parsed) => parsed,
        Err(ParseError::Help) => return Err(ConfigError(flags::usage())),
        Err(ParseError::Bad(msg)) => return Err(ConfigError(msg)),
    };
    let mut report = Report::default();
    let mut merged = Map::new();
    let mut config_sources = Vec::new();
    let flag_origin = Origin::Flags(&parsed.key_flags);

    // Lists from flags first, so that lists in files append to them (as in Consul).
    // Each source is normalized on its own (errors name the source), then merged: objects key
    // by key, arrays appended, scalars replaced by the later source.
    let slices = schema::normalize(&flag_origin, parsed.slices.clone(), &mut report);
    schema::merge(&mut merged, slices);

    // Files and directories in the order given; a directory expands to its entries in lexical
    // order, so the result does not depend on the order the file system lists them in.
    for arg in &parsed.config_paths {
        match file::read_path(&arg.path, parsed.config_format, &mut report.warnings) {
            Ok(files) => {
                for loaded in files {
                    let name = loaded.path.display().to_string();
                    let map = schema::normalize(&Origin::File(&name), loaded.map, &mut report);
                    schema::merge(&mut merged, map);
                    config_sources.push(loaded.path);
                }
            }
            // A file that cannot be read or parsed is reported and the others are still checked,
            // so that every problem shows in one run.
            Err(msg) => report.errors.push(format!("-{}: {msg}", arg.flag)),
        }
    }

    // `-hcl` snippets after the files, numbered from 1 in messages since they have no name.
    for (i, text) in parsed.hcl.iter().enumerate() {
        match file::parse_text(text, Format::Hcl) {
            Ok(map) => {
                let map = schema::normalize(&Origin::Inline(i + 1), map, &mut report);
                schema::merge(&mut merged, map);
            }
            Err(msg) => report.errors.push(format!("-hcl #{}: {msg}", i + 1)),
        }
    }

    // Other flags last: they override everything.
    let values = schema::normalize(&flag_origin, parsed.values.clone(), &mut report);
    schema::merge(&mut merged, values);

    // `build` assumes values of the right type; it only runs on sources that all passed.
    if !report.errors.is_empty() {
        return Err(ConfigError(report.errors.join("\n")));
    }
    tls::apply_legacy(&mut merged, &mut report.warnings);
    build::build(
        &merged,
        build::Inputs {
            dev: parsed.dev,
            args: args.to_vec(),
            config_sources,
            warnings: report.warnings,
        },
    )
}

/// Builds the configuration again from the same arguments as `previous` (for SIGHUP and
/// `PUT /v1/agent/reload`): config files are re-read, flags keep their values. The caller
/// decides which changes it can apply to a running agent.
#[allow(dead_code)]
pub fn reload(previous: &Config) -> Result<Config, ConfigError> {
    load(&previous.args)
}
