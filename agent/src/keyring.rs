//! Cluster-wide gossip keyring operations (`/v1/operator/keyring`, `cairn keyring`).
//!
//! An operation is applied to this agent's keyring, then spread to every member as an
//! internal user event; each member applies it and publishes the fingerprints of its keys in
//! its gossip tags. Listings count those tags, so they reflect what each member really holds,
//! and an operation answers once every alive member reports the change (or says which did
//! not). The keyring is kept in the data dir so that a restarted agent keeps rotated keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

use cairn_gossip::{Key, MemberStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::agent::Agent;
use crate::api::Error;

/// Name of the internal event that carries keyring operations.
pub const KEYRING_EVENT: &str = "_cairn-keyring";
/// Gossip tag holding `<primary fingerprint>;<fingerprint>,<fingerprint>...`.
pub const KEYRING_TAG: &str = "kr";
/// How long an operation waits for every member to report it.
///
/// Gossip spreads an event to every member in a few gossip rounds and tags follow the same way:
/// ten seconds leave a wide margin on a healthy pool, and past them the operation names the
/// members that did not report.
const CONVERGE: Duration = Duration::from_secs(10);

/// A keyring operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Accept a new key.
    Install,
    /// Make a key the primary one.
    Use,
    /// Stop accepting a key.
    Remove,
}

/// The payload of [`KEYRING_EVENT`]. It carries the key itself: gossip is encrypted with the
/// current keyring, so only members that already hold a valid key can read it.
#[derive(Serialize, Deserialize)]
struct OpEvent {
    op: Op,
    key: String,
}

/// The keyring file in the data dir.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedKeyring {
    /// Primary key (base64).
    pub primary: String,
    /// Every installed key (base64), primary included.
    pub keys: Vec<String>,
}

/// Path of the keyring file.
pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join("keyring.json")
}

/// Reads the keyring file, if any.
///
/// A damaged file is ignored (with a warning) rather than stopping the agent: it falls back to
/// `-encrypt`, and the pool's keys can be installed again.
pub fn load(data_dir: &Path) -> Option<SavedKeyring> {
    let bytes = std::fs::read(file(data_dir)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(k) => Some(k),
        Err(e) => {
            warn!(error = %e, "ignoring a damaged keyring file");
            None
        }
    }
}

/// A key's fingerprint, what members publish in gossip instead of the key: the tags are readable by
/// anyone in the pool, the keys must not be.
fn fingerprint(key: &str) -> Result<String, Error> {
    Key::from_base64(key)
        .map(|k| k.fingerprint())
        .map_err(|e| Error::Invalid(format!("Invalid key: {e}")))
}

/// Keyring operations need a keyring: an agent started without `-encrypt` has none.
fn not_enabled() -> Error {
    Error::Internal(
        "Gossip encryption is not enabled on this agent (start it with -encrypt)".into(),
    )
}

/// Parses a member's keyring tag into (primary, all) fingerprints.
///
/// A member without the tag (one that has not published yet) parses as holding nothing: it lags
/// behind an install or a use, and agrees with a remove.
fn parse_tag(tag: &str) -> (String, Vec<String>) {
    let (primary, rest) = tag.split_once(';').unwrap_or((tag, ""));
    (
        primary.to_string(),
        rest.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    )
}

impl Agent {
    /// Publishes this agent's key fingerprints in gossip and saves the keyring.
    ///
    /// Rebuilds the whole metadata from the configuration and adds the tag, so the published
    /// metadata stays what `cluster::local_meta` describes. The file is written to a temporary name
    /// and renamed, so a crash leaves the old keyring or the new one, never half of one.
    pub async fn keyring_publish(&self) {
        let Ok(keys) = self.gossip.keyring().list() else {
            return;
        };
        let fps: Vec<(String, bool)> = keys
            .iter()
            .filter_map(|k| Some((fingerprint(&k.key).ok()?, k.primary)))
            .collect();
        let primary = fps
            .iter()
            .find(|(_, p)| *p)
            .map(|(f, _)| f.clone())
            .unwrap_or_default();
        let all: Vec<String> = fps.into_iter().map(|(f, _)| f).collect();
        let config = self.config();
        let mut meta = crate::cluster::local_meta(&config, &self.node.id);
        meta.tags.insert(
            KEYRING_TAG.to_string(),
            format!("{primary};{}", all.join(",")),
        );
        if let Err(e) = self.gossip.set_meta(meta).await {
            warn!(error = %e, "failed to publish keyring fingerprints");
        }
        if let Some(dir) = config.data_dir.as_ref().filter(|_| !config.dev) {
            let saved = SavedKeyring {
                primary: keys
                    .iter()
                    .find(|k| k.primary)
                    .map(|k| k.key.clone())
                    .unwrap_or_default(),
                keys: keys.iter().map(|k| k.key.clone()).collect(),
            };
            let path = file(dir);
            let written = serde_json::to_vec(&saved)
                .map_err(std::io::Error::other)
                .and_then(|b| {
                    let tmp = path.with_extension("tmp");
                    std::fs::write(&tmp, b)?;
                    std::fs::rename(&tmp, &path)
                });
            if let Err(e) = written {
                warn!(error = %e, "failed to save the keyring");
            }
        }
    }

