//! The configuration keys Cairn knows, their types, and the per-source check.
//!
//! Each source (the command line, a file, an `-hcl` snippet) is checked on its own against the
//! key table, so that a message can name the file or flag the bad value came from. The check
//! turns values into a canonical JSON shape (booleans are booleans, lists are arrays, a single
//! `service {}` joins `services`), drops unknown keys with a warning, and records errors. The
//! canonical sources are then merged: objects key by key, arrays appended, scalars replaced.
//!
//! The canonical shape is chosen so that this one generic merge gives Consul's precedence:
//! whatever must be replaced by a later source (an address list, a disabled port) is kept as
//! a scalar, and only what Consul appends (`retry_join`, `services`, ...) is an array.
//!
//! A key Consul knows but Cairn does not implement warns by name and is ignored, so a
//! configuration written for Consul starts; a key nobody knows fails start-up with Consul's
//! `invalid config key` (as `consul validate` and Consul's agent do), since ignoring a typo
//! would run another configuration than the one written.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::values::{self, show};

/// The type of a configuration key.
#[derive(Debug)]
pub(crate) enum Kind {
    /// `true`/`false` (or a Go boolean string).
    Bool,
    /// Any string.
    Str,
    /// A whole number within bounds.
    Uint { min: u64, max: u64 },
    /// A port; -1 (or 0) disables the listener.
    Port,
    /// A port that must be set.
    RequiredPort,
    /// A Go duration string.
    Duration,
    /// A Go duration string of at least this much.
    DurationAtLeast(Duration),
    /// `trace`, `debug`, `info`, `warn`, `error`.
    LogLevel,
    /// One IP address.
    Ip,
    /// IP addresses separated by spaces.
    IpList,
    /// A list of strings (appended across sources).
    StrList,
    /// DNS recursors (IP with optional port).
    Recursors,
    /// `node_meta`: a string map with Consul's key rules.
    NodeMeta,
    /// A map of durations (`service_ttl`).
    DurationMap,
    /// A map of strings (`http_config.response_headers`).
    StrMap,
    /// One of a few words.
    OneOf(&'static [&'static str]),
    /// A datacenter name (lowercased).
    Datacenter,
    /// A DNS domain.
    Domain,
    /// A UUID.
    NodeId,
    /// A base64 gossip key.
    EncryptKey,
    /// A nested block with its own keys.
    Object(&'static [Field]),
    /// One service or check definition, kept as written; `true` for services.
    Def { service: bool },
    /// A list of definitions; `true` for services.
    DefList { service: bool },
    /// Accepted and ignored without a word (Consul options that have no meaning here).
    Ignored,
    /// A Consul option Cairn does not implement yet: ignored with a warning.
    Unsupported,
}

/// One key of a block.
#[derive(Debug)]
pub(crate) struct Field {
    /// The key as written in JSON and HCL (snake case).
    pub name: &'static str,
    /// How its value is checked and canonicalized.
    pub kind: Kind,
}

/// Short constructor, so that the tables below read as one key per line.
const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// A number that must fit the `u32` fields of [`super::Config`], so `build` never has to
/// report an overflow the per-source check could have named with its file.
const fn uint32(min: u64) -> Kind {
    Kind::Uint {
        min,
        max: u32::MAX as u64,
    }
}

/// `ports {}`. LAN gossip and server RPC cannot be disabled: no agent takes part in a cluster
/// without gossip, and no server without RPC.
const PORTS: &[Field] = &[
    f("http", Kind::Port),
    f("https", Kind::Port),
    f("dns", Kind::Port),
    f("server", Kind::RequiredPort),
    f("serf_lan", Kind::RequiredPort),
    f("serf_wan", Kind::Port),
    f("grpc", Kind::Port),
    f("grpc_tls", Kind::Unsupported),
    f("sidecar_min_port", Kind::Unsupported),
    f("sidecar_max_port", Kind::Unsupported),
    f("expose_min_port", Kind::Unsupported),
    f("expose_max_port", Kind::Unsupported),
];

