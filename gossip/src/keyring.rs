//! Gossip encryption keys: one primary key that seals outgoing packets and further
//! installed keys that are still accepted when opening, so a key can be rotated without
//! downtime, as `consul keyring` does:
//!
//! 1. `install` the new key on every member (it is accepted but not used yet);
//! 2. `use` it on every member (it becomes primary; the old one is still accepted);
//! 3. `remove` the old key everywhere.
//!
//! Keys are AES keys of 16, 24 or 32 bytes given in standard base64; [`keygen`] makes a
//! 32-byte (AES-256) key. Keys never appear in `Debug` output or error messages: only
//! a short fingerprint does.
//!
//! The driver keeps the ring behind a lock shared by its owner task and its stream tasks,
//! so a change applies from the next packet sealed or opened.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

// AES-GCM with the 96-bit nonces of `envelope::NONCE_LEN`, for each AES key size.
type Aes128Gcm = AesGcm<Aes128, aes_gcm::aead::consts::U12>;
type Aes192Gcm = AesGcm<Aes192, aes_gcm::aead::consts::U12>;
type Aes256Gcm = AesGcm<Aes256, aes_gcm::aead::consts::U12>;

/// Keyring operation failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The key is not valid base64.
    #[error("key is not valid base64")]
    Base64,
    /// The key has a length other than 16, 24 or 32 bytes.
    #[error("key must be 16, 24 or 32 bytes long (AES-128/192/256), got {0} bytes")]
    KeyLength(usize),
    /// `use` or `remove` of a key that is not installed.
    #[error("key {0} is not installed")]
    NotInstalled(String),
    /// `remove` of the primary key.
    #[error("cannot remove the primary key {0}; use another key first")]
    RemovePrimary(String),
}

/// One variant per AES key size; the ciphers (with their expanded key schedules) are boxed
/// so that the variants are the same size.
#[derive(Clone)]
enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

/// One AES-GCM key.
#[derive(Clone)]
pub struct Key {
    /// The key bytes, for export (the operator API lists keys), equality and fingerprints.
    /// Never printed.
    raw: Vec<u8>,
    /// Initialised once from `raw`, so sealing does not expand the key every packet.
    cipher: Cipher,
}

impl Key {
    /// Builds a key from raw bytes (16, 24 or 32 long).
    ///
    /// The error gives the length, never the bytes.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, KeyringError> {
        let bad = |_| KeyringError::KeyLength(raw.len());
        let cipher = match raw.len() {
            16 => Cipher::Aes128(Box::new(Aes128Gcm::new_from_slice(raw).map_err(bad)?)),
            24 => Cipher::Aes192(Box::new(Aes192Gcm::new_from_slice(raw).map_err(bad)?)),
            32 => Cipher::Aes256(Box::new(Aes256Gcm::new_from_slice(raw).map_err(bad)?)),
            n => return Err(KeyringError::KeyLength(n)),
        };
        Ok(Self {
            raw: raw.to_vec(),
            cipher,
        })
    }

    /// Parses a standard base64 key, as given to `-encrypt`.
    ///
    /// Surrounding whitespace is ignored: keys are often pasted from files or terminals.
    pub fn from_base64(text: &str) -> Result<Self, KeyringError> {
        let raw = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyringError::Base64)?;
        Self::from_bytes(&raw)
    }

    /// The key in standard base64.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.raw)
    }

    /// A short, non-secret identifier for logs: the first 8 hex digits of a
    /// 64-bit FNV-1a hash of the key.
    ///
    /// FNV-1a is not a cryptographic hash, but it does not have to be: 32 bits of output
    /// reveal at most 32 bits about a key of 128 to 256 random bits, and they only have to
    /// tell keys apart in logs and errors.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in &self.raw {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", h >> 32)
    }

    /// Seals `msg` with `nonce`, authenticating `aad`; returns ciphertext + tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::from_slice(nonce);
        let payload = Payload { msg, aad };
        match &self.cipher {
            Cipher::Aes128(c) => c.encrypt(nonce, payload).ok(),
            Cipher::Aes192(c) => c.encrypt(nonce, payload).ok(),
            Cipher::Aes256(c) => c.encrypt(nonce, payload).ok(),
        }
    }

    /// Opens ciphertext + tag; `None` when the key or the data is wrong.
    pub(crate) fn open(&self, nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::from_slice(nonce);
        let payload = Payload { msg, aad };
        match &self.cipher {
            Cipher::Aes128(c) => c.decrypt(nonce, payload).ok(),
            Cipher::Aes192(c) => c.decrypt(nonce, payload).ok(),
            Cipher::Aes256(c) => c.decrypt(nonce, payload).ok(),
        }
    }
}

/// Keys are equal when their bytes are: the cipher state is derived from them.
impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Key {}

/// Only the fingerprint: keyrings end up in debug output of configurations and errors.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.fingerprint())
    }
}

/// Makes a new random 32-byte key in standard base64, as `consul keygen` does.
pub fn keygen() -> String {
    let mut raw = [0u8; 32];
    rand_010::fill(&mut raw[..]);
    STANDARD.encode(raw)
}

