//! Request-body decoding as Consul does it: JSON keys are matched case-insensitively and
//! with or without underscores (`DeregisterCriticalServiceAfter`, `deregistercriticalserviceafter`
//! and `deregister_critical_service_after` are the same key), except inside free-form maps
//! (`Meta`, `NodeMeta`, `Header`, `TaggedAddresses`) whose keys are user data.
//!
//! Why: Consul decodes bodies with Go's `encoding/json`, which matches field names
//! case-insensitively, and with `mapstructure` hooks that accept snake_case; clients and config
//! files written for Consul rely on both. Folding keys once, before serde sees them, lets every
//! request type keep one set of PascalCase serde names.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::Error;

/// Every field name the API decodes, in its canonical spelling.
///
/// A key whose folded form is not listed is kept as written, so serde then sees it as unknown
/// (ignored, or refused by types that deny unknown fields). Adding a field to a request type means
/// adding its name here, or only its exact spelling decodes.
const CANONICAL: &[&str] = &[
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "Meta",
    "Service",
    "Services",
    "Check",
    "Checks",
    "SkipNodeUpdate",
    "ServiceID",
    "CheckID",
    "Name",
    "Notes",
    "Status",
    "Output",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "Definition",
    "HTTP",
    "Header",
    "Method",
    "Body",
    "TLSServerName",
    "TLSSkipVerify",
    "TCP",
    "TCPUseTLS",
    "UDP",
    "GRPC",
    "GRPCUseTLS",
    "H2PING",
    "H2PingUseTLS",
    "DeregisterCriticalServiceAfter",
    "Tags",
    "Port",
    "Weights",
    "Passing",
    "Warning",
    "EnableTagOverride",
    "Kind",
    "Proxy",
    "Connect",
    "Native",
    "SidecarService",
    "Args",
    "ScriptArgs",
    "Script",
    "DockerContainerID",
    "Shell",
    "TTL",
    "AliasNode",
    "AliasService",
    "SuccessBeforePassing",
    "FailuresBeforeWarning",
    "FailuresBeforeCritical",
    "OutputMaxSize",
    "DisableRedirects",
    "OSService",
    "ExposedPort",
    "CreateIndex",
    "ModifyIndex",
    "LockIndex",
    "Key",
    "Flags",
    "Value",
    "Session",
    "Verb",
    "Index",
    "KV",
    "LockDelay",
    "Behavior",
    "NodeChecks",
    "ServiceChecks",
    "Namespace",
    "Partition",
    "Token",
    "SocketPath",
    "Locality",
    "Region",
    "Zone",
    "Payload",
    "NodeFilter",
    "ServiceFilter",
    "TagFilter",
    "Version",
    "LTime",
    "WriteRequest",
    "Datacenters",
    "Description",
    "Rules",
    "DestinationServiceName",
    "DestinationServiceID",
    "LocalServiceAddress",
    "LocalServicePort",
    "Upstreams",
    "Mode",
    "Config",
    "PeerName",
    "Enable",
    "Reason",
    "Port",
    "ServiceAddress",
    "ServicePort",
    "ServiceMeta",
    "ServiceTaggedAddresses",
    "ServiceWeights",
    "ServiceEnableTagOverride",
    "ServiceKind",
    "EnterpriseMeta",
    "Expose",
    "MeshGateway",
    "TransparentProxy",
    "Template",
    "Regexp",
    "RemoveEmptyTags",
    "Failover",
    "NearestN",
    "IgnoreCheckIDs",
    "OnlyPassing",
    "Near",
    "DNS",
    "Peer",
    "Enabled",
    "CleanupDeadServers",
    "LastContactThreshold",
    "MaxTrailingLogs",
    "MinQuorum",
    "ServerStabilizationTime",
    "RedundancyZoneTag",
    "DisableUpgradeMigration",
    "UpgradeVersionTag",
    "AccessorID",
    "SecretID",
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "TemplatedPolicies",
    "TemplateName",
    "TemplateVariables",
    "Local",
    "ExpirationTime",
    "ExpirationTTL",
    "AuthMethod",
    "NodeName",
    "BootstrapSecret",
];

/// Fields whose object value is a user map: its keys are kept as written.
///
/// Only their own keys are kept: values inside are still normalized, so a nested record (a tagged
/// address's `address`/`port`) decodes like any other.
const FREE_FORM: &[&str] = &[
    "Meta",
    "NodeMeta",
    "ServiceMeta",
    "Header",
    "TaggedAddresses",
    "ServiceTaggedAddresses",
    "Config",
];

/// The spelling-insensitive form of a key: lowercase, without `_` or `-`, so `ServiceID`,
/// `service_id` and `service-id` meet.
pub fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Folded name to canonical name, built once on first use.
fn table() -> &'static HashMap<String, &'static str> {
    static TABLE: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| CANONICAL.iter().map(|k| (fold(k), *k)).collect())
}

/// Free-form maps whose values are strings: a `null` value is Go's zero value, the empty string.
const STRING_MAPS: &[&str] = &["Meta", "NodeMeta", "ServiceMeta"];

