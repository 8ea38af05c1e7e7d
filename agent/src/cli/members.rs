//! `cairn members`: the cluster members the agent knows, as Consul's table
//! (Node, Address, Status, Type, Build, Protocol, DC, Partition, Segment).
//!
//! The member list is the agent's gossip view (`/v1/agent/members`), not the catalog, so it
//! shows what this agent believes about each member right now, failed ones included. The
//! Partition and Segment columns are Consul Enterprise concepts, filled with Consul's
//! defaults so that scripts that pick columns by position keep working.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;

use serde::Deserialize;

use super::output::{columns, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `members`, with its help texts.
const FLAGS: &[Flag] = &[
    Flag::bool("detailed", "Provides detailed information about nodes."),
    Flag::bool(
        "wan",
        "If the agent is in server mode, this can be used to return the other peers in the \
         WAN pool.",
    ),
    Flag::text(
        "status",
        "regexp",
        "If provided, output is filtered to only nodes matching the regular expression for \
         status (alive, leaving, left, failed).",
    ),
    Flag::text(
        "segment",
        "name",
        "(Enterprise-only) If provided, output is filtered to only nodes in the given segment.",
    ),
    Flag::text("filter", "expression", "Filter to use with the request."),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn members [options]

  Outputs the members of a running agent's cluster. Exits with code 2 when no
  member matches -status.
",
    flags: FLAGS,
    http: Http::Client,
};

/// One entry of `/v1/agent/members`.
///
/// The gossip tags carry what the table shows besides name, address and status: `role`,
/// `build`, `vsn`, `dc`, `ap`, `segment`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Member {
    #[serde(default)]
    name: String,
    #[serde(default)]
    addr: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    tags: Option<BTreeMap<String, String>>,
    /// Serf's numeric member status (see [`status_name`]).
    #[serde(default)]
    status: i64,
}

/// Serf's member status names.
///
/// The numbering of Serf's `MemberStatus`, which the API exposes as a number.
fn status_name(status: i64) -> &'static str {
    match status {
        0 => "none",
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "unknown",
    }
}

/// `addr:port`, with an IPv6 address in brackets as Go's `JoinHostPort` writes it.
fn address(addr: &str, port: u16) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{addr}:{port}"),
    }
}

/// Whether a partition is the default one (empty means default).
fn is_default(partition: &str) -> bool {
    partition.is_empty() || partition == "default"
}

/// Runs `cairn members`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::no_args(&p) {
        return code;
    }
    // Compiled before connecting, so a bad expression fails without a request.
    let status_re = match regex::Regex::new(p.text("status").unwrap_or(".*")) {
        Ok(r) => r,
        Err(e) => return fail(format!("Failed to compile status regexp: {e}")),
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut query = Vec::new();
    if p.bool("wan") {
        query.push(("wan", "1".to_string()));
    }
    let all_segments = !p.is_set("segment");
    if let Some(s) = p.text("segment") {
        query.push(("segment", s.to_string()));
    }
    if let Some(f) = p.text("filter") {
        query.push(("filter", f.to_string()));
    }
    let members: Vec<Member> = match client.get_json("/v1/agent/members", &query).await {
        Ok(m) => m,
        Err(e) => return fail(format!("Error retrieving members: {e}")),
    };

    let mut rows: Vec<(Member, BTreeMap<String, String>)> = Vec::new();
    for mut m in members {
        let mut tags = m.tags.take().unwrap_or_default();
        let partition = tags.entry("ap".to_string()).or_default();
        if partition.is_empty() {
            *partition = "default".to_string();
        }
        let default_partition = is_default(&tags["ap"]);
        let server = tags.get("role").map(String::as_str) == Some("consul");
        if default_partition {
            let segment = tags.entry("segment".to_string()).or_default();
            // Consul's placeholders: a server serves every segment, a client without one is in
            // the default segment.
            if all_segments && server {
                *segment = "<all>".to_string();
            } else if segment.is_empty() {
                *segment = "<default>".to_string();
            }
        } else {
            tags.insert("segment".to_string(), String::new());
        }
        if status_re.is_match(status_name(m.status)) {
            rows.push((m, tags));
        }
    }
    if rows.is_empty() {
        // Consul's exit code for "no member matched", distinct from a failure (1), so that
        // scripts can test for it.
        return ExitCode::from(2);
    }
    // Servers first, then the default partition, then by segment, partition and name.
    rows.sort_by(|(a, at), (b, bt)| {
        let tag = |t: &BTreeMap<String, String>, k: &str| t.get(k).cloned().unwrap_or_default();
        let key = |m: &Member, t: &BTreeMap<String, String>| {
            (
                tag(t, "role") != "consul",
                !is_default(&tag(t, "ap")),
                tag(t, "segment"),
                tag(t, "ap"),
                m.name.clone(),
            )
        };
        key(a, at).cmp(&key(b, bt))
    });

    let mut table = Vec::with_capacity(rows.len() + 1);
    if p.bool("detailed") {
        table.push(vec![
            "Node".to_string(),
            "Address".to_string(),
            "Status".to_string(),
            "Tags".to_string(),
        ]);
        for (m, tags) in &rows {
            let joined = tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            table.push(vec![
                m.name.clone(),
                address(&m.addr, m.port),
                status_name(m.status).to_string(),
                joined,
            ]);
        }
    } else {
        table.push(
            [
                "Node",
                "Address",
                "Status",
                "Type",
                "Build",
                "Protocol",
                "DC",
                "Partition",
                "Segment",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        );
        for (m, tags) in &rows {
            let tag = |k: &str| tags.get(k).cloned().unwrap_or_default();
            let mut build = tag("build");
            if build.is_empty() {
                // Consul's text for a member too old to advertise its build.
                build = "< 0.3".to_string();
            // `1.2.3:abcdef`: the version without the commit.
            } else if let Some((b, _)) = build.split_once(':') {
                build = b.to_string();
            }
            let kind = match tag("role").as_str() {
                "consul" => "server",
                "node" => "client",
                _ => "unknown",
            };
            let mut row = vec![
                m.name.clone(),
                address(&m.addr, m.port),
                status_name(m.status).to_string(),
                kind.to_string(),
            ];
            // Not a Consul-style member: only what gossip itself knows is shown.
            if kind == "unknown" {
                row.extend(std::iter::repeat_n(String::new(), 5));
            } else {
                row.extend([build, tag("vsn"), tag("dc"), tag("ap"), tag("segment")]);
            }
            table.push(row);
        }
    }
    out(&columns(&table));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv6 addresses get brackets; statuses map to Serf's names.
    #[test]
    fn addresses_and_statuses() {
        assert_eq!(address("127.0.0.1", 8301), "127.0.0.1:8301");
        assert_eq!(address("::1", 8301), "[::1]:8301");
        assert_eq!(status_name(1), "alive");
        assert_eq!(status_name(4), "failed");
    }
}
