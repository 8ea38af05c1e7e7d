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
            out(&format!("Cairn v{}", crate::VERSION));
            out(&format!(
                "Consul API compatibility: v{CONSUL_COMPAT_VERSION}"
            ));
            out(
                // Consul's third line, kept word for word for scripts that read it.
                "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically \
                 use protocol >2 when speaking to compatible agents)",
            );
            ExitCode::SUCCESS
        }
        "json" => {
            let v = json!({
                "Version": crate::VERSION,
                // Consul's JSON fields; the build records no revision or date, so they are empty.
                "Revision": "",
                "Prerelease": "",
                "FullVersion": crate::VERSION,
                "BuildDate": "",
                "ConsulCompatVersion": CONSUL_COMPAT_VERSION,
            });
            out(&json_indent(&v, "  "));
            ExitCode::SUCCESS
        }
        other => fail(format!(
            "Invalid format \"{other}\": must be one of pretty, json"
        )),
    }
}
