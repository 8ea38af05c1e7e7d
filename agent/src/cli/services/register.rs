//! `cairn services register`: registers services from definition files or from flags.
//!
//! Each service is one `PUT /v1/agent/service/register`; the first failure stops the
//! command with the agent's message, and the services registered before it stay
//! registered.

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::{field_str, find_key, services_from_file};
use crate::cli::output::{fail, out};
use crate::cli::spec::{Http, Spec};
use crate::flags::{Flag, Parsed};

/// Consul's flags for `services register`, with its help texts.
const FLAGS: &[Flag] = &[
    Flag::text(
        "address",
        "addr",
        "Address of the service to register for arg-based registration.",
    ),
    Flag::text(
        "id",
        "id",
        "ID of the service to register for arg-based registration. If this isn't set, it will \
         default to the -name value.",
    ),
    Flag::text("kind", "kind", "The service's kind."),
    Flag::map(
        "meta",
        "Metadata to set on the service, formatted as key=value. This flag may be specified \
         multiple times to set multiple meta fields.",
    ),
    Flag::text(
        "name",
        "name",
        "Name of the service to register for arg-based registration.",
    ),
    Flag::int(
        "port",
        "Port of the service to register for arg-based registration.",
    ),
    Flag::list(
        "tag",
        "value",
        "Tag to add to the service. This flag can be specified multiple times to set multiple \
         tags.",
    ),
    Flag::map(
        "tagged-address",
        "Tagged address to set on the service, formatted as key=address:port. This flag may \
         be specified multiple times to set multiple addresses.",
    ),
];

const SPEC: Spec = Spec {
    usage: "
Usage: cairn services register [options] [FILE...]

  Register one or more services using the local agent API. Services can be
  registered from standard configuration files (HCL or JSON, with a \"service\"
  or \"services\" block) or using flags. The service is registered and the
  command returns. The caller must remember to call \"cairn services
  deregister\" or a similar API to deregister the service when complete.

      $ cairn services register web.json
      $ cairn services register -name=web -port=8080 -tag=v1 -meta=team=a

  When files and flags are both given, the flags fill in what the files leave
  out; tags and meta are added.
",
    flags: FLAGS,
    http: Http::Client,
};

/// Parses `host:port` (or `[v6]:port`, or a bare address) for `-tagged-address`.
///
/// Split at the last colon, so a bracketed IPv6 address keeps its own colons; a bare
/// address gets port 0.
fn service_addr(v: &str) -> Result<Value, String> {
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => {
            let port: u16 = p.parse().map_err(|_| format!("invalid port in \"{v}\""))?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (v.trim_start_matches('[').trim_end_matches(']'), 0),
    };
    Ok(json!({"Address": host, "Port": port}))
}

/// The service the flags describe.
///
/// Only what was given goes in: an absent field must not overwrite a file's in
/// [`combine`].
fn from_flags(p: &Parsed) -> Result<Map<String, Value>, String> {
    let mut s = Map::new();
    for (flag, field) in [
        ("id", "ID"),
        ("name", "Name"),
        ("address", "Address"),
        ("kind", "Kind"),
    ] {
        if let Some(v) = p.text(flag).filter(|v| !v.is_empty()) {
            s.insert(field.into(), Value::String(v.to_string()));
        }
    }
    if p.int("port") != 0 {
        s.insert("Port".into(), json!(p.int("port")));
    }
    if !p.list("tag").is_empty() {
        s.insert("Tags".into(), json!(p.list("tag")));
    }
    let meta = p.map("meta");
    if !meta.is_empty() {
        let m: Map<String, Value> = meta
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        s.insert("Meta".into(), Value::Object(m));
    }
    let tagged = p.map("tagged-address");
    if !tagged.is_empty() {
        let mut m = Map::new();
        for (k, v) in tagged {
            m.insert(
                k,
                service_addr(&v).map_err(|e| format!("Invalid Tagged Address: {e}"))?,
            );
        }
        s.insert("TaggedAddresses".into(), Value::Object(m));
    }
    Ok(s)
}

/// Fills a file's service with the flag values it lacks; tags are appended and maps merged,
/// as Consul does.
fn combine(file: &mut Map<String, Value>, flags: &Map<String, Value>) {
    for (field, value) in flags {
        let existing = find_key(file, field);
        match (field.as_str(), existing) {
            ("Tags", Some(k)) => {
                if let (Some(Value::Array(have)), Value::Array(add)) = (file.get_mut(&k), value) {
                    have.extend(add.iter().cloned());
                }
            }
            ("Meta" | "TaggedAddresses", Some(k)) => {
                if let (Some(Value::Object(have)), Value::Object(add)) = (file.get_mut(&k), value) {
                    for (mk, mv) in add {
                        have.insert(mk.clone(), mv.clone());
                    }
                }
            }
            // Any other field: the flag fills it only when the file left it empty.
            (_, Some(k)) => {
                let empty = match file.get(&k) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(s)) => s.is_empty(),
                    Some(Value::Number(n)) => n.as_i64() == Some(0),
                    _ => false,
                };
                if empty {
                    file.insert(k, value.clone());
                }
            }
            (_, None) => {
                file.insert(field.clone(), value.clone());
            }
        }
    }
}

