//! Member state as the outside world sees it, and the merge that makes every member's view
//! converge.
//!
//! A member's full state is a product of three independently ordered parts:
//!
//! | part | order (later wins) |
//! | --- | --- |
//! | identity + liveness | higher generation (then address) wins; for the same identity SWIM's order: `Alive(i) < Suspect(i) < Alive(i+1)`, and `Down` above every live state |
//! | metadata | `(generation, version)`, then the encoded bytes as a tie-break |
//! | leave intent | `(generation, prune)` |
//!
//! Each part is a total order and [`merge`] takes the maximum of each, so the merge is a
//! join-semilattice: commutative, associative and idempotent (the property tests below
//! check it). Whatever order and however often states are exchanged (gossip, push/pull),
//! members that saw the same states agree. The [status](MemberStatus) shown to users is
//! derived from the merged state.

use std::cmp::Ordering;
use std::net::IpAddr;

use foca::State;

use crate::broadcast::{LeaveMark, MemberMeta, VersionedMeta};
use crate::identity::NodeId;

/// A member's status, numbered as Consul's `/v1/agent/members` reports it.
///
/// There is no *suspect* status: as in Serf, which hears from memberlist only once a member
/// is declared dead, a suspected member stays *alive* until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemberStatus {
    /// Alive (also while suspected).
    Alive = 1,
    /// Announced that it is leaving.
    Leaving = 2,
    /// Left gracefully (or was forced out).
    Left = 3,
    /// Failed: declared down without a leave intent.
    Failed = 4,
}

impl MemberStatus {
    /// Consul's numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Consul's lower-case name (`alive`, `leaving`, `left`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

/// A member as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Advertised gossip IP.
    pub addr: IpAddr,
    /// Advertised gossip port.
    pub port: u16,
    /// Status.
    pub status: MemberStatus,
    /// Published metadata (default until it is known).
    pub meta: MemberMeta,
    /// SWIM incarnation as last observed (bumped to refute suspicion).
    pub incarnation: u16,
    /// Start generation of the identity.
    pub generation: u64,
    /// The member's gossip protocol version (0 until its metadata is known).
    pub protocol: u8,
}

/// Rank of a liveness for one identity: `(down, incarnation, suspect)`.
///
/// The tuple order is SWIM's precedence: `Down` beats every live state whatever the
/// incarnation (a down identity never comes back, a restart takes a new generation); among
/// live states the higher incarnation wins, and at equal incarnation `Suspect` beats
/// `Alive`, so only a refutation with a higher incarnation clears a suspicion.
fn liveness_rank(incarnation: u16, state: State) -> (bool, u16, bool) {
    match state {
        State::Alive => (false, incarnation, false),
        State::Suspect => (false, incarnation, true),
        State::Down => (true, incarnation, false),
    }
}

/// Everything known about one member name, as exchanged in push/pull.
///
/// foca holds the liveness, the [`Book`](crate::broadcast::Book) the metadata and the leave
/// intent; an exchange carries all three together so that one push/pull repairs whatever
/// gossip lost of any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Identity (name, address, generation).
    pub id: NodeId,
    /// SWIM incarnation.
    pub incarnation: u16,
    /// SWIM state.
    pub state: State,
    /// Newest leave intent.
    pub leave: Option<LeaveMark>,
    /// Newest metadata.
    pub meta: Option<VersionedMeta>,
}

impl MemberState {
    /// Status derived from the state.
    pub fn status(&self) -> MemberStatus {
        status_of(&self.id, self.state == State::Down, self.leave)
    }

    /// Whether `self`'s identity+liveness part is later than `other`'s.
    ///
    /// The identity comes first: a higher generation is a newer process, whose state replaces
    /// everything known about the old one. The address only breaks ties between two
    /// processes started with one generation, so that the order stays total.
    fn cmp_liveness(&self, other: &Self) -> Ordering {
        (self.id.generation(), self.id.addr())
            .cmp(&(other.id.generation(), other.id.addr()))
            .then_with(|| {
                liveness_rank(self.incarnation, self.state)
                    .cmp(&liveness_rank(other.incarnation, other.state))
            })
    }
}

/// Status from the parts: down with a leave intent for this generation is *left*, down
/// without one *failed*, alive with one *leaving*.
///
/// Only an intent for the identity's own generation counts: a member that left and then
/// restarted must not be shown leaving because of its previous life.
pub fn status_of(id: &NodeId, down: bool, leave: Option<LeaveMark>) -> MemberStatus {
    let leaving = leave.is_some_and(|m| m.generation == id.generation());
    match (down, leaving) {
        (true, true) => MemberStatus::Left,
        (true, false) => MemberStatus::Failed,
        (false, true) => MemberStatus::Leaving,
        (false, false) => MemberStatus::Alive,
    }
}

/// The total order of metadata copies: the publisher's `(generation, version)`, then the
/// content.
fn cmp_meta(a: &VersionedMeta, b: &VersionedMeta) -> Ordering {
    a.rank().cmp(&b.rank()).then_with(|| {
        // Two copies with the same rank come from the same publisher and are equal in
        // practice; comparing bytes keeps the order total for arbitrary inputs.
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        a.meta.encode(&mut ea);
        b.meta.encode(&mut eb);
        (a.protocol, ea).cmp(&(b.protocol, eb))
    })
}

