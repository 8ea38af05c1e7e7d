//! The frame inside an envelope: what kind of message it carries and who sent it in
//! which order, so that replayed packets can be recognised and dropped.
//!
//! ```text
//! frame = kind:u8 instance:u64 seq:u64 body
//! ```
//!
//! `instance` is a random number a process picks at start, `seq` counts every frame that
//! process sends (UDP and TCP alike). A receiver keeps, per sender instance, the highest
//! sequence number seen and a 128-frame sliding window below it (as IPsec and WireGuard
//! do): a frame already seen or older than the window is a replay. The table of senders is
//! bounded; when it is full the least recently heard sender is forgotten.
//!
//! Replay detection is needed on top of encryption: AES-GCM proves that a packet was
//! sealed by a key holder, not that it is new, so without it a captured packet (an old
//! suspicion, a stale announce) could be sent again at will. The frame sits inside the
//! envelope, so with encryption its instance and sequence number are authenticated.

use std::collections::HashMap;

use crate::codec::{CodecError, get_u8, get_u64};

/// Bytes of the frame header.
///
/// Part of the per-datagram overhead the driver subtracts from its budget at start.
pub const FRAME_HEADER_LEN: usize = 1 + 8 + 8;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A foca packet (UDP, or TCP when too large for a datagram).
    Foca,
    /// A push/pull state exchange request (TCP).
    PushPullRequest,
    /// The answer to a push/pull request (TCP).
    PushPullResponse,
    /// A refusal sent in plaintext so that a peer with another key can log why (TCP).
    Reject,
}

impl FrameKind {
    fn tag(self) -> u8 {
        match self {
            FrameKind::Foca => 1,
            FrameKind::PushPullRequest => 2,
            FrameKind::PushPullResponse => 3,
            FrameKind::Reject => 4,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, CodecError> {
        Ok(match tag {
            1 => FrameKind::Foca,
            2 => FrameKind::PushPullRequest,
            3 => FrameKind::PushPullResponse,
            4 => FrameKind::Reject,
            tag => {
                return Err(CodecError::UnknownTag {
                    what: "frame kind",
                    tag,
                });
            }
        })
    }
}

/// A decoded frame header and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the body is.
    pub kind: FrameKind,
    /// The sender's per-start random instance number.
    ///
    /// A restarted process counts from 0 again; its new instance keeps those frames from
    /// looking like replays of its previous life's.
    pub instance: u64,
    /// The sender's frame counter.
    ///
    /// One counter for UDP and TCP frames alike; the receiver's window absorbs the
    /// reordering between the two (up to [`REPLAY_WINDOW`]).
    pub seq: u64,
    /// The payload.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Encodes a frame.
    pub fn encode(kind: FrameKind, instance: u64, seq: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
        out.push(kind.tag());
        out.extend_from_slice(&instance.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Decodes a frame header; the rest of `data` is the body.
    pub fn decode(data: &'a [u8]) -> Result<Self, CodecError> {
        let mut buf = data;
        let kind = FrameKind::from_tag(get_u8(&mut buf)?)?;
        let instance = get_u64(&mut buf)?;
        let seq = get_u64(&mut buf)?;
        Ok(Frame {
            kind,
            instance,
            seq,
            body: buf,
        })
    }
}

/// Reasons for refusing a TCP exchange, sent back in a [`FrameKind::Reject`] frame.
///
/// The notice travels in plaintext and unauthenticated (the peer may hold no key or
/// another one), so anyone could forge one. That is harmless: it only ever turns an
/// exchange the initiator was going to see fail into a clearer log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The receiver could not decrypt the request with any of its keys.
    WrongKey,
    /// The request was unencrypted but the receiver requires encryption.
    EncryptionRequired,
    /// The request was encrypted but the receiver has no key.
    EncryptionNotConfigured,
    /// The request came from another pool (label mismatch).
    LabelMismatch,
    /// Anything else (malformed request, shutting down).
    Other,
}

impl RejectReason {
    /// Byte on the wire.
    pub fn tag(self) -> u8 {
        match self {
            RejectReason::WrongKey => 1,
            RejectReason::EncryptionRequired => 2,
            RejectReason::EncryptionNotConfigured => 3,
            RejectReason::LabelMismatch => 4,
            RejectReason::Other => 0,
        }
    }

    /// From the wire (unknown bytes map to `Other`).
    pub fn from_tag(tag: u8) -> Self {
        match tag {
            1 => RejectReason::WrongKey,
            2 => RejectReason::EncryptionRequired,
            3 => RejectReason::EncryptionNotConfigured,
            4 => RejectReason::LabelMismatch,
            _ => RejectReason::Other,
        }
    }

    /// What the refused side should log.
    pub fn explain(self) -> &'static str {
        match self {
            RejectReason::WrongKey => {
                "the remote member could not decrypt our request: the gossip encryption keys differ"
            }
            RejectReason::EncryptionRequired => {
                "the remote member requires gossip encryption but we sent plaintext (no key configured here)"
            }
            RejectReason::EncryptionNotConfigured => {
                "the remote member has no gossip encryption key but we sent an encrypted request"
            }
            RejectReason::LabelMismatch => {
                "the remote member belongs to another gossip pool (label differs)"
            }
            RejectReason::Other => "the remote member refused the request",
        }
    }
}

/// Width of the replay window, in frames.
///
/// One `u128` bitmap per sender. A frame that arrives after one its sender sealed 128 or
/// more frames later (to anyone: the counter is per sender, not per link) is refused as
/// too old and counts as lost, which SWIM and push/pull tolerate.
pub const REPLAY_WINDOW: u64 = 128;

/// One sender's window: the highest sequence number seen and which of the 128 below it.
#[derive(Debug, Clone)]
struct Window {
    /// Highest sequence number seen.
    top: u64,
    /// Bit `i` is set when `top - i` was seen (bit 0 is `top` itself).
    bits: u128,
    /// The guard's clock at this sender's last frame, for evicting the least recently heard.
    last_heard: u64,
}

/// Outcome of [`ReplayGuard::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// First time this (instance, seq) is seen.
    Fresh,
    /// Seen before.
    Duplicate,
    /// Older than the window.
    TooOld,
}

