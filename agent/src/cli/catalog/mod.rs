//! `cairn catalog datacenters|nodes|services`: reads of the catalog.
//!
//! Consul's `catalog` command group: the same subcommands, flags and output, over the
//! `/v1/catalog/*` endpoints.

mod datacenters;
mod nodes;
mod services;

use std::process::ExitCode;

/// The subcommands with Consul's descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("datacenters", "Lists all known datacenters"),
    ("nodes", "Lists all nodes in the given datacenter"),
    ("services", "Lists all registered services in a datacenter"),
];

/// The group's help, printed without a subcommand or with `-h`.
fn help() -> String {
    super::group_usage(
        "Usage: cairn catalog <subcommand> [options] [args]\n\n  \
         Queries the catalog of registered nodes and services.",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn catalog ...`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = super::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return super::unknown_subcommand("catalog", "", &help());
    };
    match name.as_str() {
        "datacenters" => datacenters::run(rest).await,
        "nodes" => nodes::run(rest).await,
        "services" => services::run(rest).await,
        other => super::unknown_subcommand("catalog", other, &help()),
    }
}
