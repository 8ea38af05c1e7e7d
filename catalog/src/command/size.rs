//! An upper bound of a command's encoded size, computed from its content without encoding it.
//!
//! Proposers bound batches and replication messages by size (an append request must reach a
//! follower within one heartbeat interval), and they size every command they queue, so the
//! bound must be cheap: a walk over the command's strings and collections. It is an upper
//! bound of the compact JSON form (escapes, base64 and field names included), so a message
//! sized with it never turns out larger than planned.
//!
//! Every struct is sized by destructuring it without `..`: a field added later fails to
//! compile here until it is counted.
//!
//! Being an upper bound is what matters, not being tight: each piece is sized at the most its
//! JSON can take (every field name at the longest name's length, every number at its longest
//! form), and the test keeps the result within a few times the real size so it stays usable
//! for planning.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{
    CatalogVerb, Command, DeregisterRequest, KvOp, KvRequest, KvVerb, RegisterRequest, RequestId,
    TxnCheckOp, TxnKvOp, TxnNodeOp, TxnOp, TxnServiceOp, UnknownCommand,
};
use crate::acl::{
    AclLink, AclNodeIdentity, AclOp, AclPolicy, AclRole, AclServiceIdentity, AclTemplatedPolicy,
    AclToken,
};
use crate::model::{
    AutopilotConfig, CheckDefinition, Coordinate, CoordinateEntry, HealthCheck, HealthStatus, Node,
    PreparedQuery, QueryConnect, QueryDns, QueryFailover, QueryService, QueryTemplate, Service,
    ServiceAddress, ServiceCheckRef, Session, SessionBehavior, Weights,
};

/// Room for one field's name and punctuation (`"DeregisterCriticalServiceAfter":` and a
/// comma; no field name is longer). That one takes 34 bytes: the rest is margin for a longer
/// name added later, which must still fit here.
const FIELD: usize = 40;
/// Room for a unit enum written as a string (`"check-not-exists"`, 18 bytes with its quotes).
const WORD: usize = 24;
/// Room for a Go duration string (`"2562047h47m16.854775807s"`) or a number of nanoseconds.
/// Even the largest Rust `Duration`, whose hours take 16 digits, prints in under 40 bytes.
const DURATION: usize = 48;

/// An upper bound of the compact JSON encoding of a value, in bytes.
///
/// Crate-private: the one public entry point is [`Command::encoded_size_bound`], so the
/// bound is only ever asked of whole commands.
pub(crate) trait EncodedBound {
    /// At least the length of `serde_json::to_vec(self)`, for the type's own encoding.
    fn bound(&self) -> usize;
}