/// The join of two states of the same member name: the later of each part.
///
/// Both states must be about the same name. The parts are merged independently, so the
/// result may take its liveness from one side and its metadata from the other.
pub fn merge(a: &MemberState, b: &MemberState) -> MemberState {
    // On a tie both sides carry the same identity and liveness, so keeping `a` changes
    // nothing and the merge stays commutative.
    let live = if a.cmp_liveness(b) == Ordering::Less {
        b
    } else {
        a
    };
    let meta = match (&a.meta, &b.meta) {
        (Some(x), Some(y)) => Some(if cmp_meta(x, y) == Ordering::Less {
            y.clone()
        } else {
            x.clone()
        }),
        (x, y) => x.clone().or_else(|| y.clone()),
    };
    MemberState {
        id: live.id.clone(),
        incarnation: live.incarnation,
        state: live.state,
        // `LeaveMark` orders by `(generation, prune)`: a newer generation's intent replaces
        // an older one, and for one generation a prune supersedes a plain leave.
        leave: a.leave.max(b.leave),
        meta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    /// Small domains on purpose: with two ports, three generations and a handful of
    /// incarnations, the generated pairs collide on every tie-break the order has.
    fn arb_state() -> impl Strategy<Value = MemberState> {
        (
            0u64..3,
            0u16..2,
            0u16..4,
            0u8..3,
            proptest::option::of((0u64..3, any::<bool>())),
            proptest::option::of((0u64..3, 0u64..3, 0u8..2, "[ab]{0,2}")),
        )
            .prop_map(|(generation, port, incarnation, st, leave, meta)| {
                let addr = SocketAddr::from(([127, 0, 0, 1], 8301 + port));
                MemberState {
                    id: NodeId::new("node", addr, generation).expect("valid name"),
                    incarnation,
                    state: match st {
                        0 => State::Alive,
                        1 => State::Suspect,
                        _ => State::Down,
                    },
                    leave: leave.map(|(generation, prune)| LeaveMark { generation, prune }),
                    meta: meta.map(|(generation, version, protocol, dc)| VersionedMeta {
                        generation,
                        version,
                        protocol,
                        meta: MemberMeta {
                            datacenter: dc,
                            ..MemberMeta::default()
                        },
                    }),
                }
            })
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_state(), b in arb_state()) {
            prop_assert_eq!(merge(&a, &b), merge(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in arb_state(), b in arb_state(), c in arb_state()) {
            prop_assert_eq!(merge(&merge(&a, &b), &c), merge(&a, &merge(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in arb_state(), b in arb_state()) {
            prop_assert_eq!(merge(&a, &a), a.clone());
            let ab = merge(&a, &b);
            prop_assert_eq!(merge(&ab, &b), ab.clone());
        }

                /// Gossip and push/pull deliver states in any order and more than once; the
                /// result must not depend on either.
        #[test]
        fn any_delivery_order_converges(states in proptest::collection::vec(arb_state(), 1..8), seed in any::<u64>()) {
            let forward = states.iter().skip(1).fold(states[0].clone(), |acc, s| merge(&acc, s));
            let mut shuffled = states.clone();
            // a deterministic permutation from the seed, with duplicates re-delivered
            let n = shuffled.len();
            for i in 0..n {
                let j = ((seed >> (i % 60)) as usize).wrapping_add(i * 7) % n;
                shuffled.swap(i, j);
            }
            shuffled.extend(states.iter().take(2).cloned());
            let other = shuffled.iter().skip(1).fold(shuffled[0].clone(), |acc, s| merge(&acc, s));
            prop_assert_eq!(forward, other);
        }
    }

    fn st(generation: u64, incarnation: u16, state: State) -> MemberState {
        MemberState {
            id: NodeId::new("n", SocketAddr::from(([127, 0, 0, 1], 1)), generation).expect("valid"),
            incarnation,
            state,
            leave: None,
            meta: None,
        }
    }

    #[test]
    fn swim_order_is_respected() {
        use State::*;
        // suspicion beats alive at the same incarnation, a refutation beats suspicion
        assert_eq!(merge(&st(1, 0, Alive), &st(1, 0, Suspect)).state, Suspect);
        assert_eq!(merge(&st(1, 1, Alive), &st(1, 0, Suspect)).state, Alive);
        // down is final for an identity
        assert_eq!(merge(&st(1, 9, Alive), &st(1, 0, Down)).state, Down);
        // but a new generation (restart) starts over
        let m = merge(&st(2, 0, Alive), &st(1, 0, Down));
        assert_eq!((m.id.generation(), m.state), (2, Alive));
    }

    #[test]
    fn status_follows_the_leave_intent_of_the_same_generation() {
        let mut s = st(3, 0, State::Alive);
        assert_eq!(s.status(), MemberStatus::Alive);
        s.leave = Some(LeaveMark {
            generation: 3,
            prune: false,
        });
        assert_eq!(s.status(), MemberStatus::Leaving);
        s.state = State::Down;
        assert_eq!(s.status(), MemberStatus::Left);
        s.leave = Some(LeaveMark {
            generation: 2,
            prune: false,
        });
        assert_eq!(s.status(), MemberStatus::Failed);
        assert_eq!(MemberStatus::Failed.code(), 4);
        assert_eq!(MemberStatus::Left.as_str(), "left");
    }
}
