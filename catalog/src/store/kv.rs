//! The KV table: writes (set, CAS, lock, unlock, delete, delete-tree), reads with prefix
//! indexes that account for deletions (tombstones), and the reaping of old tombstones.
//!
//! A deleted key leaves a tombstone holding its deletion index, as Consul's graveyard does: a
//! reader blocked on a prefix compares against the highest index under it, and without the
//! tombstone deleting the newest key would make that index go back, so the reader would never
//! see the change. Tombstones are reaped by a leader command once no reader can still need them.
//!
//! Locks follow Consul's sessions: a key is held by at most one session, re-acquiring by the
//! holder is allowed, and after an invalidation the keys it held cannot be locked during the
//! session's lock delay.

use std::sync::Arc;

use super::{State, StoreError, Tx, WatchKey};
use crate::command::{KvOp, KvRequest, Response};
use crate::model::KvEntry;

impl Tx<'_> {
    /// `ReapTombstones`: forgets the tombstones of keys deleted at or before `up_to` (the
    /// leader reaps those older than every blocking query could still need).
    pub(crate) fn reap_tombstones(&mut self, up_to: u64) -> Response {
        let reaped: Vec<String> = self
            .st
            .tombstones
            .iter()
            .filter(|(_, idx)| **idx <= up_to)
            .map(|(k, _)| k.clone())
            .collect();
        for k in reaped {
            self.st.tombstones.remove(&k);
        }
        Response::Done
    }

    /// Executes one KV write; `Ok(false)` is a refused CAS or lock, state unchanged.
    pub(crate) fn kv_write(&mut self, op: KvOp, req: &KvRequest) -> Result<bool, StoreError> {
        match op {
            KvOp::Set => {
                self.kv_set(req, None);
                Ok(true)
            }
            KvOp::Cas => {
                let current = self.st.kv.get(&req.key).map(|e| e.modify_index);
                let ok = match (req.index, current) {
                    // Index 0: create only.
                    (0, None) => true,
                    (0, Some(_)) => false,
                    (i, Some(m)) => i == m,
                    // An index for a key that no longer exists: what it was read at is gone.
                    (_, None) => false,
                };
                if ok {
                    self.kv_set(req, None);
                }
                Ok(ok)
            }
            KvOp::Lock => self.kv_lock(req),
            KvOp::Unlock => Ok(self.kv_unlock(req)),
            KvOp::Delete => {
                self.kv_delete(&req.key);
                Ok(true)
            }
            KvOp::DeleteCas => match self.st.kv.get(&req.key) {
                // Already gone counts as deleted, as in Consul.
                None => Ok(true),
                Some(e) if e.modify_index == req.index => {
                    self.kv_delete(&req.key);
                    Ok(true)
                }
                Some(_) => Ok(false),
            },
            KvOp::DeleteTree => {
                self.kv_delete_tree(&req.key);
                Ok(true)
            }
        }
    }

    /// Writes value and flags. `lock` = Some(Some(s)) takes the lock for `s`, Some(None) clears it.
    ///
    /// A write of an existing key keeps its `CreateIndex`, `LockIndex` and holder (a plain set
    /// on a locked key does not release it), and brings a deleted key back to life: its
    /// tombstone goes. Returns the entry as stored.
    pub(crate) fn kv_set(&mut self, req: &KvRequest, lock: Option<Option<String>>) -> Arc<KvEntry> {
        let mut entry = match self.st.kv.get(&req.key) {
            Some(e) => KvEntry::clone(e),
            None => KvEntry {
                key: req.key.clone(),
                create_index: self.index,
                ..KvEntry::default()
            },
        };
        // Every write moves the ModifyIndex, even one that stores the same value, as in Consul
        // (unlike catalog registrations, where identical data changes nothing).
        entry.value = req.value.clone().filter(|v| !v.is_empty());
        entry.flags = req.flags;
        entry.modify_index = self.index;
        match lock {
            Some(Some(session)) => {
                // A new holder: `LockIndex` counts acquisitions, not writes under the lock.
                if entry.session.as_deref() != Some(session.as_str()) {
                    entry.lock_index += 1;
                    self.st
                        .session_locks
                        .entry(session.clone())
                        .or_default()
                        .insert(req.key.clone());
                }
                entry.session = Some(session);
            }
            // A release: the key stays and keeps its `LockIndex` (which counts acquisitions).
            Some(None) => {
                if let Some(old) = entry.session.take() {
                    self.unlink_lock(&old, &req.key);
                }
            }
            None => {}
        }
        let entry = Arc::new(entry);
        self.st.kv.insert(req.key.clone(), Arc::clone(&entry));
        self.st.tombstones.remove(&req.key);
        self.kv_changed(&req.key);
        entry
    }

    /// `?acquire=`: an unknown session is an error; a key in its lock delay or held by another
    /// session answers `false`. The holder may acquire again (to update the value).
    fn kv_lock(&mut self, req: &KvRequest) -> Result<bool, StoreError> {
        if !self.st.sessions.contains_key(&req.session) {
            return Err(StoreError::Invalid(format!(
                "invalid session {:?}",
                req.session
            )));
        }
        // The proposer's clock, carried in the command: every server gives the same answer.
        if self
            .st
            .lock_delays
            .get(&req.key)
            .is_some_and(|until| *until > self.now_ms)
        {
            return Ok(false);
        }
        // Held by another session: no stealing, whatever the value or index.
        let holder = self.st.kv.get(&req.key).and_then(|e| e.session.clone());
        if holder.is_some_and(|h| h != req.session) {
            return Ok(false);
        }
        // A delay that has passed is spent: forgotten once the key is taken.
        self.st.lock_delays.remove(&req.key);
        self.kv_set(req, Some(Some(req.session.clone())));
        Ok(true)
    }

    /// `?release=`: only the holder may release; anyone else gets `false`. Releasing writes
    /// the value too, as Consul's release does.
    fn kv_unlock(&mut self, req: &KvRequest) -> bool {
        match self.st.kv.get(&req.key) {
            Some(e) if e.session.as_deref() == Some(req.session.as_str()) => {
                self.kv_set(req, Some(None));
                true
            }
            _ => false,
        }
    }

    /// Deletes a key, leaving a tombstone at this index; a lock on it goes with it. Returns
    /// whether the key existed (nothing changes otherwise).
    pub(crate) fn kv_delete(&mut self, key: &str) -> bool {
        let Some(old) = self.st.kv.remove(key) else {
            return false;
        };
        if let Some(s) = &old.session {
            self.unlink_lock(s, key);
        }
        self.st.tombstones.insert(key.to_string(), self.index);
        self.kv_changed(key);
        true
    }

    /// Deletes every key under `prefix` (all of them for `""`), each with its tombstone.
    pub(crate) fn kv_delete_tree(&mut self, prefix: &str) {
        // Collected, then deleted one by one: each key gets its tombstone and drops its lock.
        let keys: Vec<String> = self
            .st
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.kv_delete(&k);
        }
    }

    /// Drops `key` from the keys `session` holds, and the session's set once empty, so the
    /// table holds exactly what a snapshot restore rebuilds from the entries.
    fn unlink_lock(&mut self, session: &str, key: &str) {
        let empty = match self.st.session_locks.get_mut(session) {
            Some(set) => {
                set.remove(key);
                set.is_empty()
            }
            None => false,
        };
        if empty {
            self.st.session_locks.remove(session);
        }
    }

    /// Every KV write reports the table and the key: the key is what wakes only the readers of
    /// that key or of a prefix above it.
    fn kv_changed(&mut self, key: &str) {
        self.bump(WatchKey::Kv);
        self.changes.kv_keys.push(key.to_string());
    }
}