/// Rewrites object keys to their canonical spelling and drops `null` fields (recursively).
///
/// Why drop them: Go's decoder treats `null` as "leave the field at its zero value" for every
/// type, and Consul's Go client sends `null` for every empty list and map it does not mark
/// `omitempty` (`Checks`, `Meta`, `Header`, `Args`, txn ops' unused `Node`/`Service`/`Check`, ...).
/// A dropped field decodes exactly as an absent one, so each request type's defaults apply
/// and no type needs `Option` wrappers for this. Inside string-valued user maps a `null` becomes
/// `""`, as Go stores it; inside other user maps the entry is dropped (Go would keep a zero
/// value that no endpoint can use). Array elements are kept as they are.
/// Recursion is bounded: serde_json refuses input nested deeper than 128 levels.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, val) in map {
                if val.is_null() {
                    continue;
                }
                let canon = table().get(&fold(&k)).copied();
                let key = canon.map(str::to_string).unwrap_or(k);
                let val = match (canon, val) {
                    (Some(c), Value::Object(inner)) if FREE_FORM.contains(&c) => {
                        let strings = STRING_MAPS.contains(&c);
                        Value::Object(
                            inner
                                .into_iter()
                                .filter_map(|(ik, iv)| match iv {
                                    Value::Null if strings => {
                                        Some((ik, Value::String(String::new())))
                                    }
                                    Value::Null => None,
                                    iv => Some((ik, normalize(iv))),
                                })
                                .collect(),
                        )
                    }
                    (_, other) => normalize(other),
                };
                out.insert(key, val);
            }
            Value::Object(out)
        }
        other => other,
    }
}

/// Decodes a JSON request body into `T` after normalising key casing.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Error::Invalid(format!("Request decode failed: {e}")))?;
    decode_value(value)
}

/// Decodes an already parsed JSON value into `T` after normalising key casing. Where `T`
/// expects an object, only an object will do (see [`super::strict`]): an array is Consul's
/// "Request decode failed", not a struct of defaults.
pub fn decode_value<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    super::strict::from_value(normalize(value))
        .map_err(|e| Error::Invalid(format!("Request decode failed: {e}")))
}

/// Test support: asserts that `null` in any field of `sample`, at any depth, decodes as if
/// the field were absent (for `T`, by comparing the `Debug` forms of both outcomes, errors
/// included), and that a `null` inside a string-valued user map is `""`.
///
/// Each request type's tests call it with a sample that sets every field, so a type whose
/// decoding treats `null` differently shows up by name and path.
#[cfg(test)]
pub(crate) fn assert_null_is_absent<T: DeserializeOwned + std::fmt::Debug>(sample: Value) {
    /// Every object member's path (keys and array positions).
    fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    at.push(Value::String(k.clone()));
                    out.push(at.clone());
                    paths(child, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    at.push(Value::from(i));
                    paths(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    /// `v` with the member at `path` replaced by `to`, or removed when `to` is `None`.
    fn edit(mut v: Value, path: &[Value], to: Option<Value>) -> Value {
        let Some((last, parents)) = path.split_last() else {
            return v;
        };
        let mut cur = &mut v;
        for step in parents {
            cur = match (cur, step) {
                (Value::Object(m), Value::String(k)) => m.get_mut(k).expect("path exists"),
                (Value::Array(a), Value::Number(n)) => {
                    let i = usize::try_from(n.as_u64().expect("index")).expect("index");
                    &mut a[i]
                }
                _ => panic!("bad path"),
            };
        }
        if let (Value::Object(m), Value::String(k)) = (cur, last) {
            match to {
                Some(x) => {
                    m.insert(k.clone(), x);
                }
                None => {
                    m.remove(k);
                }
            }
        }
        v
    }
    let name = std::any::type_name::<T>();
    let base = decode_value::<T>(sample.clone());
    assert!(base.is_ok(), "{name}: the sample must decode: {base:?}");
    let mut all = Vec::new();
    paths(&sample, &mut Vec::new(), &mut all);
    for path in all {
        // Inside a string-valued user map Go stores the zero value: the key stays, with "".
        let in_string_map = path.len() >= 2
            && matches!(&path[path.len() - 2], Value::String(k)
                if table().get(&fold(k)).is_some_and(|c| STRING_MAPS.contains(c)));
        let with_null = decode_value::<T>(edit(sample.clone(), &path, Some(Value::Null)));
        let absent = in_string_map.then(|| Value::String(String::new()));
        let expected = decode_value::<T>(edit(sample.clone(), &path, absent));
        assert_eq!(
            format!("{with_null:?}"),
            format!("{expected:?}"),
            "{name}: null at {path:?} must decode as the field's absence"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_fold_but_user_maps_keep_theirs() {
        let v = normalize(json!({
            "name": "web", "enabletagoverride": true, "tagged_addresses": {"lan": {"address": "1.2.3.4", "port": 80}},
            "meta": {"Some_Key": "v"}, "check": {"http": "http://x", "deregister_critical_service_after": "1m",
            "header": {"X-Custom": ["a"]}, "script_args": ["a"], "service_id": "s"}
        }));
        assert_eq!(
            v,
            json!({
                "Name": "web", "EnableTagOverride": true,
                "TaggedAddresses": {"lan": {"Address": "1.2.3.4", "Port": 80}},
                "Meta": {"Some_Key": "v"},
                "Check": {"HTTP": "http://x", "DeregisterCriticalServiceAfter": "1m",
                          "Header": {"X-Custom": ["a"]}, "ScriptArgs": ["a"], "ServiceID": "s"}
            })
        );
    }

    #[test]
    fn bad_json_is_a_400() {
        let e = decode::<Value>(b"{not json").expect_err("must fail");
        assert!(matches!(e, Error::Invalid(_)));
        assert!(e.to_string().starts_with("Request decode failed"));
    }
}
