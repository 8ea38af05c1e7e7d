//! `cairn services register|deregister`: services of the local agent, from config files
//! (JSON or HCL with a `service` or `services` block) or from flags.
//!
//! The files are the agent's own config format, so a definition written for the agent's
//! config directory registers unchanged. The definitions go to the agent as they are, and
//! the agent validates them as any API registration.

mod deregister;
mod register;

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value};

/// The subcommands with Consul's descriptions, for the group's help.
const SUBCOMMANDS: &[(&str, &str)] = &[
    ("deregister", "Deregister services with the local agent"),
    ("register", "Register services with the local agent"),
];

/// The group's help, printed without a subcommand or with `-h`.
fn help() -> String {
    super::group_usage(
        "Usage: cairn services <subcommand> [options] [args]\n\n  \
         Registers and deregisters services on the local agent, from service\n  \
         definition files or from flags.\n\n      \
         $ cairn services register web.json\n      \
         $ cairn services register -name=web -port=8080 -tag=v1\n      \
         $ cairn services deregister -id=web",
        "Subcommands:",
        SUBCOMMANDS,
    )
}

/// Runs `cairn services ...`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    if let Some(code) = super::group_help(args, &help()) {
        return code;
    }
    let Some((name, rest)) = args.split_first() else {
        return super::unknown_subcommand("services", "", &help());
    };
    match name.as_str() {
        "register" => register::run(rest).await,
        "deregister" => deregister::run(rest).await,
        other => super::unknown_subcommand("services", other, &help()),
    }
}

/// Folds a key as the agent does (case and underscores ignored): `Enable_Tag_Override` and
/// `enabletagoverride` are the same field.
///
/// Needed to read the name and ID out of a definition written in any of the spellings the
/// agent accepts (`Name`, `name`, HCL's snake case).
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The key of `obj` that spells field `name` (any case or underscores).
pub(crate) fn find_key(obj: &Map<String, Value>, name: &str) -> Option<String> {
    let want = fold(name);
    obj.keys().find(|k| fold(k) == want).cloned()
}

/// A string field of a service definition, in any spelling.
pub(crate) fn field_str(obj: &Map<String, Value>, name: &str) -> String {
    find_key(obj, name)
        .and_then(|k| obj.get(&k).and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

/// Parses a service definition file into its service objects (request bodies for
/// `PUT /v1/agent/service/register`).
///
/// Every `service` and `services` key of the top level counts, in any spelling, as one
/// object or a list of them; other keys are ignored, so a full agent config file works too.
pub(crate) fn services_from_file(path: &str) -> Result<Vec<Map<String, Value>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let ext = Path::new(path).extension().and_then(|e| e.to_str());
    let doc: Value = match ext {
        Some("hcl") => parse_hcl(&text).map_err(|e| format!("{path}: {e}"))?,
        Some("json") => {
            serde_json::from_str(&text).map_err(|e| format!("{path}: invalid JSON: {e}"))?
        }
        // Unknown extension: JSON if it parses, HCL otherwise.
        _ => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => parse_hcl(&text).map_err(|e| format!("{path}: {e}"))?,
        },
    };
    let Value::Object(top) = doc else {
        return Err(format!("{path}: the top level must be an object"));
    };
    let mut out = Vec::new();
    for (key, value) in top {
        match fold(&key).as_str() {
            "service" | "services" => match value {
                Value::Object(obj) => out.push(normalize(obj)),
                Value::Array(items) => {
                    for item in items {
                        match item {
                            Value::Object(obj) => out.push(normalize(obj)),
                            _ => {
                                return Err(format!("{path}: \"{key}\" must hold service objects"));
                            }
                        }
                    }
                }
                _ => return Err(format!("{path}: \"{key}\" must hold service objects")),
            },
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{path}: no service definition found (expected a \"service\" or \"services\" block)"
        ));
    }
    Ok(out)
}

/// HCL into JSON with the `hcl` crate's data model: repeated blocks become a list.
fn parse_hcl(text: &str) -> Result<Value, String> {
    hcl::from_str::<Value>(text).map_err(|e| format!("invalid HCL: {e}"))
}

/// HCL gives a single `checks { }` block as an object; the API wants a list.
fn normalize(mut obj: Map<String, Value>) -> Map<String, Value> {
    if let Some(k) = find_key(&obj, "checks")
        && let Some(v) = obj.get_mut(&k)
        && v.is_object()
    {
        *v = Value::Array(vec![v.take()]);
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a file under a per-process temporary directory; the path.
    fn write(name: &str, text: &str) -> String {
        let dir = std::env::temp_dir().join(format!("cairn-cli-svc-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }

    /// One service, a list, repeated HCL blocks with a `checks` block, and a file without
    /// services.
    #[test]
    fn json_and_hcl_files() {
        let p = write(
            "a.json",
            r#"{"service": {"name": "web", "port": 80, "tags": ["v1"]}}"#,
        );
        let s = services_from_file(&p).expect("json");
        assert_eq!(s.len(), 1);
        assert_eq!(field_str(&s[0], "Name"), "web");

        let p = write(
            "b.json",
            r#"{"services": [{"Name": "a"}, {"Name": "b", "Checks": [{"TTL": "10s"}]}]}"#,
        );
        assert_eq!(services_from_file(&p).expect("services").len(), 2);

        let p = write(
            "c.hcl",
            "service {\n  name = \"db\"\n  port = 5432\n  checks {\n    ttl = \"5s\"\n  }\n}\nservice {\n  name = \"cache\"\n}\n",
        );
        let s = services_from_file(&p).expect("hcl");
        assert_eq!(s.len(), 2);
        assert_eq!(field_str(&s[0], "name"), "db");
        assert!(s[0].get("checks").is_some_and(Value::is_array));

        let p = write("d.json", r#"{"node_name": "x"}"#);
        assert!(services_from_file(&p).is_err());
    }
}
