//! What members tell each other besides liveness, carried as foca custom broadcasts:
//!
//! - [`MemberMeta`]: role, datacenter, build, ports, node id and node meta of a member,
//!   versioned per member generation so that only the newest copy spreads;
//! - leave intents: "member X (generation g) is leaving", which turns its coming `Down`
//!   into *left* rather than *failed* (and, with `prune`, removes it);
//! - [`UserEvent`]s: named payloads with a Lamport time, spread to everyone once, deduplicated
//!   by ID.
//!
//! ```text
//! item  = kind:u8 ...
//! meta  = 1 name:str8 generation:u64 version:u64 protocol:u8 member-meta
//! leave = 2 name:str8 generation:u64 prune:u8
//! event = 3 version:u8 id:16 ltime:u64 name:str8 payload:bytes16 node:str8 service:str8 tag:str8
//! member-meta = role:u8 dc:str8 build:str8 node_id:str8 ports:4*u16
//!               meta_count:u8 (key:str8 value:str16)* tags_count:u8 (key:str8 value:str8)*
//! ```
//!
//! The [`Handler`] lives inside foca (which owns it), so what it learns is kept in a
//! [`Book`] shared with the core through a mutex: foca decides what to re-broadcast from the
//! handler's answer, the core reads the same book to report members and events.
//!
//! Metadata travels as a broadcast rather than inside the identity: foca puts identities in
//! every header, so metadata there would cost its size on every probe, and a change would
//! need a new identity. As a versioned item it is sent only when it changes, and a newer
//! copy replaces an older one still queued ([`BroadcastKey`]).
//!
//! Every bound below exists so that the largest item fits one datagram next to the largest
//! foca header; the core's `limits` test checks it. Decoders apply the same bounds that
//! [`MemberMeta::validate`] and [`UserEvent::validate`] apply before sending.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, BufMut};
use foca::{BroadcastHandler, Invalidates};
use uuid::Uuid;

use crate::codec::{
    CodecError, check_len, get_bool, get_bytes16, get_str8, get_str16, get_u8, get_u16, get_u64,
    get_vec, put_bytes16, put_str8,
};
use crate::identity::{MAX_NAME_LEN, NodeId};

/// Largest encoded [`MemberMeta`].
///
/// Together with the name and version fields this gives [`MAX_META_ITEM_LEN`], which must
/// fit a datagram next to the largest foca header.
pub const MAX_META_LEN: usize = 640;
/// Longest datacenter, build, node id or tag string.
pub const MAX_META_STRING: usize = 64;
/// Longest node meta key.
///
/// Consul's own limit on node meta keys.
pub const MAX_NODE_META_KEY: usize = 128;
/// Longest node meta value.
///
/// Consul's own limit on node meta values. Values use a two-byte length for this reason;
/// the overall [`MAX_META_LEN`] still bounds their sum.
pub const MAX_NODE_META_VALUE: usize = 512;

/// Longest user event payload.
///
/// Serf's default `UserEventSizeLimit`.
pub const MAX_EVENT_PAYLOAD: usize = 512;
/// Longest user event name.
pub const MAX_EVENT_NAME: usize = 128;
/// Longest user event filter (node, service or tag regular expression).
pub const MAX_EVENT_FILTER: usize = 255;
/// Bound on name + payload + filters of one event: with the fixed fields (32 bytes) an
/// event item stays below 800 bytes, which fits a 1400-byte datagram next to the largest
/// possible foca header (see the `limits` test in `core`).
pub const MAX_EVENT_USER_BYTES: usize = 768;
/// Encoded event items are at most this long.
pub const MAX_EVENT_ITEM_LEN: usize = MAX_EVENT_USER_BYTES + 32;
/// Encoded meta items are at most this long.
pub const MAX_META_ITEM_LEN: usize = 1 + 1 + MAX_NAME_LEN + 8 + 8 + 1 + MAX_META_LEN;
/// Current version of the user event format.
pub const EVENT_VERSION: u8 = 1;