/// Per-sender sliding windows of recently seen sequence numbers.
///
/// Keyed by sender instance rather than address: the instance is inside the frame (and so
/// authenticated when encryption is on), and it changes when the sender restarts.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    /// Windows by sender instance.
    peers: HashMap<u64, Window>,
    /// Bound on `peers`: without encryption anyone can invent instances, and each would
    /// otherwise cost an entry forever.
    capacity: usize,
    /// Counts checks: eviction needs only recency, and a logical clock keeps the guard
    /// independent of time.
    clock: u64,
}

impl ReplayGuard {
    /// A guard remembering at most `capacity` senders.
    pub fn new(capacity: usize) -> Self {
        Self {
            peers: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    /// Records `(instance, seq)` and says whether it is fresh.
    ///
    /// A `Fresh` frame is recorded, so the same frame checked again is a `Duplicate`.
    pub fn check(&mut self, instance: u64, seq: u64) -> Replay {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        if let Some(w) = self.peers.get_mut(&instance) {
            w.last_heard = clock;
            // Ahead of the window: slide it so that `seq` becomes the top. A jump of a whole
            // window or more leaves nothing of the old one.
            if seq > w.top {
                let shift = seq - w.top;
                w.bits = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    w.bits << shift
                };
                w.bits |= 1;
                w.top = seq;
                return Replay::Fresh;
            }
            // At or below the top: fresh only if inside the window and not yet seen.
            let age = w.top - seq;
            if age >= REPLAY_WINDOW {
                return Replay::TooOld;
            }
            let mask = 1u128 << age;
            if w.bits & mask != 0 {
                return Replay::Duplicate;
            }
            w.bits |= mask;
            return Replay::Fresh;
        }
        // A sender not heard before. When the table is full the least recently heard sender is
        // forgotten; a linear scan, paid only by new senders. A forgotten sender's old frames
        // would pass as fresh again, so only one silent while `capacity` others spoke is exposed.
        if self.peers.len() >= self.capacity
            && let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, w)| w.last_heard)
                .map(|(k, _)| *k)
        {
            self.peers.remove(&oldest);
        }
        self.peers.insert(
            instance,
            Window {
                top: seq,
                bits: 1,
                last_heard: clock,
            },
        );
        Replay::Fresh
    }

    /// Number of senders remembered.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no sender is remembered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every truncated header and every unknown kind is an error.
    #[test]
    fn frames_round_trip_and_reject_garbage() -> Result<(), CodecError> {
        let bytes = Frame::encode(FrameKind::PushPullRequest, 7, 9, b"body");
        let f = Frame::decode(&bytes)?;
        assert_eq!(f.kind, FrameKind::PushPullRequest);
        assert_eq!((f.instance, f.seq, f.body), (7, 9, &b"body"[..]));
        for cut in 0..FRAME_HEADER_LEN {
            assert!(Frame::decode(bytes.get(..cut).unwrap_or_default()).is_err());
        }
        assert!(Frame::decode(&[99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        Ok(())
    }

    /// The window's three outcomes, reordering inside the window and per-sender state.
    #[test]
    fn duplicates_and_old_frames_are_replays() {
        let mut g = ReplayGuard::new(16);
        assert_eq!(g.check(1, 10), Replay::Fresh);
        assert_eq!(g.check(1, 10), Replay::Duplicate);
        assert_eq!(g.check(1, 12), Replay::Fresh);
        // reordered but inside the window
        assert_eq!(g.check(1, 11), Replay::Fresh);
        assert_eq!(g.check(1, 11), Replay::Duplicate);
        assert_eq!(g.check(1, 12 + REPLAY_WINDOW), Replay::Fresh);
        assert_eq!(g.check(1, 12), Replay::TooOld);
        // another instance has its own window
        assert_eq!(g.check(2, 10), Replay::Fresh);
    }

    /// A flood of new instances evicts the oldest senders and never grows the table.
    #[test]
    fn the_sender_table_is_bounded() {
        let mut g = ReplayGuard::new(4);
        for i in 0..100 {
            assert_eq!(g.check(i, 1), Replay::Fresh);
        }
        assert_eq!(g.len(), 4);
        // the most recent ones are still remembered
        assert_eq!(g.check(99, 1), Replay::Duplicate);
    }
}
