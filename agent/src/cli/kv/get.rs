//! `cairn kv get`: one value, a recursive listing (`key:value`), keys only, or the detailed
//! metadata of each pair.
//!
//! The output shapes are Consul's: a value alone is written raw (no quoting, no encoding,
//! any bytes), a listing as `key:value` lines, and `-detailed` as the aligned field list.

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Pair, clean_key, key_path, list};
use crate::cli::output::{fail, out, out_bytes, pairs};
use crate::cli::spec::{Http, Spec};
use crate::flags::Flag;

/// Consul's flags for `kv get`, with its help texts.
const FLAGS: &[Flag] = &[
    Flag::bool(
        "base64",
        "Base64 encode the value. The default value is false.",
    ),
    Flag::bool(
        "detailed",
        "Provide additional metadata about the key in addition to the value such as the \
         ModifyIndex and any flags that may have been set on the key. The default value is \
         false.",
    ),
    Flag::bool(
        "keys",
        "List keys which start with the given prefix, but not their values. This option is \
         commonly combined with the -separator option. The default value is false.",
    ),
    Flag::bool(
        "recurse",
        "Recursively look at all keys prefixed with the given path. The default value is false.",
    ),
    Flag::text(
        "separator",
        "string",
        "String to use as a separator between keys. The default value is \"/\", but this \
         option is only taken into account when paired with the -keys flag.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn kv get [options] [KEY_OR_PREFIX]

  Retrieves the value from the key-value store at the given key name. If no key
  exists with that name, an error is returned. If a key exists with that name
  but has no data, nothing is returned. If the name or prefix is omitted, it
  defaults to \"\" which is the root of the key-value store.

      $ cairn kv get foo
      $ cairn kv get -detailed foo
      $ cairn kv get -recurse foo
      $ cairn kv get -keys foo
",
    flags: FLAGS,
    http: Http::Server,
};

/// The `-detailed` block of one pair, in Consul's field order; `-` for no session.
fn detailed(pair: &Pair, value: &[u8], b64: bool) -> String {
    let value = if b64 {
        STANDARD.encode(value)
    } else {
        String::from_utf8_lossy(value).into_owned()
    };
    let session = pair
        .session
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".to_string());
    pairs(&[
        ("CreateIndex".into(), pair.create_index.to_string()),
        ("Flags".into(), pair.flags.to_string()),
        ("Key".into(), pair.key.clone()),
        ("LockIndex".into(), pair.lock_index.to_string()),
        ("ModifyIndex".into(), pair.modify_index.to_string()),
        ("Session".into(), session),
        ("Value".into(), value),
    ])
}

/// Runs `cairn kv get`.
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
    let (recurse, keys, b64, detail) = (
        p.bool("recurse"),
        p.bool("keys"),
        p.bool("base64"),
        p.bool("detailed"),
    );
    // An empty key is the root: fine for a listing, meaningless for a single read.
    if key.is_empty() && !(recurse || keys) {
        return fail("Error! Missing KEY argument");
    }
    let client = match crate::cli::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };

    if keys {
        let mut query = vec![("keys", String::new())];
        // With a separator the API lists keys up to the next separator only, like a directory
        // listing; `-separator=""` lists every key.
        let sep = p.text("separator").unwrap_or("/");
        if !sep.is_empty() {
            query.push(("separator", sep.to_string()));
        }
        let reply = match client.get_allow_404(&key_path(&key), &query).await {
            Ok(r) => r,
            Err(e) => return fail(format!("Error querying Cairn agent: {e}")),
        };
        // No key under the prefix: nothing to print, and not an error (Consul's behaviour).
        if reply.status == 404 {
            return ExitCode::SUCCESS;
        }
        let list: Vec<String> = match reply.json::<Option<Vec<String>>>() {
            Ok(l) => l.unwrap_or_default(),
            Err(e) => return fail(format!("Error querying Cairn agent: {e}")),
        };
        for k in list {
            out(&k);
        }
        return ExitCode::SUCCESS;
    }

    if recurse {
        let list = match list(&client, &key).await {
            Ok(l) => l,
            Err(e) => return fail(format!("Error querying Cairn agent: {e}")),
        };
        let n = list.len();
        for (i, pair) in list.iter().enumerate() {
            let value = match pair.bytes() {
                Ok(v) => v,
                Err(e) => return fail(format!("Error rendering KV pair: {e}")),
            };
            if detail {
                out(&detailed(pair, &value, b64));
                // Blocks are separated by an empty line, with none after the last.
                if i + 1 < n {
                    out("");
                }
            } else if b64 {
                out(&format!("{}:{}", pair.key, STANDARD.encode(&value)));
            } else {
                // Raw bytes after the colon, as Consul prints them: a value may not be UTF-8.
                let mut line = format!("{}:", pair.key).into_bytes();
                line.extend_from_slice(&value);
                out_bytes(&line);
            }
        }
        return ExitCode::SUCCESS;
    }

    let reply = match client.get_allow_404(&key_path(&key), &[]).await {
        Ok(r) => r,
        Err(e) => return fail(format!("Error querying Cairn agent: {e}")),
    };
    if reply.status == 404 {
        return fail(format!("Error! No key exists at: {key}"));
    }
    let pair = match reply.json::<Vec<Pair>>() {
        Ok(mut l) if !l.is_empty() => l.swap_remove(0),
        Ok(_) => return fail(format!("Error! No key exists at: {key}")),
        Err(e) => return fail(format!("Error querying Cairn agent: {e}")),
    };
    let value = match pair.bytes() {
        Ok(v) => v,
        Err(e) => return fail(format!("Error rendering KV pair: {e}")),
    };
    if detail {
        out(&detailed(&pair, &value, b64));
    } else if b64 {
        out(&STANDARD.encode(&value));
    } else {
        out_bytes(&value);
    }
    ExitCode::SUCCESS
}
