//! `cairn monitor`: streams the agent's log lines until interrupted or the agent stops.
//!
//! The agent filters by level before sending, so a quiet `-log-level` also costs less on the
//! wire. Lines are written as they arrive and flushed, so `cairn monitor | grep` sees each
//! one at once.

use std::io::Write;
use std::process::ExitCode;

use super::output::fail;
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

const SPEC: Spec = Spec {
    usage: "
Usage: cairn monitor [options]

  Attaches to a Cairn agent and outputs its log messages as they occur, until
  interrupted. The agent logs what its -log-level allows: -log-level here can only
  show less.
",
    flags: &[
        Flag::text(
            "log-level",
            "level",
            "Log level of the agent (trace, debug, info, warn, err). Defaults to info.",
        ),
        Flag::bool("log-json", "Output logs in JSON format."),
    ],
    http: Http::Client,
};

/// Runs `cairn monitor`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut q = vec![(
        // Consul's default level for `monitor`.
        "loglevel",
        p.text("log-level").unwrap_or("info").to_string(),
    )];
    if p.bool("log-json") {
        q.push(("logjson", "true".to_string()));
    }
    let stdout = std::io::stdout();
    let result = client
        .stream("/v1/agent/monitor", &q, |chunk| {
            let mut out = stdout.lock();
            let _ = out.write_all(chunk);
            let _ = out.flush();
        })
        .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("Error starting monitor: {e}")),
    }
}
