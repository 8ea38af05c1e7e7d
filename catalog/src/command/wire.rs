//! How commands are written on the wire and in the Raft log, and read back by servers of other
//! versions.
//!
//! A command is JSON: its stable type tag alone (`"Noop"`), or a map from the tag to the body
//! (`{"Kv": {...}}`). This is the form version 1 wrote, unchanged for every known type, so logs
//! written by version 1 read back as they were, and servers of the previous release read what
//! this one writes. The map may carry one more key, [`IGNORE_UNKNOWN_KEY`], set by the writer
//! when servers that do not know the type may skip it (Consul's `IgnoreUnknownTypeFlag`).
//!
//! A reader that meets a tag it does not know does not fail: it keeps the command as written
//! ([`UnknownCommand`]) so the log stays whole and can be handed on to other servers unchanged;
//! the state applies it as a no-op if the flag is set and refuses it otherwise (see
//! `State::apply`). [`decode`], the one-command envelope, refuses it at once.
//!
//! Transaction operations are read the same way: an operation whose verb is none of its
//! table's, which versions before typed verbs could log, is kept as written
//! ([`TxnOp::Unrecognized`]) and fails when applied, as it did then.

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, VariantAccess, Visitor,
};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::{CatalogVerb, KvVerb};
use super::{
    Command, DeregisterRequest, KvOp, KvRequest, RegisterRequest, RequestId, TxnCheckOp, TxnKvOp,
    TxnNodeOp, TxnOp, TxnServiceOp, UnknownVerb, UnrecognizedTxnOp, b64_vec,
};
use crate::model::{AutopilotConfig, CoordinateEntry, PreparedQuery, Session};

/// Version of the command envelope written by this build. Still 1: every known command is
/// written exactly as version 1 wrote it; the ignore-unknown flag only ever accompanies types a
/// version-1 reader does not know, which it refuses whatever the flag says.
pub const COMMAND_VERSION: u32 = 1;

/// Largest encoded command accepted by `decode` (bounded decoder) and produced by `encode`; a
/// snapshot restore is the largest command there is.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024 * 1024;

/// The key that carries the ignore-unknown flag next to a command's tag. Not a type tag (tags
/// are capitalised), so it can never be mistaken for one.
pub const IGNORE_UNKNOWN_KEY: &str = "ignore_unknown";

/// The type tags this version knows, in the order they were introduced. A tag is never
/// renamed or reused; a new type gets a new tag at the end.
pub const KNOWN_TYPES: &[&str] = &[
    "Register",
    "Deregister",
    "Kv",
    "SessionCreate",
    "SessionDestroy",
    "Txn",
    "ReapTombstones",
    "Batch",
    "Restore",
    "RestoreChunk",
    "RestoreFinish",
    "RestoreAbort",
    "CoordinateUpdate",
    "AutopilotSet",
    "QuerySet",
    "QueryDelete",
    "Noop",
    "Request",
    "Acl",
];

/// Whether `tag` is one of [`KNOWN_TYPES`]: decided before decoding a body, so that an unknown
/// type is kept as written instead of failing the derived decoder.
fn is_known(tag: &str) -> bool {
    KNOWN_TYPES.contains(&tag)
}

/// A command of a type this version does not know, kept as its writer wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownCommand {
    /// Its type tag.
    pub tag: String,
    /// Its body as written (`None` when it was written as a bare tag).
    pub body: Option<Value>,
    /// Whether its writer allowed servers that do not know the type to skip it.
    pub ignore_unknown: bool,
}