/// Events remembered for deduplication.
///
/// Also the width, in Lamport time, of the window in which events are accepted: an event
/// older than that can no longer be checked against what was seen, so it is refused, as
/// Serf refuses events older than its event buffer.
const SEEN_EVENTS: usize = 4096;

/// A member's role.
///
/// Clients pick the servers they forward to from the members whose role is `Server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Role {
    /// An agent that forwards to servers.
    #[default]
    Client,
    /// A Raft server.
    Server,
}

/// The ports a member serves on (0 = not served).
///
/// Published so that others reach a member's services without asking it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Ports {
    /// Server RPC (Consul 8300); 0 on clients.
    pub server_rpc: u16,
    /// HTTP API (8500).
    pub http: u16,
    /// DNS (8600).
    pub dns: u16,
    /// LAN gossip (8301).
    pub serf_lan: u16,
}

/// Metadata every member publishes about itself, like Serf tags.
///
/// Bounded: the encoding must stay within [`MAX_META_LEN`] bytes so that it travels in one
/// datagram; [`MemberMeta::validate`] says whether it does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct MemberMeta {
    /// Server or client.
    pub role: Role,
    /// Datacenter name.
    pub datacenter: String,
    /// Build version, e.g. `0.1.0`.
    pub build: String,
    /// Served ports.
    pub ports: Ports,
    /// The node's UUID.
    pub node_id: String,
    /// The node meta map (`node_meta` in Consul's configuration).
    pub node_meta: BTreeMap<String, String>,
    /// Further free-form tags (for example `bootstrap`/`expect` of servers).
    pub tags: BTreeMap<String, String>,
}

/// Why metadata or an event is refused.
///
/// Checked before anything is sent: an item over its bounds would be refused by every
/// receiver's decoder, or by foca if it did not fit a packet at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A field is longer than its limit.
    #[error("{what} is {len} bytes, the limit is {max}")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A required field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Too many entries in a map.
    #[error("{what} has {len} entries, the limit is {max}")]
    TooMany {
        /// Which map.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Refuses a field longer than `max`.
fn limit(what: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        Err(LimitError::TooLong { what, len, max })
    } else {
        Ok(())
    }
}

impl MemberMeta {
    /// Checks every bound; `Ok` means it can be gossiped.
    ///
    /// Every field has its own bound and the encoding a total one: the per-field bounds
    /// alone would allow far more than [`MAX_META_LEN`].
    pub fn validate(&self) -> Result<(), LimitError> {
        limit("datacenter", self.datacenter.len(), MAX_META_STRING)?;
        limit("build", self.build.len(), MAX_META_STRING)?;
        limit("node id", self.node_id.len(), MAX_META_STRING)?;
        // The entry counts are one byte on the wire.
        if self.node_meta.len() > 255 {
            return Err(LimitError::TooMany {
                what: "node meta",
                len: self.node_meta.len(),
                max: 255,
            });
        }
        if self.tags.len() > 255 {
            return Err(LimitError::TooMany {
                what: "tags",
                len: self.tags.len(),
                max: 255,
            });
        }
        for (k, v) in &self.node_meta {
            limit("node meta key", k.len(), MAX_NODE_META_KEY)?;
            limit("node meta value", v.len(), MAX_NODE_META_VALUE)?;
        }
        for (k, v) in &self.tags {
            limit("tag key", k.len(), MAX_META_STRING)?;
            limit("tag value", v.len(), MAX_META_STRING)?;
        }
        limit("encoded member metadata", self.encoded_len(), MAX_META_LEN)
    }

    /// Encoded length.
    ///
    /// Exact, so that [`MemberMeta::validate`] can check the bound without encoding: role,
    /// three length-prefixed strings, four ports, then the two counted maps.
    pub fn encoded_len(&self) -> usize {
        let strings = 3 + self.datacenter.len() + self.build.len() + self.node_id.len();
        let meta: usize = self
            .node_meta
            .iter()
            .map(|(k, v)| 1 + k.len() + 2 + v.len())
            .sum();
        let tags: usize = self.tags.iter().map(|(k, v)| 2 + k.len() + v.len()).sum();
        1 + strings + 8 + 1 + meta + 1 + tags
    }

