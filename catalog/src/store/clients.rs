//! Exactly-once application of forwarded writes: client sessions in the replicated state.
//!
//! A write can reach the leader more than once: an agent that forwards it and loses the
//! connection (the leader died after committing, before answering; a reply timed out) cannot
//! tell whether it was applied, so it retries. Applying the retry again would give a blind PUT
//! two `ModifyIndex`es and a CAS a `false` answer for a write that took effect. As in the
//! client sessions of the Raft dissertation (§6.3), every write carries a [`RequestId`]: the
//! proposing process (a random client ID per process run), a sequence number, and a floor below
//! which that client has finished with every request. The state remembers, per client, the
//! result of each request at or above its floor; a request seen again gets its first result
//! back instead of being applied twice, and one below the floor (a stray copy of a request its
//! client has given up on) is refused.
//!
//! The table is part of the state, so it reaches every server through the log and survives
//! snapshots, restarts and leader changes. A client not heard from for
//! [`CLIENT_RETAIN_ENTRIES`] log entries is forgotten; forwarders stop retrying long before
//! that many entries can be committed.
//!
//! Every decision here depends only on the log (indexes, sequence numbers), never on a clock,
//! so all servers keep and forget the same results at the same entries.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::State;
use crate::command::{RequestId, Response};
use crate::store::StoreError;

/// Log entries after which a client's session is forgotten if it sent nothing. A forwarder
/// retries for at most a minute or two; at the thousands of entries per second a disk allows,
/// this is far longer.
pub const CLIENT_RETAIN_ENTRIES: u64 = 1_000_000;

/// Most results kept per client: a client never has more requests in flight than this (the
/// agent's proposal queue is smaller), so only a misbehaving one reaches it, and then its
/// oldest results go first.
pub const MAX_RESULTS_PER_CLIENT: usize = 20_000;

/// How often (in log entries) forgotten clients are swept out. A sweep walks every client, so
/// not at every entry; sweeps happen when the index crosses a multiple of this, so they fall
/// on the same entries on every server, whatever snapshot each started from.
const SWEEP_EVERY: u64 = 4096;

/// One client's session: the results of its requests it may still retry.
///
/// Serializable because it is part of the state Raft snapshots carry: a server that installs
/// a snapshot must recognise the same retries as one that replayed the log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientSession {
    /// Every request below this sequence number is finished for the client.
    pub floor: u64,
    /// Index of the last entry that carried a request of this client: what the sweep measures
    /// silence by.
    pub last_index: u64,
    /// Results by sequence number (at or above `floor`). Ordered, so the oldest are the first
    /// to go when the client exceeds [`MAX_RESULTS_PER_CLIENT`].
    pub results: BTreeMap<u64, Result<Response, StoreError>>,
}

/// What the table says about a request about to be applied.
pub(crate) enum Seen {
    /// First time: apply it.
    New,
    /// Applied before, with this result.
    Done(Result<Response, StoreError>),
    /// Below the client's floor: a stray copy of a request the client no longer waits for.
    Stale,
}

impl State {
    /// Looks a request up in its client's session.
    pub(crate) fn request_seen(&self, id: &RequestId) -> Seen {
        // An unknown client is new, or was silent long enough to be swept: its forwarders gave
        // up on its requests long before, so none of them can still arrive.
        let Some(session) = self.clients.get(&id.client) else {
            return Seen::New;
        };
        if id.seq < session.floor {
            return Seen::Stale;
        }
        match session.results.get(&id.seq) {
            Some(r) => Seen::Done(r.clone()),
            None => Seen::New,
        }
    }

