//! `cairn sidecar`: runs around or beside a service process and keeps its registration in the
//! local agent honest.
//!
//! * Around mode, `cairn sidecar [flags] -- <command> [args...]`: starts the command in its
//!   own process group, restarts it per `-restart` (`never`, `on-failure`, `always`) with
//!   exponential backoff from `-restart-delay`, forwards SIGINT, SIGTERM and SIGHUP to it, and
//!   exits with its exit code (128 + signal when a signal killed it).
//! * Beside mode, without a command: watches a running process (`-pid N`) and/or only a
//!   health endpoint.
//!
//! In both modes the service (from `-name`/`-id`/`-port`/... or `-service-file`) is
//! registered through the local agent with a TTL check `service:<id>`. The check is fed every
//! `-interval` (default TTL/3) and on every change from the process's liveness and the health
//! probe (`-health-url`, `-health-tcp` or `-health-cmd`, with Consul's check mappings), the
//! probe's output becoming the check output. Within `-grace` after a (re)start a failing probe
//! makes the check warning rather than critical. When the agent cannot be reached the sidecar
//! keeps supervising and retries with backoff; when the agent answers without the service
//! (restarted, or the service was removed) it registers it again. On exit it deregisters the
//! service. If the sidecar itself dies, the TTL expires and the check turns critical
//! (and `-deregister-critical-after` removes the service).
//!
//! The pieces: [`config`] (flags to settings, the registration body), [`probe`] (health
//! probes), [`report`] (talking to the agent) and [`supervise`] (the process, the signals
//! and the main loop). Logs go to stderr; `CAIRN_LOG` sets the filter (target `sidecar`).
//!
//! Why a TTL check fed from outside rather than an agent-run check: the sidecar knows things
//! the agent cannot see (the process it started is running, it is restarting, it is being
//! stopped), and a TTL makes the sidecar's own death visible, since the check goes critical
//! by itself when the updates stop.

/// Logs at info level under the `sidecar` target.
/// One fixed target, so `CAIRN_LOG=sidecar=debug` selects the sidecar's lines without those
/// of the libraries it uses.
macro_rules! log_info {
    ($($t:tt)*) => { tracing::info!(target: "sidecar", $($t)*) };
}

/// Logs at warn level under the `sidecar` target.
macro_rules! log_warn {
    ($($t:tt)*) => { tracing::warn!(target: "sidecar", $($t)*) };
}

/// Logs at error level under the `sidecar` target.
macro_rules! log_error {
    ($($t:tt)*) => { tracing::error!(target: "sidecar", $($t)*) };
}

mod config;
mod probe;
mod report;
mod supervise;

use std::io::IsTerminal;
use std::process::ExitCode;

use super::client::DEFAULT_ADDR;
use super::output::fail;
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// The sidecar's flags, in alphabetical order (the order of `-h`).
const FLAGS: &[Flag] = &[
    Flag::text(
        "address",
        "addr",
        "Address of the service. Defaults to the node's address.",
    ),
    Flag::text(
        "deregister-critical-after",
        "duration",
        "Passed as the check's DeregisterCriticalServiceAfter: the agent removes the service \
         once the check has been critical this long (for example when the sidecar died). \
         Consul's minimum is 1m.",
    ),
    Flag::text(
        "grace",
        "duration",
        "Time after each (re)start during which a failing health probe makes the check \
         warning instead of critical. Default 0s.",
    ),
    Flag::text(
        "health-cmd",
        "command",
        "Health probe: a shell command (sh -c); exit 0 is passing, 1 warning, anything else \
         critical. Its output becomes the check output.",
    ),
    Flag::text(
        "health-tcp",
        "host:port",
        "Health probe: a TCP connect; connected is passing, anything else critical.",
    ),
    Flag::text(
        "health-url",
        "url",
        "Health probe: an HTTP GET (http:// or https://, redirects not followed); 2xx is passing, \
         429 warning, anything else critical. Status line and body become the check output.",
    ),
    Flag::text("id", "id", "ID of the service. Defaults to the name."),
    Flag::text(
        "interval",
        "duration",
        "How often the probe runs and the TTL check is refreshed. Defaults to a third of \
         the TTL.",
    ),
    Flag::uint(
        "max-restarts",
        "Give up (deregister and exit) after this many restarts. 0, the default, means no \
         limit.",
    ),
    Flag::map(
        "meta",
        "Metadata of the service, as key=value. May be given several times.",
    ),
    Flag::text("name", "name", "Name of the service."),
    Flag::int(
        "pid",
        "Beside mode: watch this running process instead of starting a command. When it is \
         gone, the service is deregistered and the sidecar exits.",
    ),
    Flag::int("port", "Port of the service."),
    Flag::text(
        "restart",
        "policy",
        "When to restart the command after it exits: never (the default), on-failure \
         (non-zero exit or killed by a signal) or always.",
    ),
    Flag::text(
        "restart-delay",
        "duration",
        "Delay before the first restart; it doubles on each quick failure up to 30s, and \
         starts over after a run of 30s or more. Default 1s.",
    ),
    Flag::text(
        "service-file",
        "path",
        "Service definition file (JSON or HCL with one \"service\" block, as for cairn \
         services register). Flags override its fields; tags are added and meta merged. \
         Its own checks are registered too.",
    ),
    Flag::text(
        "stop-timeout",
        "duration",
        "How long the command has to exit after a forwarded SIGINT or SIGTERM before its \
         process group gets SIGKILL. Default 10s.",
    ),
    Flag::list(
        "tag",
        "value",
        "Tag of the service. May be given several times.",
    ),
    Flag::text(
        "timeout",
        "duration",
        "How long one health probe may take. Defaults to the interval, at most 10s.",
    ),
    Flag::text(
        "ttl",
        "duration",
        "TTL of the service's check (service:<id>): without an update within it, the agent \
         marks the check critical. Default 10s.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn sidecar [options] [--] [command [args...]]

  Registers a service with the local agent and keeps a TTL check of it fed
  while running around or beside the service's process.

  With a command, the sidecar starts it, forwards SIGINT, SIGTERM and SIGHUP
  to it, restarts it per -restart, and when it ends for good (or on SIGINT or
  SIGTERM) deregisters the service and exits with the command's exit code.
  Without one, it watches a running process (-pid) and/or a health endpoint
  until it is stopped.

  The check (ID service:<id>) is passing while the process runs and the
  health probe (-health-url, -health-tcp or -health-cmd) passes, critical
  otherwise; the probe's output becomes the check output. If the agent is
  unreachable the sidecar keeps going and registers again when it answers.

      $ cairn sidecar -name web -port 8080 \\
          -health-url http://127.0.0.1:8080/health -restart on-failure \\
          -- python3 -m http.server 8080
      $ cairn sidecar -name db -pid 4242 -health-tcp 127.0.0.1:5432
",
    flags: FLAGS,
    http: Http::Client,
};

/// Sends the sidecar's log lines to stderr, with `CAIRN_LOG` as the filter.
///
/// Installed only once the flags are valid, so that usage errors print plainly.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sidecar=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Runs `cairn sidecar`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let cfg = match config::Config::from_flags(&p) {
        Ok(c) => c,
        Err(e) => return fail(format!("Error: {e}")),
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // For the log line only: which agent this sidecar talks to.
    let agent = p
        .text("http-addr")
        .map(str::to_string)
        .or_else(|| std::env::var("CONSUL_HTTP_ADDR").ok())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    init_logging();
    supervise::run(cfg, client, &agent).await
}

#[cfg(test)]
mod tests;
