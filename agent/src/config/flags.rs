//! `cairn agent` flags, parsed as Go's `flag` package does: `-name`, `--name`, `-name=value`,
//! `-name value`; boolean flags take no separate argument (`-dev`, `-dev=false`); parsing stops
//! at `--`. The flags are table-driven: each one either sets a config key (so it goes through the
//! same checks as config files) or steers the loading itself (`-dev`, `-config-file`, ...).

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::file::Format;
use super::values::parse_go_bool;

/// What a flag does.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// `-dev`.
    Dev,
    /// `-config-file` / `-config-dir` (one ordered list, as in Consul).
    ConfigPath,
    /// `-config-format`.
    ConfigFormat,
    /// `-hcl`.
    Hcl,
    /// Sets a config key (dotted path); the last use wins.
    Key(&'static str),
    /// Appends to a list config key.
    List(&'static str),
    /// `-node-meta key:value`.
    NodeMeta,
}

/// One flag: name without dashes, argument placeholder (`None` for booleans), target, help.
struct Spec {
    name: &'static str,
    arg: Option<&'static str>,
    target: Target,
    help: &'static str,
}

const fn flag(name: &'static str, arg: &'static str, target: Target, help: &'static str) -> Spec {
    Spec {
        name,
        arg: Some(arg),
        target,
        help,
    }
}

const fn switch(name: &'static str, target: Target, help: &'static str) -> Spec {
    Spec {
        name,
        arg: None,
        target,
        help,
    }
}

use Target::{ConfigFormat, ConfigPath, Dev, Hcl, Key, List, NodeMeta};

/// Every flag, in alphabetical order (the order of `-h`).
const FLAGS: &[Spec] = &[
    flag(
        "advertise",
        "addr",
        Key("advertise_addr"),
        "Address other cluster members use to reach this agent (default: the bind address).",
    ),
    flag(
        "advertise-wan",
        "addr",
        Key("advertise_addr_wan"),
        "Address advertised to the WAN pool (default: -advertise).",
    ),
    flag(
        "alt-domain",
        "domain",
        Key("alt_domain"),
        "A second DNS domain to answer for, besides -domain.",
    ),
    flag(
        "bind",
        "addr",
        Key("bind_addr"),
        "Address the cluster listeners (gossip, server RPC) bind to (default 0.0.0.0).",
    ),
    switch(
        "bootstrap",
        Key("bootstrap"),
        "Let this server elect itself without peers. Only for single-server clusters.",
    ),
    flag(
        "bootstrap-expect",
        "n",
        Key("bootstrap_expect"),
        "Number of servers to wait for before the first leader election.",
    ),
    flag(
        "client",
        "addr",
        Key("client_addr"),
        "Address(es), space separated, the HTTP and DNS listeners bind to (default 127.0.0.1).",
    ),
    flag(
        "config-dir",
        "dir",
        ConfigPath,
        "Directory of *.json and *.hcl config files, read in lexical order. Repeatable.",
    ),
    flag(
        "config-file",
        "file",
        ConfigPath,
        "A JSON or HCL config file. Repeatable; later files override earlier ones.",
    ),
    flag(
        "config-format",
        "json|hcl",
        ConfigFormat,
        "Format of all config files, instead of detection by extension.",
    ),
    flag(
        "data-dir",
        "dir",
        Key("data_dir"),
        "Directory for the agent's state. Required except with -dev.",
    ),
    flag(
        "datacenter",
        "dc",
        Key("datacenter"),
        "Datacenter of this agent (default dc1).",
    ),
    switch(
        "dev",
        Dev,
        "Development mode: an in-memory single-server cluster on loopback, UI on, debug logs.",
    ),
    switch(
        "disable-host-node-id",
        Key("disable_host_node_id"),
        "Generate a random node ID instead of deriving one from the host.",
    ),
    flag(
        "dns-port",
        "port",
        Key("ports.dns"),
        "DNS port (default 8600; -1 disables DNS).",
    ),
    flag(
        "domain",
        "domain",
        Key("domain"),
        "DNS domain to answer for (default consul.).",
    ),
    switch(
        "enable-local-script-checks",
        Key("enable_local_script_checks"),
        "Allow script checks defined in local config files only.",
    ),
    switch(
        "enable-script-checks",
        Key("enable_script_checks"),
        "Allow script checks, also registered over the API. Dangerous without ACLs.",
    ),
    flag(
        "encrypt",
        "key",
        Key("encrypt"),
        "Base64 gossip encryption key of 16, 24 or 32 bytes.",
    ),
    flag(
        "grpc-port",
        "port",
        Key("ports.grpc"),
        "gRPC port (disabled by default).",
    ),
    flag(
        "hcl",
        "text",
        Hcl,
        "Inline HCL configuration, applied after the config files. Repeatable.",
    ),
    flag(
        "http-port",
        "port",
        Key("ports.http"),
        "HTTP API port (default 8500; -1 disables it).",
    ),
    flag(
        "https-port",
        "port",
        Key("ports.https"),
        "HTTPS API port (disabled by default).",
    ),
    flag(
        "join",
        "addr",
        List("start_join"),
        "Address of an agent to join at start-up. Repeatable.",
    ),
    flag(
        "join-wan",
        "addr",
        List("retry_join_wan"),
        "Address of a server in another datacenter to join over the WAN. Repeatable.",
    ),
    switch("log-json", Key("log_json"), "Write logs as JSON."),
    flag(
        "log-level",
        "level",
        Key("log_level"),
        "Log level: trace, debug, info, warn or error (default info).",
    ),
    flag(
        "node",
        "name",
        Key("node_name"),
        "Name of this node (default: the hostname).",
    ),
    flag(
        "node-id",
        "uuid",
        Key("node_id"),
        "UUID of this node (default: generated and kept in the data dir).",
    ),
    flag(
        "node-meta",
        "key:value",
        NodeMeta,
        "Metadata pair for this node. Repeatable.",
    ),
    flag(
        "pid-file",
        "file",
        Key("pid_file"),
        "File to write the agent's process ID to.",
    ),
    flag(
        "recursor",
        "addr",
        List("recursors"),
        "Upstream DNS server for names outside the domain. Repeatable.",
    ),
    switch(
        "rejoin",
        Key("rejoin_after_leave"),
        "Rejoin the cluster at start-up even after a graceful leave.",
    ),
    flag(
        "retry-interval",
        "duration",
        Key("retry_interval"),
        "Time between -retry-join attempts (default 30s).",
    ),
    flag(
        "retry-interval-wan",
        "duration",
        Key("retry_interval_wan"),
        "Time between -retry-join-wan attempts (default 30s).",
    ),
    flag(
        "retry-join",
        "addr",
        List("retry_join"),
        "Address of an agent to join, retried until it works. Repeatable.",
    ),
    flag(
        "retry-join-wan",
        "addr",
        List("retry_join_wan"),
        "Address of a WAN server to join, retried until it works. Repeatable.",
    ),
    flag(
        "retry-max",
        "n",
        Key("retry_max"),
        "Maximum -retry-join attempts (default 0: forever).",
    ),
    flag(
        "retry-max-wan",
        "n",
        Key("retry_max_wan"),
        "Maximum -retry-join-wan attempts (default 0: forever).",
    ),
    flag(
        "serf-lan-port",
        "port",
        Key("ports.serf_lan"),
        "LAN gossip port (default 8301).",
    ),
    flag(
        "serf-wan-port",
        "port",
        Key("ports.serf_wan"),
        "WAN gossip port (default 8302; -1 disables it).",
    ),
    switch(
        "server",
        Key("server"),
        "Run as a server: a member of the Raft group holding the cluster state.",
    ),
    flag(
        "server-port",
        "port",
        Key("ports.server"),
        "Server RPC and Raft port (default 8300).",
    ),
    switch(
        "ui",
        Key("ui_config.enabled"),
        "Serve the web UI on the HTTP port.",
    ),
];

/// The help text of `cairn agent -h`.
pub(crate) fn usage() -> String {
    let mut out = String::from(
        "Usage: cairn agent [options]\n\n  \
         Starts a Cairn agent, which runs until it is interrupted. Options are Consul's:\n  \
         -flag, --flag, -flag=value and -flag value all work. Later config files override\n  \
         earlier ones, and flags override config files.\n\nOptions:\n",
    );
    for spec in FLAGS {
        match spec.arg {
            Some(arg) => out.push_str(&format!("\n  -{}=<{arg}>\n", spec.name)),
            None => out.push_str(&format!("\n  -{}\n", spec.name)),
        }
        out.push_str(&format!("      {}\n", spec.help));
    }
    out
}

/// A `-config-file` or `-config-dir` argument.
#[derive(Debug)]
pub(crate) struct ConfigPathArg {
    /// The flag used (`config-file` or `config-dir`).
    pub flag: &'static str,
    /// The path as given.
    pub path: PathBuf,
}

/// The command line, parsed.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// `-dev`.
    pub dev: bool,
    /// `-config-file` and `-config-dir`, in the order given.
    pub config_paths: Vec<ConfigPathArg>,
    /// `-config-format`.
    pub config_format: Option<Format>,
    /// `-hcl` snippets.
    pub hcl: Vec<String>,
    /// List-valued keys set by flags; applied before config files so that file lists append
    /// to them (Consul's order).
    pub slices: Map<String, Value>,
    /// Other keys set by flags; applied last.
    pub values: Map<String, Value>,
    /// Key path → flag name, for messages.
    pub key_flags: HashMap<String, &'static str>,
}

