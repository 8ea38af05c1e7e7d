//! `cairn join`: asks the agent to join other agents (LAN, or WAN with `-wan`).
//!
//! Each address is a separate request, as Consul's command makes them: one unreachable
//! address does not stop the others, and the command fails only when none was joined.

use std::process::ExitCode;

use super::output::{err, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's single flag for `join`.
const FLAGS: &[Flag] = &[Flag::bool(
    "wan",
    "Joins a server to another server in the WAN pool.",
)];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn join [options] address ...

  Tells a running agent to join the cluster by specifying at least one
  existing member.
",
    flags: FLAGS,
    http: Http::Client,
};

/// Runs `cairn join`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.args.is_empty() {
        err("At least one address to join must be specified.");
        err("");
        err(&SPEC.help());
        return ExitCode::from(1);
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let query = if p.bool("wan") {
        vec![("wan", "1".to_string())]
    } else {
        Vec::new()
    };
    let mut joined = 0;
    for addr in &p.args {
        match client
            .put(&format!("/v1/agent/join/{addr}"), &query, None)
            .await
        {
            Ok(_) => joined += 1,
            // Reported and skipped: the join counts as done if any address answered.
            Err(e) => err(&format!("Error joining address '{addr}': {e}")),
        }
    }
    if joined == 0 {
        return fail("Failed to join any nodes.");
    }
    out(&format!(
        "Successfully joined cluster by contacting {joined} nodes."
    ));
    ExitCode::SUCCESS
}