    /// Writes the metadata; call only after [`MemberMeta::validate`].
    ///
    /// The counts saturate and the entries are cut at 255 alike, so even unvalidated
    /// input would still encode to something that decodes.
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(match self.role {
            Role::Client => 0,
            Role::Server => 1,
        });
        put_str8(buf, &self.datacenter);
        put_str8(buf, &self.build);
        put_str8(buf, &self.node_id);
        buf.put_u16(self.ports.server_rpc);
        buf.put_u16(self.ports.http);
        buf.put_u16(self.ports.dns);
        buf.put_u16(self.ports.serf_lan);
        buf.put_u8(u8::try_from(self.node_meta.len()).unwrap_or(u8::MAX));
        for (k, v) in self.node_meta.iter().take(255) {
            put_str8(buf, k);
            put_bytes16(buf, v.as_bytes());
        }
        buf.put_u8(u8::try_from(self.tags.len()).unwrap_or(u8::MAX));
        for (k, v) in self.tags.iter().take(255) {
            put_str8(buf, k);
            put_str8(buf, v);
        }
    }

    /// Reads metadata, enforcing the same bounds as [`MemberMeta::validate`].
    ///
    /// Each field is bounded as it is read, then the total: fields each within their limit
    /// could still add up to more than a sender can validate.
    pub(crate) fn decode(buf: &mut impl Buf) -> Result<Self, CodecError> {
        let start = buf.remaining();
        let role = match get_u8(buf)? {
            0 => Role::Client,
            1 => Role::Server,
            tag => return Err(CodecError::UnknownTag { what: "role", tag }),
        };
        let datacenter = get_str8(buf, MAX_META_STRING, "datacenter")?;
        let build = get_str8(buf, MAX_META_STRING, "build")?;
        let node_id = get_str8(buf, MAX_META_STRING, "node id")?;
        let ports = Ports {
            server_rpc: get_u16(buf)?,
            http: get_u16(buf)?,
            dns: get_u16(buf)?,
            serf_lan: get_u16(buf)?,
        };
        let mut node_meta = BTreeMap::new();
        for _ in 0..get_u8(buf)? {
            let k = get_str8(buf, MAX_NODE_META_KEY, "node meta key")?;
            let v = get_str16(buf, MAX_NODE_META_VALUE, "node meta value")?;
            node_meta.insert(k, v);
        }
        let mut tags = BTreeMap::new();
        for _ in 0..get_u8(buf)? {
            let k = get_str8(buf, MAX_META_STRING, "tag key")?;
            let v = get_str8(buf, MAX_META_STRING, "tag value")?;
            tags.insert(k, v);
        }
        check_len("member metadata", start - buf.remaining(), MAX_META_LEN)?;
        Ok(Self {
            role,
            datacenter,
            build,
            ports,
            node_id,
            node_meta,
            tags,
        })
    }
}

/// A user event, as `PUT /v1/event/fire/:name` creates and `GET /v1/event/list` lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserEvent {
    /// Unique ID (deduplication key).
    ///
    /// Gossip delivers an event several times and by several paths (and push/pull once
    /// more); the ID is how each member delivers it once.
    pub id: Uuid,
    /// Event name.
    pub name: String,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// Node name regular expression (applied by receivers).
    pub node_filter: String,
    /// Service name regular expression.
    pub service_filter: String,
    /// Service tag regular expression.
    pub tag_filter: String,
    /// Event format version (Consul reports 1).
    pub version: u8,
    /// Lamport time, assigned when fired.
    ///
    /// Orders events across members, and bounds how old an event may be and still be
    /// accepted (see [`Book::observe_event`]).
    pub ltime: u64,
}