/// Why the command line was refused, or that help was asked for.
#[derive(Debug)]
pub(crate) enum FlagError {
    /// `-h`, `-help`.
    Help,
    /// A bad command line; the message names the flag.
    Bad(String),
}

fn set_path(map: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                set_path(inner, rest, value);
            }
        }
    }
}

/// Parses the arguments that follow `cairn agent`.
pub(crate) fn parse(args: &[String]) -> Result<Parsed, FlagError> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            i += 1;
            break;
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let body = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .unwrap_or(arg);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(FlagError::Bad(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Err(FlagError::Help);
        }
        let Some(spec) = FLAGS.iter().find(|s| s.name == name) else {
            return Err(FlagError::Bad(format!(
                "flag provided but not defined: -{name} (see cairn agent -h)"
            )));
        };
        i += 1;
        let value: Value = match spec.arg {
            None => match inline {
                None => Value::Bool(true),
                Some(v) => Value::Bool(parse_go_bool(v).ok_or_else(|| {
                    FlagError::Bad(format!(
                        "invalid boolean value {v:?} for -{name}: expected true or false"
                    ))
                })?),
            },
            Some(_) => match inline {
                Some(v) => Value::String(v.to_string()),
                None => {
                    let v = args.get(i).ok_or_else(|| {
                        FlagError::Bad(format!("flag needs an argument: -{name}"))
                    })?;
                    i += 1;
                    Value::String(v.clone())
                }
            },
        };
        apply(&mut out, spec, value)?;
    }
    if let Some(extra) = args.get(i) {
        return Err(FlagError::Bad(format!(
            "unexpected argument {extra:?}: cairn agent takes only flags (see cairn agent -h)"
        )));
    }
    Ok(out)
}

