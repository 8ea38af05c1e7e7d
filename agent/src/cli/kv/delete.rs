//! `cairn kv delete`: removes a key, a prefix (`-recurse`), or a key at a known index (`-cas`).
//!
//! Deleting a key that does not exist succeeds, as in Consul: the end state is the one asked
//! for. `-recurse` with no key deletes the whole store.

use std::process::ExitCode;

use super::{clean_key, key_path};
use crate::cli::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `kv delete`, with its help texts.
const FLAGS: &[Flag] = &[
    Flag::bool(
        "cas",
        "Perform a Check-And-Set operation. Specifying this value also requires the \
         -modify-index flag to be set. The default value is false.",
    ),
    Flag::uint(
        "modify-index",
        "Unsigned integer representing the ModifyIndex of the key. This is used in combination \
         with the -cas flag.",
    ),
    Flag::bool(
        "recurse",
        "Recursively delete all keys with the path. The default value is false.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn kv delete [options] KEY_OR_PREFIX

  Removes the value from the key-value store at the given path. If no key
  exists at the path, no action is taken.

      $ cairn kv delete foo

  To delete all keys which start with \"foo\", specify the -recurse option:

      $ cairn kv delete -recurse foo

  This will delete the keys named \"foo\", \"food\", and \"foo/bar/zip\" if they
  existed.
",
    flags: FLAGS,
    http: Http::Server,
};

/// Runs `cairn kv delete`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match crate::cli::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let key = match p.args.as_slice() {
        [] => String::new(),
        [k] => clean_key(k),
        more => {
            return fail(format!(
                "Too many arguments (expected 1, got {})",
                more.len()
            ));
        }
    };
    let (cas, recurse, modify_index) = (p.bool("cas"), p.bool("recurse"), p.uint("modify-index"));
    if key.is_empty() && !recurse {
        return fail("Error! Missing KEY argument");
    }
    // A delete-CAS at index 0 could only match a key that does not exist.
    if cas && modify_index == 0 {
        return fail(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than 0.",
        );
    }
    if modify_index != 0 && !cas {
        return fail("Cannot specify -modify-index without -cas!");
    }
    if recurse && cas {
        return fail("Cannot specify both -cas and -recurse!");
    }
    let client = match crate::cli::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if recurse {
        return match client
            .delete(&key_path(&key), &[("recurse", String::new())])
            .await
        {
            Ok(_) => {
                out(&format!("Success! Deleted keys with prefix: {key}"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("Error! Did not delete prefix {key}: {e}")),
        };
    }
    if cas {
        return match client
            .delete(&key_path(&key), &[("cas", modify_index.to_string())])
            .await
        {
            // The API answers `false` when the key changed since the given index.
            Ok(r) if r.body.as_ref().trim_ascii() == b"true" => {
                out(&format!("Success! Deleted key: {key}"));
                ExitCode::SUCCESS
            }
            Ok(_) => fail(format!("Error! Did not delete key {key}: CAS failed")),
            Err(e) => fail(format!("Error! Did not delete key {key}: {e}")),
        };
    }
    match client.delete(&key_path(&key), &[]).await {
        Ok(_) => {
            out(&format!("Success! Deleted key: {key}"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error deleting key {key}: {e}")),
    }
}