/// `addresses {}`: per-listener overrides of `client_addr`, for the listeners Cairn has.
const ADDRESSES: &[Field] = &[
    f("http", Kind::IpList),
    f("dns", Kind::IpList),
    f("https", Kind::IpList),
    f("grpc", Kind::Unsupported),
    f("grpc_tls", Kind::Unsupported),
];

/// `ui_config {}`; only `enabled` is implemented.
const UI_CONFIG: &[Field] = &[
    f("enabled", Kind::Bool),
    f("dir", Kind::Unsupported),
    f("content_path", Kind::Unsupported),
    f("metrics_provider", Kind::Unsupported),
    f("metrics_provider_files", Kind::Unsupported),
    f("metrics_provider_options_json", Kind::Unsupported),
    f("metrics_proxy", Kind::Unsupported),
    f("dashboard_url_templates", Kind::Unsupported),
];

/// `dns_config { soa {} }`: the timers of the SOA record the DNS server answers with.
const SOA: &[Field] = &[
    f("refresh", uint32(0)),
    f("retry", uint32(0)),
    f("expire", uint32(0)),
    f("min_ttl", uint32(0)),
];

/// `dns_config {}`. `udp_answer_limit` is at least 1 so that plain UDP answers are never
/// empty.
const DNS_CONFIG: &[Field] = &[
    f("allow_stale", Kind::Bool),
    f("max_stale", Kind::Duration),
    f("node_ttl", Kind::Duration),
    f("service_ttl", Kind::DurationMap),
    f("only_passing", Kind::Bool),
    f("enable_truncate", Kind::Bool),
    f("udp_answer_limit", uint32(1)),
    f("a_record_limit", uint32(0)),
    f("disable_compression", Kind::Bool),
    f("enable_additional_node_meta_txt", Kind::Bool),
    f("recursor_timeout", Kind::Duration),
    f("soa", Kind::Object(SOA)),
    f("recursor_strategy", Kind::Unsupported),
    f("use_cache", Kind::Unsupported),
    f("cache_max_age", Kind::Unsupported),
    f("prefer_namespace", Kind::Unsupported),
];

/// `autopilot {}`: the initial settings; operators may change them later over the API.
const AUTOPILOT: &[Field] = &[
    f("cleanup_dead_servers", Kind::Bool),
    f("last_contact_threshold", Kind::Duration),
    f("max_trailing_logs", uint32(0)),
    f("min_quorum", uint32(0)),
    f("server_stabilization_time", Kind::Duration),
    f("redundancy_zone_tag", Kind::Unsupported),
    f("disable_upgrade_migration", Kind::Unsupported),
    f("upgrade_version_tag", Kind::Unsupported),
];

/// `performance {}`. `raft_multiplier` is bounded to 1..=10 as in Consul.
const PERFORMANCE: &[Field] = &[
    f("raft_multiplier", Kind::Uint { min: 1, max: 10 }),
    f("leave_drain_time", Kind::Duration),
    f("rpc_hold_timeout", Kind::Duration),
];

/// Canonical ACL token names (after aliases are resolved).
///
/// `build` keeps only these, so code reading tokens never has to know the legacy names.
pub(crate) const ACL_TOKEN_NAMES: &[&str] = &[
    "initial_management",
    "default",
    "agent",
    "agent_recovery",
    "replication",
    "config_file_service_registration",
    "dns",
];

/// `acl { tokens {} }`, legacy names included: `master` and `agent_master` are the names
/// before Consul 1.11 for `initial_management` and `agent_recovery`, and are renamed by
/// [`normalize`].
const ACL_TOKENS: &[Field] = &[
    f("initial_management", Kind::Str),
    f("master", Kind::Str),
    f("default", Kind::Str),
    f("agent", Kind::Str),
    f("agent_recovery", Kind::Str),
    f("agent_master", Kind::Str),
    f("replication", Kind::Str),
    f("config_file_service_registration", Kind::Str),
    f("dns", Kind::Str),
];

