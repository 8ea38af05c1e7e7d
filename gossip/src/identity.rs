//! The foca [`Identity`] of a member: node name, advertised socket address and a
//! per-start generation.
//!
//! Foca keys members by [`Identity::addr`], which here is the advertised socket address:
//! two identities on the same address are the same "slot", and the one with the higher
//! generation wins the conflict. An agent takes a fresh generation at every start (the
//! wall clock in milliseconds), so a restarted agent replaces its previous identity instead
//! of waiting for the cluster to forget it; when the cluster declares an identity down while
//! the process is still running, [`Identity::renew`] bumps the generation by one and foca
//! rejoins with it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use foca::Identity;

/// Longest accepted node name, in bytes (UTF-8).
///
/// Names travel in every foca header (up to three identities per header, each with a
/// one-byte length), so this bound is what keeps [`crate::codec::MAX_HEADER_LEN`] small
/// enough for the largest broadcast item to fit in a datagram next to it.
pub const MAX_NAME_LEN: usize = 128;

/// A member's identity: node name, advertised gossip address and start generation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeId {
    /// Shared: one name is cloned into every header, table key and book entry.
    name: Arc<str>,
    /// foca's key ([`Identity::Addr`]): the slot this identity occupies in the pool.
    addr: SocketAddr,
    /// Taken at start (the wall clock in milliseconds by default), so a restarted process
    /// outranks its previous self without having stored anything.
    generation: u64,
}

/// Why a [`NodeId`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The node name is empty.
    #[error("node name is empty")]
    EmptyName,
    /// The node name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("node name is {0} bytes long, the limit is {MAX_NAME_LEN}")]
    NameTooLong(usize),
}

impl NodeId {
    /// Builds an identity, checking the name's bounds.
    pub fn new(name: &str, addr: SocketAddr, generation: u64) -> Result<Self, IdentityError> {
        if name.is_empty() {
            return Err(IdentityError::EmptyName);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(IdentityError::NameTooLong(name.len()));
        }
        Ok(Self {
            name: Arc::from(name),
            addr,
            generation,
        })
    }

    /// Builds an identity from an already validated shared name (decoders use this).
    ///
    /// Skips the checks: the codec has already refused empty names and names over
    /// [`MAX_NAME_LEN`] bytes.
    pub(crate) fn from_parts(name: Arc<str>, addr: SocketAddr, generation: u64) -> Self {
        Self {
            name,
            addr,
            generation,
        }
    }

    /// An identity used only to address the first message to a seed whose name and
    /// generation are still unknown: foca accepts an `Announce` sent to any identity that
    /// shares the receiver's address.
    pub(crate) fn placeholder(addr: SocketAddr) -> Self {
        Self {
            name: Arc::from("?"),
            addr,
            generation: 0,
        }
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node name as a shared string.
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The advertised gossip address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The start generation; higher wins an address conflict.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// `name@addr#generation`: logs need the generation to tell a restarted member from its
/// previous self.
impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.generation)
    }
}

/// `name (addr)`: what an operator recognises; the generation is an internal detail.
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    /// A renewed identity keeps name and address and takes the next generation, which
    /// wins the address conflict against the identity that was declared down.
    ///
    /// `None` at the last generation rather than wrapping: a wrapped generation would lose
    /// every conflict. foca then reports the member defunct instead of rejoining.
    fn renew(&self) -> Option<Self> {
        let generation = self.generation.checked_add(1)?;
        Some(Self {
            name: Arc::clone(&self.name),
            addr: self.addr,
            generation,
        })
    }

    /// The advertised address: foca keeps at most one identity per address.
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The higher generation wins; equal generations (two processes misconfigured with the
    /// same address in the same millisecond) fall back to comparing names so that every
    /// member makes the same choice.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &*self.name) > (adversary.generation, &*adversary.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn names_are_bounded() {
        assert_eq!(
            NodeId::new("", addr(1), 0).err(),
            Some(IdentityError::EmptyName)
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            NodeId::new(&long, addr(1), 0).err(),
            Some(IdentityError::NameTooLong(MAX_NAME_LEN + 1))
        );
        assert!(NodeId::new(&"x".repeat(MAX_NAME_LEN), addr(1), 0).is_ok());
    }

    /// A member declared down comes back under the same name and address and displaces its
    /// down identity everywhere.
    #[test]
    fn renewed_identity_wins_the_conflict() -> Result<(), IdentityError> {
        let old = NodeId::new("n1", addr(8301), 1000)?;
        let new = old.renew().ok_or(IdentityError::EmptyName)?;
        assert_eq!(new.name(), "n1");
        assert_eq!(Identity::addr(&new), Identity::addr(&old));
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        Ok(())
    }

    #[test]
    fn restart_with_later_generation_wins() -> Result<(), IdentityError> {
        let before = NodeId::new("n1", addr(8301), 1_000)?;
        let after = NodeId::new("n1", addr(8301), 2_000)?;
        assert!(after.win_addr_conflict(&before));
        // Same generation: decided by name, the same way on every member.
        let a = NodeId::new("a", addr(8301), 5)?;
        let b = NodeId::new("b", addr(8301), 5)?;
        assert!(b.win_addr_conflict(&a) && !a.win_addr_conflict(&b));
        Ok(())
    }

    /// `renew` must not wrap around to a generation that would lose to the old one.
    #[test]
    fn generation_at_max_cannot_renew() -> Result<(), IdentityError> {
        let id = NodeId::new("n1", addr(1), u64::MAX)?;
        assert!(id.renew().is_none());
        Ok(())
    }
}