impl UserEvent {
    /// A new event with a random ID and no filters.
    ///
    /// The Lamport time is left at 0: the core stamps it when the event is fired.
    pub fn new(name: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id: Uuid::new_v4(),
            name: name.into(),
            payload: payload.into(),
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: EVENT_VERSION,
            ltime: 0,
        }
    }

    /// Checks the size bounds.
    ///
    /// The total bound is what keeps the encoded item within [`MAX_EVENT_ITEM_LEN`]: the
    /// fields' own bounds add up to much more.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.name.is_empty() {
            return Err(LimitError::Empty("event name"));
        }
        limit("event name", self.name.len(), MAX_EVENT_NAME)?;
        limit("event payload", self.payload.len(), MAX_EVENT_PAYLOAD)?;
        limit("node filter", self.node_filter.len(), MAX_EVENT_FILTER)?;
        limit(
            "service filter",
            self.service_filter.len(),
            MAX_EVENT_FILTER,
        )?;
        limit("tag filter", self.tag_filter.len(), MAX_EVENT_FILTER)?;
        let total = self.name.len()
            + self.payload.len()
            + self.node_filter.len()
            + self.service_filter.len()
            + self.tag_filter.len();
        limit(
            "event name + payload + filters",
            total,
            MAX_EVENT_USER_BYTES,
        )
    }

    /// Writes the event (after its item tag, or in a push/pull list).
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.version);
        buf.put_slice(self.id.as_bytes());
        buf.put_u64(self.ltime);
        put_str8(buf, &self.name);
        put_bytes16(buf, &self.payload);
        put_str8(buf, &self.node_filter);
        put_str8(buf, &self.service_filter);
        put_str8(buf, &self.tag_filter);
    }

    /// Reads an event and applies [`UserEvent::validate`]'s bounds, so a peer cannot spread
    /// an event this member would refuse to fire.
    pub(crate) fn decode(buf: &mut impl Buf) -> Result<Self, CodecError> {
        let version = get_u8(buf)?;
        if version != EVENT_VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        let raw = get_vec(buf, 16)?;
        // Sixteen bytes were read, so this cannot fail; the mapping avoids a panic path.
        let id = Uuid::from_slice(&raw).map_err(|_| CodecError::Truncated)?;
        let ltime = get_u64(buf)?;
        let name = get_str8(buf, MAX_EVENT_NAME, "event name")?;
        let payload = get_bytes16(buf, MAX_EVENT_PAYLOAD, "event payload")?;
        let node_filter = get_str8(buf, MAX_EVENT_FILTER, "node filter")?;
        let service_filter = get_str8(buf, MAX_EVENT_FILTER, "service filter")?;
        let tag_filter = get_str8(buf, MAX_EVENT_FILTER, "tag filter")?;
        let ev = Self {
            id,
            name,
            payload,
            node_filter,
            service_filter,
            tag_filter,
            version,
            ltime,
        };
        ev.validate().map_err(|_| CodecError::Length {
            what: "event",
            len: ev.payload.len() + ev.name.len(),
            max: MAX_EVENT_USER_BYTES,
        })?;
        Ok(ev)
    }
}

/// Metadata as published by a member at one generation and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionedMeta {
    /// Generation of the publishing identity.
    ///
    /// First in the rank: a restarted process counts versions from 1 again, and its
    /// metadata must still replace its previous life's.
    pub generation: u64,
    /// Counter bumped at every change within a generation.
    pub version: u64,
    /// The publisher's gossip protocol version.
    pub protocol: u8,
    /// The metadata.
    pub meta: MemberMeta,
}

impl VersionedMeta {
    /// The order in which copies replace each other.
    pub fn rank(&self) -> (u64, u64) {
        (self.generation, self.version)
    }
}

/// A leave intent for one generation of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaveMark {
    /// Generation that is leaving.
    ///
    /// An intent binds one generation only: a member that restarts under the same name is not
    /// affected by its previous life's leave.
    pub generation: u64,
    /// Whether members should forget it at once (`force-leave -prune`).
    ///
    /// Without it a left member stays listed until the tombstone timeout, as in Consul.
    pub prune: bool,
}

/// One custom broadcast.
///
/// Each item is one foca custom broadcast: foca carries it length-prefixed in the room a
/// packet has left, and hands it to [`Handler`] on every member it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A member's metadata.
    Meta {
        /// Member name.
        name: Arc<str>,
        /// The versioned metadata.
        meta: VersionedMeta,
    },
    /// A member is leaving (or was forced to leave).
    Leave {
        /// Member name.
        name: Arc<str>,
        /// Which generation and whether to prune.
        mark: LeaveMark,
    },
    /// A user event.
    Event(UserEvent),
}

