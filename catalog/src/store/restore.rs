//! Operator restores (`PUT /v1/snapshot`): the whole state replaced by an archive, sent in one
//! entry or, when too large for one, in pieces staged in the replicated state until the last.
//!
//! Pieces live in the state rather than on the proposer so that every server holds them at the
//! same index: a server that installs a Raft snapshot taken half way through, or a new leader,
//! finishes the restore exactly as the others do. Only one restore is staged at a time; a new
//! one (a piece at offset 0) replaces it, and the pieces of the replaced one are refused.

use std::sync::Arc;

use super::{StoreError, Tx, WatchKey};
use crate::command::Response;

/// An operator restore being received piece by piece. Part of the replicated state, so a
/// Raft snapshot taken half way carries it.
#[derive(Clone, Debug, Default)]
pub(crate) struct StagedRestore {
    /// The restore's ID, chosen by its proposer; every piece and the finish name it.
    pub(crate) id: String,
    /// The pieces in order. Shared (`Arc` in a persistent vector), so cloning the state for
    /// each command does not copy what was received.
    pub(crate) parts: imbl::Vector<Arc<Vec<u8>>>,
    /// Bytes received so far: where the next piece must start.
    pub(crate) len: u64,
}

impl StagedRestore {
    /// The archive received so far, in one piece.
    pub(crate) fn bytes(&self) -> Vec<u8> {
        // Only a capacity hint: an archive this process could not address fails to allocate
        // below anyway.
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        for p in &self.parts {
            out.extend_from_slice(p);
        }
        out
    }
}

impl Tx<'_> {
    /// `Restore`: replaces the whole state with an archive's.
    pub(crate) fn restore(&mut self, data: &[u8]) -> Result<Response, StoreError> {
        let mut restored = crate::snapshot::read(data)
            .map_err(|e| StoreError::Invalid(format!("Failed to restore snapshot: {e}")))?;
        // A restore the archive had staged is not this cluster's, and this one is done.
        restored.staged = None;
        // The log's own bookkeeping is not the archive's: retries of writes made before the
        // restore must still be recognised.
        restored.clients = self.st.clients.clone();
        // Every watched index moves to the restore: blocked readers see a change and indexes
        // never go back for them.
        let keys: Vec<WatchKey> = restored.indexes.keys().cloned().collect();
        for k in keys.into_iter().chain([
            WatchKey::Nodes,
            WatchKey::Services,
            WatchKey::Checks,
            WatchKey::Sessions,
            WatchKey::Kv,
            WatchKey::Coordinates,
            WatchKey::Autopilot,
            WatchKey::Queries,
        ]) {
            restored.indexes.insert(k, self.index);
        }
        // The archive's index belongs to wherever it was taken; this state goes on from this
        // log's position (`State::apply` then moves it to this entry's index).
        restored.last_index = self.st.last_index;
        *self.st = restored;
        self.changes.all = true;
        Ok(Response::Done)
    }

    /// `RestoreChunk`: stages one piece; a piece at offset 0 starts a restore (dropping any
    /// other staged one), the others must follow what was received, in order.
    pub(crate) fn restore_chunk(
        &mut self,
        id: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<Response, StoreError> {
        // A new restore, or the same one started over after a failure: what was staged goes.
        if offset == 0 {
            self.st.staged = Some(StagedRestore {
                id: id.to_string(),
                ..StagedRestore::default()
            });
        }
        match &mut self.st.staged {
            // Exactly where the received bytes end: a gap or an overlap would build an archive
            // that is not the one sent.
            Some(s) if s.id == id && s.len == offset => {
                s.parts.push_back(Arc::new(data.to_vec()));
                s.len += data.len() as u64;
                Ok(Response::Done)
            }
            Some(s) if s.id == id => Err(StoreError::Invalid(format!(
                "restore {id}: a piece at offset {offset} does not follow the {} bytes received",
                s.len
            ))),
            // Nothing staged, or another restore's pieces.
            _ => Err(not_in_progress(id)),
        }
    }

    /// `RestoreFinish`: replaces the state with the staged archive, once all `len` bytes of
    /// it are there.
    ///
    /// An archive that does not restore fails the command, which rolls back like any other: the
    /// pieces stay staged until the proposer's `RestoreAbort`.
    pub(crate) fn restore_finish(&mut self, id: &str, len: u64) -> Result<Response, StoreError> {
        let data = match &self.st.staged {
            Some(s) if s.id == id && s.len == len => s.bytes(),
            Some(s) if s.id == id => {
                return Err(StoreError::Invalid(format!(
                    "restore {id}: {} bytes received, {len} expected",
                    s.len
                )));
            }
            _ => return Err(not_in_progress(id)),
        };
        self.restore(&data)
    }

    /// `RestoreAbort`: drops the staged pieces of a restore that failed half way (nothing if
    /// another one replaced it: a late abort must not drop the newer restore's pieces).
    pub(crate) fn restore_abort(&mut self, id: &str) -> Response {
        if self.st.staged.as_ref().is_some_and(|s| s.id == id) {
            self.st.staged = None;
        }
        Response::Done
    }
}

/// A piece or finish for a restore that is not the staged one: never begun here, finished,
/// aborted, or replaced by a newer restore.
fn not_in_progress(id: &str) -> StoreError {
    StoreError::Invalid(format!(
        "restore {id} is not in progress (another restore replaced it)"
    ))
}