    /// Records the result of a request applied at `index` and raises its client's floor.
    ///
    /// Called only for requests seen for the first time: a copy of a known one is answered
    /// from here without being recorded again.
    pub(crate) fn request_done(
        &mut self,
        index: u64,
        id: &RequestId,
        result: &Result<Response, StoreError>,
    ) {
        let mut session = self
            .clients
            .get(&id.client)
            .map(|s| ClientSession::clone(s))
            .unwrap_or_default();
        session.last_index = index;
        // The floor only rises: a later entry may carry an older request with a lower floor,
        // and lowering it would make forgotten requests look new again.
        if id.floor > session.floor {
            session.floor = id.floor;
            session.results.retain(|seq, _| *seq >= id.floor);
        }
        // A request at or above the floor may still be retried; one below it never will be.
        if id.seq >= session.floor {
            session.results.insert(id.seq, result.clone());
        }
        // Over the cap, the oldest result goes and the floor moves past it: a late copy of that
        // request is then refused as stale instead of being applied a second time.
        while session.results.len() > MAX_RESULTS_PER_CLIENT {
            let Some((seq, _)) = session.results.pop_first() else {
                break;
            };
            session.floor = session.floor.max(seq + 1);
        }
        self.clients.insert(id.client.clone(), Arc::new(session));
    }

