//! The wire format of foca's messages: a hand-written, bounded and versioned
//! [`foca::Codec`] for [`NodeId`] headers and member updates, plus the primitive
//! readers and writers the other formats of the crate (broadcasts, push/pull) share.
//!
//! Every decoder checks the remaining length before reading, validates lengths against
//! fixed limits and returns a [`CodecError`] on bad input: it never panics and never
//! allocates more than the input it was given.
//!
//! ```text
//! header  = version:u8(=1) src:id src_incarnation:u16 dst:id message
//! message = tag:u8 [probe:u8 | id probe:u8]      (see `Message`)
//! id      = name_len:u8 name family:u8(4|6) ip:4|16 port:u16 generation:u64
//! member  = id incarnation:u16 state:u8(0 alive, 1 suspect, 2 down)
//! ```
//! All integers are big-endian.
//!
//! Hand-written rather than derived so that every size is known without encoding:
//! [`header_len`], [`member_len`] and [`id_len`] are exact, the encoders check room with
//! them before writing, and the bounds ([`MAX_ID_LEN`], [`MAX_HEADER_LEN`]) are what the
//! datagram budget is checked against. Identities dominate every packet (two or three per
//! header, one per member update), so they are kept compact: an IPv4 address takes 4 bytes,
//! not 16.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};

use crate::identity::{MAX_NAME_LEN, NodeId};

/// Version byte leading every foca header.
///
/// Read before anything else: a member speaking another format is refused as a whole
/// ([`CodecError::UnsupportedVersion`]) instead of being misread.
pub const CODEC_VERSION: u8 = 1;

/// Largest encoded [`NodeId`], in bytes.
///
/// Name length, name, address family, IPv6 address, port, generation.
pub const MAX_ID_LEN: usize = 1 + MAX_NAME_LEN + 1 + 16 + 2 + 8;

/// Largest encoded foca header (two identities plus a message that names a third).
///
/// Version, source, source incarnation, destination, message tag, the named identity,
/// probe number. The core's `limits` test checks that the largest broadcast items still
/// fit a datagram next to it.
pub const MAX_HEADER_LEN: usize = 1 + MAX_ID_LEN + 2 + MAX_ID_LEN + 1 + MAX_ID_LEN + 1;

/// A decoding or encoding failure. Decoding errors mean the input was rejected whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended before the item did.
    #[error("truncated input")]
    Truncated,
    /// The item leads with a version this build does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// An enum tag outside the known range.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which field.
        what: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// A length or count above its limit (or a zero length where one is required).
    #[error("{what} length {len} outside the limit of {max}")]
    Length {
        /// Which field.
        what: &'static str,
        /// The length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    /// Bytes left over after a complete item.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// The output buffer has no room for the item (nothing was written).
    ///
    /// Not a fault: foca encodes into the room left in a packet and stops adding items
    /// when one does not fit.
    #[error("not enough room in the output buffer")]
    BufferFull,
}

// ---- primitive readers -------------------------------------------------------------

/// Checks that `n` bytes remain. Every reader calls it first: `Buf`'s getters panic on
/// short input, and a decoder must never panic on what the network sends.
pub(crate) fn need(buf: &impl Buf, n: usize) -> Result<(), CodecError> {
    if buf.remaining() < n {
        Err(CodecError::Truncated)
    } else {
        Ok(())
    }
}

pub(crate) fn get_u8(buf: &mut impl Buf) -> Result<u8, CodecError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

pub(crate) fn get_u16(buf: &mut impl Buf) -> Result<u16, CodecError> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}

pub(crate) fn get_u32(buf: &mut impl Buf) -> Result<u32, CodecError> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

pub(crate) fn get_u64(buf: &mut impl Buf) -> Result<u64, CodecError> {
    need(buf, 8)?;
    Ok(buf.get_u64())
}