const ACL: &[Field] = &[
    f("enabled", Kind::Bool),
    f("default_policy", Kind::OneOf(&["allow", "deny"])),
    f(
        "down_policy",
        Kind::OneOf(&["allow", "deny", "extend-cache", "async-cache"]),
    ),
    f("tokens", Kind::Object(ACL_TOKENS)),
    f("enable_token_persistence", Kind::Bool),
    f("enable_token_replication", Kind::Unsupported),
    f("enable_key_list_policy", Kind::Bool),
    // Caches of non-authoritative resolvers; Cairn's servers drop compiled tokens when the
    // ACL tables change instead, so these only need to be valid durations.
    f("token_ttl", Kind::Duration),
    f("policy_ttl", Kind::Duration),
    f("role_ttl", Kind::Duration),
];

/// Consul's legacy top-level ACL keys and where each now lives (`acl.` paths), read with
/// Consul's deprecation warning; the new key wins when a source sets both.
const LEGACY_ACL: &[(&str, &str)] = &[
    ("acl_default_policy", "default_policy"),
    ("acl_down_policy", "down_policy"),
    ("acl_ttl", "token_ttl"),
    ("acl_enable_key_list_policy", "enable_key_list_policy"),
    ("acl_master_token", "tokens.initial_management"),
    ("acl_agent_master_token", "tokens.agent_recovery"),
    ("acl_agent_token", "tokens.agent"),
    ("acl_token", "tokens.default"),
    ("acl_replication_token", "tokens.replication"),
];

const TELEMETRY: &[Field] = &[
    f("prometheus_retention_time", Kind::Duration),
    f("disable_hostname", Kind::Bool),
    f("metrics_prefix", Kind::Str),
    f("statsd_address", Kind::Unsupported),
    f("statsite_address", Kind::Unsupported),
    f("dogstatsd_addr", Kind::Unsupported),
    f("dogstatsd_tags", Kind::Unsupported),
    f("circonus_api_token", Kind::Unsupported),
    f("disable_compat_1.9", Kind::Ignored),
];

const LIMITS: &[Field] = &[
    f("http_max_conns_per_client", uint32(0)),
    f(
        "kv_max_value_size",
        Kind::Uint {
            min: 1,
            max: u64::MAX,
        },
    ),
    f(
        "txn_max_req_len",
        Kind::Uint {
            min: 1,
            max: u64::MAX,
        },
    ),
    f("rpc_max_conns_per_client", Kind::Unsupported),
    f("rpc_rate", Kind::Unsupported),
    f("rpc_max_burst", Kind::Unsupported),
    f("rpc_handshake_timeout", Kind::Unsupported),
    f("rpc_client_timeout", Kind::Unsupported),
    f("request_limits", Kind::Unsupported),
];

/// `http_config {}`.
const HTTP_CONFIG: &[Field] = &[
    f("response_headers", Kind::StrMap),
    f("allow_write_http_from", Kind::Unsupported),
    f("block_endpoints", Kind::Unsupported),
    f("max_header_bytes", Kind::Unsupported),
    f("use_cache", Kind::Unsupported),
];

