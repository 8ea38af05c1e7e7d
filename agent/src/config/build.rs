//! From the merged sources to a [`Config`]: defaults (Consul's, and `-dev`'s), then checks that
//! involve several keys.
//!
//! The merged map has passed the per-source checks, so a value here has the right type; what
//! is left is what one source alone cannot decide: defaults that depend on other keys
//! (`-dev`, `server`), and rules between keys (two listeners on one port, `bootstrap` with
//! `bootstrap_expect`, a data directory outside `-dev`). Errors are collected and reported
//! together; cluster-size warnings only when there is no error, so they do not bury it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use super::schema::ACL_TOKEN_NAMES;
use super::values::{
    as_bool, as_datacenter, as_domain, as_duration, as_encrypt_key, as_int, as_ip, as_ip_list,
    as_log_level, as_node_id, as_port, as_required_port, as_str, as_str_list,
};
use super::{
    AclConfig, Addresses, Autopilot, Config, ConfigError, DnsConfig, Limits, Performance, Ports,
    Telemetry,
};

/// Read access to the merged (already checked) sources by dotted path.
struct View<'a>(&'a Map<String, Value>);

impl<'a> View<'a> {
    /// The value at a dotted path (`dns_config.soa.min_ttl`); `None` when any part is
    /// missing or not a block.
    fn get(&self, path: &str) -> Option<&'a Value> {
        let mut parts = path.split('.');
        let mut cur = self.0.get(parts.next()?)?;
        for part in parts {
            cur = cur.as_object()?.get(part)?;
        }
        Some(cur)
    }

    /// The value at `path` read with `f`, or `None` when not set.
    fn read<T>(
        &self,
        path: &str,
        f: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(path)
            .map(|v| f(v).map_err(|m| ConfigError(format!("{path}: {m}"))))
            .transpose()
    }

    /// A number read into a `u32` field. The schema bounds most of them already; the range
    /// check stays so that a key missing from those bounds cannot wrap around.
    fn u32(&self, path: &str) -> Result<Option<u32>, ConfigError> {
        self.read(path, |v| {
            let i = as_int(v)?;
            u32::try_from(i).map_err(|_| format!("invalid value {i}: out of range"))
        })
    }

    /// A number read into a `u64` field (refusing negatives).
    fn u64(&self, path: &str) -> Result<Option<u64>, ConfigError> {
        self.read(path, |v| {
            let i = as_int(v)?;
            u64::try_from(i).map_err(|_| format!("invalid value {i}: out of range"))
        })
    }

    /// A block of string values; empty when the block is not set.
    fn string_map(&self, path: &str) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut out = BTreeMap::new();
        if let Some(Value::Object(map)) = self.get(path) {
            for (k, v) in map {
                let s = as_str(v).map_err(|m| ConfigError(format!("{path}.{k}: {m}")))?;
                out.insert(k.clone(), s);
            }
        }
        Ok(out)
    }

    /// A list of strings; empty when not set.
    fn list(&self, path: &str) -> Result<Vec<String>, ConfigError> {
        Ok(self.read(path, as_str_list)?.unwrap_or_default())
    }

    /// Service or check definitions, as the schema left them (always a list once normalized).
    fn defs(&self, path: &str) -> Vec<Value> {
        match self.get(path) {
            Some(Value::Array(items)) => items.clone(),
            _ => Vec::new(),
        }
    }
}

/// The machine's host name: `/proc/sys/kernel/hostname`, else `$HOSTNAME`.
///
/// Consul's default node name. `std` has no call for it, and the file needs no unsafe
/// binding to `gethostname`; `$HOSTNAME` covers systems without `/proc`.
fn hostname() -> Option<String> {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_proc
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
}