/// KV reads.
impl State {
    /// One entry, with the index to block on: the entry's ModifyIndex, or when absent the
    /// index of its deletion or of the KV table.
    ///
    /// Blocking on a key's own ModifyIndex (as Consul does) means writes to other keys do not
    /// end the wait.
    pub fn kv_get(&self, key: &str) -> (u64, Option<Arc<KvEntry>>) {
        match self.kv.get(key) {
            Some(e) => (e.modify_index.max(1), Some(Arc::clone(e))),
            None => (self.index_of(&WatchKey::Kv), None),
        }
    }

    /// Every entry under a prefix, in key order, with the highest index of a change under it
    /// (deletions included, through the tombstones).
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<Arc<KvEntry>>) {
        let entries: Vec<Arc<KvEntry>> = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| Arc::clone(e))
            .collect();
        // The highest ModifyIndex under the prefix, not the table's: writes elsewhere in the
        // KV do not end a wait on this prefix.
        let idx = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        (self.prefix_index(prefix, idx), entries)
    }

    /// Keys under a prefix, grouped up to the first `separator` after the prefix (`?keys` and
    /// `?separator=`: `a/` stands for every key under `a/`). No separator lists every key.
    pub fn kv_keys(&self, prefix: &str, separator: &str) -> (u64, Vec<String>) {
        let mut out: Vec<String> = Vec::new();
        let mut max = 0;
        for (k, e) in self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            max = max.max(e.modify_index);
            // The separator is looked for after the prefix only: the prefix may contain it
            // (`?keys=a/&separator=/` lists `a/b/` for `a/b/c`).
            let rest = &k[prefix.len()..];
            let key = match (separator.is_empty(), rest.find(separator)) {
                (false, Some(pos)) => format!("{prefix}{}", &rest[..pos + separator.len()]),
                _ => k.clone(),
            };
            // Keys are sorted, so the keys of one group are adjacent: comparing with the last
            // one listed is enough to list each group once.
            if out.last() != Some(&key) {
                out.push(key);
            }
        }
        (self.prefix_index(prefix, max), out)
    }

    /// Highest index of a change under `prefix` given the live maximum; falls back to the table
    /// when nothing under it was ever written (or its tombstones were reaped), as Consul does.
    fn prefix_index(&self, prefix: &str, live_max: u64) -> u64 {
        let dead_max = self
            .tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        let idx = live_max.max(dead_max);
        if idx == 0 {
            self.index_of(&WatchKey::Kv)
        } else {
            idx
        }
    }

    /// Number of KV entries (live keys only, not tombstones): for stats, metrics and the
    /// snapshot inspector.
    pub fn kv_len(&self) -> usize {
        self.kv.len()
    }
}