impl Item {
    /// Encodes the item.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Item::Meta { name, meta } => {
                out.put_u8(1);
                put_str8(&mut out, name);
                out.put_u64(meta.generation);
                out.put_u64(meta.version);
                out.put_u8(meta.protocol);
                meta.meta.encode(&mut out);
            }
            Item::Leave { name, mark } => {
                out.put_u8(2);
                put_str8(&mut out, name);
                out.put_u64(mark.generation);
                out.put_u8(u8::from(mark.prune));
            }
            Item::Event(ev) => {
                out.put_u8(3);
                ev.encode(&mut out);
            }
        }
        out
    }

    /// Decodes exactly one item from `data`.
    ///
    /// foca hands over one length-prefixed item at a time, so bytes left after the item
    /// mean a corrupt one.
    pub fn decode(data: &[u8]) -> Result<Self, CodecError> {
        let mut buf = data;
        let item = match get_u8(&mut buf)? {
            1 => {
                let name = get_name(&mut buf)?;
                let generation = get_u64(&mut buf)?;
                let version = get_u64(&mut buf)?;
                let protocol = get_u8(&mut buf)?;
                let meta = MemberMeta::decode(&mut buf)?;
                Item::Meta {
                    name,
                    meta: VersionedMeta {
                        generation,
                        version,
                        protocol,
                        meta,
                    },
                }
            }
            2 => Item::Leave {
                name: get_name(&mut buf)?,
                mark: LeaveMark {
                    generation: get_u64(&mut buf)?,
                    prune: get_bool(&mut buf, "prune")?,
                },
            },
            3 => Item::Event(UserEvent::decode(&mut buf)?),
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "broadcast",
                    tag,
                });
            }
        };
        if buf.has_remaining() {
            return Err(CodecError::Trailing(buf.remaining()));
        }
        Ok(item)
    }

    /// The key foca queues this item under (see [`BroadcastKey`]).
    fn key(&self) -> BroadcastKey {
        match self {
            Item::Meta { name, meta } => BroadcastKey::Meta {
                name: Arc::clone(name),
                rank: meta.rank(),
            },
            Item::Leave { name, mark } => BroadcastKey::Leave {
                name: Arc::clone(name),
                mark: *mark,
            },
            Item::Event(ev) => BroadcastKey::Event(ev.id),
        }
    }
}

/// Reads a member name carried as a bare string, with the bounds of [`NodeId::new`].
pub(crate) fn get_name(buf: &mut impl Buf) -> Result<Arc<str>, CodecError> {
    let name = get_str8(buf, MAX_NAME_LEN, "node name")?;
    if name.is_empty() {
        return Err(CodecError::Length {
            what: "node name",
            len: 0,
            max: MAX_NAME_LEN,
        });
    }
    Ok(Arc::from(name))
}

/// What foca keeps per broadcast in its dissemination backlog: a newer copy about the same
/// member replaces an older one still waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastKey {
    /// Metadata of `name` at `(generation, version)`.
    Meta {
        /// Member name.
        name: Arc<str>,
        /// `(generation, version)`.
        rank: (u64, u64),
    },
    /// Leave intent of `name`.
    Leave {
        /// Member name.
        name: Arc<str>,
        /// Generation and prune flag.
        mark: LeaveMark,
    },
    /// User event by ID.
    Event(Uuid),
}

impl Invalidates for BroadcastKey {
    /// `>=` rather than `>`: foca drops the queued entries a new key invalidates and queues
    /// the new one with a full count of transmissions, so re-adding an equal copy (the core
    /// refreshing its own metadata) restarts it instead of queueing a duplicate.
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (
                BroadcastKey::Meta { name: a, rank: ra },
                BroadcastKey::Meta { name: b, rank: rb },
            ) => a == b && ra >= rb,
            (
                BroadcastKey::Leave { name: a, mark: ma },
                BroadcastKey::Leave { name: b, mark: mb },
            ) => a == b && ma >= mb,
            (BroadcastKey::Event(a), BroadcastKey::Event(b)) => a == b,
            _ => false,
        }
    }
}

