//! `cairn operator raft list-peers|remove-peer|transfer-leader` and `cairn operator autopilot
//! get-config|set-config`: the servers' Raft configuration and autopilot's settings.
//!
//! These act on the servers as a group, through whichever agent the command reaches, which
//! forwards to the servers. They are the tools for repairing a cluster (a server that
//! will never return, a leader to move before maintenance), so their output is Consul's, as
//! runbooks expect.

use std::process::ExitCode;

use serde_json::Value;

use super::output::{columns, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Both levels of subcommands in one list, as the group's help shows them.
const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "autopilot get-config",
        "Displays the current autopilot configuration",
    ),
    (
        "autopilot set-config",
        "Modifies the current autopilot configuration",
    ),
    ("autopilot state", "Displays the current autopilot state"),
    (
        "raft list-peers",
        "Displays the current Raft peer configuration",
    ),
    (
        "raft remove-peer",
        "Removes a server from the Raft configuration",
    ),
    (
        "raft transfer-leader",
        "Moves Raft leadership to another server",
    ),
    (
        "usage instances",
        "Display service instance usage information",
    ),
];

fn help() -> String {
    super::group_usage(
        "Usage: cairn operator <subcommand> [options]\n\n  \
         Provides cluster-level tools for operators: the servers' Raft configuration and\n  \
         autopilot's settings.",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn operator ...`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = super::group_help(args, &help()) {
        return code;
    }
    match args {
        [area, cmd, rest @ ..] if area == "raft" => match cmd.as_str() {
            "list-peers" => list_peers(rest).await,
            "remove-peer" => remove_peer(rest).await,
            "transfer-leader" => transfer_leader(rest).await,
            other => super::unknown_subcommand("operator raft", other, &help()),
        },
        [area, cmd, rest @ ..] if area == "autopilot" => match cmd.as_str() {
            "get-config" => autopilot_get(rest).await,
            "set-config" => autopilot_set(rest).await,
            "state" => autopilot_state(rest).await,
            other => super::unknown_subcommand("operator autopilot", other, &help()),
        },
        [area, cmd, rest @ ..] if area == "usage" => match cmd.as_str() {
            "instances" => usage_instances(rest).await,
            other => super::unknown_subcommand("operator usage", other, &help()),
        },
        [area, ..] => super::unknown_subcommand("operator", area, &help()),
        [] => super::unknown_subcommand("operator", "", &help()),
    }
}

const LIST: Spec = Spec {
    usage: "
Usage: cairn operator raft list-peers [options]

  Displays the current Raft peer configuration.
",
    flags: &[],
    http: Http::Server,
};

async fn list_peers(args: &[String]) -> ExitCode {
    let p = match super::parse(&LIST, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let cfg: Value = match client
        .get_json("/v1/operator/raft/configuration", &[])
        .await
    {
        Ok(v) => v,
        Err(e) => return fail(format!("Error getting peers: {e}")),
    };
    let mut rows = vec![vec![
        "Node".to_string(),
        "ID".into(),
        "Address".into(),
        "State".into(),
        "Voter".into(),
        "RaftProtocol".into(),
    ]];
    for s in cfg["Servers"].as_array().into_iter().flatten() {
        let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
        // Consul's columns; `State` comes from the `Leader` flag.
        rows.push(vec![
            text("Node"),
            text("ID"),
            text("Address"),
            if s["Leader"] == true {
                "leader"
            } else {
                "follower"
            }
            .to_string(),
            (s["Voter"] == true).to_string(),
            text("ProtocolVersion"),
        ]);
    }
    out(columns(&rows).trim_end());
    ExitCode::SUCCESS
}

const REMOVE: Spec = Spec {
    usage: "
Usage: cairn operator raft remove-peer [options]

  Removes the server with the given -id or -address from the Raft configuration.
  Use it for a failed server that will not come back.
",
    flags: &[
        Flag::text("id", "id", "The node ID of the server to remove."),
        Flag::text(
            "address",
            "IP:port",
            "The RPC address of the server to remove.",
        ),
    ],
    http: Http::Client,
};

/// Removes a server from the Raft configuration: meant for one that is gone for good,
/// whose vote would otherwise keep counting towards the quorum.
async fn remove_peer(args: &[String]) -> ExitCode {
    let p = match super::parse(&REMOVE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (id, address) = (p.text_or_empty("id"), p.text_or_empty("address"));
    // Exactly one: naming both could name two different servers.
    if id.is_empty() == address.is_empty() {
        return fail("Error: exactly one of -id or -address is required");
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let q = if id.is_empty() {
        vec![("address", address.to_string())]
    } else {
        vec![("id", id.to_string())]
    };
    match client
        .call(
            reqwest::Method::DELETE,
            "/v1/operator/raft/peer",
            &q,
            None,
            false,
        )
        .await
    {
        Ok(_) => {
            out(&format!(
                "Removed peer with {}",
                if id.is_empty() {
                    format!("address \"{address}\"")
                } else {
                    format!("id \"{id}\"")
                }
            ));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error removing peer: {e}")),
    }
}

const TRANSFER: Spec = Spec {
    usage: "
Usage: cairn operator raft transfer-leader [options]

  Moves Raft leadership to the server with -id, or to the most up-to-date other
  server when no -id is given.
",
    flags: &[Flag::text("id", "id", "The node ID of the server to lead.")],
    http: Http::Client,
};

/// Asks the leader to hand over leadership, for example before restarting it, so that
/// the cluster does not wait for an election timeout.
async fn transfer_leader(args: &[String]) -> ExitCode {
    let p = match super::parse(&TRANSFER, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut q = Vec::new();
    if let Some(id) = p.text("id") {
        q.push(("id", id.to_string()));
    }
    match client
        .call(
            reqwest::Method::POST,
            "/v1/operator/raft/transfer-leader",
            &q,
            None,
            false,
        )
        .await
    {
        Ok(_) => {
            out("Success! Leadership transferred.");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error transferring leadership: {e}")),
    }
}

const AUTOPILOT_GET: Spec = Spec {
    usage: "
Usage: cairn operator autopilot get-config [options]

  Displays the current autopilot configuration.
",
    flags: &[],
    http: Http::Server,
};

/// The settings in the order and spelling `consul operator autopilot get-config` prints.
/// The last three are Consul Enterprise settings: shown with their values (defaults
/// here), so the output lines up with Consul's.
const AUTOPILOT_FIELDS: &[&str] = &[
    "CleanupDeadServers",
    "LastContactThreshold",
    "MaxTrailingLogs",
    "MinQuorum",
    "ServerStabilizationTime",
    "RedundancyZoneTag",
    "DisableUpgradeMigration",
    "UpgradeVersionTag",
];

/// Connects and reads the current autopilot settings.
async fn autopilot_config(
    p: &crate::flags::Parsed,
) -> Result<(super::client::Client, Value), ExitCode> {
    let client = super::connect(p)?;
    match client
        .get_json("/v1/operator/autopilot/configuration", &[])
        .await
    {
        Ok(v) => Ok((client, v)),
        Err(e) => Err(fail(format!("Error querying Autopilot configuration: {e}"))),
    }
}

const AUTOPILOT_STATE: Spec = Spec {
    usage: "
Usage: cairn operator autopilot state [options]

  Displays the current autopilot state: health, failure tolerance, the leader, the voters
  and each server's status.
",
    flags: &[Flag::text(
        "format",
        "pretty|json",
        "Output format: pretty (default) or json.",
    )],
    http: Http::Server,
};

/// `cairn operator autopilot state`: Consul's layout (its `prettyFormatter`), or the state's
/// JSON indented with four spaces as Consul prints it.
async fn autopilot_state(args: &[String]) -> ExitCode {
    let p = match super::parse(&AUTOPILOT_STATE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let format = p.text("format").unwrap_or("pretty").to_string();
    if format != "pretty" && format != "json" {
        return fail(format!("Error parsing arguments: Unknown format: {format}"));
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let state = match client.get_json("/v1/operator/autopilot/state", &[]).await {
        Ok(v) => v,
        Err(e) => return fail(format!("Error reading Autopilot state: {e}")),
    };
    if format == "json" {
        out(&super::output::json_indent(&state, "    "));
    } else {
        out(autopilot_pretty(&state).trim_end());
    }
    ExitCode::SUCCESS
}

/// The pretty form of `/v1/operator/autopilot/state`.
fn autopilot_pretty(state: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut s = String::new();
    s.push_str(&format!(
        "Healthy:                      {}\n",
        text(&state["Healthy"])
    ));
    s.push_str(&format!(
        "Failure Tolerance:            {}\n",
        text(&state["FailureTolerance"])
    ));
    s.push_str(&format!(
        "Optimistic Failure Tolerance: {}\n",
        text(&state["OptimisticFailureTolerance"])
    ));
    s.push_str(&format!(
        "Leader:                       {}\n",
        text(&state["Leader"])
    ));
    s.push_str("Voters:\n");
    for v in state["Voters"].as_array().into_iter().flatten() {
        s.push_str(&format!("   {}\n", text(v)));
    }
    s.push_str("Servers:\n");
    // Sorted by ID, as Consul sorts them.
    let mut servers: Vec<(&String, &Value)> = state["Servers"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    servers.sort_by(|a, b| a.0.cmp(b.0));
    for (id, srv) in servers {
        s.push_str(&format!("   {id}\n"));
        for (label, key) in [
            ("Name:            ", "Name"),
            ("Address:         ", "Address"),
            ("Version:         ", "Version"),
            ("Status:          ", "Status"),
            ("Node Type:       ", "NodeType"),
            ("Node Status:     ", "NodeStatus"),
            ("Healthy:         ", "Healthy"),
            ("Last Contact:    ", "LastContact"),
            ("Last Term:       ", "LastTerm"),
            ("Last Index:      ", "LastIndex"),
        ] {
            s.push_str(&format!("      {label}{}\n", text(&srv[key])));
        }
        if let Some(meta) = srv["Meta"].as_object().filter(|m| !m.is_empty()) {
            s.push_str("      Meta\n");
            let mut pairs: Vec<_> = meta.iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in pairs {
                s.push_str(&format!("         {k:?}: {:?}\n", text(v)));
            }
        }
    }
    s
}

async fn autopilot_get(args: &[String]) -> ExitCode {
    let p = match super::parse(&AUTOPILOT_GET, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (_, cfg) = match autopilot_config(&p).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    for f in AUTOPILOT_FIELDS {
        let v = match &cfg[*f] {
            // An empty string is printed quoted, as Consul does, so the line does not look cut.
            Value::String(s) if s.is_empty() => "\"\"".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out(&format!("{f} = {v}"));
    }
    ExitCode::SUCCESS
}

const AUTOPILOT_SET: Spec = Spec {
    usage: "
Usage: cairn operator autopilot set-config [options]

  Modifies the current autopilot configuration; settings not given keep their value.
",
    flags: &[
        Flag::text(
            "cleanup-dead-servers",
            "true|false",
            "Controls whether autopilot removes dead servers when a new one joins.",
        ),
        Flag::text(
            "last-contact-threshold",
            "duration",
            "Longest time a server may go without contact with the leader and stay healthy.",
        ),
        Flag::uint(
            "max-trailing-logs",
            "Most log entries a server may trail the leader by and stay healthy.",
        ),
        Flag::uint(
            "min-quorum",
            "Fewest servers autopilot keeps when it removes dead ones.",
        ),
        Flag::text(
            "server-stabilization-time",
            "duration",
            "How long a new server must be healthy before it becomes a voter.",
        ),
    ],
    http: Http::Client,
};

///
/// A read-modify-write: the current settings are read, the given flags change them, and
/// the write carries `cas=<ModifyIndex>`, so a change made meanwhile by someone else is
/// not overwritten (the command then fails and asks to retry, as Consul's does).
async fn autopilot_set(args: &[String]) -> ExitCode {
    let p = match super::parse(&AUTOPILOT_SET, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (client, mut cfg) = match autopilot_config(&p).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(v) = p.text("cleanup-dead-servers") {
        match v {
            "true" => cfg["CleanupDeadServers"] = Value::Bool(true),
            "false" => cfg["CleanupDeadServers"] = Value::Bool(false),
            other => {
                return fail(format!(
                    "Error parsing -cleanup-dead-servers: {other:?} is not true or false"
                ));
            }
        }
    }
    for (flag, field) in [
        ("last-contact-threshold", "LastContactThreshold"),
        ("server-stabilization-time", "ServerStabilizationTime"),
    ] {
        if let Some(v) = p.text(flag) {
            // Checked here so the error names the flag; the servers would refuse it too.
            if let Err(e) = cairn_catalog::duration::parse_go_duration(v) {
                return fail(format!("Error parsing -{flag}: {e}"));
            }
            cfg[field] = Value::String(v.to_string());
        }
    }
    for (flag, field) in [
        ("max-trailing-logs", "MaxTrailingLogs"),
        ("min-quorum", "MinQuorum"),
    ] {
        if p.is_set(flag) {
            cfg[field] = Value::from(p.uint(flag));
        }
    }
    let cas = cfg["ModifyIndex"].as_u64().unwrap_or(0);
    let body = match serde_json::to_vec(&cfg) {
        Ok(b) => b,
        Err(e) => return fail(format!("Error encoding the configuration: {e}")),
    };
    match client
        .put(
            "/v1/operator/autopilot/configuration",
            &[("cas", cas.to_string())],
            Some(body),
        )
        .await
    {
        Ok(r) if r.body.as_ref() == b"true" => {
            out("Configuration updated!");
            ExitCode::SUCCESS
        }
        Ok(_) => fail("Configuration could not be atomically updated, please try again"),
        Err(e) => fail(format!("Error setting Autopilot configuration: {e}")),
    }
}

const USAGE_INSTANCES: Spec = Spec {
    usage: "
Usage: cairn operator usage instances [options]

  Retrieves usage information about the number of services registered in a given
  datacenter. By default, the datacenter of the local agent is queried.

  To retrieve the service usage data:

      $ cairn operator usage instances

  To show only billable service instance counts:

      $ cairn operator usage instances -billable

  To show only connect service instance counts:

      $ cairn operator usage instances -connect
",
    flags: &[
        Flag::bool(
            "billable",
            "Display only billable service info. Cannot be used with -connect.",
        ),
        Flag::bool(
            "connect",
            "Display only Connect service info. Cannot be used with -billable.",
        ),
        Flag::bool(
            "all-datacenters",
            "Display service counts from all datacenters.",
        ),
    ],
    http: Http::Server,
};

/// `cairn operator usage instances`: billable and Connect instance counts in Consul's layout
/// (its tab-aligned tables).
async fn usage_instances(args: &[String]) -> ExitCode {
    let p = match super::parse(&USAGE_INSTANCES, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if !p.args.is_empty() {
        return fail(format!(
            "Too many arguments (expected 0, got {})",
            p.args.len()
        ));
    }
    let (billable_only, connect_only) = (p.bool("billable"), p.bool("connect"));
    if billable_only && connect_only {
        return fail("Cannot specify both -billable and -connect flags");
    }
    let all = p.bool("all-datacenters");
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let query: Vec<(&str, String)> = if all {
        vec![("global", String::new())]
    } else {
        Vec::new()
    };
    let v: Value = match client.get_json("/v1/operator/usage", &query).await {
        Ok(v) => v,
        Err(e) => return fail(format!("Error fetching usage information: {e}")),
    };
    let usage: Vec<(String, Value)> = v["Usage"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    if !connect_only {
        let total: u64 = usage
            .iter()
            .map(|(_, u)| u["BillableServiceInstances"].as_u64().unwrap_or(0))
            .sum();
        out(&format!("Billable Service Instances Total: {total}"));
        let mut per_dc: Vec<String> = usage
            .iter()
            .map(|(dc, u)| {
                format!(
                    "{dc} Billable Service Instances: {}",
                    u["BillableServiceInstances"].as_u64().unwrap_or(0)
                )
            })
            .collect();
        per_dc.sort();
        for line in per_dc {
            out(&line);
        }
        out("\nBillable Services");
        out(&(usage_table(&usage, true, all) + "\n"));
    }
    if !billable_only {
        out("Connect Services");
        out(&usage_table(&usage, false, all));
    }
    ExitCode::SUCCESS
}

/// One row of a usage table: datacenter, Connect kind (empty for billable rows), services,
/// instances.
type UsageRow = (String, String, u64, u64);

/// One of the usage tables, aligned as Go's `tabwriter` with a padding of 6 aligns it.
fn usage_table(usage: &[(String, Value)], billable: bool, show_dc: bool) -> String {
    let mut rows: Vec<UsageRow> = Vec::new();
    for (dc, u) in usage {
        if billable {
            rows.push((
                dc.clone(),
                String::new(),
                u["Services"].as_u64().unwrap_or(0),
                u["BillableServiceInstances"].as_u64().unwrap_or(0),
            ));
        } else if let Some(kinds) = u["ConnectServiceInstances"].as_object() {
            for (kind, n) in kinds {
                rows.push((dc.clone(), kind.clone(), 0, n.as_u64().unwrap_or(0)));
            }
        }
    }
    // By datacenter, then type, as Consul sorts them.
    rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut first = Vec::new();
    if show_dc {
        first.push("Datacenter".to_string());
    }
    first.push(if billable { "Services" } else { "Type" }.to_string());
    first.push("Service instances".to_string());
    table.push(first);
    let (mut services, mut instances) = (0, 0);
    for (dc, kind, n_services, n_instances) in &rows {
        let mut row = Vec::new();
        if show_dc {
            row.push(dc.clone());
        }
        row.push(if billable {
            n_services.to_string()
        } else {
            kind.clone()
        });
        row.push(n_instances.to_string());
        table.push(row);
        services += n_services;
        instances += n_instances;
    }
    // With a datacenter column there are several rows per table: Consul adds a blank row and
    // the totals.
    if show_dc {
        table.push(vec![String::new(), String::new(), String::new()]);
        table.push(if billable {
            vec!["Total".into(), services.to_string(), instances.to_string()]
        } else {
            vec!["Total".into(), String::new(), instances.to_string()]
        });
    }
    // Every column but the last is as wide as its widest cell plus 6 spaces.
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|c| {
            table
                .iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
                + 6
        })
        .collect();
    let mut text = String::new();
    for row in &table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            match widths.get(c) {
                Some(w) if c + 1 < row.len() => line.push_str(&format!("{cell:<w$}")),
                _ => line.push_str(cell),
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.trim().to_string()
}