/// One entry of [`Keyring::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key in base64 (the operator API shows installed keys).
    pub key: String,
    /// Whether this key seals outgoing packets.
    pub primary: bool,
}

/// The primary key plus the other accepted keys.
///
/// The primary key is the only one that seals; every key opens. Keeping them in one
/// vector, primary first, makes the order in which opening tries keys the order in which
/// they are most likely to match.
#[derive(Clone, Debug)]
pub struct Keyring {
    /// `keys[0]` is the primary key; the vector is never empty.
    keys: Vec<Key>,
}

impl Keyring {
    /// A keyring holding one (primary) key.
    pub fn new(primary: Key) -> Self {
        Self {
            keys: vec![primary],
        }
    }

    /// A keyring from a base64 primary key and further base64 keys.
    pub fn from_base64(primary: &str, others: &[&str]) -> Result<Self, KeyringError> {
        let mut ring = Self::new(Key::from_base64(primary)?);
        for k in others {
            ring.install(Key::from_base64(k)?);
        }
        Ok(ring)
    }

    /// The key that seals outgoing packets.
    pub fn primary(&self) -> &Key {
        // `keys` is never empty: every constructor adds one and `remove` keeps the primary.
        &self.keys[0]
    }

    /// All keys, primary first: the order in which opening tries them.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Adds a key to the accepted set (no-op when already installed).
    ///
    /// Installing on every member before any of them uses the key is what makes a rotation
    /// lossless: when the primary changes anywhere, every receiver can already open it.
    pub fn install(&mut self, key: Key) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Makes an installed key the primary one.
    ///
    /// The previous primary stays installed (second in line), so packets from members that
    /// have not switched yet still open.
    pub fn use_key(&mut self, key: &Key) -> Result<(), KeyringError> {
        let pos = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or_else(|| KeyringError::NotInstalled(key.fingerprint()))?;
        let k = self.keys.remove(pos);
        self.keys.insert(0, k);
        Ok(())
    }

    /// Removes an installed key other than the primary.
    ///
    /// Refusing the primary keeps the ring non-empty (which [`Keyring::primary`] relies on)
    /// and the member able to seal.
    pub fn remove(&mut self, key: &Key) -> Result<(), KeyringError> {
        if self.primary() == key {
            return Err(KeyringError::RemovePrimary(key.fingerprint()));
        }
        let pos = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or_else(|| KeyringError::NotInstalled(key.fingerprint()))?;
        self.keys.remove(pos);
        Ok(())
    }

    /// The installed keys, primary first.
    pub fn list(&self) -> Vec<KeyInfo> {
        self.keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeyInfo {
                key: k.to_base64(),
                primary: i == 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_makes_32_byte_keys() -> Result<(), KeyringError> {
        let a = keygen();
        let b = keygen();
        assert_ne!(a, b);
        let key = Key::from_base64(&a)?;
        assert_eq!(key.raw.len(), 32);
        assert_eq!(key.to_base64(), a);
        Ok(())
    }

    /// Error messages reach logs and API responses, so they must not carry key material.
    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        assert_eq!(
            Key::from_base64("not base64!").err(),
            Some(KeyringError::Base64)
        );
        let short = STANDARD.encode([1u8; 10]);
        let err = Key::from_base64(&short).err();
        assert_eq!(err, Some(KeyringError::KeyLength(10)));
        assert!(!format!("{err:?}").contains(&short));
        for len in [16, 24, 32] {
            assert!(Key::from_bytes(&vec![7u8; len]).is_ok());
        }
    }

    /// Consul's three-step rotation, with the refusals that keep it safe on the way.
    #[test]
    fn rotation_follows_install_use_remove() -> Result<(), KeyringError> {
        let old = Key::from_bytes(&[1u8; 32])?;
        let new = Key::from_bytes(&[2u8; 32])?;
        let mut ring = Keyring::new(old.clone());
        assert_eq!(ring.list().len(), 1);

        assert_eq!(
            ring.use_key(&new),
            Err(KeyringError::NotInstalled(new.fingerprint()))
        );
        ring.install(new.clone());
        ring.install(new.clone());
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.primary(), &old);

        ring.use_key(&new)?;
        assert_eq!(ring.primary(), &new);
        assert_eq!(
            ring.remove(&new),
            Err(KeyringError::RemovePrimary(new.fingerprint()))
        );
        ring.remove(&old)?;
        assert_eq!(
            ring.list(),
            vec![KeyInfo {
                key: new.to_base64(),
                primary: true
            }]
        );
        assert!(ring.remove(&old).is_err());
        Ok(())
    }

    /// `{:?}` of a ring shows fingerprints, never keys.
    #[test]
    fn debug_shows_only_fingerprints() -> Result<(), KeyringError> {
        let text = keygen();
        let ring = Keyring::from_base64(&text, &[])?;
        let dbg = format!("{ring:?}");
        assert!(!dbg.contains(&text));
        assert!(dbg.contains(&ring.primary().fingerprint()));
        Ok(())
    }
}
