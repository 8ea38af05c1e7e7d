//! Transactions (`/v1/txn`): a list of KV, node, service and check operations applied all or
//! nothing. Any failing operation rolls the whole transaction back (the caller's working copy
//! of the state is dropped) and is reported with its position.
//!
//! As in Consul, operations run in order and each sees the writes of those before it; after
//! a failure the rest still run, so that the answer lists every failing operation, not just the
//! first. Error texts follow Consul's.

use std::sync::Arc;

use super::{StoreError, Tx};
use crate::command::{
    CatalogVerb, KvOp, KvRequest, KvVerb, Response, TxnCheckOp, TxnError, TxnKvOp, TxnNodeOp,
    TxnOp, TxnResult, TxnServiceOp,
};
use crate::model::{KvEntry, Node};

impl Tx<'_> {
    /// Runs the operations; on the first error the state is restored and the error returned
    /// in the response (a rolled-back transaction is a successful command with errors).
    pub(crate) fn txn(&mut self, ops: &[TxnOp]) -> Response {
        // The rollback happens here, not by dropping the command's working copy: a rolled-back
        // transaction is a successful command (its answer is the errors), so that copy is
        // kept. Cloning the state is O(1).
        let before = self.st.clone();
        let changes_before = self.changes.clone();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let r = match op {
                TxnOp::Kv(op) => self.txn_kv(op),
                TxnOp::Node(op) => self.txn_node(op),
                TxnOp::Service(op) => self.txn_service(op),
                TxnOp::Check(op) => self.txn_check(op),
                // Only an old log holds these (see `TxnOp::Unrecognized`): they fail as they
                // did when first applied.
                TxnOp::Unrecognized(u) => Err(StoreError::Invalid(u.error.to_string())),
            };
            // Results of operations that succeeded are collected even after a failure, then
            // dropped below: a rolled-back transaction answers its errors only.
            match r {
                Ok(mut out) => results.append(&mut out),
                Err(e) => errors.push(TxnError {
                    op_index: i,
                    what: e.to_string(),
                }),
            }
        }
        // The changes go back too, or readers would be woken for writes that never happened.
        if !errors.is_empty() {
            *self.st = before;
            self.changes = changes_before;
            results.clear();
        }
        Response::Txn { results, errors }
    }

    /// One KV operation, with Consul's transaction semantics: unlike `/v1/kv`, a condition
    /// that does not hold (a stale CAS, a lock held by another) is an error that rolls the
    /// transaction back, not a `false`.
    fn txn_kv(&mut self, op: &TxnKvOp) -> Result<Vec<TxnResult>, StoreError> {
        // The `/v1/kv` request form, so the writes share `kv_set` and `kv_write`.
        let req = KvRequest {
            key: op.key.clone(),
            value: op.value.clone(),
            flags: op.flags,
            index: op.index,
            session: op.session.clone(),
        };
        // The entry before this operation: what the checks and CAS verbs compare against.
        let current = self.st.kv.get(&op.key).cloned();
        // Write results omit the value, as Consul's do.
        let stripped = |e: &Arc<KvEntry>| {
            let mut e = KvEntry::clone(e);
            e.value = None;
            vec![TxnResult::Kv(e)]
        };
        match op.verb {
            KvVerb::Set => Ok(stripped(&self.kv_set(&req, None))),
            KvVerb::Cas => {
                // Index 0: create only; otherwise the key must exist at exactly that index.
                let ok = match (op.index, &current) {
                    (0, None) => true,
                    (i, Some(e)) => i != 0 && e.modify_index == i,
                    _ => false,
                };
                if !ok {
                    return Err(StoreError::Invalid(format!(
                        "failed to set key {:?}, index is stale",
                        op.key
                    )));
                }
                Ok(stripped(&self.kv_set(&req, None)))
            }
            // Through the `/v1/kv` code, so lock delays and holders are checked the same way; an
            // unknown session stays an error of its own.
            KvVerb::Lock => {
                if !self.kv_write(KvOp::Lock, &req)? {
                    return Err(StoreError::Invalid(format!(
                        "failed to lock key {:?}, lock is already held",
                        op.key
                    )));
                }
                Ok(stripped(&written(self.st.kv.get(&op.key), "key", &op.key)?))
            }
            KvVerb::Unlock => {
                if !self.kv_write(KvOp::Unlock, &req)? {
                    return Err(StoreError::Invalid(format!(
                        "failed to unlock key {:?}, lock isn't held, or is held by another session",
                        op.key
                    )));
                }
                Ok(stripped(&written(self.st.kv.get(&op.key), "key", &op.key)?))
            }
            // Reads answer with the value.
            KvVerb::Get => match current {
                Some(e) => Ok(vec![TxnResult::Kv(KvEntry::clone(&e))]),
                None => Err(StoreError::NotFound(format!(
                    "key {:?} doesn't exist",
                    op.key
                ))),
            },
            // A missing key answers an entry with only its key set (indexes 0), not an error.
            KvVerb::GetOrEmpty => Ok(vec![TxnResult::Kv(current.map_or_else(
                || KvEntry {
                    key: op.key.clone(),
                    ..KvEntry::default()
                },
                |e| KvEntry::clone(&e),
            ))]),
            KvVerb::GetTree => Ok(self
                .st
                .kv
                .range(op.key.clone()..)
                .take_while(|(k, _)| k.starts_with(&op.key))
                .map(|(_, e)| TxnResult::Kv(KvEntry::clone(e)))
                .collect()),
            KvVerb::CheckIndex => match current {
                Some(e) if e.modify_index == op.index => Ok(stripped(&e)),
                Some(e) => Err(StoreError::Invalid(format!(
                    "current modify index {} != {}",
                    e.modify_index, op.index
                ))),
                None => Err(StoreError::NotFound(format!(
                    "key {:?} doesn't exist",
                    op.key
                ))),
            },
            KvVerb::CheckSession => match current {
                Some(e) if e.session.as_deref() == Some(op.session.as_str()) => Ok(stripped(&e)),
                other => Err(StoreError::Invalid(format!(
                    "current session {:?} != {:?}",
                    other
                        .as_ref()
                        .and_then(|e| e.session.as_deref())
                        .unwrap_or(""),
                    op.session
                ))),
            },
            // Checks that pass answer the entry (without its value), or nothing for
            // check-not-exists: they guard the writes after them.
            KvVerb::CheckNotExists => match current {
                None => Ok(vec![]),
                Some(_) => Err(StoreError::Invalid(format!("key {:?} exists", op.key))),
            },
            // Deletes answer nothing, and deleting a missing key is not an error.
            KvVerb::Delete => {
                self.kv_delete(&op.key);
                Ok(vec![])
            }
            KvVerb::DeleteTree => {
                self.kv_delete_tree(&op.key);
                Ok(vec![])
            }
            KvVerb::DeleteCas => match current {
                Some(e) if e.modify_index == op.index => {
                    self.kv_delete(&op.key);
                    Ok(vec![])
                }
                _ => Err(StoreError::Invalid(format!(
                    "failed to delete key {:?}, index is stale",
                    op.key
                ))),
            },
        }
    }

    /// One node operation. Writes go through the catalog's own functions, so a node set in a
    /// transaction obeys the same rules (ID checks, no change for identical data) as a
    /// registration, and deleting a node takes its services, checks and sessions with it.
    fn txn_node(&mut self, op: &TxnNodeOp) -> Result<Vec<TxnResult>, StoreError> {
        let name = op.node.node.clone();
        if name.is_empty() {
            return Err(StoreError::Invalid("Must provide node".into()));
        }
        let current = self.st.nodes.get(&name).cloned();
        // The node as stored after the operation (its indexes are the store's, not the request's).
        let get = |tx: &Self| {
            written(tx.st.nodes.get(&name), "node", &name)
                .map(|n| vec![TxnResult::Node(Node::clone(&n))])
        };
        match op.verb {
            // `cas` is `set` behind an index check; both answer the node as stored.
            CatalogVerb::Set | CatalogVerb::Cas => {
                if op.verb == CatalogVerb::Cas {
                    check_cas(
                        "node",
                        &name,
                        op.node.modify_index,
                        current.map(|n| n.modify_index),
                    )?;
                }
                // As a registration requires it (there is no `SkipNodeUpdate` here).
                if op.node.address.is_empty() {
                    return Err(StoreError::Invalid("Must provide address".into()));
                }
                // Lowercased as a registration's ID is, so the two paths store the same node.
                let mut n = op.node.clone();
                n.id = n.id.to_lowercase();
                self.ensure_node(n)?;
                get(self)
            }
            CatalogVerb::Get => match current {
                Some(_) => get(self),
                None => Err(StoreError::NotFound(format!("node {name:?} doesn't exist"))),
            },
            CatalogVerb::Delete => {
                self.delete_node(&name);
                Ok(vec![])
            }
            CatalogVerb::DeleteCas => {
                check_cas(
                    "node",
                    &name,
                    op.node.modify_index,
                    current.map(|n| n.modify_index),
                )?;
                self.delete_node(&name);
                Ok(vec![])
            }
        }
    }

    /// One service operation on a node, through the catalog's own functions (see `txn_node`).
    fn txn_service(&mut self, op: &TxnServiceOp) -> Result<Vec<TxnResult>, StoreError> {
        let node = op.node.clone();
        // The ID the store will use: an instance without one is stored under its name.
        let id = if op.service.id.is_empty() {
            op.service.service.clone()
        } else {
            op.service.id.clone()
        };
        let key = (node.clone(), id.clone());
        let current = self.st.services.get(&key).cloned();
        let get = |tx: &Self| {
            written(tx.st.services.get(&key), "service", &id)
                .map(|s| vec![TxnResult::Service(crate::model::Service::clone(&s))])
        };
        match op.verb {
            CatalogVerb::Set | CatalogVerb::Cas => {
                if op.verb == CatalogVerb::Cas {
                    check_cas(
                        "service",
                        &id,
                        op.service.modify_index,
                        current.map(|s| s.modify_index),
                    )?;
                }
                // The node must exist, possibly from an earlier operation of this transaction:
                // operations see each other's writes.
                self.ensure_service(&node, &op.service)?;
                get(self)
            }
            CatalogVerb::Get => match current {
                Some(_) => get(self),
                None => Err(StoreError::NotFound(format!(
                    "service {id:?} on node {node:?} doesn't exist"
                ))),
            },
            CatalogVerb::Delete => {
                self.delete_service(&node, &id);
                Ok(vec![])
            }
            CatalogVerb::DeleteCas => {
                check_cas(
                    "service",
                    &id,
                    op.service.modify_index,
                    current.map(|s| s.modify_index),
                )?;
                self.delete_service(&node, &id);
                Ok(vec![])
            }
        }
    }

    /// One check operation, through the catalog's own functions (see `txn_node`): a check set
    /// critical invalidates the sessions bound to it here too.
    fn txn_check(&mut self, op: &TxnCheckOp) -> Result<Vec<TxnResult>, StoreError> {
        let node = op.check.node.clone();
        // The ID the check is stored under: like a registered check's, its name when none is
        // given (`ensure_check` defaults it the same way).
        let id = if op.check.check_id.is_empty() {
            op.check.name.clone()
        } else {
            op.check.check_id.clone()
        };
        let key = (node.clone(), id.clone());
        let current = self.st.checks.get(&key).cloned();
        let get = |tx: &Self| {
            written(tx.st.checks.get(&key), "check", &id)
                .map(|c| vec![TxnResult::Check(crate::model::HealthCheck::clone(&c))])
        };
        match op.verb {
            CatalogVerb::Set | CatalogVerb::Cas => {
                if op.verb == CatalogVerb::Cas {
                    check_cas(
                        "check",
                        &id,
                        op.check.modify_index,
                        current.map(|c| c.modify_index),
                    )?;
                }
                // As for a registered check: its node, and the instance it names, must exist.
                self.ensure_check(op.check.clone())?;
                get(self)
            }
            CatalogVerb::Get => match current {
                Some(_) => get(self),
                None => Err(StoreError::NotFound(format!(
                    "check {id:?} on node {node:?} doesn't exist"
                ))),
            },
            CatalogVerb::Delete => {
                self.delete_check(&node, &id);
                Ok(vec![])
            }
            CatalogVerb::DeleteCas => {
                check_cas(
                    "check",
                    &id,
                    op.check.modify_index,
                    current.map(|c| c.modify_index),
                )?;
                self.delete_check(&node, &id);
                Ok(vec![])
            }
        }
    }
}

/// What a verb just wrote or found, read back: always there, so a miss is a broken invariant
/// of the store, reported (the transaction rolls back) rather than answered as an empty result.
fn written<T: Clone>(found: Option<&Arc<T>>, kind: &str, name: &str) -> Result<Arc<T>, StoreError> {
    found.cloned().ok_or_else(|| {
        StoreError::Invalid(format!(
            "internal error: {kind} {name:?} missing right after it was written"
        ))
    })
}

/// CAS rule shared by node, service and check verbs: index 0 means "must not exist"; any
/// other index must be the current `ModifyIndex` of an existing record.
fn check_cas(kind: &str, name: &str, want: u64, have: Option<u64>) -> Result<(), StoreError> {
    let ok = match (want, have) {
        (0, None) => true,
        (w, Some(h)) => w != 0 && w == h,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "failed to set {kind} {name:?}: index is stale"
        )))
    }
}
