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
fn fold(key: &str) -> String {
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

/// Rewrites object keys to their canonical spelling (recursively).
/// Recursion is bounded: serde_json refuses input nested deeper than 128 levels.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, val) in map {
                let canon = table().get(&fold(&k)).copied();
                let key = canon.map(str::to_string).unwrap_or(k);
                let val = match (canon, val) {
                    (Some(c), Value::Object(inner)) if FREE_FORM.contains(&c) => Value::Object(
                        inner
                            .into_iter()
                            .map(|(ik, iv)| (ik, normalize(iv)))
                            .collect(),
                    ),
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
