//! `cairn reload`: asks the agent to reload its configuration files.
//!
//! The same as sending the agent SIGHUP, for when the agent runs elsewhere or under another
//! user. The agent re-reads its config files with its original flags and applies what can
//! change while it runs.

use std::process::ExitCode;

use super::output::{fail, out};
use crate::cli::spec::{Http, Spec};

const SPEC: Spec = Spec {
    usage: "
Usage: cairn reload [options]

  Causes the agent to reload configurations. This can be used instead of
  sending the SIGHUP signal to the agent.
",
    flags: &[],
    http: Http::Client,
};

/// Runs `cairn reload`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::no_args(&p) {
        return code;
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.put("/v1/agent/reload", &[], None).await {
        Ok(_) => {
            out("Configuration reload triggered");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error reloading: {e}")),
    }
}