/// The derived (version 1) form of every known command. Private: the public impls below add
/// the type checks and the flag around it.
///
/// `remote = "Command"` makes serde generate (de)serialize functions for `Command` itself
/// from this mirror; the generated code builds and takes apart `Command` values, so a variant
/// or field that differs between the two does not compile. The mirror is never constructed
/// (`dead_code`). Field names are the version-1 names and must never change: the log holds them.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Command")]
#[allow(clippy::large_enum_variant, dead_code)]
enum CommandDef {
    Register {
        req: RegisterRequest,
        now_ms: u64,
    },
    Deregister {
        req: DeregisterRequest,
        now_ms: u64,
    },
    Kv {
        op: KvOp,
        req: KvRequest,
        now_ms: u64,
    },
    SessionCreate {
        session: Session,
    },
    SessionDestroy {
        id: String,
        now_ms: u64,
    },
    // Operations decode through `TxnOp`'s own impl, which keeps an unknown verb as written.
    Txn {
        ops: Vec<TxnOp>,
        now_ms: u64,
    },
    ReapTombstones {
        up_to: u64,
    },
    // Members decode through `Command`'s own impl, not this mirror, so a member of an unknown
    // type is kept too (and the same holds for a request's command below).
    Batch(Vec<Command>),
    Restore {
        #[serde(with = "b64_vec")]
        data: Vec<u8>,
    },
    RestoreChunk {
        id: String,
        offset: u64,
        #[serde(with = "b64_vec")]
        data: Vec<u8>,
    },
    RestoreFinish {
        id: String,
        len: u64,
    },
    RestoreAbort {
        id: String,
    },
    CoordinateUpdate {
        entries: Vec<CoordinateEntry>,
    },
    AutopilotSet {
        config: AutopilotConfig,
        cas: Option<u64>,
    },
    QuerySet {
        query: PreparedQuery,
        create: bool,
    },
    QueryDelete {
        id: String,
    },
    Acl {
        op: crate::acl::AclOp,
    },
    Noop,
    Request {
        id: RequestId,
        cmd: Box<Command>,
    },
    // No version-1 form: written back as it was read, by `write_command`.
    #[serde(skip)]
    Unknown(UnknownCommand),
}

/// A known command in its derived form, as a `Serialize` value: a remote derive only gives
/// functions, and `serde_json::to_value` wants a type.
struct AsDef<'a>(&'a Command);

impl Serialize for AsDef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CommandDef::serialize(self.0, s)
    }
}

/// Writes a command as its tag alone, or as a map from its tag to its body plus the flag.
///
/// The bare tag is only for a command without a body and without the flag, the form serde
/// gives unit variants (`"Noop"`); a flagged command without a body is written
/// `{"Tag": null, "ignore_unknown": true}`, since a bare string has no room for the flag.
fn write_command<S: Serializer>(
    s: S,
    tag: &str,
    body: Option<&Value>,
    ignore_unknown: bool,
) -> Result<S::Ok, S::Error> {
    if body.is_none() && !ignore_unknown {
        return s.serialize_str(tag);
    }
    let mut m = s.serialize_map(Some(1 + usize::from(ignore_unknown)))?;
    m.serialize_entry(tag, body.unwrap_or(&Value::Null))?;
    if ignore_unknown {
        m.serialize_entry(IGNORE_UNKNOWN_KEY, &true)?;
    }
    m.end()
}

/// Writes a known command with the ignore-unknown flag: its version-1 form, plus the flag.
///
/// Goes through a `Value` to split the derived form into tag and body. No known type sets the
/// flag yet, so this path only runs for types added later that do.
fn write_known_flagged<S: Serializer>(cmd: &Command, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    match serde_json::to_value(AsDef(cmd)).map_err(S::Error::custom)? {
        // A unit command (bare tag), or a command with a body (a map of one key, its tag).
        Value::String(tag) => write_command(s, &tag, None, true),
        Value::Object(m) if m.len() == 1 => match m.into_iter().next() {
            Some((tag, body)) => write_command(s, &tag, Some(&body), true),
            None => Err(S::Error::custom("a command without a type tag")),
        },
        _ => Err(S::Error::custom(
            "a command must be a tag or a map from its tag",
        )),
    }
}

/// Unknown commands are written back exactly as read; known ones in their version-1 form, with
/// the flag only for types that say older servers may skip them.
impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Command::Unknown(u) => write_command(s, &u.tag, u.body.as_ref(), u.ignore_unknown),
            known if known.ignore_unknown() => write_known_flagged(known, s),
            known => CommandDef::serialize(known, s),
        }
    }
}

/// Reads either form (bare tag or map). Relies on `deserialize_any`, so it needs a
/// self-describing format: JSON, which is what the log and the wire use.
impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Command, D::Error> {
        d.deserialize_any(CommandVisitor)
    }
}