fn apply(out: &mut Parsed, spec: &Spec, value: Value) -> Result<(), FlagError> {
    let text = || value.as_str().unwrap_or_default().to_string();
    match spec.target {
        Dev => out.dev = value.as_bool().unwrap_or(false),
        ConfigPath => out.config_paths.push(ConfigPathArg {
            flag: spec.name,
            path: PathBuf::from(text()),
        }),
        ConfigFormat => {
            let v = text();
            out.config_format = Some(Format::from_flag(&v).ok_or_else(|| {
                FlagError::Bad(format!(
                    "-config-format: invalid value {v:?}: expected json or hcl"
                ))
            })?);
        }
        Hcl => out.hcl.push(text()),
        Key(path) => {
            set_path(&mut out.values, path, value);
            out.key_flags.insert(path.to_string(), spec.name);
        }
        List(path) => {
            let slot = out
                .slices
                .entry(path.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = slot {
                list.push(value);
            }
            out.key_flags.insert(path.to_string(), spec.name);
        }
        NodeMeta => {
            let v = text();
            let (key, val) = v.split_once(':').unwrap_or((v.as_str(), ""));
            if key.is_empty() {
                return Err(FlagError::Bad(format!(
                    "-node-meta: invalid value {v:?}: expected key:value"
                )));
            }
            let slot = out
                .values
                .entry("node_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = slot {
                meta.insert(key.to_string(), Value::String(val.to_string()));
            }
            out.key_flags.insert("node_meta".into(), spec.name);
        }
    }
    Ok(())
}