/// A JSON string: quotes, and every byte that needs an escape counted at its longest (`\u001f`).
/// Non-ASCII text is written as its UTF-8 bytes, unescaped, so every other byte counts one.
fn json_str(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Bytes written as standard base64 in a string (`null` when absent): 4 characters per 3 bytes,
/// the last group padded, plus the quotes.
fn base64(bytes: Option<&[u8]>) -> usize {
    bytes.map_or(4, |b| 2 + b.len().div_ceil(3) * 4)
}

/// An object of fields whose values have the given bounds: braces, and per field its name and
/// punctuation ([`FIELD`]) and its value.
fn object(values: &[usize]) -> usize {
    2 + values.iter().map(|v| FIELD + v).sum::<usize>()
}

/// An externally tagged enum value: `{"Tag":body}`. A bodiless command written as a bare tag
/// (`"Noop"`) is shorter, so the bound still holds for it.
fn tagged(tag: &str, body: usize) -> usize {
    2 + json_str(tag) + 1 + body
}

impl EncodedBound for str {
    fn bound(&self) -> usize {
        json_str(self)
    }
}

impl EncodedBound for String {
    fn bound(&self) -> usize {
        json_str(self)
    }
}

/// Types whose encoding has a longest form, sized at it.
macro_rules! fixed_bound {
    ($($t:ty => $n:expr),* $(,)?) => {
        $(impl EncodedBound for $t {
            fn bound(&self) -> usize {
                $n
            }
        })*
    };
}

// Longest forms: `false`; the decimal digits of the type's extreme values (`i64::MIN` is 20
// characters with its sign); an f64 in serde_json's shortest round-trip form, sign and exponent
// included (`-1.2345678901234567e-300` is 24).
fixed_bound! {
    bool => 5,
    u16 => 5,
    u32 => 10,
    u64 => 20,
    i64 => 20,
    f64 => 25,
    Duration => DURATION,
    HealthStatus => WORD,
    SessionBehavior => WORD,
    KvOp => WORD,
    KvVerb => WORD,
    CatalogVerb => WORD,
}

/// Brackets, and each element with a comma (one more than written, which the bound allows).
impl EncodedBound for AclLink {
    fn bound(&self) -> usize {
        let AclLink { id, name } = self;
        object(&[id.bound(), name.bound()])
    }
}

impl EncodedBound for AclServiceIdentity {
    fn bound(&self) -> usize {
        let AclServiceIdentity {
            service_name,
            datacenters,
        } = self;
        object(&[service_name.bound(), datacenters.bound()])
    }
}

impl EncodedBound for AclNodeIdentity {
    fn bound(&self) -> usize {
        let AclNodeIdentity {
            node_name,
            datacenter,
        } = self;
        object(&[node_name.bound(), datacenter.bound()])
    }
}

impl EncodedBound for AclTemplatedPolicy {
    fn bound(&self) -> usize {
        let AclTemplatedPolicy {
            template_name,
            name,
            datacenters,
        } = self;
        object(&[template_name.bound(), name.bound(), datacenters.bound()])
    }
}

impl EncodedBound for AclToken {
    fn bound(&self) -> usize {
        let AclToken {
            accessor_id,
            secret_id,
            description,
            policies,
            roles,
            service_identities,
            node_identities,
            templated_policies,
            local,
            auth_method,
            create_time_ms,
            expiration_ms,
            hash,
            create_index,
            modify_index,
        } = self;
        object(&[
            accessor_id.bound(),
            secret_id.bound(),
            description.bound(),
            policies.bound(),
            roles.bound(),
            service_identities.bound(),
            node_identities.bound(),
            templated_policies.bound(),
            local.bound(),
            auth_method.bound(),
            create_time_ms.bound(),
            expiration_ms.bound(),
            hash.bound(),
            create_index.bound(),
            modify_index.bound(),
        ])
    }
}

impl EncodedBound for AclPolicy {
    fn bound(&self) -> usize {
        let AclPolicy {
            id,
            name,
            description,
            rules,
            datacenters,
            hash,
            create_index,
            modify_index,
        } = self;
        object(&[
            id.bound(),
            name.bound(),
            description.bound(),
            rules.bound(),
            datacenters.bound(),
            hash.bound(),
            create_index.bound(),
            modify_index.bound(),
        ])
    }
}

impl EncodedBound for AclRole {
    fn bound(&self) -> usize {
        let AclRole {
            id,
            name,
            description,
            policies,
            service_identities,
            node_identities,
            templated_policies,
            hash,
            create_index,
            modify_index,
        } = self;
        object(&[
            id.bound(),
            name.bound(),
            description.bound(),
            policies.bound(),
            service_identities.bound(),
            node_identities.bound(),
            templated_policies.bound(),
            hash.bound(),
            create_index.bound(),
            modify_index.bound(),
        ])
    }
}

impl EncodedBound for AclOp {
    fn bound(&self) -> usize {
        match self {
            AclOp::TokenSet { token, create } => {
                tagged("TokenSet", object(&[token.bound(), create.bound()]))
            }
            AclOp::TokenDelete { accessors } => tagged("TokenDelete", object(&[accessors.bound()])),
            AclOp::PolicySet { policy, create } => {
                tagged("PolicySet", object(&[policy.bound(), create.bound()]))
            }
            AclOp::PolicyDelete { id } => tagged("PolicyDelete", object(&[id.bound()])),
            AclOp::RoleSet { role, create } => {
                tagged("RoleSet", object(&[role.bound(), create.bound()]))
            }
            AclOp::RoleDelete { id } => tagged("RoleDelete", object(&[id.bound()])),
            AclOp::Bootstrap { token, reset_index } => {
                tagged("Bootstrap", object(&[token.bound(), reset_index.bound()]))
            }
        }
    }
}

impl<T: EncodedBound> EncodedBound for Vec<T> {
    fn bound(&self) -> usize {
        2 + self.iter().map(|v| v.bound() + 1).sum::<usize>()
    }
}

/// `null` (4 bytes) when absent; otherwise the value's own bound, as serde writes `Some(v)` as `v`.
impl<T: EncodedBound> EncodedBound for Option<T> {
    fn bound(&self) -> usize {
        self.as_ref().map_or(4, |v| v.bound().max(4))
    }
}

impl<T: EncodedBound> EncodedBound for Box<T> {
    fn bound(&self) -> usize {
        T::bound(self)
    }
}

/// Braces, and each entry as key, colon, value and comma.
impl<V: EncodedBound> EncodedBound for BTreeMap<String, V> {
    fn bound(&self) -> usize {
        2 + self
            .iter()
            .map(|(k, v)| json_str(k) + 1 + v.bound() + 1)
            .sum::<usize>()
    }
}

/// Bodies kept as written (commands of unknown types, unrecognized transaction operations):
/// sized like the typed values, numbers at an f64's longest form.
impl EncodedBound for Value {
    fn bound(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 25,
            Value::String(s) => json_str(s),
            Value::Array(items) => 2 + items.iter().map(|v| v.bound() + 1).sum::<usize>(),
            Value::Object(m) => {
                2 + m
                    .iter()
                    .map(|(k, v)| json_str(k) + 1 + v.bound() + 1)
                    .sum::<usize>()
            }
        }
    }
}

