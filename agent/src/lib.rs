//! `cairn`: the agent and its command-line interface, as a library so that tests can start
//! agents and whole clusters in one process.
//!
//! `cairn agent ...` runs an agent ([`run`]); every other subcommand is a client of a running
//! agent's HTTP API ([`cli`]). Flags follow Consul's Go style (`-dev`, `-http-port=8500`), and
//! the GNU style (`--dev`) works too.
//!
//! Layers (see `docs/architecture.md`): edges ([`http`], [`dns`], [`cli`], the server's RPC routes)
//! speak the typed vocabulary of [`api`]; [`backend`] sends it to this agent's [`server`] role or
//! to a server of the pool over [`rpc`]; the server's endpoints build replicated commands, and the
//! catalog crate applies them.

#![forbid(unsafe_code)]

pub mod acl;
pub mod agent;
pub mod api;
pub mod backend;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connlimit;
pub mod dns;
pub mod docker_entrypoint;
pub mod events;
// Crate-private: its tables are shared by the agent's configuration and the CLI, and nothing
// outside this crate parses Cairn's command lines.
mod flags;
pub mod http;
pub mod keyring;
pub mod local;
pub mod metrics;
pub mod monitor;
pub mod random;
pub mod rpc;
pub mod run;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod wan;
pub mod watch;

// At the crate root for `PUT /v1/agent/reload`, which reloads as SIGHUP does.
pub use run::reload;

/// The version this build reports (`cairn version`, `/v1/agent/self`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Consul API level this agent implements, reported where clients and tools look for a
/// version to decide which features to use.
pub const CONSUL_COMPAT_VERSION: &str = "1.21.0";