    /// Forgets clients silent for [`CLIENT_RETAIN_ENTRIES`] entries. Runs when `index` crosses
    /// a multiple of the sweep period, so every server sweeps at the same entries.
    pub(crate) fn sweep_clients(&mut self, index: u64) {
        if index / SWEEP_EVERY == self.last_index / SWEEP_EVERY || self.clients.is_empty() {
            return;
        }
        // Before the log is that long, nobody can have been silent for that long.
        let Some(horizon) = index.checked_sub(CLIENT_RETAIN_ENTRIES) else {
            return;
        };
        let silent: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, s)| s.last_index < horizon)
            .map(|(c, _)| c.clone())
            .collect();
        for c in silent {
            self.clients.remove(&c);
        }
    }

    /// Number of client sessions kept (metrics and tests).
    pub fn client_sessions(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, KvOp, KvRequest};
    use crate::model::Session;

    fn id(client: &str, seq: u64, floor: u64) -> RequestId {
        RequestId {
            client: client.into(),
            seq,
            floor,
        }
    }

    /// A KV write carrying request identity `rid`: a CAS with `Some(index)`, a blind PUT
    /// otherwise.
    fn put(rid: RequestId, key: &str, value: &str, cas: Option<u64>) -> Command {
        Command::Request {
            id: rid,
            cmd: Box::new(Command::Kv {
                op: if cas.is_some() { KvOp::Cas } else { KvOp::Set },
                req: KvRequest {
                    key: key.into(),
                    value: Some(value.as_bytes().to_vec()),
                    index: cas.unwrap_or(0),
                    ..KvRequest::default()
                },
                now_ms: 1,
            }),
        }
    }

    /// The two failures client sessions exist to prevent: a CAS retried after it succeeded
    /// must not answer `false`, and a blind PUT retried must not get a second ModifyIndex, on
    /// its own or inside a batch.
    #[test]
    fn a_retried_write_is_applied_once_and_answers_its_first_result() {
        let mut st = State::new();
        // A CAS create, committed at 1; the forwarder lost the answer and retried: the copy
        // lands at 3 (behind another client's write) and must not turn into a failed CAS.
        let first = put(id("a", 1, 1), "k", "v1", Some(0));
        assert_eq!(st.apply(1, &first).result, Ok(Response::Bool(true)));
        st.apply(2, &put(id("b", 1, 1), "other", "x", None));
        let again = st.apply(3, &first);
        assert_eq!(again.result, Ok(Response::Bool(true)));
        assert!(again.changes.is_empty());
        let (_, entry) = st.kv_get("k");
        assert_eq!(entry.map(|e| e.modify_index), Some(1));
        // A blind PUT retried inside a batch: one ModifyIndex.
        let blind = put(id("a", 2, 1), "k", "v2", None);
        st.apply(4, &blind);
        let batch = Command::Batch(vec![blind.clone(), put(id("a", 3, 1), "j", "v", None)]);
        let r = st.apply(5, &batch);
        assert_eq!(
            r.result,
            Ok(Response::Batch(vec![
                Ok(Response::Bool(true)),
                Ok(Response::Bool(true))
            ]))
        );
        assert_eq!(st.kv_get("k").1.map(|e| e.modify_index), Some(4));
        assert_eq!(st.kv_get("j").1.map(|e| e.modify_index), Some(5));
    }

    /// A retry of a failed request gets the same error, and still consumes its index.
    #[test]
    fn a_failed_request_keeps_its_failure() {
        let mut st = State::new();
        // A session on a node that is not registered: refused with `NotFound`.
        let create = Command::Request {
            id: id("a", 7, 7),
            cmd: Box::new(Command::SessionCreate {
                session: Session {
                    id: "s1".into(),
                    node: "missing".into(),
                    ..Session::default()
                },
            }),
        };
        let first = st.apply(1, &create).result;
        assert!(matches!(first, Err(StoreError::NotFound(_))));
        assert_eq!(st.apply(2, &create).result, first);
        assert_eq!(st.last_index(), 2);
    }

    /// Results below a new floor are dropped, and a copy of one of those requests is refused
    /// rather than applied again.
    #[test]
    fn the_floor_forgets_finished_requests_and_refuses_their_late_copies() {
        let mut st = State::new();
        st.apply(1, &put(id("a", 1, 1), "k", "1", None));
        st.apply(2, &put(id("a", 2, 1), "k", "2", None));
        // Request 3 says everything below 3 is finished.
        st.apply(3, &put(id("a", 3, 3), "k", "3", None));
        assert_eq!(st.clients.get("a").map(|s| s.results.len()), Some(1));
        let late = st.apply(4, &put(id("a", 1, 1), "k", "1", None));
        assert!(matches!(late.result, Err(StoreError::Invalid(_))));
        assert_eq!(st.kv_get("k").1.map(|e| e.modify_index), Some(3));
    }

    /// Raft snapshots carry client sessions, operator archives do not, and an operator restore
    /// keeps the sessions the log built: a retry after it is still recognised.
    #[test]
    fn sessions_survive_snapshots_but_not_operator_archives() {
        let mut st = State::new();
        let w = put(id("a", 1, 1), "k", "v", None);
        st.apply(1, &w);
        let mut restored =
            crate::snapshot::read(&crate::snapshot::write(&st).expect("writes")).expect("reads");
        assert_eq!(restored.apply(2, &w).result, Ok(Response::Bool(true)));
        assert_eq!(restored.kv_get("k").1.map(|e| e.modify_index), Some(1));
        let archive = crate::snapshot::read(&crate::snapshot::write_archive(&st).expect("writes"))
            .expect("reads");
        assert_eq!(archive.client_sessions(), 0);
        // An operator restore keeps the log's sessions.
        let restore = Command::Restore {
            data: crate::snapshot::write_archive(&State::new()).expect("writes"),
        };
        restored.apply(3, &restore);
        assert_eq!(restored.client_sessions(), 1);
        assert_eq!(restored.apply(4, &w).result, Ok(Response::Bool(true)));
        assert!(restored.kv_get("k").1.is_none(), "not applied again");
    }

    /// A client silent for [`CLIENT_RETAIN_ENTRIES`] entries goes at the next sweep; one heard
    /// from recently stays.
    #[test]
    fn silent_clients_are_forgotten() {
        let mut st = State::new();
        st.apply(1, &put(id("old", 1, 1), "k", "v", None));
        st.apply(2, &put(id("new", 1, 1), "k", "v", None));
        st.apply(CLIENT_RETAIN_ENTRIES, &put(id("new", 2, 2), "k", "v", None));
        assert_eq!(st.client_sessions(), 2);
        // The next sweep boundary past the horizon of "old" (last seen at 1).
        let at = (CLIENT_RETAIN_ENTRIES / SWEEP_EVERY + 1) * SWEEP_EVERY;
        st.apply(at, &Command::Noop);
        assert_eq!(st.client_sessions(), 1);
        assert!(st.clients.contains_key("new"));
    }
}
