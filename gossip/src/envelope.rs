//! The outermost layer of every gossip packet (UDP datagram or TCP frame): pure
//! `seal`/`open` functions, no I/O.
//!
//! ```text
//! plaintext (no key configured):  [0x00][label_len:u8][label][frame]
//! AES-GCM:                        [0x01][nonce:12][ciphertext+tag:16]   aad = [0x01] ++ label
//! ```
//!
//! The label separates pools that must not talk to each other (LAN vs WAN, two
//! clusters on one network): with encryption it is authenticated as associated data, in
//! plaintext it is carried and compared. Opening tries every installed key, primary
//! first, so a member keeps accepting packets sealed with a key being rotated out.
//!
//! The version byte comes first and in the clear so that a receiver knows which form it
//! holds before trying any key: a plaintext packet at a keyed member (or the reverse) is
//! reported as an encryption mismatch, which tells an operator what to fix, instead of as
//! a wrong key.

use crate::keyring::Keyring;

/// Version byte of an unencrypted packet.
pub const VERSION_PLAINTEXT: u8 = 0;
/// Version byte of an AES-GCM sealed packet (no padding).
pub const VERSION_AES_GCM: u8 = 1;
/// AES-GCM nonce length.
///
/// The standard GCM nonce size. Nonces are drawn at random for every packet: a nonce
/// repeated under one key breaks GCM's confidentiality and authenticity, and random 96-bit
/// nonces keep that unlikely for far more packets than a pool sends between rotations.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
///
/// The full tag: shorter tags make forgeries more likely.
pub const TAG_LEN: usize = 16;
/// Longest accepted label.
///
/// Fits the plaintext form's one-byte length, and keeps [`overhead`] small and bounded:
/// the driver computes its datagram budget from it once, at start.
pub const MAX_LABEL_LEN: usize = 64;

/// Bytes the envelope adds around a frame: the larger of the encrypted and plaintext forms,
/// so a frame budget computed from it holds whichever is used.
///
/// The encrypted form does not carry the label (it is only authenticated), so with a
/// long label the plaintext form is the larger one.
pub fn overhead(label: &str) -> usize {
    let encrypted = 1 + NONCE_LEN + TAG_LEN;
    let plain = 2 + label.len();
    encrypted.max(plain)
}

/// Why a packet could not be opened. Nothing is changed by a failed open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Zero-length packet.
    #[error("empty packet")]
    Empty,
    /// The version byte is unknown.
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
    /// Shorter than its headers say.
    #[error("truncated envelope")]
    Truncated,
    /// A plaintext packet from another pool (different label).
    #[error("label mismatch")]
    LabelMismatch,
    /// A plaintext packet while encryption is required.
    #[error("unencrypted packet while gossip encryption is enabled")]
    Unencrypted,
    /// An encrypted packet while no key is configured.
    #[error("encrypted packet but gossip encryption is not configured here")]
    NoKeyConfigured,
    /// No installed key authenticates the packet: a different key, another label or
    /// tampered bytes.
    #[error("no installed key could decrypt the packet (different encryption key?)")]
    WrongKey,
}

/// Seals `frame` with the keyring's primary key, or wraps it in plaintext when `keyring`
/// is `None`. `nonce` must be fresh random bytes for every call.
pub fn seal(
    keyring: Option<&Keyring>,
    label: &str,
    frame: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    match keyring {
        None => plaintext(label, frame),
        Some(ring) => {
            let aad = aad(label);
            match ring.primary().seal(&nonce, &aad, frame) {
                Some(ct) => {
                    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
                    out.push(VERSION_AES_GCM);
                    out.extend_from_slice(&nonce);
                    out.extend_from_slice(&ct);
                    out
                }
                // AES-GCM only fails for messages beyond 64 GiB; never for our frames. Were it
                // to happen, the receiver would drop the empty packet as `Empty`.
                None => Vec::new(),
            }
        }
    }
}

/// Wraps `frame` in a plaintext envelope (also used for rejection notices, which the
/// peer must be able to read whatever its key).
pub fn plaintext(label: &str, frame: &[u8]) -> Vec<u8> {
    // The driver refuses longer labels at start; cutting here only keeps the length byte
    // truthful if one got through.
    let label = label
        .as_bytes()
        .get(..MAX_LABEL_LEN)
        .unwrap_or(label.as_bytes());
    let mut out = Vec::with_capacity(2 + label.len() + frame.len());
    out.push(VERSION_PLAINTEXT);
    out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(label);
    out.extend_from_slice(frame);
    out
}

/// Opens a packet. With a keyring, plaintext packets are refused unless
/// `accept_plaintext` (Consul's `encrypt_verify_incoming = false`, for rolling enablement).
///
/// Nothing is decoded beyond the envelope: the frame inside is the caller's. A failed
/// open has no effect, so a forged packet costs the receiver one decryption attempt per
/// installed key and nothing more.
pub fn open(
    keyring: Option<&Keyring>,
    label: &str,
    packet: &[u8],
    accept_plaintext: bool,
) -> Result<Vec<u8>, OpenError> {
    let (&version, rest) = packet.split_first().ok_or(OpenError::Empty)?;
    match version {
        VERSION_PLAINTEXT => {
            // The label is checked before the encryption policy, so a packet from another pool is
            // reported as such even at a member that refuses plaintext.
            let body = open_plaintext(label, rest)?;
            if keyring.is_some() && !accept_plaintext {
                return Err(OpenError::Unencrypted);
            }
            Ok(body.to_vec())
        }
        VERSION_AES_GCM => {
            let ring = keyring.ok_or(OpenError::NoKeyConfigured)?;
            if rest.len() < NONCE_LEN + TAG_LEN {
                return Err(OpenError::Truncated);
            }
            let (nonce, ct) = rest.split_at(NONCE_LEN);
            let mut n = [0u8; NONCE_LEN];
            n.copy_from_slice(nonce);
            let aad = aad(label);
            // Primary first, then every other installed key: during a rotation members seal with
            // different keys until every one has switched. GCM cannot tell a wrong key from tampered
            // bytes, hence the single `WrongKey`.
            ring.keys()
                .iter()
                .find_map(|k| k.open(&n, &aad, ct))
                .ok_or(OpenError::WrongKey)
        }
        v => Err(OpenError::UnknownVersion(v)),
    }
}

