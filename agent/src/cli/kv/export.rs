//! `cairn kv export`: a prefix as Consul's JSON export format,
//! `[{"key": ..., "flags": ..., "value": <base64>}]`, indented with tabs.
//!
//! The format is Consul's, byte for byte, so an export moves between Consul and Cairn
//! clusters in either direction (`consul kv import` reads it).

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{clean_key, list};
use crate::cli::output::{fail, json_indent, out};
use crate::cli::spec::{Http, Spec};

const SPEC: Spec = Spec {
    usage: "
Usage: cairn kv export [KEY_OR_PREFIX]

  Retrieves key-value pairs for the given prefix from the key-value store, and
  writes a JSON representation to stdout. This can be used with the command
  \"cairn kv import\" (or \"consul kv import\") to move entire trees between
  clusters.

      $ cairn kv export vault
",
    flags: &[],
    http: Http::Server,
};

/// One exported pair, in Consul's field names and order.
///
/// The field order is the serialization order, kept as Consul's so that both tools write
/// the same document for the same data.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The key.
    pub key: String,
    /// Opaque user flags.
    #[serde(default)]
    pub flags: u64,
    /// The value, base64.
    #[serde(default)]
    pub value: String,
    /// Enterprise namespace (kept when present, ignored on import).
    ///
    /// Consul Enterprise exports carry it and `partition`; accepting both lets such an export
    /// be imported here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Enterprise partition (kept when present, ignored on import).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

/// Runs `cairn kv export`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match crate::cli::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let prefix = match p.args.as_slice() {
        [] => String::new(),
        [k] => clean_key(k),
        more => {
            return fail(format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ));
        }
    };
    let client = match crate::cli::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let pairs = match list(&client, &prefix).await {
        Ok(l) => l,
        Err(e) => return fail(format!("Error querying Cairn agent: {e}")),
    };
    let mut entries = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        let value = match pair.bytes() {
            Ok(v) => v,
            Err(e) => return fail(format!("Error exporting KV data: {e}")),
        };
        entries.push(Entry {
            key: pair.key.clone(),
            flags: pair.flags,
            value: STANDARD.encode(value),
            namespace: None,
            partition: None,
        });
    }
    out(&json_indent(&entries, "\t"));
    ExitCode::SUCCESS
}