/// Runs `cairn services register`.
pub(crate) async fn run(args: &[String]) -> ExitCode {
    let p = match crate::cli::parse(&SPEC, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flagged = match from_flags(&p) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let name = p.text_or_empty("name");
    if p.args.is_empty() && name.is_empty() {
        return fail("Service registration requires at least one argument or flags.");
    }
    // Consul's message, which names `-id` although `-name` is what is checked.
    if !p.args.is_empty() && !name.is_empty() {
        return fail("Service registration requires arguments or -id, not both.");
    }
    let services = if p.args.is_empty() {
        vec![flagged]
    } else {
        let mut all = Vec::new();
        for file in &p.args {
            match services_from_file(file) {
                Ok(mut list) => {
                    for s in &mut list {
                        combine(s, &flagged);
                    }
                    all.extend(list);
                }
                Err(e) => return fail(format!("Error: {e}")),
            }
        }
        all
    };
    let client = match crate::cli::connect(&p) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for svc in services {
        let name = field_str(&svc, "Name");
        let body = match serde_json::to_vec(&Value::Object(svc)) {
            Ok(b) => b,
            Err(e) => return fail(format!("Error encoding service {name:?}: {e}")),
        };
        if let Err(e) = client
            .put("/v1/agent/service/register", &[], Some(body))
            .await
        {
            return fail(format!("Error registering service {name:?}: {e}"));
        }
        out(&format!("Registered service: {name}"));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files win for scalar fields; flags add tags and map entries and fill empty fields.
    #[test]
    fn flags_fill_in_files() {
        let mut file = serde_json::from_value::<Map<String, Value>>(json!({
            "name": "web", "tags": ["a"], "meta": {"x": "1"}, "port": 0
        }))
        .expect("map");
        let flags = serde_json::from_value::<Map<String, Value>>(json!({
            "Name": "other", "Port": 80, "Tags": ["b"], "Meta": {"y": "2"}, "ID": "web1"
        }))
        .expect("map");
        combine(&mut file, &flags);
        assert_eq!(
            Value::Object(file),
            json!({"name": "web", "tags": ["a", "b"], "meta": {"x": "1", "y": "2"},
                   "port": 80, "ID": "web1"})
        );
    }

    /// `host:port`, bracketed IPv6, a bare host, and a bad port.
    #[test]
    fn tagged_addresses() {
        assert_eq!(
            service_addr("10.0.0.1:80").expect("addr"),
            json!({"Address": "10.0.0.1", "Port": 80})
        );
        assert_eq!(
            service_addr("[::1]:80").expect("addr"),
            json!({"Address": "::1", "Port": 80})
        );
        assert_eq!(
            service_addr("host").expect("addr"),
            json!({"Address": "host", "Port": 0})
        );
        assert!(service_addr("h:x").is_err());
    }
}
