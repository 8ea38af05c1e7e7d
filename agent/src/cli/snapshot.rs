//! `cairn snapshot save|restore|inspect`: point-in-time copies of the cluster's state.
//!
//! Cairn's snapshot format is its own (the servers' state with a SHA-256 checksum), not
//! Consul's archive, so a snapshot moves between Cairn clusters only. Every file is verified
//! before it is trusted: after a download, before an upload, and by `inspect`, so a truncated
//! or corrupted file is caught by the command that handles it rather than by the servers.

use std::process::ExitCode;

use cairn_catalog::snapshot;

use super::output::{fail, out};
use crate::cli::spec::{Http, Spec};

/// The subcommands with their descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    (
        "inspect",
        "Displays information about a Cairn snapshot file",
    ),
    ("restore", "Restores a snapshot into the cluster"),
    ("save", "Saves a snapshot of the cluster's state to a file"),
];

fn help() -> String {
    super::group_usage(
        "Usage: cairn snapshot <subcommand> [options] [args]\n\n  \
         Saves, restores and inspects snapshots of the servers' state (catalog, KV store,\n  \
         sessions). A snapshot is a consistent point-in-time copy with a SHA-256 checksum.",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn snapshot ...`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = super::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return super::unknown_subcommand("snapshot", "", &help());
    };
    match name.as_str() {
        "save" => save(rest).await,
        "restore" => restore(rest).await,
        "inspect" => inspect(rest),
        other => super::unknown_subcommand("snapshot", other, &help()),
    }
}

const SAVE: Spec = Spec {
    usage: "
Usage: cairn snapshot save [options] FILE

  Retrieves an atomic, point-in-time snapshot of the state of the servers, which
  includes key/value entries, service catalog and sessions, and writes it to FILE.
  Use -stale to allow any server (not only the leader) to take it.
",
    flags: &[],
    http: Http::Server,
};

/// The single FILE argument every subcommand takes, or the usage error.
fn one_file(p: &crate::flags::Parsed, usage: &str) -> Result<String, ExitCode> {
    match p.args.as_slice() {
        [f] => Ok(f.clone()),
        _ => Err(fail(format!(
            "This command takes one argument: <file>\n{usage}"
        ))),
    }
}

async fn save(args: &[String]) -> ExitCode {
    let p = match super::parse(&SAVE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let file = match one_file(&p, SAVE.usage) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let reply = match client.download("/v1/snapshot").await {
        Ok(r) => r,
        Err(e) => return fail(format!("Error saving snapshot: {e}")),
    };
    // Verify before writing, so a damaged transfer never lands as a "good" file.
    let index = match snapshot::index_of(&reply.body) {
        Ok(i) => i,
        Err(e) => return fail(format!("Error verifying snapshot: {e}")),
    };
    // Written next to the target and renamed over it: an interrupted save never leaves a
    // half-written file under the name, nor destroys the previous snapshot there.
    let tmp = format!("{file}.tmp");
    if let Err(e) = std::fs::write(&tmp, &reply.body).and_then(|()| std::fs::rename(&tmp, &file)) {
        return fail(format!("Error writing snapshot file {file}: {e}"));
    }
    out(&format!(
        "Saved and verified snapshot to index {index} ({} bytes)",
        reply.body.len()
    ));
    ExitCode::SUCCESS
}

const RESTORE: Spec = Spec {
    usage: "
Usage: cairn snapshot restore [options] FILE

  Restores an atomic, point-in-time snapshot of the state of the servers, which
  includes key/value entries, service catalog and sessions. Everything written after
  the snapshot was taken is replaced. This is a disaster-recovery operation.
",
    flags: &[],
    http: Http::Client,
};

async fn restore(args: &[String]) -> ExitCode {
    let p = match super::parse(&RESTORE, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let file = match one_file(&p, RESTORE.usage) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => return fail(format!("Error opening snapshot file {file}: {e}")),
    };
    // Checked before the upload: a bad file is refused here, with its name, instead of
    // after sending it whole.
    if let Err(e) = snapshot::index_of(&bytes) {
        return fail(format!("Error verifying snapshot file {file}: {e}"));
    }
    let client = match super::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let size = bytes.len();
    match client.upload("/v1/snapshot", bytes).await {
        Ok(_) => {
            out(&format!("Restored snapshot ({size} bytes)"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error restoring snapshot: {e}")),
    }
}

const INSPECT: Spec = Spec {
    usage: "
Usage: cairn snapshot inspect FILE

  Verifies a snapshot file and prints what it holds: its index and how many nodes,
  services, checks, KV entries and sessions.
",
    flags: &[],
    http: Http::None,
};

/// Reads and verifies a snapshot offline: no agent is needed, so a backup can be checked
/// where it is stored.
fn inspect(args: &[String]) -> ExitCode {
    let p = match super::parse(&INSPECT, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let file = match one_file(&p, INSPECT.usage) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => return fail(format!("Error opening snapshot file {file}: {e}")),
    };
    let st = match snapshot::read(&bytes) {
        Ok(s) => s,
        Err(e) => return fail(format!("Error verifying snapshot file {file}: {e}")),
    };
    let checks = st.checks_in_state(None).1.len();
    let services: usize = st.all_service_nodes().1.len();
    let rows = [
        ("Index", st.last_index().to_string()),
        ("Size", bytes.len().to_string()),
        ("Checksum", "SHA-256, verified".to_string()),
        ("Nodes", st.nodes().1.len().to_string()),
        ("Services", services.to_string()),
        ("Checks", checks.to_string()),
        ("KV entries", st.kv_len().to_string()),
        ("Sessions", st.sessions().1.len().to_string()),
    ];
    for (k, v) in rows {
        out(&format!("{k:<12}{v}"));
    }
    ExitCode::SUCCESS
}
