//! `cairn version`: the build's version, and the Consul API level it implements.
//!
//! Also reached as `cairn --version`. No agent is contacted: this is the binary's own version,
//! which may differ from a running agent's.

use std::process::ExitCode;

use serde_json::json;

use super::output::{fail, json_indent, out};
use crate::CONSUL_COMPAT_VERSION;
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

const FLAGS: &[Flag] = &[Flag::text(
    "format",
    "pretty|json",
    "Output format: pretty (default) or json.",
)];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn version [options]

  Prints the version of this binary and the Consul API level it implements.
",
    flags: FLAGS,
    http: Http::None,
};

/// Runs `cairn version`.
pub(crate) fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::no_args(&p) {
        return code;
    }
    match p.text("format").unwrap_or("pretty") {
        "pretty" => {
            // Consul's layout: tools read the version from the first line (`Consul v1.x.y`) and
            // compare it against the API level they need, so that line carries the Consul
            // level Cairn implements; Cairn's own version is the revision line.
            out(&format!("Consul v{CONSUL_COMPAT_VERSION}"));
            out(&format!("Revision cairn-v{}", crate::VERSION));
            out(&format!("Cairn v{}", crate::VERSION));
            out(
                // Consul's last line, kept word for word for scripts that read it.
                "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically \
                 use protocol >2 when speaking to compatible agents)",
            );
            ExitCode::SUCCESS
        }
        "json" => {
            let v = json!({
                // What tools compare: the Consul API level, as `/v1/agent/self` reports it.
                "Version": CONSUL_COMPAT_VERSION,
                "Revision": format!("cairn-v{}", crate::VERSION),
                "Prerelease": "",
                "FullVersion": CONSUL_COMPAT_VERSION,
                // The build records no date.
                "BuildDate": "",
                "CairnVersion": crate::VERSION,
            });
            out(&json_indent(&v, "  "));
            ExitCode::SUCCESS
        }
        other => fail(format!(
            "Invalid format \"{other}\": must be one of pretty, json"
        )),
    }
}
