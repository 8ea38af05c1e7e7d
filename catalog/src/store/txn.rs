//! Transactions (`/v1/txn`): a list of KV, node, service and check operations applied all or
//! nothing. Any failing operation rolls the whole transaction back (the caller's working copy
//! of the state is dropped) and is reported with its position.

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
            match r {
                Ok(mut out) => results.append(&mut out),
                Err(e) => errors.push(TxnError {
                    op_index: i,
                    what: e.to_string(),
                }),
            }
        }
        if !errors.is_empty() {
            *self.st = before;
            self.changes = changes_before;
            results.clear();
        }
        Response::Txn { results, errors }
    }

    fn txn_kv(&mut self, op: &TxnKvOp) -> Result<Vec<TxnResult>, StoreError> {
        let req = KvRequest {
            key: op.key.clone(),
            value: op.value.clone(),
            flags: op.flags,
            index: op.index,
            session: op.session.clone(),
        };
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
            KvVerb::Get => match current {
                Some(e) => Ok(vec![TxnResult::Kv(KvEntry::clone(&e))]),
                None => Err(StoreError::NotFound(format!(
                    "key {:?} doesn't exist",
                    op.key
                ))),
            },
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
            KvVerb::CheckNotExists => match current {
                None => Ok(vec![]),
                Some(_) => Err(StoreError::Invalid(format!("key {:?} exists", op.key))),
            },
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

    fn txn_node(&mut self, op: &TxnNodeOp) -> Result<Vec<TxnResult>, StoreError> {
        let name = op.node.node.clone();
        if name.is_empty() {
            return Err(StoreError::Invalid("Must provide node".into()));
        }
        let current = self.st.nodes.get(&name).cloned();
        let get = |tx: &Self| {
            written(tx.st.nodes.get(&name), "node", &name)
                .map(|n| vec![TxnResult::Node(Node::clone(&n))])
        };
        match op.verb {
            CatalogVerb::Set | CatalogVerb::Cas => {
                if op.verb == CatalogVerb::Cas {
                    check_cas(
                        "node",
                        &name,
                        op.node.modify_index,
                        current.map(|n| n.modify_index),
                    )?;
                }
                if op.node.address.is_empty() {
                    return Err(StoreError::Invalid("Must provide address".into()));
                }
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

    fn txn_service(&mut self, op: &TxnServiceOp) -> Result<Vec<TxnResult>, StoreError> {
        let node = op.node.clone();
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

    fn txn_check(&mut self, op: &TxnCheckOp) -> Result<Vec<TxnResult>, StoreError> {
        let node = op.check.node.clone();
        let id = op.check.check_id.clone();
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

/// CAS rule shared by node, service and check verbs: index 0 means "must not exist".
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