/// True when a node name can be used in DNS answers (letters, digits, '-', at most 63).
///
/// A name that fails this is only warned about, as Consul does: the node works, but
/// `<node>.node.consul` cannot find it, since a DNS label is at most 63 bytes and names
/// with other characters are not valid host names.
fn dns_compatible(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// What [`build`] needs besides the merged sources.
pub(crate) struct Inputs {
    /// `-dev`.
    /// Decides several defaults: server mode, bootstrap, loopback binding, debug logs.
    pub dev: bool,
    /// The original arguments.
    /// Kept in [`Config::args`] so that a reload rebuilds from the same command line.
    pub args: Vec<String>,
    /// Files that were read.
    pub config_sources: Vec<PathBuf>,
    /// Warnings so far.
    pub warnings: Vec<String>,
}

/// Applies defaults to the merged sources and checks the combination.
///
/// Defaults are Consul's; where `-dev` changes one, the `dev` branch is at the key.
pub(crate) fn build(merged: &Map<String, Value>, inputs: Inputs) -> Result<Config, ConfigError> {
    let v = View(merged);
    let dev = inputs.dev;
    let mut warnings = inputs.warnings;
    let mut errors: Vec<String> = Vec::new();

    // `-dev` is a single server that elects itself, unless the user said otherwise.
    let server = v.read("server", as_bool)?.unwrap_or(dev);
    let mut bootstrap = v.read("bootstrap", as_bool)?.unwrap_or(dev && server);
    let mut bootstrap_expect = v.u32("bootstrap_expect")?.unwrap_or(0);

    let datacenter = v
        .read("datacenter", as_datacenter)?
        .unwrap_or_else(|| "dc1".into());
    // A lone datacenter is its own primary.
    let primary_datacenter = v
        .read("primary_datacenter", as_datacenter)?
        .unwrap_or_else(|| datacenter.clone());

    let node_name = match v.read("node_name", as_str)? {
        Some(name) if !name.trim().is_empty() => name.trim().to_string(),
        // No name given: the host name, as in Consul.
        _ => match hostname() {
            Some(h) => h,
            None => {
                return Err(ConfigError(
                    "node_name: the host name cannot be read; set -node or node_name".into(),
                ));
            }
        },
    };
    if !dns_compatible(&node_name) {
        warnings.push(format!(
            "node_name: {node_name:?} will not be discoverable via DNS: use only letters, \
             digits and '-', at most 63 characters"
        ));
    }
    let node_id = v.read("node_id", as_node_id)?.unwrap_or_default();

    let domain = v
        .read("domain", as_domain)?
        .unwrap_or_else(|| "consul.".into());
    let alt_domain = v.read("alt_domain", as_domain)?.unwrap_or_default();
    // `alt_domain` exists to answer under a second name; the same name twice is a
    // mistake, reported rather than ignored.
    if alt_domain == domain {
        errors.push(format!(
            "alt_domain: {alt_domain:?} is the same as domain; choose another domain"
        ));
    }

    // A development agent stays on loopback; a real one gossips on every interface.
    let default_bind = if dev {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    let bind_addr = v.read("bind_addr", as_ip)?.unwrap_or(default_bind);
    let advertise_addr = v.read("advertise_addr", as_ip)?;
    let advertise_addr_wan = v.read("advertise_addr_wan", as_ip)?;
    for (key, addr) in [
        ("advertise_addr", advertise_addr),
        ("advertise_addr_wan", advertise_addr_wan),
    ] {
        // `0.0.0.0` is fine to bind to but would be gossiped to other agents, none of
        // which could dial it.
        if addr.is_some_and(|a| a.is_unspecified()) {
            errors.push(format!(
                "{key}: cannot be {}: give an address other agents can reach",
                addr.map(|a| a.to_string()).unwrap_or_default()
            ));
        }
    }
    let client_addrs = v
        .read("client_addr", as_ip_list)?
        .unwrap_or_else(|| vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);

    let defaults = Ports::default();
    let ports = Ports {
        http: v.read("ports.http", as_port)?.unwrap_or(defaults.http),
        https: v.read("ports.https", as_port)?.unwrap_or(defaults.https),
        dns: v.read("ports.dns", as_port)?.unwrap_or(defaults.dns),
        server: v
            .read("ports.server", as_required_port)?
            .unwrap_or(defaults.server),
        serf_lan: v
            .read("ports.serf_lan", as_required_port)?
            .unwrap_or(defaults.serf_lan),
        serf_wan: v
            .read("ports.serf_wan", as_port)?
            .unwrap_or(defaults.serf_wan),
        grpc: v.read("ports.grpc", as_port)?.unwrap_or(defaults.grpc),
    };
    // Two listeners on one port would fail when the second binds, with a message that does
    // not say which key to change. The server RPC and WAN gossip ports only count for a
    // server, since a client does not open them.
    let mut used: Vec<(&str, u16)> = Vec::new();
    let listeners = [
        ("ports.http", ports.http),
        ("ports.https", ports.https),
        ("ports.dns", ports.dns),
        ("ports.serf_lan", Some(ports.serf_lan)),
        ("ports.server", Some(ports.server).filter(|_| server)),
        ("ports.serf_wan", ports.serf_wan.filter(|_| server)),
        ("ports.grpc", ports.grpc),
    ];
    for (key, port) in listeners {
        let Some(port) = port else { continue };
        if let Some((other, _)) = used.iter().find(|(_, p)| *p == port) {
            errors.push(format!("{key}: port {port} is already used by {other}"));
        } else {
            used.push((key, port));
        }
    }

    let addresses = Addresses {
        http: v.read("addresses.http", as_ip_list)?.unwrap_or_default(),
        dns: v.read("addresses.dns", as_ip_list)?.unwrap_or_default(),
        https: v.read("addresses.https", as_ip_list)?.unwrap_or_default(),
    };

    let data_dir = v
        .read("data_dir", as_str)?
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from);
    // Everything that must survive a restart (node ID, Raft log, local registrations)
    // lives in the data directory; only `-dev` may run without one, in memory.
    match &data_dir {
        None if !dev => errors.push(
            "data_dir: required: set -data-dir or data_dir (only -dev runs without one)".into(),
        ),
        Some(dir) if dir.exists() && !dir.is_dir() => errors.push(format!(
            "data_dir: {} exists and is not a directory",
            dir.display()
        )),
        _ => {}
    }
    let pid_file = v
        .read("pid_file", as_str)?
        .filter(|s| !s.trim().is_empty())
        .map(PathBuf::from);

    let log_level = v
        .read("log_level", as_log_level)?
        .unwrap_or_else(|| if dev { "debug" } else { "info" }.into());

    // Bootstrap rules (Consul's builder).
    // `bootstrap` lets a server elect itself with no peers; `bootstrap_expect` waits for
    // that many servers. Combining them, or asking a client for either, is an error.
    // One expected server is plain bootstrap, converted before any rule applies, as Consul
    // does: so `-dev -bootstrap-expect 1` and `-server -bootstrap -bootstrap-expect 1` start.
    if bootstrap_expect == 1 {
        warnings.push("BootstrapExpect is set to 1; this is the same as Bootstrap mode.".into());
        bootstrap = true;
        bootstrap_expect = 0;
    }
    if bootstrap_expect > 0 {
        if dev {
            errors.push(
                "bootstrap_expect: not allowed with -dev (a -dev agent bootstraps itself)".into(),
            );
        } else if !server {
            errors.push("bootstrap_expect: requires server mode (-server or server = true)".into());
        } else if bootstrap {
            errors.push(
                "bootstrap_expect: cannot be combined with bootstrap (-bootstrap); use one of them"
                    .into(),
            );
        }
    }
    if bootstrap && !server {
        errors.push("bootstrap: requires server mode (-server or server = true)".into());
    }
    // Consul's own advice on cluster sizes: one expected server is plain bootstrap,
    // and an even number adds a server without adding a tolerated failure (a majority
    // of 4 is 3, so 4 servers tolerate 1 failure, like 3).
    if errors.is_empty() && server && !dev {
        if bootstrap_expect == 2 {
            warnings
                .push("bootstrap_expect = 2: a cluster of 2 servers tolerates no failure".into());
        } else if bootstrap_expect > 2 && bootstrap_expect % 2 == 0 {
            warnings.push(format!(
                "bootstrap_expect = {bootstrap_expect}: an even number of servers tolerates no \
                 more failures than {} servers",
                bootstrap_expect - 1
            ));
        }
        if bootstrap {
            warnings.push(
                "bootstrap = true: this server elects itself; do not enable unless necessary"
                    .into(),
            );
        }
    }

    // The same recursor given twice (a flag and a file) is asked once; order is kept,
    // since recursors are tried in order.
    let mut recursors: Vec<String> = Vec::new();
    for r in v.list("recursors")? {
        if !recursors.contains(&r) {
            recursors.push(r);
        }
    }

    let dns = read_dns(&v)?;
    let perf_defaults = Performance::default();
    let performance = Performance {
        // `-dev` uses Raft's fastest timings: there is one server on loopback.
        raft_multiplier: v.u32("performance.raft_multiplier")?.unwrap_or(if dev {
            1
        } else {
            perf_defaults.raft_multiplier
        }),
        leave_drain_time: v
            .read("performance.leave_drain_time", as_duration)?
            .unwrap_or(perf_defaults.leave_drain_time),
        rpc_hold_timeout: v
            .read("performance.rpc_hold_timeout", as_duration)?
            .unwrap_or(perf_defaults.rpc_hold_timeout),
    };

    let ap = Autopilot::default();
    let autopilot = Autopilot {
        cleanup_dead_servers: v
            .read("autopilot.cleanup_dead_servers", as_bool)?
            .unwrap_or(ap.cleanup_dead_servers),
        last_contact_threshold: v
            .read("autopilot.last_contact_threshold", as_duration)?
            .unwrap_or(ap.last_contact_threshold),
        max_trailing_logs: v
            .u32("autopilot.max_trailing_logs")?
            .unwrap_or(ap.max_trailing_logs),
        min_quorum: v.u32("autopilot.min_quorum")?.unwrap_or(ap.min_quorum),
        server_stabilization_time: v
            .read("autopilot.server_stabilization_time", as_duration)?
            .unwrap_or(ap.server_stabilization_time),
    };
    // Consul's defaults.
    let raft_snapshot_threshold = v.u32("raft_snapshot_threshold")?.unwrap_or(16_384);
    let raft_trailing_logs = v.u32("raft_trailing_logs")?.unwrap_or(10_240);

    let acl_defaults = AclConfig::default();
    let mut tokens = BTreeMap::new();
    for (name, token) in v.string_map("acl.tokens")? {
        // An empty token means "not set", as in Consul.
        if ACL_TOKEN_NAMES.contains(&name.as_str()) && !token.is_empty() {
            tokens.insert(name, token);
        }
    }
    let acl = AclConfig {
        enabled: v
            .read("acl.enabled", as_bool)?
            .unwrap_or(acl_defaults.enabled),
        default_policy: v
            .read("acl.default_policy", as_str)?
            .unwrap_or(acl_defaults.default_policy),
        down_policy: v
            .read("acl.down_policy", as_str)?
            .unwrap_or(acl_defaults.down_policy),
        enable_key_list_policy: v
            .read("acl.enable_key_list_policy", as_bool)?
            .unwrap_or(false),
        enable_token_persistence: v
            .read("acl.enable_token_persistence", as_bool)?
            .unwrap_or(false),
        tokens,
    };

    let enable_script_checks = v.read("enable_script_checks", as_bool)?.unwrap_or(false);
    // Consul warns about this too: with script checks open to the API and no ACLs,
    // registering a check is running a command on this host.
    if enable_script_checks && !acl.enabled {
        warnings.push(
            "enable_script_checks without ACLs lets anyone who reaches the HTTP API run \
             commands on this host; prefer enable_local_script_checks"
                .into(),
        );
    }

    let tel_defaults = Telemetry::default();
    let telemetry = Telemetry {
        prometheus_retention_time: v
            .read("telemetry.prometheus_retention_time", as_duration)?
            // In `-dev` Prometheus scraping works out of the box.
            .unwrap_or(if dev {
                Duration::from_secs(60)
            } else {
                tel_defaults.prometheus_retention_time
            }),
        disable_hostname: v
            .read("telemetry.disable_hostname", as_bool)?
            .unwrap_or(tel_defaults.disable_hostname),
        metrics_prefix: v
            .read("telemetry.metrics_prefix", as_str)?
            .unwrap_or(tel_defaults.metrics_prefix),
    };

    let lim_defaults = Limits::default();
    let limits = Limits {
        http_max_conns_per_client: v
            .u32("limits.http_max_conns_per_client")?
            .unwrap_or(lim_defaults.http_max_conns_per_client),
        kv_max_value_size: v
            .u64("limits.kv_max_value_size")?
            .unwrap_or(lim_defaults.kv_max_value_size),
        txn_max_req_len: v
            .u64("limits.txn_max_req_len")?
            .unwrap_or(lim_defaults.txn_max_req_len),
    };

    // Response headers must be valid HTTP: refused here rather than dropped on every answer.
    if let Some(Value::Object(m)) = v.get("http_config.response_headers") {
        for (name, value) in m {
            let value = value.as_str().unwrap_or_default();
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || axum::http::HeaderValue::from_str(value).is_err()
            {
                errors.push(format!(
                    "http_config.response_headers: {name:?}: not a valid HTTP header"
                ));
            }
        }
    }
    // Cloud auto-join (`provider=aws tag_key=...`) is go-discover's: not built in. Refused by
    // name, since retried as a host name it would fail forever with a confusing DNS error.
    for key in ["start_join", "retry_join", "retry_join_wan"] {
        for entry in v.list(key)? {
            if let Some(provider) = cloud_provider(&entry) {
                errors.push(format!(
                    "{key}: cloud auto-join (provider={provider}) is not supported; list the \
                     servers' addresses or DNS names instead"
                ));
            }
        }
    }

    let tls = match super::tls::read(merged, &mut warnings) {
        Ok(t) => t,
        Err(e) => {
            errors.push(e);
            super::TlsConfig::default()
        }
    };
    if ports.https.is_some() && tls.https.cert_file.is_none() {
        errors.push(
            "ports.https: the HTTPS API needs a certificate: set tls.https (or tls.defaults) \
             cert_file and key_file"
                .into(),
        );
    }

    if !errors.is_empty() {
        return Err(ConfigError(errors.join("\n")));
    }

    Ok(Config {
        dev,
        server,
        bootstrap,
        bootstrap_expect,
        node_name,
        node_id,
        datacenter,
        primary_datacenter,
        domain,
        alt_domain,
        bind_addr,
        advertise_addr,
        advertise_addr_wan,
        client_addrs,
        ports,
        addresses,
        data_dir,
        pid_file,
        log_level,
        log_json: v.read("log_json", as_bool)?.unwrap_or(false),
        ui: v.read("ui_config.enabled", as_bool)?.unwrap_or(dev),
        enable_script_checks,
        enable_local_script_checks: v
            .read("enable_local_script_checks", as_bool)?
            .unwrap_or(false),
        encrypt: v.read("encrypt", as_encrypt_key)?.filter(|k| !k.is_empty()),
        start_join: v.list("start_join")?,
        retry_join: v.list("retry_join")?,
        retry_interval: v
            .read("retry_interval", as_duration)?
            .unwrap_or(Duration::from_secs(30)),
        retry_max: v.u32("retry_max")?.unwrap_or(0),
        retry_join_wan: v.list("retry_join_wan")?,
        retry_interval_wan: v
            .read("retry_interval_wan", as_duration)?
            .unwrap_or(Duration::from_secs(30)),
        retry_max_wan: v.u32("retry_max_wan")?.unwrap_or(0),
        rejoin_after_leave: v.read("rejoin_after_leave", as_bool)?.unwrap_or(false),
        disable_host_node_id: v.read("disable_host_node_id", as_bool)?.unwrap_or(true),
        recursors,
        node_meta: v.string_map("node_meta")?,
        services: v.defs("services"),
        checks: v.defs("checks"),
        dns,
        performance,
        autopilot,
        raft_snapshot_threshold,
        raft_trailing_logs,
        acl,
        encrypt_verify_incoming: v.read("encrypt_verify_incoming", as_bool)?.unwrap_or(true),
        encrypt_verify_outgoing: v.read("encrypt_verify_outgoing", as_bool)?.unwrap_or(true),
        tls,
        telemetry,
        limits,
        // Consul's role-dependent defaults: a server does not leave on a signal, so that a
        // restart does not shrink the Raft configuration.
        leave_on_terminate: v.read("leave_on_terminate", as_bool)?.unwrap_or(!server),
        translate_wan_addrs: v.read("translate_wan_addrs", as_bool)?.unwrap_or(false),
        tagged_addresses: match v.get("tagged_addresses") {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        },
        session_ttl_min: v
            .read("session_ttl_min", as_duration)?
            .unwrap_or(crate::server::SESSION_TTL_MIN),
        default_query_time: v
            .read("default_query_time", as_duration)?
            .unwrap_or(crate::api::options::DEFAULT_WAIT),
        max_query_time: v
            .read("max_query_time", as_duration)?
            .unwrap_or(crate::api::options::MAX_WAIT)
            .min(crate::api::options::MAX_WAIT),
        http_response_headers: match v.get("http_config.response_headers") {
            Some(Value::Object(m)) => m
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        },
        discard_check_output: v.read("discard_check_output", as_bool)?.unwrap_or(false),
        skip_leave_on_interrupt: v
            .read("skip_leave_on_interrupt", as_bool)?
            .unwrap_or(server),
        reconnect_timeout: v
            .read("reconnect_timeout", as_duration)?
            .unwrap_or(Duration::from_secs(72 * 3600)),
        reconnect_timeout_wan: v
            .read("reconnect_timeout_wan", as_duration)?
            .unwrap_or(Duration::from_secs(72 * 3600)),
        config_sources: inputs.config_sources,
        args: inputs.args,
        warnings,
    })
}

/// `dns_config {}`, each key defaulting to Consul's value in [`DnsConfig::default`].
fn read_dns(v: &View<'_>) -> Result<DnsConfig, ConfigError> {
    let d = DnsConfig::default();
    let mut service_ttl = BTreeMap::new();
    if let Some(Value::Object(map)) = v.get("dns_config.service_ttl") {
        // Keys are service names or `prefix*` patterns; the DNS settings sort out which.
        for (name, ttl) in map {
            let ttl = as_duration(ttl)
                .map_err(|m| ConfigError(format!("dns_config.service_ttl.{name}: {m}")))?;
            service_ttl.insert(name.clone(), ttl);
        }
    }
    let b = |key: &str, default: bool| -> Result<bool, ConfigError> {
        Ok(v.read(&format!("dns_config.{key}"), as_bool)?
            .unwrap_or(default))
    };
    let dur = |key: &str, default: Duration| -> Result<Duration, ConfigError> {
        Ok(v.read(&format!("dns_config.{key}"), as_duration)?
            .unwrap_or(default))
    };
    let num = |key: &str, default: u32| -> Result<u32, ConfigError> {
        Ok(v.u32(&format!("dns_config.{key}"))?.unwrap_or(default))
    };
    Ok(DnsConfig {
        allow_stale: b("allow_stale", d.allow_stale)?,
        max_stale: dur("max_stale", d.max_stale)?,
        node_ttl: dur("node_ttl", d.node_ttl)?,
        service_ttl,
        only_passing: b("only_passing", d.only_passing)?,
        enable_truncate: b("enable_truncate", d.enable_truncate)?,
        udp_answer_limit: num("udp_answer_limit", d.udp_answer_limit)?,
        a_record_limit: num("a_record_limit", d.a_record_limit)?,
        disable_compression: b("disable_compression", d.disable_compression)?,
        enable_additional_node_meta_txt: b(
            "enable_additional_node_meta_txt",
            d.enable_additional_node_meta_txt,
        )?,
        recursor_timeout: dur("recursor_timeout", d.recursor_timeout)?,
        soa: super::Soa {
            refresh: num("soa.refresh", d.soa.refresh)?,
            retry: num("soa.retry", d.soa.retry)?,
            expire: num("soa.expire", d.soa.expire)?,
            min_ttl: num("soa.min_ttl", d.soa.min_ttl)?,
        },
    })
}

/// The provider of a go-discover auto-join string (`provider=aws region=... tag_key=...`).
fn cloud_provider(entry: &str) -> Option<&str> {
    entry
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("provider="))
}
