//! The Raft state machine: committed entries applied to the catalog store, snapshots built
//! from an O(1) clone of the state, the latest snapshot kept in a checksummed file.
//!
//! Snapshot file layout: magic `CAIRNRSN`, format version (u32 BE), length of the metadata
//! (u32 BE), the Raft snapshot metadata (JSON), the catalog snapshot (itself checksummed), and
//! a SHA-256 of everything before it. The same bytes travel to followers that install it.
//!
//! The metadata (last log ID, membership) travels with the state because a restarted server
//! or a follower installing the snapshot needs both to go on: the log ID says which entries
//! the state already holds, the membership who the cluster is if the entries that set it were
//! purged. The outer checksum covers the metadata, which the catalog snapshot's own does not.
//!
//! Only the latest snapshot is kept: the state is in memory and rebuilt at start from it plus
//! the log entries after it, so older snapshots have no use.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_catalog::{Changes, Command, Store, snapshot};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftLogId, RaftSnapshotBuilder, StoredMembership,
};
use sha2::{Digest, Sha256};

use crate::{ApplyResult, Entry, LogId, ServerNode, StorageError, TypeConfig};

/// Distinct from the catalog snapshot's magic (`CAIRNSNP`): a Raft snapshot file is not an
/// operator archive, and each refuses the other.
const MAGIC: &[u8; 8] = b"CAIRNRSN";
/// Version of this file layout; [`decode_snapshot`] refuses any other.
const VERSION: u32 = 1;
/// The one snapshot file in the state machine's directory, replaced atomically by each new one.
const SNAPSHOT_FILE: &str = "state.snap";

/// Told about every change the state machine makes, to wake blocked readers.
///
/// Called from the state machine as it applies, between entries: implementations must return
/// quickly (hand the news on, do not block), or every write waits for them.
pub trait ApplyObserver: Send + Sync + 'static {
    /// A command was applied.
    fn applied(&self, changes: &Changes);
    /// The whole state was replaced (snapshot installed): everything may have changed.
    fn reset(&self);
    /// The entry at `index` held a command of type `tag` that this version does not know and
    /// its writer allowed skipping: it was applied as a no-op (already logged as a warning).
    /// Counted, so that operators see that servers are due an upgrade.
    fn skipped_unknown(&self, index: u64, tag: &str) {
        let _ = (index, tag);
    }
}

/// An observer that ignores everything (tests).
pub struct NoObserver;

impl ApplyObserver for NoObserver {
    fn applied(&self, _: &Changes) {}
    fn reset(&self) {}
}

/// openraft's snapshot metadata: last log ID, last membership, snapshot ID.
type Meta = SnapshotMeta<u64, ServerNode>;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Damaged or foreign content.
    #[error("{0}")]
    Invalid(String),
    /// The snapshot could not be encoded (nothing was written).
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
}

