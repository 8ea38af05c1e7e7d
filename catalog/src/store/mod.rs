//! The state store: in-memory tables, the only write path (`State::apply`) and the reads.
//!
//! `State` is made of persistent maps (`imbl`), so cloning it is O(1) and a clone is a
//! consistent point-in-time view. `Store` publishes one `Arc<State>` per applied command:
//! readers take the current `Arc` and read without holding any lock, snapshots serialize a
//! clone at leisure, and a failed command is rolled back by dropping its working copy.
//!
//! Every write is stamped with its log index. Besides the record-level `CreateIndex` and
//! `ModifyIndex`, the store keeps one index per [`WatchKey`] (a node, a service name, a
//! table) so that a blocking query waits on exactly what it read, and KV tombstones so
//! that a deleted key still moves the index of the prefixes above it.
//!
//! Which writes move which watch keys (a committed transaction moves the union of its
//! operations'; a failed command moves nothing):
//!
//! | write                   | keys moved                                                   |
//! |-------------------------|--------------------------------------------------------------|
//! | node record             | `Nodes`, `Node(n)`, `Service(s)` for every service on `n`    |
//! | service instance        | `Services`, `Service(name)`, `Node(n)`; `Checks` if its      |
//! |                         | checks were renamed or retagged; the old name if renamed     |
//! | node-level check        | `Checks`, `Node(n)`, `Service(s)` for every service on `n`   |
//! | service check           | `Checks`, `Node(n)`, `Service(name)`, and the service it     |
//! |                         | was bound to before, if any                                  |
//! | node removal            | all of the above for what it held, `Nodes`, and              |
//! |                         | `Coordinates` if it had any                                  |
//! | KV write or delete      | `Kv`, and the key in [`Changes::kv_keys`]                    |
//! | session create/destroy  | `Sessions`; a destroy also its keys and tied `Queries`       |
//! | coordinates, autopilot, | `Coordinates`, `Autopilot`, `Queries`                        |
//! | prepared queries        |                                                              |
//! | restore                 | every key ([`Changes::all`])                                 |
//!
//! A check that turns critical or goes away also destroys the sessions bound to it, with
//! their effects. Reaping tombstones moves nothing.
//!
//! Each command type is applied by a function in the submodule of the table it writes
//! (`catalog`, `kv`, `session`, `txn`, `restore`, ...); this module holds the state, the
//! dispatch, and the rules every command shares: all or nothing, an index that only grows, and
//! exactly-once application of requests that carry an identity (`clients`).

mod acl;
mod autopilot;
mod catalog;
pub mod clients;
mod coordinate;
mod kv;
mod query;
mod restore;
mod session;
mod txn;

use std::sync::{Arc, Mutex, RwLock};

use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Response};
use crate::model::{HealthCheck, KvEntry, Node, Service, Session};

pub use catalog::{CheckServiceNode, ServiceNode};
pub(crate) use restore::StagedRestore;

/// What a blocking query can wait on. Each key has the index of its last change.
///
/// One per table, plus one per node and one per service name, so that a change to service `db`
/// does not wake readers of `web`. `Ord` gives changes and snapshots a fixed order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WatchKey {
    /// The node list (any node added, changed or removed).
    Nodes,
    /// One node: its record, services and checks. A change to the node record or to one of its
    /// node-level checks also moves the key of every service on it, whose answers embed both.
    Node(String),
    /// The service list (any instance added, changed or removed).
    Services,
    /// One service name: its instances, their checks and their nodes. Removed with the last
    /// instance, so the service list's index then stands for it.
    Service(String),
    /// Any check.
    Checks,
    /// Any session.
    Sessions,
    /// The KV table as a whole. Reads of one key or prefix block on the finer indexes of
    /// [`State::kv_get`] and [`State::kv_list`]; this one is their fallback.
    Kv,
    /// Network coordinates.
    Coordinates,
    /// Autopilot's settings.
    Autopilot,
    /// Prepared queries.
    Queries,
    /// ACL tokens, policies and roles.
    Acl,
}