/// Every top-level key.
///
/// Both spellings of a few keys are accepted (`ui` and `ui_config.enabled`, `service` and
/// `services`, `start_join_wan` and `retry_join_wan`); [`normalize`] folds each pair into
/// one key within its source.
pub(crate) const TOP: &[Field] = &[
    f("datacenter", Kind::Datacenter),
    f("primary_datacenter", Kind::Datacenter),
    // Legacy ACL keys, folded into `acl {}` by `normalize`.
    f("acl_datacenter", Kind::Datacenter),
    f("acl_default_policy", Kind::OneOf(&["allow", "deny"])),
    f(
        "acl_down_policy",
        Kind::OneOf(&["allow", "deny", "extend-cache", "async-cache"]),
    ),
    f("acl_ttl", Kind::Duration),
    f("acl_enable_key_list_policy", Kind::Bool),
    f("acl_master_token", Kind::Str),
    f("acl_agent_master_token", Kind::Str),
    f("acl_agent_token", Kind::Str),
    f("acl_token", Kind::Str),
    f("acl_replication_token", Kind::Str),
    f("enable_acl_replication", Kind::Unsupported),
    f("node_name", Kind::Str),
    f("node_id", Kind::NodeId),
    f("disable_host_node_id", Kind::Bool),
    f("server", Kind::Bool),
    f("bootstrap", Kind::Bool),
    f("bootstrap_expect", uint32(0)),
    f("bind_addr", Kind::Ip),
    f("client_addr", Kind::IpList),
    f("advertise_addr", Kind::Ip),
    f("advertise_addr_wan", Kind::Ip),
    f("ports", Kind::Object(PORTS)),
    f("addresses", Kind::Object(ADDRESSES)),
    f("data_dir", Kind::Str),
    f("pid_file", Kind::Str),
    f("log_level", Kind::LogLevel),
    f("log_json", Kind::Bool),
    f("ui", Kind::Bool),
    f("ui_config", Kind::Object(UI_CONFIG)),
    f("enable_script_checks", Kind::Bool),
    f("enable_local_script_checks", Kind::Bool),
    f("encrypt", Kind::EncryptKey),
    f("start_join", Kind::StrList),
    f("retry_join", Kind::StrList),
    f("retry_interval", Kind::Duration),
    f("retry_max", uint32(0)),
    f("start_join_wan", Kind::StrList),
    f("retry_join_wan", Kind::StrList),
    f("retry_interval_wan", Kind::Duration),
    f("retry_max_wan", uint32(0)),
    f("rejoin_after_leave", Kind::Bool),
    f("recursors", Kind::Recursors),
    f("domain", Kind::Domain),
    f("alt_domain", Kind::Domain),
    f("node_meta", Kind::NodeMeta),
    f("service", Kind::Def { service: true }),
    f("services", Kind::DefList { service: true }),
    f("check", Kind::Def { service: false }),
    f("checks", Kind::DefList { service: false }),
    f("dns_config", Kind::Object(DNS_CONFIG)),
    f("performance", Kind::Object(PERFORMANCE)),
    f("autopilot", Kind::Object(AUTOPILOT)),
    f("raft_snapshot_threshold", uint32(1)),
    f("raft_trailing_logs", uint32(0)),
    f("acl", Kind::Object(ACL)),
    f("telemetry", Kind::Object(TELEMETRY)),
    f("limits", Kind::Object(LIMITS)),
    f("leave_on_terminate", Kind::Bool),
    f("translate_wan_addrs", Kind::Bool),
    f("default_query_time", Kind::Duration),
    f("session_ttl_min", Kind::Duration),
    f("tagged_addresses", Kind::StrMap),
    f("max_query_time", Kind::Duration),
    f("skip_leave_on_interrupt", Kind::Bool),
    f(
        "reconnect_timeout",
        // Consul's minimum.
        Kind::DurationAtLeast(Duration::from_secs(8 * 3600)),
    ),
    // Accepted, no effect here.
    f("disable_update_check", Kind::Ignored),
    f("disable_anonymous_signature", Kind::Ignored),
    f("disable_keyring_file", Kind::Ignored),
    // Consul features Cairn does not have yet.
    // TLS (`super::tls`): the block, and Consul's deprecated top-level keys, moved into the
    // block by `tls::apply_legacy` with Consul's warnings.
    f("tls", Kind::Object(super::tls::TLS)),
    f("ca_file", Kind::Str),
    f("ca_path", Kind::Str),
    f("cert_file", Kind::Str),
    f("key_file", Kind::Str),
    f("tls_min_version", Kind::Str),
    f("tls_cipher_suites", Kind::Str),
    f("tls_prefer_server_cipher_suites", Kind::Bool),
    f("verify_incoming", Kind::Bool),
    f("verify_incoming_rpc", Kind::Bool),
    f("verify_incoming_https", Kind::Bool),
    f("verify_outgoing", Kind::Bool),
    f("verify_server_hostname", Kind::Bool),
    // Consul features Cairn does not have yet.
    f("auto_encrypt", Kind::Unsupported),
    f("auto_config", Kind::Unsupported),
    f("connect", Kind::Unsupported),
    f("peering", Kind::Unsupported),
    f("config_entries", Kind::Unsupported),
    f("gossip_lan", Kind::Unsupported),
    f("gossip_wan", Kind::Unsupported),
    f("watches", Kind::Unsupported),
    f("raft_protocol", Kind::Unsupported),
    f("raft_logstore", Kind::Unsupported),
    f("raft_snapshot_interval", Kind::Unsupported),
    f("log_file", Kind::Unsupported),
    f("log_rotate_bytes", Kind::Unsupported),
    f("log_rotate_duration", Kind::Unsupported),
    f("log_rotate_max_files", Kind::Unsupported),
    f("enable_syslog", Kind::Unsupported),
    f("syslog_facility", Kind::Unsupported),
    f("http_config", Kind::Object(HTTP_CONFIG)),
    f("check_output_max_size", Kind::Unsupported),
    f("discard_check_output", Kind::Bool),
    f("serf_lan", Kind::Unsupported),
    f("serf_wan", Kind::Unsupported),
    f("enable_debug", Kind::Unsupported),
    f("disable_remote_exec", Kind::Unsupported),
    f(
        "reconnect_timeout_wan",
        Kind::DurationAtLeast(Duration::from_secs(8 * 3600)),
    ),
    f("encrypt_verify_incoming", Kind::Bool),
    f("encrypt_verify_outgoing", Kind::Bool),
    f("segment", Kind::Unsupported),
    f("partition", Kind::Unsupported),
];

