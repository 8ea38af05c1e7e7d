//! Sessions: creation (validated against the node and its checks), invalidation (releasing or
//! deleting held locks and arming lock delays) and reads.
//!
//! A session is the liveness handle behind KV locks: it ties locks to a node and to checks, and
//! whatever ends the session (an explicit destroy, the node's removal, a bound check turning
//! critical or going away, the leader expiring its TTL) ends the locks with it. Session reads
//! all block on the one session table index.

use std::sync::Arc;

use super::{State, StoreError, Tx, WatchKey};
use crate::command::KvRequest;
use crate::model::{HealthStatus, Session, SessionBehavior};

impl Tx<'_> {
    /// `SessionCreate`: the ID comes in the command (the proposer drew it), so every server
    /// creates the same session. Refused, with Consul's messages, when the ID is taken, the
    /// node is not registered, or a bound check is missing or already critical: a session is
    /// only as live as its checks, and a critical one says it is not.
    pub(crate) fn session_create(&mut self, session: &Session) -> Result<(), StoreError> {
        if session.id.is_empty() {
            return Err(StoreError::Invalid("Missing session ID".into()));
        }
        if self.st.sessions.contains_key(&session.id) {
            return Err(StoreError::Invalid(format!(
                "Session {:?} already exists",
                session.id
            )));
        }
        if !self.st.nodes.contains_key(&session.node) {
            return Err(StoreError::NotFound(format!(
                "Missing node registration: node {:?} is not in the catalog",
                session.node
            )));
        }
        // Node and service checks alike: both are keyed by (node, check ID), on the session's
        // node.
        let ids = session
            .node_checks
            .iter()
            .chain(session.service_checks.iter().map(|c| &c.id));
        for id in ids {
            match self.st.checks.get(&(session.node.clone(), id.to_string())) {
                None => {
                    return Err(StoreError::NotFound(format!(
                        "Missing check '{id}' registration"
                    )));
                }
                Some(c) if c.status == HealthStatus::Critical => {
                    return Err(StoreError::Invalid(format!(
                        "Check '{id}' is in critical state"
                    )));
                }
                Some(_) => {}
            }
        }
        // Sessions are never modified, only created and destroyed: both indexes are this one.
        let mut s = session.clone();
        s.create_index = self.index;
        s.modify_index = self.index;
        self.st.sessions.insert(s.id.clone(), Arc::new(s));
        self.bump(WatchKey::Sessions);
        Ok(())
    }

    /// Invalidates a session: its locks are released (or their keys deleted) and each key gets
    /// the session's lock delay, measured from the command's clock. Unknown sessions are ignored.
    pub(crate) fn session_destroy(&mut self, id: &str) {
        let now_ms = self.now_ms;
        let Some(session) = self.st.sessions.remove(id) else {
            return;
        };
        self.bump(WatchKey::Sessions);
        // Prepared queries tied to the session go with it.
        let tied: Vec<String> = self
            .st
            .queries
            .values()
            .filter(|q| q.session == id)
            .map(|q| q.id.clone())
            .collect();
        if !tied.is_empty() {
            for q in tied {
                self.st.queries.remove(&q);
            }
            self.bump(WatchKey::Queries);
        }
        // The keys it holds, from the derived table rather than a scan of the whole KV.
        let held: Vec<String> = self
            .st
            .session_locks
            .get(id)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        // The delay is kept in nanoseconds (Consul's JSON) but applied in milliseconds, the
        // unit of the proposer's clock.
        let delay_ms = session.lock_delay / 1_000_000;
        for key in held {
            match session.behavior {
                SessionBehavior::Release => {
                    // Rewritten with the same value and flags, unlocked: its ModifyIndex moves,
                    // so readers of the key see the release.
                    if let Some(e) = self.st.kv.get(&key).cloned() {
                        let req = KvRequest {
                            key: key.clone(),
                            value: e.value.clone(),
                            flags: e.flags,
                            index: 0,
                            session: String::new(),
                        };
                        self.kv_set(&req, Some(None));
                    }
                }
                SessionBehavior::Delete => {
                    self.kv_delete(&key);
                }
            }
            // Without the proposer's clock there is nothing to measure the delay from: none.
            if delay_ms > 0 && now_ms > 0 {
                self.st.lock_delays.insert(key, now_ms + delay_ms);
            }
        }
        // Normally gone already (each release or delete above unlinked its key): no entry
        // may outlive its session.
        self.st.session_locks.remove(id);
    }

    /// Invalidates sessions bound to a check that turned critical or went away. A check ID is
    /// only unique on its node, so the session's node must match too.
    pub(crate) fn invalidate_check_sessions(&mut self, node: &str, check_id: &str) {
        // A scan of every session: there is no index by check.
        let doomed: Vec<String> = self
            .st
            .sessions
            .values()
            .filter(|s| {
                s.node == node
                    && (s.node_checks.iter().any(|c| c == check_id)
                        || s.service_checks.iter().any(|c| c.id == check_id))
            })
            .map(|s| s.id.clone())
            .collect();
        for id in doomed {
            self.session_destroy(&id);
        }
    }
}

/// Session reads.
impl State {
    /// One session, with the session table's index (also when it does not exist, so a reader
    /// can block until it appears or goes).
    pub fn session(&self, id: &str) -> (u64, Option<Arc<Session>>) {
        (
            self.index_of(&WatchKey::Sessions),
            self.sessions.get(id).cloned(),
        )
    }

    /// All sessions.
    pub fn sessions(&self) -> (u64, Vec<Arc<Session>>) {
        (
            self.index_of(&WatchKey::Sessions),
            self.sessions.values().cloned().collect(),
        )
    }

    /// Sessions of one node, found by scanning the table (there is no index by node).
    pub fn node_sessions(&self, node: &str) -> (u64, Vec<Arc<Session>>) {
        (
            self.index_of(&WatchKey::Sessions),
            self.sessions
                .values()
                .filter(|s| s.node == node)
                .cloned()
                .collect(),
        )
    }
}
