//! `cairn maint`: node or service maintenance mode (a critical `_node_maintenance` or
//! `_service_maintenance:<id>` check); without flags, lists what is in maintenance.
//!
//! Maintenance is state of the local agent (its own node and services), so the command
//! always talks to the agent it is pointed at, and it persists across the agent's restarts.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Deserialize;

use super::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

const FLAGS: &[Flag] = &[
    Flag::bool("disable", "Disable maintenance mode."),
    Flag::bool("enable", "Enable maintenance mode."),
    Flag::text("reason", "text", "Text describing the maintenance reason."),
    Flag::text(
        "service",
        "id",
        "Control maintenance mode for a specific service ID.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn maint [options]

  Places a node or service into maintenance mode. During maintenance mode, the
  node or service will be excluded from all queries through the DNS or API
  interfaces, effectively taking it out of the pool of available nodes. This
  is done by registering an additional critical health check.

  When enabling maintenance mode for a node or service, you may optionally
  specify a reason string. This string will appear in the \"Notes\" field of
  the critical health check which is registered against the node or service.
  If no reason is provided, a default value will be used.

  By default, we operate on the node as a whole. By specifying the \"-service\"
  argument, this behavior can be changed to enable or disable only a specific
  service.

  If no arguments are given, the agent's maintenance status will be shown.
  This will return blank if nothing is currently under maintenance.
",
    flags: FLAGS,
    http: Http::Client,
};

/// A check of `/v1/agent/checks`.
///
/// Only the fields the listing needs: maintenance checks are recognized by their IDs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    #[serde(default, rename = "CheckID")]
    check_id: String,
    #[serde(default)]
    notes: String,
    #[serde(default, rename = "ServiceID")]
    service_id: String,
}

/// Runs `cairn maint`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::no_args(&p) {
        return code;
    }
    let (enable, disable) = (p.bool("enable"), p.bool("disable"));
    let reason = p.text_or_empty("reason").to_string();
    let service = p.text_or_empty("service").to_string();
    if enable && disable {
        return fail("Only one of -enable or -disable may be provided");
    }
    // Consul's rules: a reason only makes sense when turning maintenance on, and `-service`
    // needs to be told which way.
    if !enable && !reason.is_empty() {
        return fail("Reason may only be provided with -enable");
    }
    if !enable && !disable && !service.is_empty() {
        return fail("Service requires either -enable or -disable");
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The node's name is not in its maintenance check's fields: it comes from the agent's
    // configuration.
    let node_name = match client
        .get_json::<serde_json::Value>("/v1/agent/self", &[])
        .await
    {
        Ok(v) => v
            .pointer("/Config/NodeName")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string(),
        Err(e) => return fail(format!("Error querying Cairn agent: {e}")),
    };

    if !enable && !disable {
        let checks: BTreeMap<String, Check> = match client.get_json("/v1/agent/checks", &[]).await {
            Ok(c) => c,
            Err(e) => return fail(format!("Error getting checks: {e}")),
        };
        for check in checks.values() {
            if check.check_id == "_node_maintenance" {
                out("Node:");
                out(&format!("  Name:   {node_name}"));
                out(&format!("  Reason: {}", check.notes));
                out("");
            } else if check.check_id.starts_with("_service_maintenance:") {
                out("Service:");
                out(&format!("  ID:     {}", check.service_id));
                out(&format!("  Reason: {}", check.notes));
                out("");
            }
        }
        return ExitCode::SUCCESS;
    }

    // An empty reason is sent as such: the agent then uses Consul's default text.
    let mut query = vec![("enable", enable.to_string())];
    if enable {
        query.push(("reason", reason));
    }
    let (path, what) = if service.is_empty() {
        ("/v1/agent/maintenance".to_string(), "node".to_string())
    } else {
        (
            format!("/v1/agent/service/maintenance/{service}"),
            "service".to_string(),
        )
    };
    let verb = if enable { "enabling" } else { "disabling" };
    if let Err(e) = client.put(&path, &query, None).await {
        return fail(format!("Error {verb} {what} maintenance: {e}"));
    }
    let state = if enable { "enabled" } else { "disabled" };
    if service.is_empty() {
        out(&format!("Node maintenance is now {state}"));
    } else {
        out(&format!(
            "Service maintenance is now {state} for \"{service}\""
        ));
    }
    ExitCode::SUCCESS
}
