//! `cairn catalog datacenters`: the known datacenters, one per line.
//!
//! One name per line, in the order the servers return them, so the output pipes into
//! other commands as it is.

use std::process::ExitCode;

use crate::cli::output::{fail, out};
use crate::cli::spec::{Http, Spec};

/// Consul's usage text; no options beyond the shared HTTP ones.
const SPEC: Spec = Spec {
    usage: "
Usage: cairn catalog datacenters [options]

  Retrieves the list of all known datacenters, sorted by the estimated median
  round trip time from the servers of this datacenter.

      $ cairn catalog datacenters
",
    flags: &[],
    http: Http::Server,
};

/// Runs `cairn catalog datacenters`.
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
    let dcs: Vec<String> = match client.get_json("/v1/catalog/datacenters", &[]).await {
        Ok(d) => d,
        Err(e) => return fail(format!("Error listing datacenters: {e}")),
    };
    for dc in dcs {
        out(&dc);
    }
    ExitCode::SUCCESS
}
