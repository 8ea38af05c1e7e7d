//! `cairn catalog services`: the service names of a datacenter (or of one node), optionally
//! with their tags.
//!
//! Names are printed sorted, one per line; with `-tags`, each name is followed by the
//! sorted, deduplicated union of its instances' tags.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use serde::Deserialize;

use crate::cli::output::{err, fail, out, pairs};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `catalog services`, with its help texts.
const FLAGS: &[Flag] = &[
    Flag::text(
        "node",
        "id or name",
        "Node id or name for which to list services.",
    ),
    Flag::map(
        "node-meta",
        "Metadata to filter nodes with the given key=value pairs. If specified, only services \
         running on nodes matching the given metadata will be returned. This flag may be \
         specified multiple times to filter on multiple sources of metadata.",
    ),
    Flag::bool(
        "tags",
        "Display each service's tags as a comma-separated list beside each service entry.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn catalog services [options]

  Retrieves the list of services registered in a given datacenter. By default,
  the datacenter of the local agent is queried.

      $ cairn catalog services
      $ cairn catalog services -tags
      $ cairn catalog services -node=web
      $ cairn catalog services -node-meta=\"foo=bar\"
",
    flags: FLAGS,
    http: Http::Server,
};

/// A service of `/v1/catalog/node/:node`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeService {
    #[serde(default)]
    service: String,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// `/v1/catalog/node/:node` (`null` for an unknown node).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServices {
    #[serde(default)]
    services: Option<BTreeMap<String, NodeService>>,
}

/// Runs `cairn catalog services`.
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
    let query = crate::cli::node_meta_query(&p);
    let services: BTreeMap<String, Vec<String>> = match p.text("node") {
        Some(node) => {
            let path = format!("/v1/catalog/node/{node}");
            match client.get_json::<Option<NodeServices>>(&path, &query).await {
                Ok(found) => {
                    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for s in found
                        .and_then(|n| n.services)
                        .unwrap_or_default()
                        .into_values()
                    {
                        // A node may run several instances of one service: their tags are merged.
                        map.entry(s.service)
                            .or_default()
                            .extend(s.tags.unwrap_or_default());
                    }
                    map
                }
                Err(e) => return fail(format!("Error listing services for node: {e}")),
            }
        }
        None => match client
            .get_json::<BTreeMap<String, Option<Vec<String>>>>("/v1/catalog/services", &query)
            .await
        {
            Ok(m) => m
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
            Err(e) => return fail(format!("Error listing services: {e}")),
        },
    };
    if services.is_empty() {
        err("No services match the given query - try expanding your search.");
        return ExitCode::SUCCESS;
    }
    if p.bool("tags") {
        let rows: Vec<(String, String)> = services
            .into_iter()
            .map(|(name, tags)| {
                // Sorted and deduplicated, as Consul prints them.
                let tags: BTreeSet<String> = tags.into_iter().collect();
                (name, tags.into_iter().collect::<Vec<_>>().join(","))
            })
            .collect();
        let text = pairs(&rows);
        for line in text.lines() {
            // A service without tags would otherwise end in padding.
            out(line.trim_end());
        }
    } else {
        for name in services.keys() {
            out(name);
        }
    }
    ExitCode::SUCCESS
}
