//! The `cairn` subcommands that talk to a running agent over its HTTP API, with Consul's
//! names, flags, output and exit codes (`cairn members`, `cairn kv get -recurse app/`, ...).
//!
//! Each command lives in its own module and exposes `run(args) -> ExitCode`; `spec` declares
//! a command's usage and flags (a static table per command, parsed by the crate's one Go-style
//! parser, `crate::flags`), [`client`] is the shared HTTP client
//! (address, token, datacenter, Consul's error texts) and [`output`] lays results out as
//! Consul does. The commands run on a small single-threaded tokio runtime.
//!
//! Compatibility is the point: scripts, runbooks and muscle memory written for `consul` keep
//! working with `cairn`, so flag names, the `@file`/`-` conventions, output layouts, error
//! texts and exit codes (0 success, 1 failure or usage error, 2 where Consul uses it) follow
//! Consul's commands rather than what a fresh design would pick.

mod acl;
mod catalog;
mod client;
mod event;
mod force_leave;
mod info;
mod join;
mod keyring;
mod kv;
mod leave;
mod lock;
mod maint;
mod members;
mod monitor;
mod operator;
mod output;
mod progress;
mod reload;
mod services;
mod sidecar;
mod snapshot;
mod spec;
mod tls;
mod validate;
mod version;
mod watch;

use std::process::ExitCode;

use self::client::Client;
use self::output::{err, fail, out};
use self::spec::Spec;
use crate::flags::{ParseError, Parsed};

/// The top-level commands and their one-line descriptions, for `cairn` without arguments.
/// Alphabetical, as Consul lists them; `agent` is dispatched by `main`, not here.
const COMMANDS: &[(&str, &str)] = &[
    ("acl", "Interact with Cairn's ACLs"),
    ("agent", "Runs a Cairn agent"),
    ("catalog", "Interact with the catalog"),
    ("event", "Fire a new event"),
    ("info", "Provides debugging information for operators."),
    ("join", "Tell the agent to join a cluster"),
    ("keygen", "Generates a new encryption key"),
    ("keyring", "Manages gossip layer encryption keys"),
    ("kv", "Interact with the key-value store"),
    (
        "force-leave",
        "Forces a member of the cluster to enter the \"left\" state",
    ),
    ("leave", "Gracefully leaves the cluster and shuts down"),
    ("lock", "Execute a command holding a lock"),
    ("maint", "Controls node or service maintenance mode"),
    ("members", "Lists the members of a cluster"),
    ("monitor", "Stream logs from a Cairn agent"),
    ("operator", "Provides cluster-level tools for operators"),
    ("reload", "Triggers the agent to reload configuration files"),
    ("services", "Interact with services"),
    ("sidecar", "Supervises a service and feeds its health check"),
    (
        "snapshot",
        "Saves, restores and inspects snapshots of the servers' state",
    ),
    ("tls", "Builtin helpers for creating CAs and certificates"),
    ("validate", "Validate config files/directories"),
    ("version", "Prints the Cairn version"),
    ("watch", "Watch for changes in the catalog or the KV store"),
];

/// The top-level help, printed for `cairn`, `cairn -h` and an unknown command.
fn usage() -> String {
    group_usage(
        "Usage: cairn [--version] [--help] <command> [<args>]",
        "Available commands are:",
        COMMANDS,
    )
}

/// A command group's help: a usage line and its subcommands in a column.
pub(crate) fn group_usage(first: &str, heading: &str, commands: &[(&str, &str)]) -> String {
    // Descriptions start in one column, after the longest name.
    let width = commands.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut s = format!("{first}\n\n{heading}\n");
    for (name, what) in commands {
        s.push_str(&format!("    {name:<width$}    {what}\n"));
    }
    s.trim_end().to_string()
}

/// Runs a CLI subcommand (`args` excludes the program name).
pub fn run(args: &[String]) -> ExitCode {
    // One thread: a command makes one request at a time (or a few), and a small runtime
    // keeps start-up fast.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("failed to start the async runtime: {e}")),
    };
    rt.block_on(dispatch(args))
}