/// Sorts known tags (decoded by the derived form) from unknown ones (kept as written).
struct CommandVisitor;

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = Command;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a command: a type tag, or a map from a type tag to the command's body")
    }

    /// A bare tag. An unknown one has no way to carry the flag, so it is never skippable.
    fn visit_str<E: de::Error>(self, tag: &str) -> Result<Command, E> {
        if is_known(tag) {
            let d: StrDeserializer<'_, E> = tag.into_deserializer();
            CommandDef::deserialize(d)
        } else {
            Ok(Command::Unknown(UnknownCommand {
                tag: tag.to_string(),
                body: None,
                ignore_unknown: false,
            }))
        }
    }

    /// A map holding one tag and, before or after it (JSON keys have no order), possibly the
    /// flag. A known tag's body is decoded straight from the map, without an intermediate
    /// `Value`, so a large command (a restore piece) is not held twice while it is read.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Command, A::Error> {
        use de::Error;
        let mut found: Option<Command> = None;
        let mut flag: Option<bool> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == IGNORE_UNKNOWN_KEY {
                // Twice is refused rather than letting one of the two silently win.
                if flag.is_some() {
                    return Err(A::Error::duplicate_field(IGNORE_UNKNOWN_KEY));
                }
                flag = Some(map.next_value()?);
                continue;
            }
            // Two tags would leave the command's meaning to whichever reader wins: refused.
            if let Some(first) = &found {
                return Err(A::Error::custom(format!(
                    "a command has one type, this one has {:?} and {key:?}",
                    first.type_tag()
                )));
            }
            found = Some(if is_known(&key) {
                CommandDef::deserialize(VariantDeserializer {
                    tag: key,
                    map: &mut map,
                })?
            } else {
                // Kept as a `Value`, whatever its shape, to be written back byte for byte.
                Command::Unknown(UnknownCommand {
                    tag: key,
                    body: Some(map.next_value()?),
                    ignore_unknown: false,
                })
            });
        }
        match found {
            // The flag only matters to a reader that does not know the type.
            Some(Command::Unknown(mut u)) => {
                u.ignore_unknown = flag.unwrap_or(false);
                Ok(Command::Unknown(u))
            }
            Some(known) => Ok(known),
            None => Err(A::Error::custom("a command without a type tag")),
        }
    }
}

/// Hands the derived enum decoder a variant whose tag was already read from the map, with
/// the map positioned at its body.
///
/// The derived decoder of an externally tagged enum expects to read the tag itself; the
/// visitor above had to read it first to tell known from unknown. This replays the tag
/// ([`EnumAccess`]) and then reads the body from the map ([`VariantAccess`]), in whatever shape
/// the variant has.
struct VariantDeserializer<'a, A> {
    tag: String,
    map: &'a mut A,
}

/// Whatever the derived code asks for, it gets an enum: that is all this deserializer holds.
impl<'de, A: MapAccess<'de>> Deserializer<'de> for VariantDeserializer<'_, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, A: MapAccess<'de>> EnumAccess<'de> for VariantDeserializer<'_, A> {
    type Error = A::Error;
    type Variant = Self;

    /// The tag, replayed from the string already read.
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), A::Error> {
        let tag: StrDeserializer<'_, A::Error> = self.tag.as_str().into_deserializer();
        let v = seed.deserialize(tag)?;
        Ok((v, self))
    }
}

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for VariantDeserializer<'_, A> {
    type Error = A::Error;

    /// `{"Noop": null}`: the body must still be consumed (and be a unit) for the map to go on.
    fn unit_variant(self) -> Result<(), A::Error> {
        self.map.next_value()
    }

    /// `Batch(Vec<Command>)`: the body is the variant's one value.
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    /// Required by the trait; `Command` has no tuple variant today.
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(TupleSeed { len, visitor })
    }

    /// Most commands: the body is an object of the variant's fields.
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(StructSeed { fields, visitor })
    }
}

/// A tuple variant's visitor as a seed, so the map can hand it the body: `MapAccess` takes
/// seeds, the derived code gives visitors.
struct TupleSeed<V> {
    len: usize,
    visitor: V,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for TupleSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_tuple(self.len, self.visitor)
    }
}