/// Reads a flag byte. Only 0 and 1 are accepted, so that every valid input has one
/// meaning.
pub(crate) fn get_bool(buf: &mut impl Buf, what: &'static str) -> Result<bool, CodecError> {
    match get_u8(buf)? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(CodecError::UnknownTag { what, tag }),
    }
}

/// Reads `len` bytes into a new vector (after checking they are there).
///
/// The length is checked before allocating, so a forged length cannot make the decoder
/// allocate more than the input it holds.
pub(crate) fn get_vec(buf: &mut impl Buf, len: usize) -> Result<Vec<u8>, CodecError> {
    need(buf, len)?;
    let mut out = vec![0u8; len];
    buf.copy_to_slice(&mut out);
    Ok(out)
}

/// Reads a string of `len` bytes, checking UTF-8.
fn get_string(buf: &mut impl Buf, len: usize, what: &'static str) -> Result<String, CodecError> {
    String::from_utf8(get_vec(buf, len)?).map_err(|_| CodecError::Utf8(what))
}

/// Reads a string prefixed by a `u8` length, at most `max` bytes.
pub(crate) fn get_str8(
    buf: &mut impl Buf,
    max: usize,
    what: &'static str,
) -> Result<String, CodecError> {
    let len = usize::from(get_u8(buf)?);
    check_len(what, len, max)?;
    get_string(buf, len, what)
}

/// Reads a string prefixed by a `u16` length, at most `max` bytes.
pub(crate) fn get_str16(
    buf: &mut impl Buf,
    max: usize,
    what: &'static str,
) -> Result<String, CodecError> {
    let len = usize::from(get_u16(buf)?);
    check_len(what, len, max)?;
    get_string(buf, len, what)
}

/// Reads bytes prefixed by a `u16` length, at most `max` bytes.
pub(crate) fn get_bytes16(
    buf: &mut impl Buf,
    max: usize,
    what: &'static str,
) -> Result<Vec<u8>, CodecError> {
    let len = usize::from(get_u16(buf)?);
    check_len(what, len, max)?;
    get_vec(buf, len)
}

/// Refuses a length over its limit. Decoders apply the limits senders validate against,
/// so a peer cannot spread what a local member would refuse to send.
pub(crate) fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), CodecError> {
    if len > max {
        Err(CodecError::Length { what, len, max })
    } else {
        Ok(())
    }
}

// ---- primitive writers (callers check room first) -----------------------------------

/// Writes a string with a `u8` length prefix. The caller guarantees `s.len() <= 255`.
///
/// If that is ever broken, the length byte and the bytes written are cut at 255 alike, so
/// the output still decodes.
pub(crate) fn put_str8(buf: &mut impl BufMut, s: &str) {
    buf.put_u8(u8::try_from(s.len()).unwrap_or(u8::MAX));
    buf.put_slice(s.as_bytes().get(..255).unwrap_or(s.as_bytes()));
}

/// Writes bytes with a `u16` length prefix. The caller guarantees `b.len() <= 65535`.
///
/// As in [`put_str8`], an over-long input is cut consistently rather than corrupting the
/// stream.
pub(crate) fn put_bytes16(buf: &mut impl BufMut, b: &[u8]) {
    buf.put_u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
    buf.put_slice(b.get(..usize::from(u16::MAX)).unwrap_or(b));
}

// ---- identities ---------------------------------------------------------------------

/// Encoded size of an identity.
///
/// Exact: the encoders check room with it before writing anything.
pub fn id_len(id: &NodeId) -> usize {
    let ip = if id.addr().is_ipv4() { 4 } else { 16 };
    1 + id.name().len() + 1 + ip + 2 + 8
}

/// Writes an identity; the caller checks room with [`id_len`].
pub(crate) fn put_id(buf: &mut impl BufMut, id: &NodeId) {
    put_str8(buf, id.name());
    match id.addr().ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(id.addr().port());
    buf.put_u64(id.generation());
}