/// Runs the command named by the first argument.
async fn dispatch(args: &[String]) -> ExitCode {
    let Some(name) = args.first() else {
        err(&usage());
        return ExitCode::from(1);
    };
    let rest = &args[1..];
    match name.as_str() {
        "-h" | "-help" | "--help" | "help" => {
            out(&usage());
            ExitCode::SUCCESS
        }
        "version" => version::run(rest),
        "validate" => validate::run(rest),
        "tls" => tls::run(rest),
        // `cairn --version` as well as `cairn version`, as with Consul.
        "-v" | "-version" | "--version" => version::run(&[]),
        "members" => members::run(rest).await,
        "monitor" => monitor::run(rest).await,
        "operator" => operator::run(rest).await,
        "acl" => acl::run(rest).await,
        "catalog" => catalog::run(rest).await,
        "event" => event::run(rest).await,
        "keygen" => keyring::keygen(rest),
        "keyring" => keyring::run(rest).await,
        "kv" => kv::run(rest).await,
        "services" => services::run(rest).await,
        "sidecar" => sidecar::run(rest).await,
        "snapshot" => snapshot::run(rest).await,
        "leave" => leave::run(rest).await,
        "force-leave" => force_leave::run(rest).await,
        "lock" => lock::run(rest).await,
        "join" => join::run(rest).await,
        "reload" => reload::run(rest).await,
        "maint" => maint::run(rest).await,
        "info" => info::run(rest).await,
        "watch" => watch::run(rest).await,
        other => {
            err(&format!("Unknown command: {other}\n"));
            err(&usage());
            ExitCode::from(1)
        }
    }
}

/// Parses a command's flags. `-h` prints the help and yields exit code 0; a usage error
/// prints the message and the help to stderr and yields exit code 1.
pub(crate) fn parse(spec: &Spec, args: &[String]) -> Result<Parsed, ExitCode> {
    match spec.parse(args) {
        Ok(p) => Ok(p),
        Err(ParseError::Help) => {
            out(&spec.help());
            Err(ExitCode::SUCCESS)
        }
        Err(ParseError::Bad(msg)) => {
            err(&msg);
            err("");
            // The help goes to stderr with the error, so a script's stdout stays empty.
            err(&spec.help());
            Err(ExitCode::from(1))
        }
    }
}

/// Builds the HTTP client from the parsed flags, or prints Consul's connection error.
pub(crate) fn connect(p: &Parsed) -> Result<Client, ExitCode> {
    // Consul's wording, with the product name changed.
    Client::from_flags(p).map_err(|e| fail(format!("Error connecting to Cairn agent: {e}")))
}

/// Fails with Consul's message when a command that takes no arguments got some.
pub(crate) fn no_args(p: &Parsed) -> Result<(), ExitCode> {
    if p.args.is_empty() {
        Ok(())
    } else {
        Err(fail(format!(
            "Too many arguments (expected 0, got {})",
            p.args.len()
        )))
    }
}

/// The help handling of a command group (`kv`, `catalog`, `services`): `-h` prints the
/// group's help (exit 0), no subcommand prints it to stderr (exit 1); `None` means a
/// subcommand was named and should run.
pub(crate) fn group_help(args: &[String], help: &str) -> Option<ExitCode> {
    match args.first().map(String::as_str) {
        None => {
            err(help);
            Some(ExitCode::from(1))
        }
        Some("-h" | "-help" | "--help") => {
            out(help);
            Some(ExitCode::SUCCESS)
        }
        _ => None,
    }
}

/// The message for an unknown subcommand of a group.
pub(crate) fn unknown_subcommand(group: &str, name: &str, help: &str) -> ExitCode {
    err(&format!("Unknown command: {group} {name}\n"));
    err(help);
    ExitCode::from(1)
}

/// Reads a `-filter`-style data argument: `@file` reads a file, `-` reads stdin, anything
/// else is the value itself.
///
/// Consul's convention for values that may be long or binary-unfriendly on a command
/// line (`kv put key @file`, `-filter=@expr.txt`).
pub(crate) fn load_data(arg: &str) -> Result<String, String> {
    if let Some(path) = arg.strip_prefix('@') {
        return std::fs::read_to_string(path).map_err(|e| format!("Failed to read file: {e}"));
    }
    if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        return Ok(s);
    }
    Ok(arg.to_string())
}

/// `node-meta` query pairs from `-node-meta key=value` flags (`node-meta=key:value`).
///
/// Repeated pairs are ANDed by the API; the flag's `=` becomes the query's `:`, the form
/// the HTTP API expects.
pub(crate) fn node_meta_query(p: &Parsed) -> Vec<(&'static str, String)> {
    p.map("node-meta")
        .into_iter()
        .map(|(k, v)| ("node-meta", format!("{k}:{v}")))
        .collect()
}