/// Everything learned from broadcasts and push/pull exchanges that foca does not track.
///
/// Keyed by name, not identity: it outlives generation changes, and an entry goes only
/// when the member is reaped or pruned ([`Book::forget`]).
#[derive(Debug, Default)]
pub struct Book {
    /// Newest metadata per member name.
    metas: BTreeMap<Arc<str>, VersionedMeta>,
    /// Newest leave intent per member name.
    leaves: BTreeMap<Arc<str>, LeaveMark>,
    /// Lamport clock of user events: above every event time seen or fired here.
    event_clock: u64,
    /// IDs of the last [`SEEN_EVENTS`] events, for deduplication.
    seen: HashSet<Uuid>,
    /// The same IDs in arrival order, to forget the oldest first.
    seen_order: VecDeque<Uuid>,
    /// Items that were news, for the core to react to once foca returns: the handler has
    /// no way back to the core.
    inbox: Vec<Item>,
    /// Events refused as too old, reported in the stats.
    stale_events: u64,
}

impl Book {
    /// The newest metadata known for `name`.
    pub fn meta(&self, name: &str) -> Option<&VersionedMeta> {
        self.metas.get(name)
    }

    /// The newest leave intent known for `name`.
    pub fn leave(&self, name: &str) -> Option<LeaveMark> {
        self.leaves.get(name).copied()
    }

    /// The Lamport clock of user events.
    pub fn event_clock(&self) -> u64 {
        self.event_clock
    }

    /// Events refused as older than the deduplication window.
    pub fn stale_events(&self) -> u64 {
        self.stale_events
    }

    /// Records newer metadata; true when it replaced what was known.
    ///
    /// An equal rank is the same copy and not news, which is what stops its relaying.
    pub fn merge_meta(&mut self, name: &Arc<str>, meta: &VersionedMeta) -> bool {
        match self.metas.get(name) {
            Some(known) if known.rank() >= meta.rank() => false,
            _ => {
                self.metas.insert(Arc::clone(name), meta.clone());
                true
            }
        }
    }

    /// Records a newer leave intent; true when it replaced what was known.
    pub fn merge_leave(&mut self, name: &Arc<str>, mark: LeaveMark) -> bool {
        match self.leaves.get(name) {
            Some(known) if *known >= mark => false,
            _ => {
                self.leaves.insert(Arc::clone(name), mark);
                true
            }
        }
    }

    /// Moves the event clock forward to at least `ltime + 1`.
    ///
    /// Lamport's receive rule: an event fired here afterwards orders after `ltime`.
    pub fn witness(&mut self, ltime: u64) {
        self.event_clock = self.event_clock.max(ltime.saturating_add(1));
    }

    /// Takes the next Lamport time for a local event.
    pub fn next_ltime(&mut self) -> u64 {
        let t = self.event_clock;
        self.event_clock = self.event_clock.saturating_add(1);
        t
    }

    /// Marks an event as seen; true when it is new and recent enough to deliver.
    pub fn observe_event(&mut self, ev: &UserEvent) -> bool {
        if self.seen.contains(&ev.id) {
            return false;
        }
        // Too old to tell whether it was already delivered: refused (see `SEEN_EVENTS`).
        if ev.ltime.saturating_add(SEEN_EVENTS as u64) < self.event_clock {
            self.stale_events += 1;
            return false;
        }
        self.witness(ev.ltime);
        if self.seen_order.len() >= SEEN_EVENTS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(ev.id);
        self.seen_order.push_back(ev.id);
        true
    }

    /// Forgets a member's metadata and leave intent (reap or prune).
    pub fn forget(&mut self, name: &str) {
        self.metas.remove(name);
        self.leaves.remove(name);
    }

    /// Applies an item; true when it carried news.
    fn observe(&mut self, item: &Item) -> bool {
        match item {
            Item::Meta { name, meta } => self.merge_meta(name, meta),
            Item::Leave { name, mark } => self.merge_leave(name, *mark),
            Item::Event(ev) => self.observe_event(ev),
        }
    }