/// Encodes a snapshot (metadata + catalog bytes) in the file layout. Fails rather than write
/// a file that would not read back.
pub fn encode_snapshot(meta: &Meta, catalog: &[u8]) -> Result<Vec<u8>, SnapshotFileError> {
    let meta_json = serde_json::to_vec(meta)
        .map_err(|e| SnapshotFileError::Encode(format!("metadata: {e}")))?;
    let meta_len = u32::try_from(meta_json.len()).map_err(|_| {
        SnapshotFileError::Encode(format!(
            "metadata of {} bytes does not fit the layout",
            meta_json.len()
        ))
    })?;
    // Header (magic, version, metadata length: 16 bytes), metadata, catalog, checksum.
    let mut out = Vec::with_capacity(16 + meta_json.len() + catalog.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&meta_len.to_be_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(catalog);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Verifies and splits a snapshot into its metadata and catalog state.
///
/// Everything is checked before anything is returned: the checksum first (a damaged file is
/// named as such rather than by whatever field it breaks), then the version, the lengths, and
/// finally that the state's index is the one the metadata claims. A state at another index
/// than its log ID would make the server skip or re-apply entries after installing it.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Meta, cairn_catalog::State), SnapshotFileError> {
    let bad = |s: &str| SnapshotFileError::Invalid(s.to_string());
    if bytes.len() < 16 + 32 || &bytes[..8] != MAGIC {
        return Err(bad("not a Cairn Raft snapshot (bad magic or too short)"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(bad("snapshot checksum mismatch: the snapshot is corrupt"));
    }
    let mut word = [0u8; 4];
    word.copy_from_slice(&body[8..12]);
    let version = u32::from_be_bytes(word);
    if version != VERSION {
        return Err(SnapshotFileError::Invalid(format!(
            "unsupported snapshot version {version}"
        )));
    }
    word.copy_from_slice(&body[12..16]);
    let meta_len = u32::from_be_bytes(word) as usize;
    let rest = &body[16..];
    // A length past the end is refused rather than left to panic the slice: the checksum
    // proves the bytes are as written, not that they were written right.
    if meta_len > rest.len() {
        return Err(bad("snapshot metadata length exceeds the file"));
    }
    let meta: Meta = serde_json::from_slice(&rest[..meta_len])
        .map_err(|e| SnapshotFileError::Invalid(format!("snapshot metadata: {e}")))?;
    let state = snapshot::read(&rest[meta_len..])
        .map_err(|e| SnapshotFileError::Invalid(format!("snapshot state: {e}")))?;
    let expect = meta.last_log_id.map_or(0, |l| l.index);
    if state.last_index() != expect {
        return Err(SnapshotFileError::Invalid(format!(
            "snapshot state is at index {} but its metadata says {expect}",
            state.last_index()
        )));
    }
    Ok((meta, state))
}

/// Writes a file atomically: temporary file, fsync, rename, fsync of the directory.
///
/// A crash at any point leaves either the old file or the new one under `name`, never a
/// part of one: the data is on disk before the rename makes it visible, and the directory's
/// fsync makes the rename itself survive.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // The directory may not exist yet before the first snapshot.
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// The state machine.
pub struct StateMachine {
    /// The catalog store, shared with the readers that serve requests.
    store: Arc<Store>,
    /// The last entry applied (or installed from a snapshot): what openraft replays after.
    last_applied: Option<LogId>,
    /// The last membership applied, with its log ID: openraft asks for it at start and it
    /// goes into every snapshot.
    membership: StoredMembership<u64, ServerNode>,
    /// Where the snapshot file lives; `None` for an in-memory server (`-dev`, tests).
    dir: Option<PathBuf>,
    /// The latest snapshot (also on disk when `dir` is set), shared with builders.
    current: Current,
    observer: Arc<dyn ApplyObserver>,
}

/// The latest snapshot and its metadata, shared between the state machine and builders (which
/// run on tasks of their own and publish what they built here).
type Current = Arc<std::sync::Mutex<Option<(Meta, Arc<Vec<u8>>)>>>;

impl StateMachine {
    /// A state machine over `store`. With `dir`, the latest snapshot there (if any) is loaded
    /// into the store first, and new snapshots are written there.
    ///
    /// A snapshot file that does not verify is an error, not a reason to start empty: starting
    /// from nothing with a log purged up to the snapshot would silently lose the state.
    pub fn open(
        store: Arc<Store>,
        dir: Option<PathBuf>,
        observer: Arc<dyn ApplyObserver>,
    ) -> Result<StateMachine, SnapshotFileError> {
        let mut sm = StateMachine {
            store,
            last_applied: None,
            membership: StoredMembership::default(),
            dir,
            current: Current::default(),
            observer,
        };
        if let Some(dir) = &sm.dir {
            let path = dir.join(SNAPSHOT_FILE);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let (meta, state) = decode_snapshot(&bytes).map_err(|e| match e {
                        SnapshotFileError::Invalid(m) => {
                            SnapshotFileError::Invalid(format!("{}: {m}", path.display()))
                        }
                        other => other,
                    })?;
                    // openraft then replays the log from the entry after `last_applied`.
                    sm.store.replace(state);
                    sm.last_applied = meta.last_log_id;
                    sm.membership = meta.last_membership.clone();
                    *sm.current.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((meta, Arc::new(bytes)));
                }
                // No snapshot yet: the whole log is replayed from the start.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SnapshotFileError::Io {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(sm)
    }

    /// The catalog store this machine applies to.
    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }
}

/// A state machine error in openraft's terms. openraft treats storage errors as fatal: the
/// node stops rather than go on from a state it cannot trust.
fn sm_err(verb: ErrorVerb, msg: impl ToString) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(msg.to_string()),
    )
}