/// A struct variant's visitor as a seed (see [`TupleSeed`]).
struct StructSeed<V> {
    fields: &'static [&'static str],
    visitor: V,
}

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for StructSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        // The name is only used in error messages of non-self-describing formats.
        d.deserialize_struct("", self.fields, self.visitor)
    }
}

/// The typed form of a transaction operation, as written: Consul's `{"KV": {...}}` shape,
/// borrowing the operation instead of cloning it.
#[derive(Serialize)]
enum TxnOpRef<'a> {
    #[serde(rename = "KV")]
    Kv(&'a TxnKvOp),
    Node(&'a TxnNodeOp),
    Service(&'a TxnServiceOp),
    Check(&'a TxnCheckOp),
}

/// The typed form of a transaction operation, as read.
#[derive(Deserialize)]
#[allow(clippy::large_enum_variant)] // converted into a `TxnOp` at once
enum TxnOpOwned {
    #[serde(rename = "KV")]
    Kv(TxnKvOp),
    Node(TxnNodeOp),
    Service(TxnServiceOp),
    Check(TxnCheckOp),
}

impl Serialize for TxnOp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TxnOp::Kv(o) => TxnOpRef::Kv(o).serialize(s),
            TxnOp::Node(o) => TxnOpRef::Node(o).serialize(s),
            TxnOp::Service(o) => TxnOpRef::Service(o).serialize(s),
            TxnOp::Check(o) => TxnOpRef::Check(o).serialize(s),
            TxnOp::Unrecognized(u) => u.raw.serialize(s),
        }
    }
}

/// Reads the typed form; an operation that fails only because of its verb is kept as written
/// ([`TxnOp::Unrecognized`]), anything else malformed is still an error.
impl<'de> Deserialize<'de> for TxnOp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TxnOp, D::Error> {
        // Read as a `Value` first: a failed typed decode must still have the operation as
        // written, to keep it and to look at its verb.
        let raw = Value::deserialize(d)?;
        match TxnOpOwned::deserialize(&raw) {
            Ok(TxnOpOwned::Kv(o)) => Ok(TxnOp::Kv(o)),
            Ok(TxnOpOwned::Node(o)) => Ok(TxnOp::Node(o)),
            Ok(TxnOpOwned::Service(o)) => Ok(TxnOp::Service(o)),
            Ok(TxnOpOwned::Check(o)) => Ok(TxnOp::Check(o)),
            Err(e) => match unknown_verb(&raw) {
                // Kept only if nothing but the verb is wrong with it.
                Some(error) => match TxnOpOwned::deserialize(&with_known_verb(&raw)) {
                    Ok(_) => Ok(TxnOp::Unrecognized(UnrecognizedTxnOp { raw, error })),
                    Err(e) => Err(de::Error::custom(e)),
                },
                None => Err(de::Error::custom(e)),
            },
        }
    }
}

/// The operation with its verb replaced by one every table has, to check the rest of it:
/// `get` is both a KV and a catalog verb.
fn with_known_verb(raw: &Value) -> Value {
    let mut probe = raw.clone();
    if let Value::Object(op) = &mut probe {
        for body in op.values_mut() {
            if let Value::Object(fields) = body {
                fields.insert("Verb".into(), Value::String("get".into()));
            }
        }
    }
    probe
}

/// The unknown verb of an operation that is otherwise well formed enough to have been logged
/// by a version that checked verbs only when applying (`{"KV": {"Verb": "bogus", ...}}`).
/// `None` when the shape is wrong in another way (not one table, no verb, a verb that is not
/// a string, an unknown table): such an operation was never loggable, so it stays an error.
fn unknown_verb(raw: &Value) -> Option<UnknownVerb> {
    let Value::Object(op) = raw else { return None };
    if op.len() != 1 {
        return None;
    }
    let (table, body) = op.iter().next()?;
    let verb = body.as_object()?.get("Verb")?.as_str()?;
    match table.as_str() {
        "KV" => KvVerb::parse(verb).err(),
        "Node" => CatalogVerb::parse(verb, "Node").err(),
        "Service" => CatalogVerb::parse(verb, "Service").err(),
        "Check" => CatalogVerb::parse(verb, "Check").err(),
        _ => None,
    }
}