/// What an applied command changed, for waking blocked readers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Watch keys whose index moved.
    pub keys: Vec<WatchKey>,
    /// KV keys written or deleted: readers of a key or a prefix wake only when one of theirs
    /// is listed, not on every KV write.
    pub kv_keys: Vec<String>,
    /// Everything may have changed (the state was replaced by a restore): every reader wakes.
    pub all: bool,
}

impl Changes {
    /// True when nothing changed (a failed or no-op command): nobody needs waking.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.kv_keys.is_empty() && !self.all
    }
}

/// Errors from applying a command. The state is unchanged when one is returned.
///
/// Serializable: errors travel back to the proposer with the command's result, and are kept
/// in client sessions so that a retried request gets its first answer, error included.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum StoreError {
    /// The request is invalid (missing or inconsistent fields); maps to HTTP 400.
    #[error("{0}")]
    Invalid(String),
    /// A referenced object does not exist; maps to HTTP 400 (as Consul's RPC errors do) or 404.
    #[error("{0}")]
    NotFound(String),
    /// The index of the command is not after the last applied one.
    #[error("index {index} is not after the last applied index {last}")]
    IndexRegression {
        /// Index given.
        index: u64,
        /// Last applied index.
        last: u64,
    },
    /// The command holds a command of a type this version does not know (written by a newer
    /// one) that may not be skipped. Nothing was applied and the index was not consumed: the
    /// server must stop applying the log here rather than diverge from those that apply it.
    #[error(
        "command type {0:?} is unknown to this version (written by a newer one) and may not be \
         skipped: upgrade this server"
    )]
    UnknownCommand(String),
    /// The request is not allowed in the state it met (a second ACL bootstrap); maps to 403.
    #[error("{0}")]
    Denied(String),
}

/// The outcome of `apply`.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// Index the command was applied at.
    pub index: u64,
    /// The command's result.
    pub result: Result<Response, StoreError>,
    /// What changed (empty on error or when the command was a no-op), sorted and without
    /// duplicates.
    pub changes: Changes,
}

/// The whole replicated state at one index.
///
/// Every table is an `imbl` ordered map: cloning is O(1) and iteration is in key order, which
/// makes answers and snapshots the same on every server. Records are `Arc`s, so a clone shares
/// them and a write replaces the one record it changes. Tables marked derived are indexes
/// over others, kept in step by the writes and rebuilt after a restore, never stored.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Index of the last applied command: the next one must be above it.
    pub(crate) last_index: u64,
    /// Nodes by name.
    pub(crate) nodes: OrdMap<String, Arc<Node>>,
    /// Keyed by (node, service ID): node first, so a node's instances are one contiguous range.
    pub(crate) services: OrdMap<(String, String), Arc<Service>>,
    /// Derived: service name -> instances (node, service ID).
    pub(crate) services_by_name: OrdMap<String, OrdSet<(String, String)>>,
    /// Keyed by (node, check ID): a node's checks are one contiguous range.
    pub(crate) checks: OrdMap<(String, String), Arc<HealthCheck>>,
    /// KV entries by key; sorted, so the keys under a prefix are one contiguous range.
    pub(crate) kv: OrdMap<String, Arc<KvEntry>>,
    /// Deleted keys and the index they were deleted at, until the leader reaps them: without
    /// them a prefix whose last key was deleted would report an older index than the delete.
    pub(crate) tombstones: OrdMap<String, u64>,
    /// Sessions by ID.
    pub(crate) sessions: OrdMap<String, Arc<Session>>,
    /// Derived: session ID -> keys it holds.
    pub(crate) session_locks: OrdMap<String, OrdSet<String>>,
    /// Key -> Unix ms before which it cannot be acquired (lock delay). Compared with the
    /// proposer's clock carried in the command; an entry stays until the key is locked again.
    pub(crate) lock_delays: OrdMap<String, u64>,
    /// Index of each watch key's last change. The key of a removed node or service is
    /// dropped, so that its table's index stands in for it ([`State::index_of`]).
    pub(crate) indexes: OrdMap<WatchKey, u64>,
    /// Autopilot's settings, once the first leader (or an operator) wrote them.
    pub(crate) autopilot: Option<Arc<crate::model::AutopilotConfig>>,
    /// Prepared queries by ID.
    pub(crate) queries: OrdMap<String, Arc<crate::model::PreparedQuery>>,
    /// Network coordinates, keyed by (node, segment).
    pub(crate) coordinates: OrdMap<(String, String), Arc<crate::model::Coordinate>>,
    /// Client sessions: the results of recent forwarded writes, so that a retried write is
    /// applied once (see [`clients`]).
    pub(crate) clients: OrdMap<String, Arc<clients::ClientSession>>,
    /// The pieces of an operator restore received so far (see [`Command::RestoreChunk`]).
    /// Part of the replicated state, so a snapshot taken half way carries them.
    pub(crate) staged: Option<StagedRestore>,
    /// ACL tokens by accessor ID.
    pub(crate) acl_tokens: OrdMap<String, Arc<crate::acl::AclToken>>,
    /// Derived: token secret -> accessor ID.
    pub(crate) acl_secrets: OrdMap<String, String>,
    /// ACL policies by ID.
    pub(crate) acl_policies: OrdMap<String, Arc<crate::acl::AclPolicy>>,
    /// ACL roles by ID.
    pub(crate) acl_roles: OrdMap<String, Arc<crate::acl::AclRole>>,
    /// The index of the ACL bootstrap, once done.
    pub(crate) acl_bootstrap: Option<u64>,
}

