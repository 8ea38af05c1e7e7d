//! `cairn kv get|put|delete|export|import`: the key/value store.
//!
//! Consul's `kv` command group over `/v1/kv/*`. Values are bytes, not text: they are read
//! from files and stdin, written to stdout and sent to the agent unchanged, so binary values
//! (certificates, archives) survive a round trip.

mod delete;
mod export;
mod get;
mod import;
mod put;

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// The subcommands with Consul's descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("delete", "Removes data from the KV store"),
    ("export", "Exports a tree from the KV store as JSON"),
    ("get", "Retrieves or lists data from the KV store"),
    ("import", "Imports a tree stored as JSON to the KV store"),
    ("put", "Sets or updates data in the KV store"),
];

/// The group's help, printed without a subcommand or with `-h`.
fn help() -> String {
    super::group_usage(
        "Usage: cairn kv <subcommand> [options] [args]\n\n  \
         Interacts with the key-value store: keys are paths like config/app/port,\n  \
         values are arbitrary bytes.\n\n      \
         $ cairn kv put redis/config/connections 5\n      \
         $ cairn kv get redis/config/connections\n      \
         $ cairn kv get -recurse redis/\n      \
         $ cairn kv delete redis/config/connections",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn kv ...`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = super::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return super::unknown_subcommand("kv", "", &help());
    };
    match name.as_str() {
        "get" => get::run(rest).await,
        "put" => put::run(rest).await,
        "delete" => delete::run(rest).await,
        "export" => export::run(rest).await,
        "import" => import::run(rest).await,
        other => super::unknown_subcommand("kv", other, &help()),
    }
}

/// One entry of a `/v1/kv` read.
///
/// Only the fields the commands print; unknown fields of the answer are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Pair {
    /// The key.
    #[serde(default)]
    pub key: String,
    /// The index that created the key.
    #[serde(default)]
    pub create_index: u64,
    /// The index of the last write.
    #[serde(default)]
    pub modify_index: u64,
    /// How many times the lock was acquired.
    #[serde(default)]
    pub lock_index: u64,
    /// Opaque user flags.
    #[serde(default)]
    pub flags: u64,
    /// The value, base64 (`null` when empty).
    /// The API carries values as base64 inside JSON; `bytes` decodes them.
    #[serde(default)]
    pub value: Option<String>,
    /// The session holding the lock.
    #[serde(default)]
    pub session: Option<String>,
}

impl Pair {
    /// The decoded value.
    pub(crate) fn bytes(&self) -> Result<Vec<u8>, String> {
        match &self.value {
            None => Ok(Vec::new()),
            Some(v) => STANDARD
                .decode(v)
                .map_err(|e| format!("invalid base64 value for key {}: {e}", self.key)),
        }
    }
}

/// The API path of a key.
///
/// The key is escaped with the rest of the path when the request is made, so a key with
/// spaces or `?` addresses that key, not a query string.
pub(crate) fn key_path(key: &str) -> String {
    format!("/v1/kv/{key}")
}

/// Strips one leading `/`: keys never start with one, but users type `/foo`.
///
/// Consul's CLI does the same, so `kv get /foo` reads `foo`.
pub(crate) fn clean_key(key: &str) -> String {
    key.strip_prefix('/').unwrap_or(key).to_string()
}

/// Lists the pairs under a prefix (`?recurse`); a missing prefix is an empty list.
pub(crate) async fn list(
    client: &crate::cli::client::Client,
    prefix: &str,
) -> Result<Vec<Pair>, String> {
    let reply = client
        .get_allow_404(&key_path(prefix), &[("recurse", String::new())])
        .await
        .map_err(|e| e.to_string())?;
    // The API answers 404 when nothing is under the prefix; for a listing that is just
    // empty.
    if reply.status == 404 {
        return Ok(Vec::new());
    }
    reply
        .json::<Option<Vec<Pair>>>()
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
}

/// Reads a DATA argument: `@file` reads a file, `-` reads stdin, anything else is the data.
///
/// Read as bytes, so a binary file is stored as it is; [`crate::cli::load_data`] is the
/// text version for filters.
pub(crate) fn data_arg(data: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(path).map_err(|e| format!("Failed to read file: {e}"));
    }
    if data == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        return Ok(buf);
    }
    Ok(data.as_bytes().to_vec())
}