/// Where a source came from, for messages.
#[derive(Debug)]
pub(crate) enum Origin<'a> {
    /// A config file (or directory entry).
    File(&'a str),
    /// An `-hcl` snippet (1-based).
    Inline(usize),
    /// The command line; maps key paths to the flag that set them.
    Flags(&'a HashMap<String, &'static str>),
}

/// The outcome of checking sources: errors stop start-up, warnings are reported.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Each one a line of the final message, naming the file or flag and the key.
    pub errors: Vec<String>,
    /// Passed on to [`super::Config::warnings`], for the agent to log at start-up.
    pub warnings: Vec<String>,
}

/// Checks the keys of one source, recording its problems in `report`.
struct Checker<'a, 'r> {
    origin: &'a Origin<'a>,
    report: &'r mut Report,
}

impl Checker<'_, '_> {
    /// The prefix of a message about this source.
    fn place(&self) -> String {
        match self.origin {
            Origin::File(name) => format!("{name}: "),
            Origin::Inline(n) => format!("-hcl #{n}: "),
            Origin::Flags(_) => "command line: ".into(),
        }
    }

    /// The flag that set `path` (or one of its parents), if this source is the command line.
    fn flag_for(&self, path: &str) -> Option<&'static str> {
        let Origin::Flags(map) = self.origin else {
            return None;
        };
        let mut p = path;
        loop {
            if let Some(flag) = map.get(p) {
                return Some(flag);
            }
            // Walk up: `node_meta.rack` was set by `-node-meta`, which the map records
            // under `node_meta`; a list index (`services[0]`) is cut the same way.
            p = &p[..p.rfind(['.', '['])?];
        }
    }

    /// Records an error. For a flag the message starts with the flag the user typed and
    /// keeps the key in parentheses; otherwise it starts with the source and the key.
    fn error(&mut self, path: &str, msg: String) {
        let text = match self.flag_for(path) {
            Some(flag) => format!("-{flag}: {msg} ({path})"),
            None => format!("{}{path}: {msg}", self.place()),
        };
        self.report.errors.push(text);
    }

    /// Records an error about a key that is not Cairn's nor Consul's, in Consul's words,
    /// prefixed with the source.
    fn error_plain(&mut self, text: String) {
        let place = self.place();
        self.report.errors.push(format!("{place}{text}"));
    }

    fn warn(&mut self, text: String) {
        let place = self.place();
        self.report.warnings.push(format!("{place}{text}"));
    }

    /// Checks the keys of one block against `fields`, keeping the ones that pass.
    fn object(
        &mut self,
        path: &str,
        fields: &[Field],
        map: Map<String, Value>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, value) in map {
            let sub = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let Some(field) = fields.iter().find(|fl| fl.name == key) else {
                // A key Consul has is a feature Cairn lacks: named, and the agent still starts.
                // Any other key is a mistake (a typo, a misplaced block), refused as Consul
                // refuses it: silently ignoring it would run a configuration other than the
                // one written.
                if super::consul_keys::known(&sub) {
                    self.warn(format!(
                        "config key {sub:?} is not supported by Cairn yet (ignored)"
                    ));
                } else {
                    self.error_plain(format!("invalid config key {sub}"));
                }
                continue;
            };
            match field.kind {
                // Dropped silently: these Consul options (`disable_update_check`, ...) have no
                // meaning here, and a warning on every start would be noise.
                Kind::Ignored => {}
                Kind::Unsupported => self.warn(format!(
                    "config key {sub:?} is not supported by Cairn yet (ignored)"
                )),
                ref kind => {
                    if let Some(v) = self.value(&sub, kind, value) {
                        out.insert(key, v);
                    }
                }
            }
        }
        out
    }

    /// Checks one value; `None` when it was refused (the error is recorded).
    fn value(&mut self, path: &str, kind: &Kind, v: Value) -> Option<Value> {
        let result: Result<Value, String> = match kind {
            Kind::Bool => values::as_bool(&v).map(Value::Bool),
            Kind::Str => values::as_str(&v).map(Value::String),
            Kind::Uint { min, max } => values::as_uint(&v, *min, *max).map(Value::from),
            // A disabled port stays in the map as -1: it must replace a port an earlier
            // source set, which a missing key would not.
            Kind::Port => values::as_port(&v).map(|p| p.map_or(Value::from(-1), Value::from)),
            Kind::RequiredPort => values::as_required_port(&v).map(Value::from),
            // Durations are only checked here and kept as written; `build` parses them.
            Kind::Duration => values::as_duration(&v).map(|_| v.clone()),
            Kind::DurationAtLeast(min) => values::as_duration(&v).and_then(|d| {
                if d >= *min {
                    Ok(v.clone())
                } else {
                    Err(format!(
                        "invalid value {}: must be at least {}",
                        show(&v),
                        cairn_catalog::duration::format_go_duration(*min)
                    ))
                }
            }),
            Kind::LogLevel => values::as_log_level(&v).map(Value::String),
            Kind::Ip => values::as_ip(&v).map(|ip| Value::String(ip.to_string())),
            // Kept as one space-separated string, not an array: a later source's
            // `client_addr` replaces an earlier one, and the merge appends arrays.
            Kind::IpList => values::as_ip_list(&v).map(|ips| {
                let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
                Value::String(list.join(" "))
            }),
            Kind::StrList => values::as_str_list(&v).map(Value::from),
            Kind::Recursors => values::as_str_list(&v).and_then(|list| {
                list.into_iter()
                    .map(|r| values::as_recursor(&Value::String(r)))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::from)
            }),
            Kind::NodeMeta => return self.str_map(path, v),
            Kind::DurationMap => return self.duration_map(path, v),
            Kind::StrMap => return self.plain_map(path, v),
            Kind::OneOf(allowed) => values::as_one_of(&v, allowed).map(Value::String),
            Kind::Datacenter => values::as_datacenter(&v).map(Value::String),
            Kind::Domain => values::as_domain(&v).map(Value::String),
            Kind::NodeId => values::as_node_id(&v).map(Value::String),
            Kind::EncryptKey => values::as_encrypt_key(&v).map(Value::String),
            Kind::Object(fields) => return self.block(path, fields, v),
            // HCL: `service {} service {}` arrives as a list.
            Kind::Def { service } if v.is_array() => return self.def_list(path, *service, v),
            Kind::Def { service } => return self.def(path, *service, v),
            Kind::DefList { service } => return self.def_list(path, *service, v),
            Kind::Ignored | Kind::Unsupported => return None,
        };
        match result {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(path, msg);
                None
            }
        }
    }

    /// A nested block. HCL repeats of a block (`ports {} ports {}`) arrive as a list of
    /// objects and are merged in order.
    fn block(&mut self, path: &str, fields: &[Field], v: Value) -> Option<Value> {
        let map = match v {
            Value::Object(map) => map,
            Value::Array(items) if items.iter().all(Value::is_object) => {
                let mut merged = Map::new();
                for item in items {
                    if let Value::Object(m) = item {
                        merge(&mut merged, m);
                    }
                }
                merged
            }
            other => {
                self.error(
                    path,
                    format!("invalid value {}: expected a block of keys", show(&other)),
                );
                return None;
            }
        };
        Some(Value::Object(self.object(path, fields, map)))
    }

    /// A map whose every entry `check` turns into its kept value or an error text; a bad
    /// entry is an error naming its key, and the other entries are still checked.
    fn map_of(
        &mut self,
        path: &str,
        what: &str,
        v: Value,
        check: impl Fn(&str, Value) -> Result<Value, String>,
    ) -> Option<Value> {
        let Value::Object(map) = v else {
            self.error(
                path,
                format!("invalid value {}: expected a map of {what}", show(&v)),
            );
            return None;
        };
        let mut out = Map::new();
        for (key, value) in map {
            match check(&key, value) {
                Ok(kept) => {
                    out.insert(key, kept);
                }
                Err(msg) => self.error(&format!("{path}.{key}"), msg),
            }
        }
        Some(Value::Object(out))
    }

    /// `node_meta`: a map of strings under Consul's key and value rules.
    fn str_map(&mut self, path: &str, v: Value) -> Option<Value> {
        self.map_of(path, "strings", v, |key, value| {
            let s = values::as_str(&value)?;
            match values::node_meta_problem(key, &s) {
                Some(problem) => Err(problem),
                None => Ok(Value::String(s)),
            }
        })
    }

    /// `service_ttl`: a map of durations, kept as written; `build` parses them.
    fn duration_map(&mut self, path: &str, v: Value) -> Option<Value> {
        self.map_of(path, "durations", v, |_, value| {
            values::as_duration(&value).map(|_| value)
        })
    }

    /// A map of strings, kept with its keys as written (no rules on the keys).
    fn plain_map(&mut self, path: &str, v: Value) -> Option<Value> {
        self.map_of(path, "strings", v, |_, value| match value {
            Value::String(_) => Ok(value),
            other => Err(format!("invalid value {}: expected a string", show(&other))),
        })
    }

    /// One service or check definition: an object, kept with its keys as written.
    ///
    /// The agent decodes definitions with the same code as the HTTP registration endpoints,
    /// which accept Consul's key spellings (`Name`, `name`, ...), so only the presence of a
    /// name is checked here; the rest is checked when the agent decodes the definition.
    fn def(&mut self, path: &str, service: bool, v: Value) -> Option<Value> {
        let Value::Object(mut map) = v else {
            let what = if service { "service" } else { "check" };
            self.error(
                path,
                format!(
                    "invalid value {}: expected a {what} definition (an object)",
                    show(&v)
                ),
            );
            return None;
        };
        if !map.keys().any(|k| k.eq_ignore_ascii_case("name")) {
            let what = if service { "service" } else { "check" };
            self.error(path, format!("a {what} definition needs a name"));
            return None;
        }
        if service {
            // HCL: several `check {}` blocks inside a service arrive as a list; they belong in
            // `checks`, which the registration decoder expects to be a list.
            let check_key = map
                .keys()
                .find(|k| k.eq_ignore_ascii_case("check"))
                .cloned();
            if let Some(key) = check_key
                && map.get(&key).is_some_and(Value::is_array)
                && let Some(Value::Array(list)) = map.remove(&key)
            {
                let checks_key = map
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case("checks"))
                    .cloned()
                    .unwrap_or_else(|| "checks".into());
                match map.entry(checks_key) {
                    serde_json::map::Entry::Occupied(mut o) => {
                        if let Value::Array(existing) = o.get_mut() {
                            existing.extend(list);
                        } else {
                            self.error(path, "checks: expected a list of check definitions".into());
                            return None;
                        }
                    }
                    serde_json::map::Entry::Vacant(e) => {
                        e.insert(Value::Array(list));
                    }
                }
            }
        }
        Some(Value::Object(map))
    }

    /// A list of definitions; a single object is taken as a list of one. Each is checked
    /// under its index (`services[1]`), so that a message points at the right one.
    fn def_list(&mut self, path: &str, service: bool, v: Value) -> Option<Value> {
        let items = match v {
            Value::Array(items) => items,
            Value::Object(_) => vec![v],
            other => {
                self.error(
                    path,
                    format!(
                        "invalid value {}: expected a list of definitions",
                        show(&other)
                    ),
                );
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if let Some(def) = self.def(&format!("{path}[{i}]"), service, item) {
                out.push(def);
            }
        }
        Some(Value::Array(out))
    }
}