/// Sizes a struct as an object of all its fields; the pattern names every field, so a field
/// added to the struct must be added here.
macro_rules! struct_bound {
    ($t:ident { $($f:ident),* $(,)? }) => {
        impl EncodedBound for $t {
            fn bound(&self) -> usize {
                let $t { $($f),* } = self;
                object(&[$($f.bound()),*])
            }
        }
    };
}

// The records commands carry, then the request types of `command`. Structs with a byte
// field (base64 on the wire) are sized by hand further down.
struct_bound!(Node {
    id,
    node,
    address,
    datacenter,
    tagged_addresses,
    meta,
    create_index,
    modify_index,
});
struct_bound!(Weights { passing, warning });
struct_bound!(ServiceAddress { address, port });
struct_bound!(Service {
    kind,
    id,
    service,
    tags,
    address,
    tagged_addresses,
    meta,
    port,
    weights,
    enable_tag_override,
    create_index,
    modify_index,
});
struct_bound!(CheckDefinition {
    http,
    header,
    method,
    body,
    tls_server_name,
    tls_skip_verify,
    tcp,
    tcp_use_tls,
    udp,
    grpc,
    grpc_use_tls,
    interval,
    timeout,
    deregister_critical_service_after,
});
struct_bound!(HealthCheck {
    node,
    check_id,
    name,
    status,
    notes,
    output,
    service_id,
    service_name,
    service_tags,
    check_type,
    interval,
    timeout,
    exposed_port,
    definition,
    create_index,
    modify_index,
});
struct_bound!(ServiceCheckRef { id, namespace });
struct_bound!(Session {
    id,
    name,
    node,
    lock_delay,
    behavior,
    ttl,
    node_checks,
    service_checks,
    create_index,
    modify_index,
});
struct_bound!(Coordinate {
    vec,
    error,
    adjustment,
    height,
});
struct_bound!(CoordinateEntry {
    node,
    segment,
    coord,
});
struct_bound!(AutopilotConfig {
    cleanup_dead_servers,
    last_contact_threshold,
    max_trailing_logs,
    min_quorum,
    server_stabilization_time,
    redundancy_zone_tag,
    disable_upgrade_migration,
    upgrade_version_tag,
    create_index,
    modify_index,
});
struct_bound!(QueryTemplate {
    kind,
    regexp,
    remove_empty_tags,
});
struct_bound!(QueryFailover {
    nearest_n,
    datacenters,
});
// A bare bool on the wire (Consul's shape), not an object.
impl EncodedBound for QueryConnect {
    fn bound(&self) -> usize {
        self.enabled.bound()
    }
}
struct_bound!(QueryDns { ttl });
struct_bound!(QueryService {
    service,
    failover,
    ignore_check_ids,
    only_passing,
    near,
    tags,
    node_meta,
    service_meta,
    connect,
    peer,
    namespace,
});
struct_bound!(PreparedQuery {
    id,
    name,
    session,
    token,
    template,
    service,
    dns,
    create_index,
    modify_index,
});
struct_bound!(RegisterRequest {
    id,
    node,
    address,
    datacenter,
    tagged_addresses,
    node_meta,
    service,
    check,
    checks,
    skip_node_update,
});
struct_bound!(DeregisterRequest {
    node,
    datacenter,
    service_id,
    check_id,
});
struct_bound!(RequestId { client, seq, floor });
struct_bound!(TxnNodeOp { verb, node });
struct_bound!(TxnServiceOp {
    verb,
    node,
    service,
});
struct_bound!(TxnCheckOp { verb, check });

