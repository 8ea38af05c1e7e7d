//! `cairn leave`: asks the agent to leave the cluster gracefully and shut down.
//!
//! A graceful leave tells the other members before the agent stops, so they mark it `left`
//! at once instead of `failed` after a timeout. The agent answers at once and then shuts
//! down on its own, so the command returns before the leave is complete.

use std::process::ExitCode;

use super::output::{fail, out};
use crate::cli::spec::{Http, Spec};

const SPEC: Spec = Spec {
    usage: "
Usage: cairn leave [options]

  Causes the agent to gracefully leave the cluster and shutdown.
",
    flags: &[],
    http: Http::Client,
};

/// Runs `cairn leave`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if !p.args.is_empty() {
        return fail(format!(
            "Error! Too many arguments (expected 0, got {})",
            p.args.len()
        ));
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.put("/v1/agent/leave", &[], None).await {
        Ok(_) => {
            out("Graceful leave complete");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error leaving: {e}")),
    }
}
