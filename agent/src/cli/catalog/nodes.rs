//! `cairn catalog nodes`: the nodes of a datacenter as a table (Node, ID, Address, DC, and
//! with `-detailed` the full ID, tagged addresses and metadata).
//!
//! With `-service` the nodes come from `/v1/catalog/service/:s` (the nodes running an
//! instance), otherwise from `/v1/catalog/nodes`; both are shown the same way.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde::Deserialize;

use crate::cli::output::{columns, err, fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `catalog nodes`, with its help texts.
const FLAGS: &[Flag] = &[
    Flag::bool(
        "detailed",
        "Output detailed information about the nodes including their addresses and metadata.",
    ),
    Flag::text(
        "near",
        "node",
        "Node name to sort the node list in ascending order based on estimated round-trip \
         time from that node. Passing \"_agent\" will use this agent's node for sorting.",
    ),
    Flag::map(
        "node-meta",
        "Metadata to filter nodes with the given key=value pairs. This flag may be specified \
         multiple times to filter on multiple sources of metadata.",
    ),
    Flag::text(
        "service",
        "id or name",
        "Service id or name to filter nodes. Only nodes which are providing the given service \
         will be returned.",
    ),
    Flag::text(
        "filter",
        "expression",
        "Filter to use with the request. @file reads it from a file, - from stdin.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn catalog nodes [options]

  Retrieves the list of nodes registered in a given datacenter. By default, the
  datacenter of the local agent is queried.

      $ cairn catalog nodes
      $ cairn catalog nodes -detailed
      $ cairn catalog nodes -service=web
      $ cairn catalog nodes -node-meta=\"foo=bar\"
      $ cairn catalog nodes -near=node-web
",
    flags: FLAGS,
    http: Http::Server,
};

/// The node fields the table shows (from `/v1/catalog/nodes` or `/v1/catalog/service/:s`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default, rename = "ID")]
    id: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default)]
    meta: Option<BTreeMap<String, String>>,
    /// The node metadata in a catalog service entry.
    /// Service entries call it `NodeMeta`; it is moved into `meta` so one table serves
    /// both endpoints.
    #[serde(default)]
    node_meta: Option<BTreeMap<String, String>>,
}

/// A map as `k=v, k=v` in key order, Consul's cell format for tagged addresses and meta.
fn key_values(m: &Option<BTreeMap<String, String>>) -> String {
    m.iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `cairn catalog nodes`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match crate::cli::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = crate::cli::no_args(&p) {
        return code;
    }
    let client = match crate::cli::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut query = crate::cli::node_meta_query(&p);
    if let Some(near) = p.text("near") {
        query.push(("near", near.to_string()));
    }
    if let Some(f) = p.text("filter") {
        match crate::cli::load_data(f) {
            Ok(f) => query.push(("filter", f)),
            Err(e) => return fail(format!("Could not process filter argument: {e}")),
        }
    }
    let nodes: Vec<Node> = match p.text("service") {
        Some(svc) => {
            let path = format!("/v1/catalog/service/{svc}");
            match client.get_json::<Vec<Node>>(&path, &query).await {
                Ok(entries) => entries
                    .into_iter()
                    .map(|mut n| {
                        n.meta = n.node_meta.take();
                        n
                    })
                    .collect(),
                Err(e) => return fail(format!("Error listing nodes for service: {e}")),
            }
        }
        None => match client.get_json("/v1/catalog/nodes", &query).await {
            Ok(n) => n,
            Err(e) => return fail(format!("Error listing nodes: {e}")),
        },
    };
    if nodes.is_empty() {
        // Consul's message, on stderr with exit code 0: an empty result is not an error.
        err("No nodes match the given query - try expanding your search.");
        return ExitCode::SUCCESS;
    }
    let detailed = p.bool("detailed");
    let mut table = Vec::with_capacity(nodes.len() + 1);
    let mut header = vec!["Node", "ID", "Address", "DC"];
    if detailed {
        header.extend(["TaggedAddresses", "Meta"]);
    }
    table.push(header.into_iter().map(String::from).collect::<Vec<_>>());
    for n in &nodes {
        if detailed {
            table.push(vec![
                n.node.clone(),
                n.id.clone(),
                n.address.clone(),
                n.datacenter.clone(),
                key_values(&n.tagged_addresses),
                key_values(&n.meta),
            ]);
        } else {
            // The short form shows the first group of the ID only.
            let id = match n.id.find('-') {
                Some(i) if i > 0 => n.id[..i].to_string(),
                _ => n.id.clone(),
            };
            table.push(vec![
                n.node.clone(),
                id,
                n.address.clone(),
                n.datacenter.clone(),
            ]);
        }
    }
    out(&columns(&table));
    ExitCode::SUCCESS
}
