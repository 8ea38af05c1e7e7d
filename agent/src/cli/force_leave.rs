//! `cairn force-leave`: asks the agent to move a failed member to `left` (with `-prune`, to
//! forget it at once), as `consul force-leave` does. Silent on success, like Consul's command,
//! so runbooks that check only the exit code keep working.

use std::process::ExitCode;

use super::output::{err, fail};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `force-leave`.
const FLAGS: &[Flag] = &[
    Flag::bool(
        "prune",
        "Remove agent forcibly from list of members, without waiting for the reap interval.",
    ),
    Flag::bool("wan", "Exclusively leave the agent from the WAN serf pool."),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn force-leave [options] name

  Forces a member of the cluster to enter the \"left\" state. Note
  that if the member is still actually alive, it will eventually rejoin
  the cluster. This command is most useful for cleaning out \"failed\" nodes
  that are never coming back. If you do not force leave a failed node,
  Cairn will attempt to reconnect to those failed nodes for some period of
  time before eventually reaping them.
",
    flags: FLAGS,
    http: Http::Client,
};

/// Runs `cairn force-leave`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let [node] = p.args.as_slice() else {
        err("A single node name must be specified to force leave.");
        err("");
        err(&SPEC.help());
        return ExitCode::from(1);
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut query = Vec::new();
    if p.bool("prune") {
        query.push(("prune", "1".to_string()));
    }
    if p.bool("wan") {
        query.push(("wan", "1".to_string()));
    }
    match client
        .put(&format!("/v1/agent/force-leave/{node}"), &query, None)
        .await
    {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(format!("Error force leaving: {e}")),
    }
}
