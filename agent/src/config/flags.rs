//! `cairn agent` flags: the table of every agent flag and what it does. Each one either sets a
//! config key (so it goes through the same checks as config files) or steers the loading
//! itself (`-dev`, `-config-file`, ...). The command line is read by the crate's one Go-style
//! parser (`crate::flags`): `-name`, `--name`, `-name=value`, `-name value`, booleans
//! without a separate argument (`-dev`, `-dev=false`), parsing stops at `--`.
//!
//! Flags that set a key produce the same JSON shape a file would, so they are checked by the
//! same schema and messages can still name the flag. The command line is sorted into two
//! groups because Consul applies them at two points: list flags before the config files
//! (a file's `retry_join` appends to `-retry-join`), every other flag after all files.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::file::Format;
use crate::flags::{self, Flag, Kind, ParseError, parse_bool};

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
    /// The value is kept as the text given; the schema reads it with the key's type.
    Key(&'static str),
    /// Appends to a list config key.
    /// Collected in [`CommandLine::slices`], applied before the config files.
    List(&'static str),
    /// `-node-meta key:value`.
    /// Its own target because one flag fills a map: each use adds a pair to `node_meta`.
    NodeMeta,
}

/// One agent flag: its name, kind and help for the parser, and what it does.
struct Spec {
    /// Name, kind and help, as the shared parser needs them.
    flag: Flag,
    /// Where the value goes once parsed.
    target: Target,
}

/// A flag with an argument (placeholder `arg`); repeatable when its target collects values.
///
/// Repeatable or not follows from the target, so a table entry cannot declare a list
/// flag that overwrites or a key flag that collects.
const fn flag(name: &'static str, arg: &'static str, target: Target, help: &'static str) -> Spec {
    let flag = match target {
        ConfigPath | Hcl | List(_) | NodeMeta => Flag::list(name, arg, help),
        Dev | ConfigFormat | Key(_) => Flag::text(name, arg, help),
    };
    Spec { flag, target }
}

/// A boolean flag.
const fn switch(name: &'static str, target: Target, help: &'static str) -> Spec {
    Spec {
        flag: Flag::bool(name, help),
        target,
    }
}

use Target::{ConfigFormat, ConfigPath, Dev, Hcl, Key, List, NodeMeta};

/// Every flag, in alphabetical order (the order of `-h`).
///
/// Names and meanings are Consul's, so that a systemd unit or script written for
/// `consul agent` works with `cairn agent`. A flag missing here is refused
/// (`flag provided but not defined`), as Consul refuses an unknown flag.
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
        // `-config-dir` and `-config-file` share one target, hence one ordered list: Consul
        // reads them in the order given, mixed.
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
///
/// Starts with [`super::HELP_PREFIX`]'s words, which is how the caller recognizes it.
pub(crate) fn usage() -> String {
    let mut out = String::from(
        "Usage: cairn agent [options]\n\n  \
         Starts a Cairn agent, which runs until it is interrupted. Options are Consul's:\n  \
         -flag, --flag, -flag=value and -flag value all work. Later config files override\n  \
         earlier ones, and flags override config files.\n",
    );
    flags::help_section(&mut out, "Options", FLAGS.iter().map(|s| &s.flag));
    out
}

/// A `-config-file` or `-config-dir` argument.
#[derive(Debug)]
pub(crate) struct ConfigPathArg {
    /// The flag used (`config-file` or `config-dir`).
    /// Messages about the path name the flag as typed.
    pub flag: &'static str,
    /// The path as given.
    pub path: PathBuf,
}

/// The command line, sorted by what each flag does.
#[derive(Debug, Default)]
pub(crate) struct CommandLine {
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

/// Sets `a.b.c` in nested objects, creating them, so that `-dns-port` yields
/// `{"ports": {"dns": ...}}` just as a file's `ports {}` block would.
fn set_path(map: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            // Cannot happen with the static table (no flag sets a key that another flag's
            // path goes through), but an object must be there to descend into.
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                set_path(inner, rest, value);
            }
        }
    }
}