/// Builds a snapshot of the state as it was when the builder was made: openraft builds it in
/// a task of its own while later entries are applied, so the state is cloned (O(1)) up front
/// and always matches `last_applied`.
pub struct Builder {
    /// The state at `last_applied`, taken when the builder was made.
    state: Arc<cairn_catalog::State>,
    /// The snapshot's log ID, captured with the state.
    last_applied: Option<LogId>,
    /// The membership as of `last_applied`, captured with the state.
    membership: StoredMembership<u64, ServerNode>,
    /// Where to write the file (`None`: in memory only).
    dir: Option<PathBuf>,
    /// Where the built snapshot is published for [`RaftStateMachine::get_current_snapshot`].
    current: Current,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = Arc::clone(&self.state);
        let last = self.last_applied;
        let meta = Meta {
            last_log_id: last,
            last_membership: self.membership.clone(),
            // Term and index: unique per log ID, and readable in logs.
            snapshot_id: format!(
                "{}-{}",
                last.map_or(0, |l| l.leader_id.term),
                last.map_or(0, |l| l.index)
            ),
        };
        let dir = self.dir.clone();
        let meta2 = meta.clone();
        // Serializing the whole state and fsyncing the file are long and blocking: off the
        // async runtime, whose threads serve Raft's messages meanwhile.
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
            let catalog = snapshot::write(&state).map_err(|e| e.to_string())?;
            let bytes = encode_snapshot(&meta2, &catalog).map_err(|e| e.to_string())?;
            if let Some(dir) = dir {
                write_atomic(&dir, SNAPSHOT_FILE, &bytes).map_err(|e| e.to_string())?;
            }
            Ok(bytes)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
        .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        tracing::info!(
            index = last.map_or(0, |l| l.index),
            bytes = bytes.len(),
            "raft snapshot built"
        );
        // Published only once the file is written: the snapshot handed to followers is never
        // newer than the one a restart would load.
        let bytes = Arc::new(bytes);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((meta.clone(), Arc::clone(&bytes)));
        // openraft takes the bytes by value; `current` keeps its own copy.
        let bytes = Arc::unwrap_or_clone(bytes);
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    /// Where the state stands: openraft replays committed entries after `last_applied` and
    /// takes the membership from here at start.
    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, ServerNode>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        // One result per entry, in order: openraft hands each back to whoever proposed it.
        let mut out = Vec::new();
        for entry in entries {
            let log_id = *entry.get_log_id();
            let index = log_id.index;
            // Every entry consumes a catalog index, so Raft index N is catalog index N: blank
            // entries (a new leader's) and membership changes apply as no-ops.
            let cmd = match entry.payload {
                EntryPayload::Normal(cmd) => cmd,
                EntryPayload::Blank => Command::Noop,
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(log_id), m);
                    Command::Noop
                }
            };
            if index == 0 {
                // Raft's index 0 holds the initial membership; the catalog starts after it.
                self.last_applied = Some(log_id);
                out.push(ApplyResult {
                    index,
                    result: Ok(cairn_catalog::Response::Done),
                });
                continue;
            }
            let applied = self.store.apply(index, &cmd);
            match &applied.result {
                Err(cairn_catalog::StoreError::IndexRegression { .. }) => {
                    // Never expected: the log and the state disagree. Stop rather than diverge.
                    return Err(sm_err(
                        ErrorVerb::Write,
                        format!(
                            "state machine at index {} cannot apply entry {index}",
                            self.store.read().last_index()
                        ),
                    ));
                }
                Err(cairn_catalog::StoreError::UnknownCommand(tag)) => {
                    // Written by a newer version, which did not allow skipping it: applying
                    // the rest of the log without it would diverge from the servers that
                    // apply it, so this one stops here (as Consul's FSM panics), with the
                    // entry kept in the log for an upgraded binary to apply.
                    tracing::error!(
                        index,
                        command_type = %tag,
                        "log entry holds a command type this version does not know; \
                         stopping the state machine: upgrade this server"
                    );
                    return Err(sm_err(
                        ErrorVerb::Write,
                        format!(
                            "log entry {index} holds a command of type {tag:?}, which this \
                             version does not know and may not skip; upgrade this server"
                        ),
                    ));
                }
                _ => {}
            }
            // Skippable unknown commands applied as no-ops: said loudly, since this server
            // now answers without whatever they would have changed.
            for u in cmd.unknown() {
                tracing::warn!(
                    index,
                    command_type = %u.tag,
                    "skipped a command of a type this version does not know (its writer \
                     allows that); upgrade this server"
                );
                self.observer.skipped_unknown(index, &u.tag);
            }
            self.last_applied = Some(log_id);
            // Only real changes wake readers (a failed command or a no-op changes nothing).
            if !applied.changes.is_empty() {
                self.observer.applied(&applied.changes);
            }
            out.push(ApplyResult {
                index,
                result: applied.result,
            });
        }
        Ok(out)
    }

    /// Captures the state now (an O(1) clone), not when the build task runs: entries applied
    /// meanwhile must not end up in a snapshot labelled with an older log ID.
    async fn get_snapshot_builder(&mut self) -> Builder {
        Builder {
            state: self.store.read(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            dir: self.dir.clone(),
            current: Arc::clone(&self.current),
        }
    }

    /// A snapshot from the leader is received into memory and only checked, written and
    /// installed once complete ([`RaftStateMachine::install_snapshot`]).
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        // Verified in full before anything changes: a bad snapshot leaves this server as it was.
        let bytes = snapshot.into_inner();
        let (file_meta, state) = decode_snapshot(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        if file_meta.last_log_id != meta.last_log_id {
            return Err(sm_err(
                ErrorVerb::Read,
                "installed snapshot does not match its announced metadata",
            ));
        }
        // On disk before the state is replaced: once installed, openraft may purge the log the
        // snapshot covers, and a crash then must find the snapshot to restart from.
        if let Some(dir) = &self.dir {
            let dir = dir.clone();
            let b = bytes.clone();
            tokio::task::spawn_blocking(move || write_atomic(&dir, SNAPSHOT_FILE, &b))
                .await
                .map_err(|e| sm_err(ErrorVerb::Write, e))?
                .map_err(|e| sm_err(ErrorVerb::Write, e))?;
        }
        self.store.replace(state);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((meta.clone(), Arc::new(bytes)));
        // Any reader may be affected: all of them are woken to read again.
        self.observer.reset();
        tracing::info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            "raft snapshot installed"
        );
        Ok(())
    }

    /// The latest snapshot, built or installed, for a follower too far behind for the log.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(current.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes.as_ref().clone())),
        }))
    }
}