impl State {
    /// An empty state.
    pub fn new() -> State {
        State::default()
    }

    /// Index of the last applied command (0 when none): also the index a snapshot of this
    /// state is labelled with.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Applies `cmd` at `index`. All or nothing: on error the state is unchanged (except that the
    /// index is consumed, as a Raft log entry is, and a request's result is remembered).
    ///
    /// Two errors leave even the index alone, because the log and this state cannot go on
    /// together: an index that does not follow the last one, and an entry holding a command of
    /// an unknown type that may not be skipped ([`StoreError::UnknownCommand`]). Commands of
    /// unknown types that may be skipped apply as no-ops.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Applied {
        // Both refusals are checked before anything runs, so a refused entry changes nothing,
        // not even part of a batch.
        let refused = if index <= self.last_index {
            Some(StoreError::IndexRegression {
                index,
                last: self.last_index,
            })
        } else {
            cmd.refused_unknown()
                .map(|u| StoreError::UnknownCommand(u.tag.clone()))
        };
        if let Some(e) = refused {
            return Applied {
                index,
                result: Err(e),
                changes: Changes::default(),
            };
        }
        let mut changes = Changes::default();
        let result = match cmd {
            // Each member on its own working copy: one failing member leaves the others'
            // writes in place, as if each had been an entry of its own.
            Command::Batch(cmds) => {
                let results = cmds
                    .iter()
                    .map(|c| self.apply_one(index, c, &mut changes))
                    .collect();
                Ok(Response::Batch(results))
            }
            other => self.apply_one(index, other, &mut changes),
        };
        // The sweep compares `index` with the previous `last_index`, so it runs before that
        // moves; at the same entries on every server, as part of the deterministic state.
        self.sweep_clients(index);
        self.last_index = index;
        // Watchers get each key once, in a fixed order.
        changes.keys.sort();
        changes.keys.dedup();
        changes.kv_keys.sort();
        changes.kv_keys.dedup();
        Applied {
            index,
            result,
            changes,
        }
    }

    /// Applies one command (a batch's member, or a whole entry) on a working copy that replaces
    /// the state only if it succeeds; a request already applied gets its first result back.
    fn apply_one(
        &mut self,
        index: u64,
        cmd: &Command,
        changes: &mut Changes,
    ) -> Result<Response, StoreError> {
        let (id, cmd) = match cmd {
            Command::Request { id, cmd } => (Some(id), cmd.as_ref()),
            other => (None, other),
        };
        // A copy of a request already applied answers its first result and changes nothing.
        if let Some(id) = id {
            match self.request_seen(id) {
                clients::Seen::New => {}
                clients::Seen::Done(result) => return result,
                // Refused, not applied: its client has moved its floor past it, so nobody waits
                // for this answer, and its first result (if any) is forgotten.
                clients::Seen::Stale => {
                    return Err(StoreError::Invalid(format!(
                        "request {} of client {} was already given up by its client",
                        id.seq, id.client
                    )));
                }
            }
        }
        let result = match cmd {
            // Proposers never build these: a batch holds commands, a request wraps one.
            Command::Batch(_) => Err(StoreError::Invalid("nested batch".into())),
            Command::Request { .. } => Err(StoreError::Invalid("nested request".into())),
            _ => {
                // O(1) copy; kept only if the command succeeds, dropped otherwise, which is
                // the whole of the rollback.
                let mut work = self.clone();
                let mut tx = Tx {
                    st: &mut work,
                    index,
                    now_ms: cmd.now_ms(),
                    changes: Changes::default(),
                };
                let r = tx.run(cmd);
                let c = std::mem::take(&mut tx.changes);
                if r.is_ok() {
                    *self = work;
                    changes.keys.extend(c.keys);
                    changes.kv_keys.extend(c.kv_keys);
                    changes.all |= c.all;
                }
                r
            }
        };
        // Failures are remembered too: a retry must not succeed where the first copy failed.
        if let Some(id) = id {
            self.request_done(index, id, &result);
        }
        result
    }

    /// Index of the last change to `key`, never below 1. A key whose object is gone falls
    /// back to its table's index, which moved when the object was removed.
    ///
    /// Never 0, as in Consul: a client that got index 0 would block with `?index=0`, which
    /// returns at once, and so would poll in a tight loop.
    pub fn index_of(&self, key: &WatchKey) -> u64 {
        let own = self.indexes.get(key).copied();
        let idx = match (own, key) {
            (Some(i), _) => i,
            (None, WatchKey::Node(_)) => self.table_index(&WatchKey::Nodes),
            (None, WatchKey::Service(_)) => self.table_index(&WatchKey::Services),
            (None, _) => 0,
        };
        idx.max(1)
    }

    /// A table's own index, 0 if it never changed (`index_of` raises it to 1).
    fn table_index(&self, key: &WatchKey) -> u64 {
        self.indexes.get(key).copied().unwrap_or(0)
    }
}