/// A linear search: the table is a few dozen entries and read once per argument.
fn lookup(name: &str) -> Option<&'static Spec> {
    FLAGS.iter().find(|s| s.flag.name == name)
}

/// Parses the arguments that follow `cairn agent`. Parser errors carry a pointer to `-h`,
/// since the agent prints only the message, not the whole help.
///
/// Each occurrence is applied in command-line order, so for a key flag the last one wins.
pub(crate) fn parse(args: &[String]) -> Result<CommandLine, ParseError> {
    let hint = |msg: String| ParseError::Bad(format!("{msg} (see cairn agent -h)"));
    let parsed = flags::parse(args, |name| lookup(name).map(|s| &s.flag)).map_err(|e| match e {
        ParseError::Bad(msg) => hint(msg),
        help => help,
    })?;
    if let Some(extra) = parsed.args.first() {
        // Positional arguments have no meaning for the agent; rejecting them catches
        // `-dev true`, where `true` is not the boolean's value.
        return Err(hint(format!(
            "unexpected argument {extra:?}: cairn agent takes only flags"
        )));
    }
    let mut out = CommandLine::default();
    for (flag, text) in parsed.given() {
        // The parser accepted only names from this table, so this is a safeguard.
        let Some(spec) = lookup(flag.name) else {
            return Err(hint(format!(
                "flag provided but not defined: -{}",
                flag.name
            )));
        };
        let value = match (flag.kind, parse_bool(text)) {
            // Booleans go in typed; everything else as text, which the schema reads weakly
            // typed, as it does a file's values.
            (Kind::Bool, Some(b)) => Value::Bool(b),
            _ => Value::String(text.to_string()),
        };
        apply(&mut out, spec, value)?;
    }
    Ok(out)
}

/// Sorts one parsed flag into the [`CommandLine`]. Key and list flags also record which
/// flag set the key, so that a bad value is reported as `-http-port: ...`.
fn apply(out: &mut CommandLine, spec: &Spec, value: Value) -> Result<(), ParseError> {
    let text = || value.as_str().unwrap_or_default().to_string();
    match spec.target {
        Dev => out.dev = value.as_bool().unwrap_or(false),
        ConfigPath => out.config_paths.push(ConfigPathArg {
            flag: spec.flag.name,
            path: PathBuf::from(text()),
        }),
        ConfigFormat => {
            let v = text();
            out.config_format = Some(Format::from_flag(&v).ok_or_else(|| {
                ParseError::Bad(format!(
                    "-config-format: invalid value {v:?}: expected json or hcl"
                ))
            })?);
        }
        Hcl => out.hcl.push(text()),
        Key(path) => {
            set_path(&mut out.values, path, value);
            out.key_flags.insert(path.to_string(), spec.flag.name);
        }
        List(path) => {
            let slot = out
                .slices
                .entry(path.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = slot {
                list.push(value);
            }
            out.key_flags.insert(path.to_string(), spec.flag.name);
        }
        NodeMeta => {
            let v = text();
            // Split at the first colon, as Consul does: the value may hold colons (`zone:a:b`),
            // and a bare key gets an empty value.
            let (key, val) = v.split_once(':').unwrap_or((v.as_str(), ""));
            if key.is_empty() {
                return Err(ParseError::Bad(format!(
                    "-node-meta: invalid value {v:?}: expected key:value"
                )));
            }
            let slot = out
                .values
                // Pairs go with the other key flags (applied last) and merge key by key with the
                // `node_meta {}` of config files.
                .entry("node_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = slot {
                meta.insert(key.to_string(), Value::String(val.to_string()));
            }
            out.key_flags.insert("node_meta".into(), spec.flag.name);
        }
    }
    Ok(())
}
