//! The push/pull state exchange (TCP): on join and periodically, two members send each
//! other their full member list with metadata and leave intents, then each merges the
//! other's (see [`crate::state::merge`]). This repairs whatever gossip lost and lets a joiner
//! learn the whole cluster at once.
//!
//! As in memberlist, SWIM's gossip is the fast path and this is the repair path: gossip
//! retransmits each update a bounded number of times and then drops it, so a member that
//! missed every copy (loss, a partition, a restart) would otherwise never learn it. The
//! exchange carries whole states rather than deltas because the merge is idempotent:
//! resending what the other side knows costs bytes, never correctness.
//!
//! ```text
//! pushpull = version:u8(=1) flags:u8(bit 0: join) sender:id event_clock:u64
//!            count:u32 member* ecount:u16 event*
//! member   = id incarnation:u16 state:u8 has_leave:u8 [generation:u64 prune:u8]
//!            has_meta:u8 [generation:u64 version:u64 protocol:u8 member-meta]
//! ```

use bytes::{Buf, BufMut};

use crate::broadcast::{LeaveMark, MemberMeta, UserEvent, VersionedMeta};
use crate::codec::{
    CodecError, get_bool, get_id, get_state, get_u8, get_u16, get_u32, get_u64, id_len, put_id,
    state_tag,
};
use crate::identity::NodeId;
use crate::state::MemberState;

/// Version of the push/pull format.
///
/// Checked on decode: a member speaking another version is refused as a whole rather than
/// half understood.
pub const PUSHPULL_VERSION: u8 = 1;
/// Most members one exchange may carry.
///
/// Far above any real pool. Together with the remaining-length check it bounds what a
/// decoder allocates for a forged count.
pub const MAX_PUSHPULL_MEMBERS: usize = 65_536;
/// Most recent user events one exchange carries.
///
/// Like Serf's push/pull, which carries its recent event buffer: a member that missed an
/// event's gossip gets it at its next exchange, and a small bound keeps the periodic
/// exchanges small.
pub const MAX_PUSHPULL_EVENTS: usize = 32;
/// Smallest encoded member (a one-byte IPv4 name, no leave, no meta).
///
/// name length, name, family, IPv4, port, generation, incarnation, state, has-leave,
/// has-meta.
const MIN_MEMBER_LEN: usize = 1 + 1 + 1 + 4 + 2 + 8 + 2 + 1 + 1 + 1;

/// One side's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPull {
    /// Whether the sender is joining (events it brings are not replayed as new).
    pub join: bool,
    /// The sender's identity.
    pub sender: NodeId,
    /// The sender's user-event Lamport clock.
    ///
    /// Sent even without events, so that the receiver's next event orders after every
    /// event the sender has seen.
    pub event_clock: u64,
    /// Every member the sender knows, itself included.
    ///
    /// Down members included (foca's full membership state), so a failure or a leave
    /// travels with the list.
    pub members: Vec<MemberState>,
    /// The sender's most recent user events.
    ///
    /// The receiver delivers those it has not seen, unless it is the one joining.
    pub events: Vec<UserEvent>,
}