/// The working copy of one command's application.
///
/// The functions that apply commands are methods of `Tx`, so they can only reach the working
/// copy, never the published state: whatever they do before failing is dropped with it.
pub(crate) struct Tx<'a> {
    /// The working copy.
    pub(crate) st: &'a mut State,
    /// The entry's index: every `CreateIndex`, `ModifyIndex` and watch index written is this.
    pub(crate) index: u64,
    /// The proposer's clock (Unix ms; 0 when the command carries none).
    pub(crate) now_ms: u64,
    /// What this command changed, merged into the entry's changes only if it succeeds.
    pub(crate) changes: Changes,
}

impl Tx<'_> {
    /// Applies one command: each type has its own function, next to the table it writes.
    fn run(&mut self, cmd: &Command) -> Result<Response, StoreError> {
        match cmd {
            Command::Register { req, .. } => self.register(req).map(|()| Response::Done),
            Command::Deregister { req, .. } => self.deregister(req).map(|()| Response::Done),
            Command::Kv { op, req, .. } => self.kv_write(*op, req).map(Response::Bool),
            Command::SessionCreate { session } => {
                self.session_create(session).map(|()| Response::Done)
            }
            // Destroying a session that is not there succeeds, as in Consul: it may have
            // expired or been destroyed by another request meanwhile.
            Command::SessionDestroy { id, .. } => {
                self.session_destroy(id);
                Ok(Response::Done)
            }
            // Always `Ok`: a rolled-back transaction answers with its errors (see `txn`).
            Command::Txn { ops, .. } => Ok(self.txn(ops)),
            Command::ReapTombstones { up_to } => Ok(self.reap_tombstones(*up_to)),
            Command::Restore { data } => self.restore(data),
            Command::RestoreChunk { id, offset, data } => self.restore_chunk(id, *offset, data),
            Command::RestoreFinish { id, len } => self.restore_finish(id, *len),
            Command::RestoreAbort { id } => Ok(self.restore_abort(id)),
            Command::CoordinateUpdate { entries } => self.coordinate_update(entries),
            Command::AutopilotSet { config, cas } => Ok(self.autopilot_set(config, *cas)),
            Command::QuerySet { query, create } => self.query_set(query, *create),
            Command::QueryDelete { id } => Ok(self.query_delete(id)),
            Command::Acl { op } => self.acl(op),
            Command::Noop => Ok(Response::Done),
            Command::Unknown(u) => skip_unknown(u),
            Command::Batch(_) | Command::Request { .. } => {
                Err(StoreError::Invalid("nested batch or request".into()))
            }
        }
    }

    /// Records that `key` changed at this index, for readers that compare indexes and for
    /// watchers that are woken.
    pub(crate) fn bump(&mut self, key: WatchKey) {
        self.st.indexes.insert(key.clone(), self.index);
        self.changes.keys.push(key);
    }

    /// Forgets the per-object index of a removed object (its table index takes over).
    pub(crate) fn forget(&mut self, key: &WatchKey) {
        self.st.indexes.remove(key);
        self.changes.keys.push(key.clone());
    }
}

