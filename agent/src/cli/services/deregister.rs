//! `cairn services deregister`: removes services from the local agent, by `-id` or by the
//! definition files they were registered from.
//!
//! Only the local agent's registrations can be removed this way, as with Consul: the agent
//! owns them, and a catalog-only deregistration would be undone by its anti-entropy.

use std::process::ExitCode;

use super::{field_str, services_from_file};
use crate::cli::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's single flag for `services deregister`.
const FLAGS: &[Flag] = &[Flag::text(
    "id",
    "id",
    "ID to delete. This must not be set if arguments are given.",
)];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn services deregister [options] [FILE...]

  Deregister one or more services that were previously registered with the
  local agent.

      $ cairn services deregister web.json db.json

  The -id flag may be used to deregister a single service by ID:

      $ cairn services deregister -id=web

  Services are deregistered from the local agent catalog. This command must be
  run against the same agent where the service was registered.
",
    flags: FLAGS,
    http: Http::Client,
};

/// Runs `cairn services deregister`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match crate::cli::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let id = p.text_or_empty("id").to_string();
    if p.args.is_empty() && id.is_empty() {
        return fail("Service deregistration requires at least one argument or -id.");
    }
    if !p.args.is_empty() && !id.is_empty() {
        return fail("Service deregistration requires arguments or -id, not both.");
    }
    let ids: Vec<String> = if p.args.is_empty() {
        vec![id]
    } else {
        let mut ids = Vec::new();
        for file in &p.args {
            match services_from_file(file) {
                Ok(list) => {
                    for s in list {
                        let id = field_str(&s, "ID");
                        // A definition without an ID was registered under its name.
                        ids.push(if id.is_empty() {
                            field_str(&s, "Name")
                        } else {
                            id
                        });
                    }
                }
                Err(e) => return fail(format!("Error: {e}")),
            }
        }
        ids
    };
    let client = match crate::cli::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // A definition with neither ID nor name cannot have been registered: skipped.
    for id in ids.into_iter().filter(|i| !i.is_empty()) {
        let path = format!("/v1/agent/service/deregister/{id}");
        if let Err(e) = client.put(&path, &[], None).await {
            return fail(format!("Error deregistering service {id:?}: {e}"));
        }
        out(&format!("Deregistered service: {id}"));
    }
    ExitCode::SUCCESS
}