    /// Takes the items received since the last call.
    pub fn drain_inbox(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.inbox)
    }
}

/// The shared book. A plain mutex: foca owns the handler and gives no way back to it, the
/// lock is only taken for short, non-async sections, and only the core's task uses it.
#[derive(Debug, Clone, Default)]
pub struct SharedBook(Arc<Mutex<Book>>);

impl SharedBook {
    /// Locks the book (a poisoned lock is recovered: the book holds no invariants that a
    /// panic halfway could break beyond a stale entry).
    pub fn lock(&self) -> MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a received broadcast was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad broadcast: {0}")]
pub struct BroadcastError(#[from] pub CodecError);

/// The foca [`BroadcastHandler`]: decodes items, keeps the news in the [`Book`] and tells
/// foca to re-broadcast only what was new.
#[derive(Debug, Clone)]
pub struct Handler {
    book: SharedBook,
}

impl Handler {
    /// A handler writing to `book`.
    pub fn new(book: SharedBook) -> Self {
        Self { book }
    }
}

impl BroadcastHandler<NodeId> for Handler {
    type Key = BroadcastKey;
    type Error = BroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<BroadcastKey>, BroadcastError> {
        let item = Item::decode(data)?;
        let mut book = self.book.lock();
        let fresh = book.observe(&item);
        // Local additions (no sender) are always disseminated: the core adds only what it
        // wants sent, including a refresh of its own unchanged metadata.
        if fresh || sender.is_none() {
            let key = item.key();
            // News is also queued for the core (member reports, event delivery); a local
            // addition the book already knew is sent again but not reported twice.
            if fresh {
                book.inbox.push(item);
            }
            Ok(Some(key))
        } else {
            // Known from a peer: `None` tells foca not to relay it, which is what ends the
            // epidemic for this item.
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MemberMeta {
        MemberMeta {
            role: Role::Server,
            datacenter: "dc1".into(),
            build: "0.1.0".into(),
            ports: Ports {
                server_rpc: 8300,
                http: 8500,
                dns: 8600,
                serf_lan: 8301,
            },
            node_id: "0b0e8a52-6f43-4c0e-9a0c-3f3c5b5d3b1e".into(),
            node_meta: [("rack".to_string(), "r1".to_string())].into(),
            tags: [("expect".to_string(), "3".to_string())].into(),
        }
    }

    /// Every kind round-trips; truncations and trailing bytes are refused.
    #[test]
    fn items_round_trip() -> Result<(), CodecError> {
        let mut ev = UserEvent::new("deploy", b"v2".to_vec());
        ev.node_filter = "web-.*".into();
        ev.ltime = 12;
        let items = [
            Item::Meta {
                name: Arc::from("n1"),
                meta: VersionedMeta {
                    generation: 5,
                    version: 2,
                    protocol: 1,
                    meta: meta(),
                },
            },
            Item::Leave {
                name: Arc::from("n1"),
                mark: LeaveMark {
                    generation: 5,
                    prune: true,
                },
            },
            Item::Event(ev),
        ];
        for item in items {
            let bytes = item.encode();
            assert_eq!(Item::decode(&bytes)?, item);
            for cut in 0..bytes.len() {
                assert!(Item::decode(bytes.get(..cut).unwrap_or_default()).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Item::decode(&longer), Err(CodecError::Trailing(1)));
        }
        Ok(())
    }

    /// The largest valid event and metadata stay within their item bounds, and metadata
    /// that fits every field bound can still fail the total.
    #[test]
    fn largest_items_fit_their_bounds() {
        let ev = UserEvent {
            id: Uuid::nil(),
            name: "n".repeat(MAX_EVENT_NAME),
            payload: vec![1; MAX_EVENT_PAYLOAD],
            node_filter: "x".repeat(MAX_EVENT_USER_BYTES - MAX_EVENT_NAME - MAX_EVENT_PAYLOAD),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: EVENT_VERSION,
            ltime: u64::MAX,
        };
        assert_eq!(ev.validate(), Ok(()));
        assert!(Item::Event(ev).encode().len() <= MAX_EVENT_ITEM_LEN);

        let mut big = meta();
        big.node_meta
            .insert("k".into(), "v".repeat(MAX_NODE_META_VALUE + 1));
        assert!(matches!(big.validate(), Err(LimitError::TooLong { .. })));
        big.node_meta
            .insert("k".into(), "v".repeat(MAX_NODE_META_VALUE));
        big.node_meta.insert("k2".into(), "v".repeat(200));
        assert!(matches!(
            big.validate(),
            Err(LimitError::TooLong {
                what: "encoded member metadata",
                ..
            })
        ));
        let mut fits = meta();
        while fits.validate().is_ok() {
            fits.node_meta
                .insert(format!("key{}", fits.node_meta.len()), "v".repeat(40));
        }
        fits.node_meta.pop_last();
        assert!(fits.validate().is_ok());
        let item = Item::Meta {
            name: Arc::from("n".repeat(MAX_NAME_LEN).as_str()),
            meta: VersionedMeta {
                generation: 1,
                version: 1,
                protocol: 1,
                meta: fits,
            },
        };
        assert!(item.encode().len() <= MAX_META_ITEM_LEN);
    }

    #[test]
    fn events_are_bounded() {
        let mut ev = UserEvent::new("", Vec::new());
        assert_eq!(ev.validate(), Err(LimitError::Empty("event name")));
        ev.name = "e".into();
        ev.payload = vec![0; MAX_EVENT_PAYLOAD + 1];
        assert!(ev.validate().is_err());
    }

    /// What foca relays and what the core hears about, for peers' items and local ones.
    #[test]
    fn handler_rebroadcasts_only_news() -> Result<(), BroadcastError> {
        let book = SharedBook::default();
        let mut h = Handler::new(book.clone());
        let peer = NodeId::new(
            "p",
            "127.0.0.1:1".parse().map_err(|_| CodecError::Truncated)?,
            1,
        )
        .map_err(|_| CodecError::Truncated)?;
        let ev = Item::Event(UserEvent::new("e", b"x".to_vec())).encode();
        assert!(h.receive_item(&ev, Some(&peer))?.is_some());
        assert!(h.receive_item(&ev, Some(&peer))?.is_none());
        assert_eq!(book.lock().drain_inbox().len(), 1);

        let m = |version| {
            Item::Meta {
                name: Arc::from("n"),
                meta: VersionedMeta {
                    generation: 1,
                    version,
                    protocol: 1,
                    meta: MemberMeta::default(),
                },
            }
            .encode()
        };
        assert!(h.receive_item(&m(2), Some(&peer))?.is_some());
        assert!(h.receive_item(&m(1), Some(&peer))?.is_none());
        // local additions are always sent, but old news is not delivered twice
        assert!(h.receive_item(&m(2), None)?.is_some());
        assert_eq!(book.lock().drain_inbox().len(), 1);
        assert!(h.receive_item(&[9, 9], Some(&peer)).is_err());
        Ok(())
    }

    /// A newer (or equal) copy replaces a queued one; different things never do.
    #[test]
    fn keys_invalidate_older_copies_of_the_same_thing() {
        let a = |v| BroadcastKey::Meta {
            name: Arc::from("a"),
            rank: (1, v),
        };
        assert!(a(2).invalidates(&a(1)));
        assert!(a(2).invalidates(&a(2)));
        assert!(!a(1).invalidates(&a(2)));
        let id = Uuid::new_v4();
        assert!(BroadcastKey::Event(id).invalidates(&BroadcastKey::Event(id)));
        assert!(!BroadcastKey::Event(id).invalidates(&a(1)));
    }

    /// An event older than the window is refused and counted, a current one delivered once.
    #[test]
    fn stale_events_are_refused() {
        let mut book = Book::default();
        for _ in 0..(SEEN_EVENTS as u64 + 10) {
            book.next_ltime();
        }
        let mut ev = UserEvent::new("old", Vec::new());
        ev.ltime = 1;
        assert!(!book.observe_event(&ev));
        assert_eq!(book.stale_events(), 1);
        ev.ltime = book.event_clock();
        assert!(book.observe_event(&ev));
        assert!(!book.observe_event(&ev));
    }
}