    /// Applies an operation to this agent's keyring; the keyring itself refuses what would break
    /// the pool (removing the primary key, using a key not installed).
    fn apply_local(&self, op: Op, key: &str) -> Result<(), Error> {
        let ring = self.gossip.keyring();
        ring.list().map_err(|_| not_enabled())?;
        let r = match op {
            Op::Install => ring.install(key),
            Op::Use => ring.use_key(key),
            Op::Remove => ring.remove(key),
        };
        r.map_err(|e| Error::Invalid(format!("keyring {op:?}: {e}")))
    }

    /// Applies a keyring event received from another member.
    ///
    /// The member that started the operation receives it too, already applied: applying it again is
    /// harmless, and a refusal (a key already removed) is only logged. The tag is published either
    /// way, so the starter sees this member's true state.
    pub async fn keyring_event(&self, payload: &[u8]) {
        let Ok(ev) = serde_json::from_slice::<OpEvent>(payload) else {
            warn!("ignoring a malformed keyring event");
            return;
        };
        match self.apply_local(ev.op, &ev.key) {
            Ok(()) => info!(op = ?ev.op, "keyring change applied"),
            Err(e) => info!(op = ?ev.op, error = %e, "keyring change not applied here"),
        }
        self.keyring_publish().await;
    }

    /// Installs, uses or removes a key on every member.
    pub async fn keyring_op(&self, op: Op, key: &str) -> Result<(), Error> {
        let fp = fingerprint(key)?;
        // Locally first: a key the local keyring refuses is refused before anything is sent.
        self.apply_local(op, key)?;
        self.keyring_publish().await;
        let payload = serde_json::to_vec(&OpEvent {
            op,
            key: key.to_string(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        // Through the event log's checks (size, name), with no filter: every member must apply it.
        let ev = self.events.create(KEYRING_EVENT, payload, "", "", "")?;
        self.gossip
            .fire_event(crate::cluster::gossip_event(&ev))
            .await
            .map_err(|e| Error::Internal(format!("failed to spread the keyring change: {e}")))?;
        // Done only when every alive member's published fingerprints show the change: an operation
        // that answered before the pool agreed would let an operator remove a key still in use.
        let deadline = Instant::now() + CONVERGE;
        loop {
            let lagging: Vec<String> = self
                .gossip
                .members()
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .filter(|m| {
                    let (primary, all) = parse_tag(
                        m.meta
                            .tags
                            .get(KEYRING_TAG)
                            .map(String::as_str)
                            .unwrap_or(""),
                    );
                    !match op {
                        Op::Install => all.contains(&fp),
                        Op::Use => primary == fp,
                        Op::Remove => !all.contains(&fp),
                    }
                })
                .map(|m| m.name.clone())
                .collect();
            if lagging.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Internal(format!(
                    "{} node(s) did not report the keyring change within {CONVERGE:?}: {}",
                    lagging.len(),
                    lagging.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /v1/operator/keyring`: the keys of the LAN pool and how many members hold each.
    ///
    /// Counts come from the members' published fingerprints, not from this agent's keyring, so a
    /// member that missed an operation shows up as a key held by fewer nodes than `NumNodes`. Only
    /// keys this agent holds are listed.
    pub fn keyring_list(&self) -> Result<Value, Error> {
        let local = self.gossip.keyring().list().map_err(|_| not_enabled())?;
        let members: Vec<_> = self
            .gossip
            .members()
            .into_iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .collect();
        let mut keys = BTreeMap::new();
        let mut primaries = BTreeMap::new();
        for k in &local {
            let fp = fingerprint(&k.key)?;
            let (mut holders, mut primary_holders) = (0u64, 0u64);
            for m in &members {
                let (p, all) = parse_tag(
                    m.meta
                        .tags
                        .get(KEYRING_TAG)
                        .map(String::as_str)
                        .unwrap_or(""),
                );
                holders += u64::from(all.contains(&fp));
                primary_holders += u64::from(p == fp);
            }
            keys.insert(k.key.clone(), holders);
            if primary_holders > 0 {
                primaries.insert(k.key.clone(), primary_holders);
            }
        }
        let lan = json!({
            "WAN": false,
            "Datacenter": self.backend.datacenter(),
            "Segment": "",
            "Partition": "",
            "Keys": keys,
            "PrimaryKeys": primaries,
            "NumNodes": members.len(),
        });
        // A server's WAN pool answers too, first, as Consul lists it. Its members all hold the
        // configured key (rotations do not reach the WAN pool yet, see `crate::wan`), so each
        // of its keys counts every alive member.
        let Some(wan) = &self.wan else {
            return Ok(json!([lan]));
        };
        let wan_keys = wan.keyring().list().map_err(|_| not_enabled())?;
        let alive = wan
            .members()
            .iter()
            .filter(|m| m.status == MemberStatus::Alive)
            .count();
        let keys: BTreeMap<String, usize> =
            wan_keys.iter().map(|k| (k.key.clone(), alive)).collect();
        let primaries: BTreeMap<String, usize> = wan_keys
            .iter()
            .filter(|k| k.primary)
            .map(|k| (k.key.clone(), alive))
            .collect();
        Ok(json!([{
            "WAN": true,
            "Datacenter": self.backend.datacenter(),
            "Segment": "",
            "Partition": "",
            "Keys": keys,
            "PrimaryKeys": primaries,
            "NumNodes": alive,
        }, lan]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse() {
        assert_eq!(
            parse_tag("aa;aa,bb"),
            ("aa".to_string(), vec!["aa".to_string(), "bb".to_string()])
        );
        assert_eq!(parse_tag(""), (String::new(), vec![]));
    }
}