/// One command on its own (`{"v": 1, "cmd": ...}`): what [`encode`] and [`decode`] read and
/// write. Raft entries carry their command without it; their own version byte plays its part.
#[derive(Serialize, Deserialize)]
struct Envelope<C> {
    /// [`COMMAND_VERSION`] of the writer.
    v: u32,
    cmd: C,
}

/// Why a command could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoder failed (a value JSON cannot hold).
    #[error("cannot encode command: {0}")]
    Serialize(String),
    /// Larger than any reader accepts.
    #[error("command of {0} bytes exceeds the limit of {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
}

/// Why bytes could not be decoded into a command.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// More bytes than any command may take.
    #[error("command of {0} bytes exceeds the limit of {MAX_COMMAND_BYTES}")]
    TooLarge(usize),
    /// Written by an unknown (newer) version.
    #[error("unsupported command version {0}")]
    Version(u32),
    /// Not a well-formed command.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// Of a type this version does not know, and its writer did not allow skipping it.
    #[error(
        "command type {0:?} is unknown to this version (written by a newer one) and may not be \
         skipped"
    )]
    UnknownType(String),
}

/// Encodes a command in its versioned envelope. The size is checked after encoding: a command
/// no reader would accept is an error here, at its proposer, instead of at every reader.
pub fn encode(cmd: &Command) -> Result<Vec<u8>, EncodeError> {
    let bytes = serde_json::to_vec(&Envelope {
        v: COMMAND_VERSION,
        cmd,
    })
    .map_err(|e| EncodeError::Serialize(e.to_string()))?;
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(EncodeError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// Decodes a command, checking size and version first. A command of an unknown type is
/// refused unless its writer allowed skipping it; then it comes back as
/// [`Command::Unknown`], which applies as a no-op.
pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
    // Before any parsing, so an oversized input costs nothing.
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    // The version alone first (other fields are skipped): a command from a newer envelope is
    // reported as such rather than as whatever its unfamiliar body fails on.
    #[derive(Deserialize)]
    struct Head {
        v: u32,
    }
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if head.v != COMMAND_VERSION {
        return Err(DecodeError::Version(head.v));
    }
    let env: Envelope<Command> =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    // A lone command has no log to stay in: one that may not be skipped is refused now.
    if let Some(u) = env.cmd.refused_unknown() {
        return Err(DecodeError::UnknownType(u.tag.clone()));
    }
    Ok(env.cmd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Service};
    use crate::{Response, State, StoreError};

    /// A command with a body of every kind of field (text, base64 bytes, numbers).
    fn kv_cas() -> Command {
        Command::Kv {
            op: KvOp::Cas,
            req: KvRequest {
                key: "a/b".into(),
                value: Some(b"hello".to_vec()),
                flags: 7,
                index: 3,
                session: String::new(),
            },
            now_ms: 42,
        }
    }

    /// One command of every known type, in the order of [`KNOWN_TYPES`] (the first test checks
    /// that): a type added without a sample here fails it.
    fn every_type() -> Vec<Command> {
        vec![
            Command::Register {
                req: RegisterRequest {
                    node: "n1".into(),
                    address: "10.0.0.1".into(),
                    service: Some(Service {
                        service: "web".into(),
                        ..Service::default()
                    }),
                    ..RegisterRequest::default()
                },
                now_ms: 1,
            },
            Command::Deregister {
                req: DeregisterRequest {
                    node: "n1".into(),
                    ..DeregisterRequest::default()
                },
                now_ms: 1,
            },
            kv_cas(),
            Command::SessionCreate {
                session: Session::default(),
            },
            Command::SessionDestroy {
                id: "s".into(),
                now_ms: 2,
            },
            Command::Txn {
                ops: vec![
                    TxnOp::Kv(TxnKvOp::new(KvVerb::GetOrEmpty, "k")),
                    TxnOp::Node(TxnNodeOp {
                        verb: CatalogVerb::DeleteCas,
                        node: Node::default(),
                    }),
                ],
                now_ms: 3,
            },
            Command::ReapTombstones { up_to: 4 },
            Command::Batch(vec![Command::Noop, kv_cas()]),
            Command::Restore {
                data: vec![1, 2, 3],
            },
            Command::RestoreChunk {
                id: "r".into(),
                offset: 0,
                data: vec![9],
            },
            Command::RestoreFinish {
                id: "r".into(),
                len: 1,
            },
            Command::RestoreAbort { id: "r".into() },
            Command::CoordinateUpdate { entries: vec![] },
            Command::AutopilotSet {
                config: AutopilotConfig::default(),
                cas: Some(0),
            },
            Command::QuerySet {
                query: PreparedQuery::default(),
                create: true,
            },
            Command::QueryDelete { id: "q".into() },
            Command::Noop,
            Command::Request {
                id: RequestId {
                    client: "c".into(),
                    seq: 1,
                    floor: 1,
                },
                cmd: Box::new(kv_cas()),
            },
            Command::Acl {
                op: crate::acl::AclOp::PolicyDelete { id: "p".into() },
            },
        ]
    }

    /// The tag a command is written with: the bare string or the map's only key.
    fn written_tag(cmd: &Command) -> String {
        match serde_json::to_value(cmd).expect("encodes") {
            Value::String(s) => s,
            Value::Object(m) => m.keys().next().cloned().unwrap_or_default(),
            other => panic!("unexpected form {other}"),
        }
    }

    /// Tags are frozen: each type is written under the tag `type_tag` reports, none asks to be
    /// skipped, and every one decodes back to itself.
    #[test]
    fn every_known_type_has_its_stable_tag_and_round_trips() {
        let all = every_type();
        let tags: Vec<String> = all.iter().map(|c| c.type_tag().to_string()).collect();
        assert_eq!(tags, KNOWN_TYPES, "one sample per known type, in order");
        for cmd in &all {
            assert_eq!(written_tag(cmd), cmd.type_tag());
            // No type known today may be skipped: each is known to every reader of the flag.
            assert!(!cmd.ignore_unknown());
            let bytes = encode(cmd).expect("encodes");
            assert_eq!(&decode(&bytes).expect("decodes"), cmd);
        }
        // The flag's key can never be taken for a type.
        assert!(!KNOWN_TYPES.contains(&IGNORE_UNKNOWN_KEY));
    }

    /// The envelope refuses an unknown version, garbage, a truncated command, two tags, and
    /// (when encoding) a command over [`MAX_COMMAND_BYTES`].
    #[test]
    fn envelope_bounds() {
        let bytes = encode(&kv_cas()).expect("encodes");
        // A newer envelope is named as such, not as a malformed command.
        assert!(matches!(
            decode(b"{\"v\":99,\"cmd\":\"Noop\"}"),
            Err(DecodeError::Version(99))
        ));
        assert!(matches!(
            decode(b"\x00\x01garbage"),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(DecodeError::Malformed(_))
        ));
        // Two type tags in one command.
        assert!(matches!(
            decode(b"{\"v\":1,\"cmd\":{\"Noop\":null,\"Kv\":{}}}"),
            Err(DecodeError::Malformed(_))
        ));
        let huge = Command::Restore {
            data: vec![0; MAX_COMMAND_BYTES],
        };
        assert!(matches!(encode(&huge), Err(EncodeError::TooLarge(_))));
    }

    /// Entries exactly as version 1 wrote them (captured from that build) decode, and known
    /// commands are written back byte for byte.
    #[test]
    fn version_1_entries_decode_and_encode_unchanged() {
        let v1: [&str; 4] = [
            // A struct variant with base64 bytes; a unit variant as its bare tag; a request
            // wrapping another command; a batch of two.
            r#"{"v":1,"cmd":{"Kv":{"op":"cas","req":{"Key":"a/b","Value":"aGVsbG8=","Flags":7,"Index":3,"Session":""},"now_ms":42}}}"#,
            r#"{"v":1,"cmd":"Noop"}"#,
            r#"{"v":1,"cmd":{"Request":{"id":{"client":"c1","seq":2,"floor":1},"cmd":{"SessionDestroy":{"id":"s","now_ms":9}}}}}"#,
            r#"{"v":1,"cmd":{"Batch":[{"ReapTombstones":{"up_to":4}},{"RestoreAbort":{"id":"r"}}]}}"#,
        ];
        // Byte for byte: an entry read and written back (a server handing entries on to a
        // follower) must still be what the previous release reads.
        for text in v1 {
            let cmd = decode(text.as_bytes()).expect("version 1 decodes");
            assert_eq!(encode(&cmd).expect("encodes"), text.as_bytes());
        }
        assert_eq!(decode(v1[0].as_bytes()).expect("decodes"), kv_cas());
    }

    /// Version 1 checked transaction verbs only when applying, so its logs may hold a
    /// transaction with a verb that does not exist. It still decodes, is written back as it
    /// was, applies as it did then (rolled back, Consul's error) and may not be proposed again.
    #[test]
    fn a_version_1_transaction_with_an_unknown_verb_replays_as_it_applied() {
        let text = r#"{"v":1,"cmd":{"Txn":{"ops":[{"KV":{"Verb":"set","Key":"t/a","Value":"MQ==","Flags":7,"Index":0,"Session":""}},{"KV":{"Verb":"bogus","Key":"x","Value":null,"Flags":0,"Index":0,"Session":""}},{"Node":{"Verb":"get","Node":{"ID":"","Node":"n1","Address":"","Datacenter":"","TaggedAddresses":{},"Meta":{},"CreateIndex":0,"ModifyIndex":0}}}],"now_ms":5}}}"#;
        let cmd = decode(text.as_bytes()).expect("decodes");
        let Command::Txn { ops, .. } = &cmd else {
            panic!("not a transaction: {cmd:?}")
        };
        assert!(matches!(&ops[0], TxnOp::Kv(o) if o.verb == KvVerb::Set));
        assert!(matches!(&ops[1], TxnOp::Unrecognized(u) if u.error.verb == "bogus"));
        // Written back as it was read, the unknown verb included.
        assert_eq!(
            serde_json::to_value(&cmd).expect("encodes"),
            serde_json::from_str::<Value>(text).expect("json")["cmd"]
        );
        assert!(matches!(
            cmd.validate(),
            Err(crate::command::InvalidCommand::UnknownVerb { op_index: 1, .. })
        ));
        // Applied as version 1 applied it: rolled back, with every failing operation listed
        // (the bad verb, and the read of a node that does not exist).
        let mut st = State::new();
        let applied = st.apply(1, &cmd);
        let Ok(Response::Txn { results, errors }) = applied.result else {
            panic!("{applied:?}")
        };
        assert!(results.is_empty());
        let what: Vec<(usize, &str)> = errors
            .iter()
            .map(|e| (e.op_index, e.what.as_str()))
            .collect();
        assert_eq!(
            what,
            vec![
                (1, "unknown KV verb \"bogus\""),
                (2, "node \"n1\" doesn't exist")
            ]
        );
        assert!(st.kv_get("t/a").1.is_none());
        // A malformed operation is still malformed.
        assert!(serde_json::from_str::<TxnOp>(r#"{"KV":{"Verb":"bogus","Flags":"x"}}"#).is_err());
        assert!(serde_json::from_str::<TxnOp>(r#"{"KV":{"Verb":5}}"#).is_err());
    }

    /// What a newer version would write: a type this one does not know, with or without the
    /// flag, alone or inside a batch.
    fn newer(tag: &str, flagged: bool) -> String {
        #[derive(Serialize)]
        struct FutureBody {
            #[serde(rename = "Peer")]
            peer: String,
            #[serde(rename = "Weight")]
            weight: u32,
        }
        let mut cmd = serde_json::Map::new();
        cmd.insert(
            tag.to_string(),
            serde_json::to_value(FutureBody {
                peer: "dc2".into(),
                weight: 3,
            })
            .expect("json"),
        );
        if flagged {
            cmd.insert(IGNORE_UNKNOWN_KEY.into(), Value::Bool(true));
        }
        serde_json::to_string(&cmd).expect("json")
    }

    #[test]
    fn an_older_reader_refuses_an_unknown_type_unless_it_may_skip_it() {
        // Not flagged: the envelope refuses, naming the type.
        let text = format!("{{\"v\":1,\"cmd\":{}}}", newer("PeeringWrite", false));
        let err = decode(text.as_bytes()).expect_err("refused");
        assert!(matches!(&err, DecodeError::UnknownType(t) if t == "PeeringWrite"));
        assert!(err.to_string().contains("\"PeeringWrite\""), "{err}");
        // In a batch, too.
        let text = format!(
            "{{\"v\":1,\"cmd\":{{\"Batch\":[\"Noop\",{}]}}}}",
            newer("PeeringWrite", false)
        );
        assert!(matches!(
            decode(text.as_bytes()),
            Err(DecodeError::UnknownType(_))
        ));

        // Flagged: decoded as a command to skip, written back as it came.
        let body = newer("PeeringWrite", true);
        let text = format!("{{\"v\":1,\"cmd\":{body}}}");
        let cmd = decode(text.as_bytes()).expect("may be skipped");
        let Command::Unknown(u) = &cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!((u.tag.as_str(), u.ignore_unknown), ("PeeringWrite", true));
        assert_eq!(
            serde_json::to_value(&cmd).expect("encodes"),
            serde_json::from_str::<Value>(&body).expect("json")
        );
        // The flag on a type the reader knows changes nothing.
        let known = r#"{"v":1,"cmd":{"RestoreAbort":{"id":"r"},"ignore_unknown":true}}"#;
        assert_eq!(
            decode(known.as_bytes()).expect("decodes"),
            Command::RestoreAbort { id: "r".into() }
        );
        let mut buf = Vec::new();
        write_known_flagged(
            &Command::RestoreAbort { id: "r".into() },
            &mut serde_json::Serializer::new(&mut buf),
        )
        .expect("writes");
        assert_eq!(buf, br#"{"RestoreAbort":{"id":"r"},"ignore_unknown":true}"#);
        // A bare tag of an unknown type carries no flag: refused.
        assert!(matches!(
            decode(br#"{"v":1,"cmd":"Rebalance"}"#),
            Err(DecodeError::UnknownType(t)) if t == "Rebalance"
        ));
    }

    /// The state applies a skippable unknown command as a no-op (index consumed, nothing
    /// changed) and refuses an unskippable one without consuming the index, so the server
    /// stops where it is instead of diverging.
    #[test]
    fn the_state_skips_or_refuses_unknown_commands() {
        let skip: Command = serde_json::from_str(&newer("PeeringWrite", true)).expect("reads");
        let stop: Command = serde_json::from_str(&newer("PeeringWrite", false)).expect("reads");
        assert_eq!(skip.unknown().len(), 1);
        assert!(skip.refused_unknown().is_none());
        assert_eq!(
            stop.refused_unknown().map(|u| u.tag.as_str()),
            Some("PeeringWrite")
        );
        // Neither may be proposed by this version: only a newer one writes them.
        assert!(skip.validate().is_err() && stop.validate().is_err());

        let mut st = State::new();
        let a = st.apply(1, &skip);
        assert_eq!(a.result, Ok(Response::Done));
        assert!(a.changes.is_empty());
        assert_eq!(st.last_index(), 1);
        // In a batch, the skippable member is a no-op and the others apply.
        let batch = Command::Batch(vec![kv_cas(), skip.clone()]);
        let a = st.apply(2, &batch);
        assert!(matches!(a.result, Ok(Response::Batch(ref r)) if r.len() == 2));

        // An unskippable member refuses the whole entry, including the members before it.
        let before = st.kv_get("a/b").1;
        let refused = Command::Batch(vec![
            Command::Kv {
                op: KvOp::Set,
                req: KvRequest {
                    key: "a/b".into(),
                    ..KvRequest::default()
                },
                now_ms: 1,
            },
            stop,
        ]);
        let a = st.apply(3, &refused);
        assert!(
            matches!(&a.result, Err(StoreError::UnknownCommand(t)) if t == "PeeringWrite"),
            "{a:?}"
        );
        assert_eq!(st.last_index(), 2, "the index is not consumed");
        assert_eq!(st.kv_get("a/b").1, before, "nothing of the entry applied");
    }
}
