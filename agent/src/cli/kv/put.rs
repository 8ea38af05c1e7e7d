//! `cairn kv put`: writes a value (literal, `@file` or `-` for stdin), with check-and-set,
//! flags and session locks.
//!
//! The API answers a conditional write (`cas`, `acquire`, `release`) with `true` or `false`
//! in the body rather than with an error status; the command turns `false` into Consul's
//! failure message and exit code 1.

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{clean_key, data_arg, key_path};
use crate::cli::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `kv put`, with its help texts.
const FLAGS: &[Flag] = &[
    Flag::bool(
        "acquire",
        "Obtain a lock on the key. If the key does not exist, this operation will create the \
         key and obtain the lock. The session must already exist and be specified via the \
         -session flag. The default value is false.",
    ),
    Flag::bool(
        "base64",
        "Treat the data as base 64 encoded. The default value is false.",
    ),
    Flag::bool(
        "cas",
        "Perform a Check-And-Set operation. Specifying this value also requires the \
         -modify-index flag to be set. The default value is false.",
    ),
    Flag::uint(
        "flags",
        "Unsigned integer value to assign to this key-value pair. This value is not read by \
         the agent, so clients can use this value however makes sense for their use case. The \
         default value is 0 (no flags).",
    ),
    Flag::uint(
        "modify-index",
        "Unsigned integer representing the ModifyIndex of the key. This is used in combination \
         with the -cas flag.",
    ),
    Flag::bool(
        "release",
        "Forfeit the lock on the key at the given path. This requires the -session flag to be \
         set. The key must be held by the session in order to be unlocked. The default value \
         is false.",
    ),
    Flag::text(
        "session",
        "string",
        "User-defined identifier for this session as a string. This is commonly used with the \
         -acquire and -release operations to build robust locking, but it can be set on any \
         key. The default value is empty (no session).",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn kv put [options] KEY [DATA]

  Writes the data to the given path in the key-value store. The data can be of
  any type.

      $ cairn kv put config/redis/maxconns 5

  The data can also be consumed from a file on disk by prefixing with the \"@\"
  symbol, or read from stdin using the \"-\" symbol:

      $ cairn kv put config/program/license @license.lic
      $ echo \"abcd1234\" | cairn kv put config/program/license -

  The DATA argument itself is optional. If omitted, this will create an empty
  key-value pair at the specified path. If the -base64 flag is specified, the
  data will be treated as base 64 encoded.

  To perform a Check-And-Set operation, specify the -cas flag with the
  appropriate -modify-index flag corresponding to the key you want to perform
  the CAS operation on:

      $ cairn kv put -cas -modify-index=844 config/redis/maxconns 5
",
    flags: FLAGS,
    http: Http::Server,
};

/// Runs `cairn kv put`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match crate::cli::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (key, data) = match p.args.as_slice() {
        [] => return fail("Error! Missing KEY argument"),
        [k] => (k.clone(), Vec::new()),
        // An explicit empty argument writes an empty value, as with no DATA at all.
        [k, d] if d.is_empty() => (k.clone(), Vec::new()),
        [k, d] => match data_arg(d) {
            Ok(data) => (k.clone(), data),
            Err(e) => return fail(format!("Error! {e}")),
        },
        more => {
            return fail(format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                more.len()
            ));
        }
    };
    let key = clean_key(&key);
    let data = if p.bool("base64") {
        let text = String::from_utf8_lossy(&data);
        // Trimmed: `echo` and files end the data with a newline that is not base64.
        match STANDARD.decode(text.trim()) {
            Ok(d) => d,
            Err(e) => return fail(format!("Error! Cannot base 64 decode data: {e}")),
        }
    } else {
        data
    };
    let (cas, acquire, release) = (p.bool("cas"), p.bool("acquire"), p.bool("release"));
    let session = p.text_or_empty("session").to_string();
    if (acquire || release) && session.is_empty() {
        return fail("Error! Missing -session (required with -acquire and -release)");
    }
    let modify_index = p.uint("modify-index");
    // An index of 0 would mean "only if the key does not exist"; like Consul's, the
    // command asks for an explicit index with `-cas`.
    if cas && modify_index == 0 {
        return fail("Must specify -modify-index with -cas!");
    }
    let client = match crate::cli::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut query = Vec::new();
    let flags = p.uint("flags");
    // 0 is the API's default; sending it would change nothing.
    if flags != 0 {
        query.push(("flags", flags.to_string()));
    }
    // One condition per write: `-cas` wins over the lock flags.
    if cas {
        query.push(("cas", modify_index.to_string()));
    } else if acquire {
        query.push(("acquire", session));
    } else if release {
        query.push(("release", session));
    }
    let reply = client.put(&key_path(&key), &query, Some(data)).await;
    let written = match &reply {
        Ok(r) => r.body.as_ref().trim_ascii() == b"true",
        Err(_) => false,
    };
    match (reply, cas, acquire, release) {
        (Err(e), true, _, _) => fail(format!("Error! Did not write to {key}: {e}")),
        (Err(e), _, _, _) => fail(format!("Error! Failed writing data: {e}")),
        (Ok(_), true, _, _) if !written => {
            fail(format!("Error! Did not write to {key}: CAS failed"))
        }
        (Ok(_), _, true, _) if !written => fail("Error! Did not acquire lock"),
        (Ok(_), _, true, _) => {
            out(&format!("Success! Lock acquired on: {key}"));
            ExitCode::SUCCESS
        }
        (Ok(_), _, _, true) if !written => fail("Error! Did not release lock"),
        (Ok(_), _, _, true) => {
            out(&format!("Success! Lock released on: {key}"));
            ExitCode::SUCCESS
        }
        (Ok(_), _, _, _) => {
            out(&format!("Success! Data written to: {key}"));
            ExitCode::SUCCESS
        }
    }
}