impl PushPull {
    /// Encodes the exchange.
    ///
    /// Lists longer than the decoder accepts are cut rather than refused: the merge is per
    /// member, so a partial list still repairs what it carries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.members.len() * 64);
        out.put_u8(PUSHPULL_VERSION);
        out.put_u8(u8::from(self.join));
        put_id(&mut out, &self.sender);
        out.put_u64(self.event_clock);
        let members = self
            .members
            .get(..MAX_PUSHPULL_MEMBERS)
            .unwrap_or(&self.members);
        out.put_u32(u32::try_from(members.len()).unwrap_or(0));
        for m in members {
            put_id(&mut out, &m.id);
            out.put_u16(m.incarnation);
            out.put_u8(state_tag(m.state));
            match m.leave {
                None => out.put_u8(0),
                Some(mark) => {
                    out.put_u8(1);
                    out.put_u64(mark.generation);
                    out.put_u8(u8::from(mark.prune));
                }
            }
            match &m.meta {
                None => out.put_u8(0),
                Some(vm) => {
                    out.put_u8(1);
                    out.put_u64(vm.generation);
                    out.put_u64(vm.version);
                    out.put_u8(vm.protocol);
                    vm.meta.encode(&mut out);
                }
            }
        }
        let events = self
            .events
            .get(..MAX_PUSHPULL_EVENTS)
            .unwrap_or(&self.events);
        out.put_u16(u16::try_from(events.len()).unwrap_or(0));
        for ev in events {
            ev.encode(&mut out);
        }
        out
    }

    /// Decodes an exchange; the whole input must be consumed.
    pub fn decode(data: &[u8]) -> Result<Self, CodecError> {
        let mut buf = data;
        let version = get_u8(&mut buf)?;
        if version != PUSHPULL_VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        // Only bit 0 is defined; the other bits are ignored.
        let join = get_u8(&mut buf)? & 1 == 1;
        let sender = get_id(&mut buf)?;
        let event_clock = get_u64(&mut buf)?;
        let count = usize::try_from(get_u32(&mut buf)?).unwrap_or(usize::MAX);
        // Checked before allocating: a forged count cannot reserve more than the input could
        // hold.
        if count > MAX_PUSHPULL_MEMBERS || count > buf.remaining() / MIN_MEMBER_LEN {
            return Err(CodecError::Length {
                what: "push/pull member count",
                len: count,
                max: MAX_PUSHPULL_MEMBERS.min(buf.remaining() / MIN_MEMBER_LEN),
            });
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let id = get_id(&mut buf)?;
            let incarnation = get_u16(&mut buf)?;
            let state = get_state(&mut buf)?;
            let leave = if get_bool(&mut buf, "has leave")? {
                Some(LeaveMark {
                    generation: get_u64(&mut buf)?,
                    prune: get_bool(&mut buf, "prune")?,
                })
            } else {
                None
            };
            let meta = if get_bool(&mut buf, "has meta")? {
                Some(VersionedMeta {
                    generation: get_u64(&mut buf)?,
                    version: get_u64(&mut buf)?,
                    protocol: get_u8(&mut buf)?,
                    meta: MemberMeta::decode(&mut buf)?,
                })
            } else {
                None
            };
            members.push(MemberState {
                id,
                incarnation,
                state,
                leave,
                meta,
            });
        }
        let ecount = usize::from(get_u16(&mut buf)?);
        if ecount > MAX_PUSHPULL_EVENTS {
            return Err(CodecError::Length {
                what: "push/pull event count",
                len: ecount,
                max: MAX_PUSHPULL_EVENTS,
            });
        }
        let mut events = Vec::with_capacity(ecount);
        for _ in 0..ecount {
            events.push(UserEvent::decode(&mut buf)?);
        }
        // One frame is one exchange: bytes after it mean a framing bug or tampering.
        if buf.has_remaining() {
            return Err(CodecError::Trailing(buf.remaining()));
        }
        Ok(Self {
            join,
            sender,
            event_clock,
            members,
            events,
        })
    }

    /// A rough size estimate, for logs and metrics.
    ///
    /// Cheaper than encoding, and approximate: leave marks and events are left out.
    pub fn estimated_len(&self) -> usize {
        16 + id_len(&self.sender)
            + self
                .members
                .iter()
                .map(|m| {
                    id_len(&m.id) + 8 + m.meta.as_ref().map_or(0, |v| 17 + v.meta.encoded_len())
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::State;
    use std::net::SocketAddr;

    fn sample() -> PushPull {
        let id = |n: &str, p: u16| {
            NodeId::new(n, SocketAddr::from(([127, 0, 0, 1], p)), 7).expect("valid")
        };
        PushPull {
            join: true,
            sender: id("a", 1),
            event_clock: 99,
            members: vec![
                MemberState {
                    id: id("a", 1),
                    incarnation: 0,
                    state: State::Alive,
                    leave: None,
                    meta: Some(VersionedMeta {
                        generation: 7,
                        version: 3,
                        protocol: 1,
                        meta: MemberMeta {
                            datacenter: "dc1".into(),
                            ..MemberMeta::default()
                        },
                    }),
                },
                MemberState {
                    id: id("b", 2),
                    incarnation: 4,
                    state: State::Down,
                    leave: Some(LeaveMark {
                        generation: 7,
                        prune: false,
                    }),
                    meta: None,
                },
            ],
            events: vec![UserEvent::new("deploy", b"1".to_vec())],
        }
    }

    /// The encoding round-trips, and every truncation of it is refused.
    #[test]
    fn round_trip() -> Result<(), CodecError> {
        let p = sample();
        let bytes = p.encode();
        assert_eq!(PushPull::decode(&bytes)?, p);
        for cut in 0..bytes.len() {
            assert!(PushPull::decode(bytes.get(..cut).unwrap_or_default()).is_err());
        }
        Ok(())
    }

    /// A forged member count is refused by the length check instead of making the decoder
    /// reserve gigabytes.
    #[test]
    fn huge_counts_do_not_allocate() {
        let mut bytes = sample().encode();
        // overwrite the member count (after version, flags, sender id, clock)
        let at = 2 + id_len(&sample().sender) + 8;
        if let Some(slot) = bytes.get_mut(at..at + 4) {
            slot.copy_from_slice(&u32::MAX.to_be_bytes());
        }
        assert!(matches!(
            PushPull::decode(&bytes),
            Err(CodecError::Length { .. })
        ));
    }

    proptest::proptest! {
        /// Requests come from anyone who can open a connection to the port.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = PushPull::decode(&bytes);
        }
    }
}