// Written by hand where a field is bytes: the value travels as base64, which the generic
// `Vec<u8>` bound would size as an array of numbers.
impl EncodedBound for KvRequest {
    fn bound(&self) -> usize {
        let KvRequest {
            key,
            value,
            flags,
            index,
            session,
        } = self;
        object(&[
            key.bound(),
            base64(value.as_deref()),
            flags.bound(),
            index.bound(),
            session.bound(),
        ])
    }
}

impl EncodedBound for TxnKvOp {
    fn bound(&self) -> usize {
        let TxnKvOp {
            verb,
            key,
            value,
            flags,
            index,
            session,
        } = self;
        object(&[
            verb.bound(),
            key.bound(),
            base64(value.as_deref()),
            flags.bound(),
            index.bound(),
            session.bound(),
        ])
    }
}

/// The typed operations under their table's tag (`KV`, not the enum's `Kv`); an unrecognized one
/// is written back as read, so its raw form is what is sized.
impl EncodedBound for TxnOp {
    fn bound(&self) -> usize {
        match self {
            TxnOp::Kv(o) => tagged("KV", o.bound()),
            TxnOp::Node(o) => tagged("Node", o.bound()),
            TxnOp::Service(o) => tagged("Service", o.bound()),
            TxnOp::Check(o) => tagged("Check", o.bound()),
            TxnOp::Unrecognized(u) => u.raw.bound(),
        }
    }
}

/// Written back as read: the tag, its body (`null` when there was none) and room for the flag.
impl EncodedBound for UnknownCommand {
    fn bound(&self) -> usize {
        let UnknownCommand {
            tag,
            body,
            ignore_unknown,
        } = self;
        tagged(tag, body.as_ref().map_or(4, Value::bound)) + FIELD + ignore_unknown.bound()
    }
}