/// Reads an identity.
pub(crate) fn get_id(buf: &mut impl Buf) -> Result<NodeId, CodecError> {
    let len = usize::from(get_u8(buf)?);
    // An empty name is refused as `NodeId::new` refuses it: a peer must not be able to
    // create an identity that no local code could.
    if len == 0 || len > MAX_NAME_LEN {
        return Err(CodecError::Length {
            what: "node name",
            len,
            max: MAX_NAME_LEN,
        });
    }
    let name = get_string(buf, len, "node name")?;
    let ip = match get_u8(buf)? {
        4 => {
            need(buf, 4)?;
            let mut o = [0u8; 4];
            buf.copy_to_slice(&mut o);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        6 => {
            need(buf, 16)?;
            let mut o = [0u8; 16];
            buf.copy_to_slice(&mut o);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        tag => {
            return Err(CodecError::UnknownTag {
                what: "address family",
                tag,
            });
        }
    };
    let port = get_u16(buf)?;
    let generation = get_u64(buf)?;
    Ok(NodeId::from_parts(
        Arc::from(name),
        SocketAddr::new(ip, port),
        generation,
    ))
}

// ---- member state --------------------------------------------------------------------

/// The wire tag of a SWIM state. Explicit, so that the format does not depend on the order
/// of foca's enum.
pub(crate) fn state_tag(state: State) -> u8 {
    match state {
        State::Alive => 0,
        State::Suspect => 1,
        State::Down => 2,
    }
}

pub(crate) fn get_state(buf: &mut impl Buf) -> Result<State, CodecError> {
    match get_u8(buf)? {
        0 => Ok(State::Alive),
        1 => Ok(State::Suspect),
        2 => Ok(State::Down),
        tag => Err(CodecError::UnknownTag {
            what: "member state",
            tag,
        }),
    }
}

// ---- foca messages -------------------------------------------------------------------

/// Encoded size of a foca message: its tag, plus a one-byte probe number for the probe
/// messages and, for the indirect ones, the identity they are about.
fn message_len(message: &Message<NodeId>) -> usize {
    match message {
        Message::Ping(_) | Message::Ack(_) => 2,
        Message::PingReq { target: id, .. }
        | Message::IndirectPing { origin: id, .. }
        | Message::IndirectAck { target: id, .. }
        | Message::ForwardedAck { origin: id, .. } => 1 + id_len(id) + 1,
        Message::Announce
        | Message::Feed
        | Message::Gossip
        | Message::Broadcast
        | Message::TurnUndead => 1,
    }
}

/// Writes a foca message. The tags are part of the wire format: a change needs a new
/// [`CODEC_VERSION`].
fn put_message(buf: &mut impl BufMut, message: &Message<NodeId>) {
    match message {
        Message::Ping(n) => {
            buf.put_u8(0);
            buf.put_u8(*n);
        }
        Message::Ack(n) => {
            buf.put_u8(1);
            buf.put_u8(*n);
        }
        Message::PingReq {
            target,
            probe_number,
        } => {
            buf.put_u8(2);
            put_id(buf, target);
            buf.put_u8(*probe_number);
        }
        Message::IndirectPing {
            origin,
            probe_number,
        } => {
            buf.put_u8(3);
            put_id(buf, origin);
            buf.put_u8(*probe_number);
        }
        Message::IndirectAck {
            target,
            probe_number,
        } => {
            buf.put_u8(4);
            put_id(buf, target);
            buf.put_u8(*probe_number);
        }
        Message::ForwardedAck {
            origin,
            probe_number,
        } => {
            buf.put_u8(5);
            put_id(buf, origin);
            buf.put_u8(*probe_number);
        }
        Message::Announce => buf.put_u8(6),
        Message::Feed => buf.put_u8(7),
        Message::Gossip => buf.put_u8(8),
        Message::Broadcast => buf.put_u8(9),
        Message::TurnUndead => buf.put_u8(10),
    }
}

fn get_message(buf: &mut impl Buf) -> Result<Message<NodeId>, CodecError> {
    Ok(match get_u8(buf)? {
        0 => Message::Ping(get_u8(buf)?),
        1 => Message::Ack(get_u8(buf)?),
        2 => Message::PingReq {
            target: get_id(buf)?,
            probe_number: get_u8(buf)?,
        },
        3 => Message::IndirectPing {
            origin: get_id(buf)?,
            probe_number: get_u8(buf)?,
        },
        4 => Message::IndirectAck {
            target: get_id(buf)?,
            probe_number: get_u8(buf)?,
        },
        5 => Message::ForwardedAck {
            origin: get_id(buf)?,
            probe_number: get_u8(buf)?,
        },
        6 => Message::Announce,
        7 => Message::Feed,
        8 => Message::Gossip,
        9 => Message::Broadcast,
        10 => Message::TurnUndead,
        tag => {
            return Err(CodecError::UnknownTag {
                what: "message",
                tag,
            });
        }
    })
}

/// Encoded size of a foca header.
///
/// Exact, like [`id_len`].
pub fn header_len(header: &Header<NodeId>) -> usize {
    1 + id_len(&header.src) + 2 + id_len(&header.dst) + message_len(&header.message)
}

/// Encoded size of a member update.
///
/// Exact: foca packs as many member updates as fit after the header, and the encoder
/// refuses one that does not without writing any of it.
pub fn member_len(member: &Member<NodeId>) -> usize {
    id_len(member.id()) + 2 + 1
}

/// The crate's [`foca::Codec`]: see the module documentation for the layout.
///
/// Stateless: foca owns one and calls it for every header and member update it sends or
/// receives.
#[derive(Debug, Default, Clone, Copy)]
pub struct WireCodec;

impl foca::Codec<NodeId> for WireCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &Header<NodeId>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        // Checked first, so that a failed encode leaves the buffer as it was.
        if buf.remaining_mut() < header_len(header) {
            return Err(CodecError::BufferFull);
        }
        buf.put_u8(CODEC_VERSION);
        put_id(&mut buf, &header.src);
        buf.put_u16(header.src_incarnation);
        put_id(&mut buf, &header.dst);
        put_message(&mut buf, &header.message);
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let version = get_u8(&mut buf)?;
        if version != CODEC_VERSION {
            return Err(CodecError::UnsupportedVersion(version));
        }
        let src = get_id(&mut buf)?;
        let src_incarnation = get_u16(&mut buf)?;
        let dst = get_id(&mut buf)?;
        let message = get_message(&mut buf)?;
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<NodeId>,
        mut buf: impl BufMut,
    ) -> Result<(), CodecError> {
        if buf.remaining_mut() < member_len(member) {
            return Err(CodecError::BufferFull);
        }
        put_id(&mut buf, member.id());
        buf.put_u16(member.incarnation());
        buf.put_u8(state_tag(member.state()));
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        // The rest of the input is left to foca: a packet holds updates back to back.
        let id = get_id(&mut buf)?;
        let incarnation = get_u16(&mut buf)?;
        let state = get_state(&mut buf)?;
        Ok(Member::new(id, incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;

    fn id(name: &str, port: u16) -> NodeId {
        NodeId::from_parts(Arc::from(name), SocketAddr::from(([10, 0, 0, 1], port)), 42)
    }

    fn all_messages() -> Vec<Message<NodeId>> {
        let t = id("target", 1);
        vec![
            Message::Ping(1),
            Message::Ack(2),
            Message::PingReq {
                target: t.clone(),
                probe_number: 3,
            },
            Message::IndirectPing {
                origin: t.clone(),
                probe_number: 4,
            },
            Message::IndirectAck {
                target: t.clone(),
                probe_number: 5,
            },
            Message::ForwardedAck {
                origin: t,
                probe_number: 6,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ]
    }

    /// Every message kind, with an IPv6 destination; the computed size matches the bytes.
    #[test]
    fn headers_round_trip_and_sizes_are_exact() -> Result<(), CodecError> {
        for message in all_messages() {
            let header = Header {
                src: id("a", 8301),
                src_incarnation: 7,
                dst: NodeId::from_parts(
                    Arc::from("b"),
                    SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, 1], 8301)),
                    9,
                ),
                message,
            };
            let mut buf = Vec::new();
            WireCodec.encode_header(&header, &mut buf)?;
            assert_eq!(buf.len(), header_len(&header));
            let mut slice = &buf[..];
            let back = WireCodec.decode_header(&mut slice)?;
            assert_eq!(back, header);
            assert!(slice.is_empty());
        }
        Ok(())
    }

    /// Short input is always `Truncated`, whichever field it cuts.
    #[test]
    fn every_truncation_of_a_header_is_rejected() -> Result<(), CodecError> {
        let header = Header {
            src: id("a", 1),
            src_incarnation: 1,
            dst: id("b", 2),
            message: Message::PingReq {
                target: id("c", 3),
                probe_number: 9,
            },
        };
        let mut buf = Vec::new();
        WireCodec.encode_header(&header, &mut buf)?;
        for cut in 0..buf.len() {
            let mut slice = &buf[..cut];
            assert_eq!(
                WireCodec.decode_header(&mut slice),
                Err(CodecError::Truncated),
                "cut at {cut}"
            );
        }
        Ok(())
    }

    /// An encode that does not fit writes nothing, so foca's packet stays well formed.
    #[test]
    fn members_round_trip_and_full_buffers_stay_clean() -> Result<(), CodecError> {
        let m = Member::new(id("node-1", 8301), 3, State::Suspect);
        let mut buf = Vec::new();
        WireCodec.encode_member(&m, &mut buf)?;
        assert_eq!(buf.len(), member_len(&m));
        assert_eq!(WireCodec.decode_member(&mut &buf[..])?, m);

        let mut small = Vec::new();
        let mut limited = (&mut small).limit(member_len(&m) - 1);
        assert_eq!(
            WireCodec.encode_member(&m, &mut limited),
            Err(CodecError::BufferFull)
        );
        assert!(small.is_empty());
        Ok(())
    }

    /// Bad bytes in any field are an error of the matching kind, never a panic or a default.
    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(
            WireCodec.decode_header(&mut &[2u8, 1, 2, 3][..]),
            Err(CodecError::UnsupportedVersion(2))
        );
        // zero-length name
        assert!(matches!(
            WireCodec.decode_member(&mut &[0u8, 4, 1, 2, 3, 4][..]),
            Err(CodecError::Length { .. })
        ));
        // bad address family
        assert!(matches!(
            WireCodec.decode_member(&mut &[1u8, b'a', 5][..]),
            Err(CodecError::UnknownTag { .. })
        ));
        // invalid UTF-8 name
        assert!(matches!(
            WireCodec.decode_member(&mut &[1u8, 0xff, 4][..]),
            Err(CodecError::Utf8(_))
        ));
        // bad state
        let mut buf = Vec::new();
        put_id(&mut buf, &id("a", 1));
        buf.extend_from_slice(&[0, 0, 9]);
        assert!(matches!(
            WireCodec.decode_member(&mut &buf[..]),
            Err(CodecError::UnknownTag { .. })
        ));
    }

    /// [`MAX_ID_LEN`] is reached by a longest name with an IPv6 address, not exceeded.
    #[test]
    fn largest_identity_matches_the_bound() {
        let name = "n".repeat(MAX_NAME_LEN);
        let id = NodeId::from_parts(
            Arc::from(name.as_str()),
            SocketAddr::from(([0u16; 8], 1)),
            1,
        );
        assert_eq!(id_len(&id), MAX_ID_LEN);
    }

    proptest::proptest! {
        /// Headers and updates come from anyone who can reach the port.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = WireCodec.decode_header(&mut &bytes[..]);
            let _ = WireCodec.decode_member(&mut &bytes[..]);
        }
    }
}
