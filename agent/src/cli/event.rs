//! `cairn event`: fires a user event across the cluster.
//!
//! The event is gossiped, not stored: agents that are down when it fires never see it, and
//! delivery is best effort, as with Consul's events. The command returns once the agent has
//! sent it, printing the event's ID.

use std::process::ExitCode;

use serde_json::Value;

use super::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

const SPEC: Spec = Spec {
    usage: "
Usage: cairn event [options] [payload]

  Dispatches a custom user event across the cluster. Agents whose node, service
  and tag match the filters (regular expressions) deliver it; `cairn watch -type
  event` and GET /v1/event/list see it. The payload is opaque and small (512 bytes).
",
    flags: &[
        Flag::text("name", "name", "Name of the event (required)."),
        Flag::text(
            "node",
            "regex",
            "Regular expression to filter on node names.",
        ),
        Flag::text(
            "service",
            "regex",
            "Regular expression to filter on service instances.",
        ),
        Flag::text(
            "tag",
            "regex",
            "Regular expression to filter on service tags. Must be used with -service.",
        ),
    ],
    http: Http::Server,
};

/// Runs `cairn event`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let name = p.text_or_empty("name").to_string();
    if name.is_empty() {
        return fail(format!("Event name must be specified\n{}", SPEC.usage));
    }
    if p.args.len() > 1 {
        return fail(format!("Too many command line arguments\n{}", SPEC.usage));
    }
    // The payload is sent as given; its size limit is enforced by the agent.
    let payload = p.args.first().map(|a| a.as_bytes().to_vec());
    let mut q = Vec::new();
    for f in ["node", "service", "tag"] {
        if let Some(v) = p.text(f) {
            q.push((f, v.to_string()));
        }
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The name is escaped on its own, so a `/` in it cannot reach another endpoint.
    let path = format!("/v1/event/fire/{}", super::client::escape_path(&name));
    let reply = match client.put(&path, &q, payload).await {
        Ok(r) => r,
        Err(e) => return fail(format!("Error firing event: {e}")),
    };
    let ev: Value = match reply.json() {
        Ok(v) => v,
        Err(e) => return fail(format!("Error reading the event: {e}")),
    };
    out(&format!(
        "Event ID: {}",
        ev["ID"].as_str().unwrap_or_default()
    ));
    ExitCode::SUCCESS
}