/// The version-1 form: the type's tag over an object of its fields (a batch's body is the array
/// of its members). Matched without a catch-all, so a new command type must be sized here.
impl EncodedBound for Command {
    fn bound(&self) -> usize {
        let tag = self.type_tag();
        let body = match self {
            Command::Register { req, now_ms } => object(&[req.bound(), now_ms.bound()]),
            Command::Deregister { req, now_ms } => object(&[req.bound(), now_ms.bound()]),
            Command::Kv { op, req, now_ms } => object(&[op.bound(), req.bound(), now_ms.bound()]),
            Command::SessionCreate { session } => object(&[session.bound()]),
            Command::SessionDestroy { id, now_ms } => object(&[id.bound(), now_ms.bound()]),
            Command::Txn { ops, now_ms } => object(&[ops.bound(), now_ms.bound()]),
            Command::ReapTombstones { up_to } => object(&[up_to.bound()]),
            // The array of the members, each with its own tag.
            Command::Batch(cmds) => cmds.bound(),
            Command::Restore { data } => object(&[base64(Some(data))]),
            Command::RestoreChunk { id, offset, data } => {
                object(&[id.bound(), offset.bound(), base64(Some(data))])
            }
            Command::RestoreFinish { id, len } => object(&[id.bound(), len.bound()]),
            Command::RestoreAbort { id } => object(&[id.bound()]),
            Command::CoordinateUpdate { entries } => object(&[entries.bound()]),
            Command::AutopilotSet { config, cas } => object(&[config.bound(), cas.bound()]),
            Command::QuerySet { query, create } => object(&[query.bound(), create.bound()]),
            Command::QueryDelete { id } => object(&[id.bound()]),
            Command::Acl { op } => object(&[op.bound()]),
            // Written as the bare tag, sized by `tagged` below.
            Command::Noop => 0,
            Command::Request { id, cmd } => object(&[id.bound(), cmd.bound()]),
            // Written back as read, its own flag included: sized whole by its own impl.
            Command::Unknown(u) => return u.bound(),
        };
        // The flag's entry, written for a type that says it may be skipped.
        let flag = if self.ignore_unknown() { FIELD + 5 } else { 0 };
        tagged(tag, body) + flag
    }
}