/// Opens a plaintext envelope body (after the version byte), checking the label.
///
/// Public for the driver, which reads rejection notices with it: they come back in
/// plaintext whatever the keys.
pub fn open_plaintext<'a>(label: &str, rest: &'a [u8]) -> Result<&'a [u8], OpenError> {
    let (&len, rest) = rest.split_first().ok_or(OpenError::Truncated)?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(OpenError::Truncated);
    }
    let (got, body) = rest.split_at(len);
    if got != label.as_bytes() {
        return Err(OpenError::LabelMismatch);
    }
    Ok(body)
}

/// The associated data of a sealed packet: its version byte and the pool label. The label
/// costs no byte on the wire, yet a packet sealed for another pool (or re-labelled) fails
/// to authenticate here.
fn aad(label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + label.len());
    aad.push(VERSION_AES_GCM);
    aad.extend_from_slice(label.as_bytes());
    aad
}

/// Fresh random nonce bytes.
///
/// From rand's thread-local generator, a CSPRNG seeded by the operating system. Tests that
/// need reproducible runs use the driver's seeded source instead.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand_010::fill(&mut n[..]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::Key;

    fn ring(byte: u8) -> Keyring {
        Keyring::new(Key::from_bytes(&[byte; 32]).expect("32-byte key"))
    }

    /// The encrypted form adds exactly [`overhead`], which the datagram budget relies on.
    #[test]
    fn sealed_packets_open_with_the_same_key() {
        let k = ring(1);
        let p = seal(Some(&k), "lan", b"hello", random_nonce());
        assert_eq!(p.first(), Some(&VERSION_AES_GCM));
        assert_eq!(p.len(), 5 + overhead("lan"));
        assert_eq!(open(Some(&k), "lan", &p, false), Ok(b"hello".to_vec()));
    }

    /// Flipping any byte is caught: the version byte by its value, the nonce, ciphertext and
    /// tag by authentication.
    #[test]
    fn wrong_key_wrong_label_and_tampering_are_refused() {
        let k = ring(1);
        let p = seal(Some(&k), "lan", b"hello", random_nonce());
        assert_eq!(
            open(Some(&ring(2)), "lan", &p, false),
            Err(OpenError::WrongKey)
        );
        assert_eq!(open(Some(&k), "wan", &p, false), Err(OpenError::WrongKey));
        for i in 0..p.len() {
            let mut t = p.clone();
            if let Some(b) = t.get_mut(i) {
                *b ^= 0x20;
            }
            assert!(open(Some(&k), "lan", &t, false).is_err(), "flip at {i}");
        }
        assert_eq!(
            open(None, "lan", &p, false),
            Err(OpenError::NoKeyConfigured)
        );
    }

    /// A datagram cut short anywhere is an error, never a shorter frame.
    #[test]
    fn truncations_are_refused() {
        let k = ring(1);
        let p = seal(Some(&k), "", b"some frame", random_nonce());
        for cut in 0..p.len() {
            let r = open(Some(&k), "", p.get(..cut).unwrap_or_default(), false);
            assert!(r.is_err(), "cut at {cut}");
        }
        assert_eq!(open(Some(&k), "", &[], false), Err(OpenError::Empty));
        let plain = plaintext("lan", b"abc");
        for cut in 1..5 {
            let r = open(None, "lan", plain.get(..cut).unwrap_or_default(), false);
            assert!(matches!(
                r,
                Err(OpenError::Truncated | OpenError::LabelMismatch)
            ));
        }
    }

    /// The rotation window: a packet sealed with the old primary still opens at a member that
    /// already switched.
    #[test]
    fn decryption_tries_every_installed_key() {
        let old = ring(1);
        let mut both = ring(2);
        both.install(old.primary().clone());
        let p = seal(Some(&old), "", b"x", random_nonce());
        assert_eq!(open(Some(&both), "", &p, false), Ok(b"x".to_vec()));
    }

    /// Rolling enablement: `accept_plaintext` lets a keyed member take plaintext packets.
    #[test]
    fn plaintext_mode_checks_the_label_and_encryption_policy() {
        let p = seal(None, "lan", b"frame", random_nonce());
        assert_eq!(p.first(), Some(&VERSION_PLAINTEXT));
        assert_eq!(open(None, "lan", &p, false), Ok(b"frame".to_vec()));
        assert_eq!(open(None, "wan", &p, false), Err(OpenError::LabelMismatch));
        let k = ring(1);
        assert_eq!(
            open(Some(&k), "lan", &p, false),
            Err(OpenError::Unencrypted)
        );
        assert_eq!(open(Some(&k), "lan", &p, true), Ok(b"frame".to_vec()));
        assert_eq!(
            open(None, "lan", &[9, 1, 2], false),
            Err(OpenError::UnknownVersion(9))
        );
    }

    proptest::proptest! {
        /// Packets come from anyone who can reach the port.
        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let k = ring(3);
            let _ = open(Some(&k), "lan", &bytes, true);
            let _ = open(None, "lan", &bytes, false);
        }
    }
}
