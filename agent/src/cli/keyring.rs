//! `cairn keygen` and `cairn keyring`: gossip encryption keys.
//!
//! Rotating the gossip key is Consul's three steps, each applied by every member before the
//! next is safe: `-install` the new key (members then accept it), `-use` it (members send
//! with it), `-remove` the old one. `-list` shows, per pool, how many members hold each key,
//! which is how an operator knows a step has reached everyone.

use std::process::ExitCode;

use serde_json::{Value, json};

use super::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

const KEYGEN: Spec = Spec {
    usage: "
Usage: cairn keygen

  Generates a new 32-byte encryption key for gossip traffic (base64), for -encrypt
  and `cairn keyring -install`.
",
    flags: &[],
    http: Http::None,
};

/// Runs `cairn keygen`.
///
/// No agent is contacted: the key comes from a cryptographically secure random source,
/// and a 32-byte key selects AES-256, the strongest the gossip layer accepts.
pub(crate) fn keygen(args: &[String]) -> ExitCode {
    let p = match super::parse(&KEYGEN, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::no_args(&p) {
        return code;
    }
    out(&cairn_gossip::keygen());
    ExitCode::SUCCESS
}

const KEYRING: Spec = Spec {
    usage: "
Usage: cairn keyring [options]

  Manages the gossip encryption keys of the cluster: every change is applied on every
  member. Exactly one of -list, -install, -use or -remove is required.
",
    flags: &[
        Flag::bool(
            "list",
            "List the installed keys and how many members hold each.",
        ),
        Flag::text("install", "key", "Install a new key on every member."),
        Flag::text(
            "use",
            "key",
            "Make an installed key the primary one everywhere.",
        ),
        Flag::text(
            "remove",
            "key",
            "Remove a key (not the primary) from every member.",
        ),
    ],
    http: Http::Client,
};

/// Runs `cairn keyring`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match super::parse(&KEYRING, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = super::no_args(&p) {
        return code;
    }
    let ops: Vec<(&str, Option<&str>)> = [
        ("list", p.bool("list").then_some("")),
        ("install", p.text("install")),
        ("use", p.text("use")),
        ("remove", p.text("remove")),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .collect();
    // Exactly one operation: several in one call would leave the keyring in an order the
    // operator did not choose if one of them failed.
    let [(op, Some(key))] = ops.as_slice() else {
        return fail(format!(
            "Exactly one of -list, -install, -use, or -remove must be provided\n{}",
            KEYRING.usage
        ));
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if *op == "list" {
        out("==> Gathering installed encryption keys...");
        let pools: Value = match client.get_json("/v1/operator/keyring", &[]).await {
            Ok(v) => v,
            Err(e) => return fail(format!("error: {e}")),
        };
        for pool in pools.as_array().into_iter().flatten() {
            let total = pool["NumNodes"].as_u64().unwrap_or(0);
            let dc = pool["Datacenter"].as_str().unwrap_or_default();
            out(&format!(
                "\n{} ({dc}):",
                if pool["WAN"] == true { "WAN" } else { "LAN" }
            ));
            // During a rotation different members may have different primaries: every key that is
            // primary somewhere is marked.
            let primaries = pool["PrimaryKeys"].as_object().cloned().unwrap_or_default();
            for (k, n) in pool["Keys"].as_object().into_iter().flatten() {
                let mark = if primaries.contains_key(k) {
                    " (primary)"
                } else {
                    ""
                };
                // `[holders/total]`: a key is fully installed when the two numbers match.
                out(&format!(
                    "  {k} [{}/{total}]{mark}",
                    n.as_u64().unwrap_or(0)
                ));
            }
        }
        return ExitCode::SUCCESS;
    }
    // Consul's keyring API: the operation is the HTTP method.
    let (method, verb) = match *op {
        "install" => (
            reqwest::Method::POST,
            "Installing new gossip encryption key",
        ),
        "use" => (
            reqwest::Method::PUT,
            "Changing primary gossip encryption key",
        ),
        _ => (reqwest::Method::DELETE, "Removing gossip encryption key"),
    };
    out(&format!("==> {verb}..."));
    let body = serde_json::to_vec(&json!({ "Key": key })).unwrap_or_default();
    match client
        .call(method, "/v1/operator/keyring", &[], Some(body), false)
        .await
    {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(format!("error: {e}")),
    }
}