impl Command {
    /// An upper bound of the command's encoded size in bytes (compact JSON, base64 and escapes
    /// included), computed from its content without encoding it: what proposers use to bound
    /// batches and replication messages.
    pub fn encoded_size_bound(&self) -> usize {
        self.bound()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::encode;

    /// A check with every field the bound must get right: quotes, backslashes, control
    /// characters (escaped at six bytes), non-ASCII text, long output, durations at their
    /// longest, numbers at their maximum.
    fn check(tag: &str, id: &str) -> HealthCheck {
        let mut c = HealthCheck {
            node: "node-1".into(),
            check_id: id.into(),
            name: "a \"quoted\" name\twith\u{1} controls \\".into(),
            notes: "ü ß ✓".into(),
            output: "x".repeat(3000),
            service_id: "web-1".into(),
            service_name: "web".into(),
            service_tags: vec![tag.into(), "v2".into()],
            check_type: "http".into(),
            // Far beyond Go's range: the longest duration strings `format_go_duration` writes.
            interval: Duration::from_secs(u64::MAX / 4),
            // A fraction: `1.5µs`, with its two-byte `µ`.
            timeout: Duration::from_nanos(1_500),
            exposed_port: u16::MAX,
            create_index: u64::MAX,
            modify_index: u64::MAX,
            ..HealthCheck::default()
        };
        c.definition.http = "http://localhost:8080/health".into();
        c.definition.header = BTreeMap::from([("X-A".into(), vec!["1".into(), "2".into()])]);
        c.definition.body = "{\"a\":1}".into();
        c.definition.deregister_critical_service_after = Duration::from_millis(90_061_001);
        c
    }

    /// One command of every type (an unknown one included), filled with the awkward cases:
    /// escapes in keys and values, large byte values, extreme integers and floats.
    fn samples() -> Vec<Command> {
        // Field values chosen for their encodings: control characters in map keys and values,
        // many short tags (per-element overhead), a maximal port.
        let service = Service {
            kind: "connect-proxy".into(),
            id: "web-1".into(),
            service: "web".into(),
            tags: vec!["a".into(); 20],
            address: "10.0.0.1".into(),
            tagged_addresses: BTreeMap::from([(
                "lan".into(),
                ServiceAddress {
                    address: "10.0.0.1".into(),
                    port: 8080,
                },
            )]),
            meta: BTreeMap::from([("k\n".into(), "v\u{0}".into())]),
            port: 65535,
            ..Service::default()
        };
        let node = Node {
            id: "3f2c".into(),
            node: "node-1".into(),
            address: "10.0.0.1".into(),
            datacenter: "dc1".into(),
            tagged_addresses: BTreeMap::from([("wan".into(), "1.2.3.4".into())]),
            meta: BTreeMap::from([("rack".into(), "r1".into())]),
            create_index: 1,
            modify_index: u64::MAX,
        };
        let query = PreparedQuery {
            id: "q".into(),
            name: "by-name".into(),
            service: QueryService {
                service: "${name.full}".into(),
                failover: QueryFailover {
                    nearest_n: i64::MIN,
                    datacenters: vec!["dc2".into()],
                },
                tags: vec!["primary".into(), "!legacy".into()],
                node_meta: BTreeMap::from([("a".into(), "b".into())]),
                ..QueryService::default()
            },
            template: QueryTemplate {
                kind: "name_prefix_match".into(),
                regexp: "^(.*?)\\.(.*)$".into(),
                remove_empty_tags: true,
            },
            ..PreparedQuery::default()
        };
        // Every table of a transaction, with bytes that are not text (base64 of 0xff).
        let txn = Command::Txn {
            ops: vec![
                TxnOp::Kv(TxnKvOp {
                    value: Some(vec![0xff; 1000]),
                    ..TxnKvOp::new(KvVerb::CheckNotExists, "k/\"x\"")
                }),
                TxnOp::Node(TxnNodeOp {
                    verb: CatalogVerb::Set,
                    node: node.clone(),
                }),
                TxnOp::Service(TxnServiceOp {
                    verb: CatalogVerb::DeleteCas,
                    node: "node-1".into(),
                    service: service.clone(),
                }),
                TxnOp::Check(TxnCheckOp {
                    verb: CatalogVerb::Cas,
                    check: check("t", "c9"),
                }),
            ],
            now_ms: u64::MAX,
        };
        let register = Command::Register {
            req: RegisterRequest {
                node: "node-1".into(),
                address: "10.0.0.1".into(),
                tagged_addresses: node.tagged_addresses.clone(),
                node_meta: node.meta.clone(),
                service: Some(service.clone()),
                check: Some(check("a", "c1")),
                checks: vec![check("b", "c2"), check("c", "c3")],
                ..RegisterRequest::default()
            },
            now_ms: 1,
        };
        // A skippable command of an unknown type, whose body is sized as a raw JSON value.
        let unknown: Command = serde_json::from_str(
            r#"{"Future":{"A":[1,2.5,"x\u0001"],"B":{"C":null}},"ignore_unknown":true}"#,
        )
        .expect("reads");
        vec![
            register.clone(),
            Command::Deregister {
                req: DeregisterRequest {
                    node: "n".into(),
                    datacenter: "dc1".into(),
                    service_id: "s".into(),
                    check_id: "c".into(),
                },
                now_ms: 0,
            },
            Command::Kv {
                op: KvOp::DeleteTree,
                req: KvRequest {
                    key: "a\\b".into(),
                    value: Some(vec![7; 10_001]),
                    flags: u64::MAX,
                    index: 3,
                    session: "s".into(),
                },
                now_ms: 42,
            },
            Command::SessionCreate {
                session: Session {
                    id: "s".into(),
                    name: "lock".into(),
                    node: "node-1".into(),
                    lock_delay: u64::MAX,
                    behavior: SessionBehavior::Delete,
                    ttl: "30s".into(),
                    node_checks: vec!["serfHealth".into()],
                    service_checks: vec![ServiceCheckRef {
                        id: "c1".into(),
                        namespace: "default".into(),
                    }],
                    create_index: 1,
                    modify_index: 2,
                },
            },
            Command::SessionDestroy {
                id: "s".into(),
                now_ms: 9,
            },
            txn.clone(),
            Command::ReapTombstones { up_to: u64::MAX },
            Command::Batch(vec![register.clone(), txn, Command::Noop]),
            // A large byte payload: base64 dominates the size.
            Command::Restore {
                data: vec![1; 100_000],
            },
            Command::RestoreChunk {
                id: "r".into(),
                offset: 1 << 40,
                data: vec![2; 4],
            },
            Command::RestoreFinish {
                id: "r".into(),
                len: 5,
            },
            Command::RestoreAbort { id: "r".into() },
            Command::CoordinateUpdate {
                entries: vec![CoordinateEntry {
                    node: "node-1".into(),
                    segment: String::new(),
                    coord: Coordinate {
                        // Floats at their longest shortest-form (sign, 17 digits, exponent).
                        vec: vec![-1.234_567_890_123_456_7e-300; 8],
                        error: 1.5,
                        adjustment: f64::MIN_POSITIVE,
                        height: 1e-5,
                    },
                }],
            },
            Command::AutopilotSet {
                config: AutopilotConfig {
                    last_contact_threshold: "200ms".into(),
                    server_stabilization_time: "10s".into(),
                    ..AutopilotConfig::default()
                },
                cas: Some(u64::MAX),
            },
            Command::QuerySet {
                query,
                create: true,
            },
            Command::QueryDelete { id: "q".into() },
            Command::Noop,
            Command::Request {
                id: RequestId {
                    client: "client-1".into(),
                    seq: u64::MAX,
                    floor: 1,
                },
                cmd: Box::new(register),
            },
            Command::Acl {
                op: AclOp::TokenSet {
                    token: AclToken {
                        accessor_id: "a".into(),
                        secret_id: "s\"".into(),
                        policies: vec![AclLink {
                            id: "p".into(),
                            name: "n".into(),
                        }],
                        service_identities: vec![AclServiceIdentity {
                            service_name: "web".into(),
                            datacenters: vec!["dc1".into()],
                        }],
                        node_identities: vec![AclNodeIdentity::default()],
                        templated_policies: vec![AclTemplatedPolicy::default()],
                        expiration_ms: Some(u64::MAX),
                        ..AclToken::default()
                    },
                    create: true,
                },
            },
            Command::Acl {
                op: AclOp::Bootstrap {
                    token: AclToken::default(),
                    reset_index: Some(7),
                },
            },
            Command::Acl {
                op: AclOp::RoleSet {
                    role: AclRole::default(),
                    create: false,
                },
            },
            Command::Acl {
                op: AclOp::PolicySet {
                    policy: AclPolicy {
                        rules: "key_prefix \"\" { policy = \"read\" }\n".into(),
                        datacenters: vec!["dc1".into()],
                        ..AclPolicy::default()
                    },
                    create: false,
                },
            },
            Command::Acl {
                op: AclOp::TokenDelete {
                    accessors: vec!["a".into()],
                },
            },
            unknown,
        ]
    }

    /// The bound holds for every type, and is not so loose that batching by it would waste
    /// most of a message.
    #[test]
    fn the_bound_covers_the_encoding_of_every_type() {
        for cmd in samples() {
            // The command alone, as Raft entries carry it (no envelope).
            let real = serde_json::to_vec(&cmd).expect("encodes").len();
            let bound = cmd.encoded_size_bound();
            assert!(bound >= real, "{}: bound {bound} < {real}", cmd.type_tag());
            // And stays a usable estimate: within a few times the real size.
            assert!(
                bound <= real * 4 + 512,
                "{}: bound {bound} far above {real}",
                cmd.type_tag()
            );
        }
    }

    /// Defaults are written too (empty strings, zeros, empty lists): even a command with nothing
    /// set is not larger than its bound, once the envelope is added.
    #[test]
    fn empty_commands_are_bounded_too() {
        let empty = [
            Command::Register {
                req: RegisterRequest::default(),
                now_ms: 0,
            },
            Command::SessionCreate {
                session: Session::default(),
            },
            Command::QuerySet {
                query: PreparedQuery::default(),
                create: false,
            },
            Command::Batch(vec![]),
        ];
        for cmd in empty {
            let real = encode(&cmd).expect("encodes").len();
            // The envelope adds `{"v":1,"cmd":` and `}`.
            assert!(cmd.encoded_size_bound() + 14 >= real, "{cmd:?}");
        }
    }
}