/// Checks one source and returns it in canonical form (see the module docs).
pub(crate) fn normalize(
    origin: &Origin<'_>,
    map: Map<String, Value>,
    report: &mut Report,
) -> Map<String, Value> {
    let mut checker = Checker { origin, report };
    let mut out = checker.object("", TOP, map);

    // Aliases, resolved within the source so that precedence between sources holds.
    // Within one source the canonical spelling wins over the alias (`or_insert`): a file
    // that sets both `ui` and `ui_config.enabled` means the latter.
    if let Some(ui) = out.remove("ui") {
        let ui_config = out
            .entry("ui_config")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = ui_config {
            m.entry("enabled").or_insert(ui);
        }
    }
    // A singular key joins its list after the list's own entries from this source.
    for (single, list) in [
        ("service", "services"),
        ("check", "checks"),
        ("start_join_wan", "retry_join_wan"),
    ] {
        if let Some(v) = out.remove(single) {
            let items = match v {
                Value::Array(items) => items,
                other => vec![other],
            };
            let slot = out.entry(list).or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(existing) = slot {
                existing.extend(items);
            }
        }
    }
    // `acl_datacenter` names the primary datacenter and turns ACLs on.
    if let Some(dc) = out.remove("acl_datacenter") {
        checker.warn(
            "The 'acl_datacenter' field is deprecated. Use the 'primary_datacenter' field instead."
                .into(),
        );
        out.entry("primary_datacenter").or_insert(dc);
        if let Value::Object(acl) = out
            .entry("acl")
            .or_insert_with(|| Value::Object(Map::new()))
        {
            acl.entry("enabled").or_insert(Value::Bool(true));
        }
    }
    for (old, new) in LEGACY_ACL {
        let Some(v) = out.remove(*old) else {
            continue;
        };
        checker.warn(format!(
            "The '{old}' field is deprecated. Use the 'acl.{new}' field instead."
        ));
        let Value::Object(acl) = out
            .entry("acl")
            .or_insert_with(|| Value::Object(Map::new()))
        else {
            continue;
        };
        match new.split_once('.') {
            Some((block, key)) => {
                if let Value::Object(b) = acl
                    .entry(block)
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    b.entry(key).or_insert(v);
                }
            }
            None => {
                acl.entry(*new).or_insert(v);
            }
        }
    }
    if let Some(Value::Object(acl)) = out.get_mut("acl")
        && let Some(Value::Object(tokens)) = acl.get_mut("tokens")
    {
        for (old, new) in [
            ("master", "initial_management"),
            ("agent_master", "agent_recovery"),
        ] {
            if let Some(v) = tokens.remove(old) {
                tokens.entry(new).or_insert(v);
            }
        }
    }
    out
}

/// Merges `from` into `into`: objects key by key, arrays appended, anything else replaced.
///
/// Applied source after source in precedence order, this is all of Consul's merge rules,
/// given the canonical shapes [`normalize`] produces.
pub(crate) fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}