/// A command of a type this version does not know: a no-op if its writer allowed skipping it
/// (`State::apply` refuses the others before anything runs).
fn skip_unknown(u: &crate::command::UnknownCommand) -> Result<Response, StoreError> {
    if u.ignore_unknown {
        Ok(Response::Done)
    } else {
        Err(StoreError::UnknownCommand(u.tag.clone()))
    }
}

/// Rebuilds indexes derived from the tables (after a restore). Locks by session are rebuilt
/// by the snapshot reader as it reads the KV entries.
pub(crate) fn rebuild_derived(st: &mut State) {
    catalog::rebuild_service_index(st);
    acl::rebuild_secrets(st);
}

/// The store as the rest of the program sees it: one writer, many lock-free readers.
#[derive(Debug, Default)]
pub struct Store {
    /// The published state. Readers hold the lock only to clone the `Arc`, and then read a
    /// view that no later write changes.
    current: RwLock<Arc<State>>,
    /// Serializes writers: two writers that copied the same state would each publish a copy
    /// missing the other's write.
    writer: Mutex<()>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// A store starting from a restored state.
    pub fn from_state(state: State) -> Store {
        Store {
            current: RwLock::new(Arc::new(state)),
            writer: Mutex::new(()),
        }
    }

    /// The current state. Cheap; the returned view never changes.
    pub fn read(&self) -> Arc<State> {
        // A poisoned lock only means a reader panicked while cloning an Arc; the data is intact.
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Applies a command and publishes the new state.
    ///
    /// Published even when the command failed: the index was consumed and a request's result
    /// recorded, and readers must see both.
    pub fn apply(&self, index: u64, cmd: &Command) -> Applied {
        // A writer that panicked left the published state intact (only finished states are
        // ever swapped in), so a poisoned lock is taken over.
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = State::clone(&self.read());
        let applied = next.apply(index, cmd);
        self.publish(next);
        applied
    }

    /// Replaces the whole state (snapshot install). Under the writer lock, so an apply in
    /// flight cannot publish over it.
    pub fn replace(&self, state: State) {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.publish(state);
    }

    /// Swaps in the new state; readers holding the old `Arc` keep their view.
    fn publish(&self, state: State) {
        let mut g = self.current.write().unwrap_or_else(|p| p.into_inner());
        *g = Arc::new(state);
    }
}
