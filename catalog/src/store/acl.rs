//! ACL tables: tokens (by accessor, with a derived index by secret), policies and roles (by
//! ID), and the index of the one-time bootstrap.
//!
//! Every ACL write moves [`WatchKey::Acl`]: servers drop their compiled authorizers when it
//! moves, so a revoked token stops working with the entry that revoked it.

use std::sync::Arc;

use super::{State, StoreError, Tx, WatchKey};
use crate::acl::{AclOp, AclPolicy, AclRole, AclToken};
use crate::command::Response;

impl Tx<'_> {
    /// Applies one ACL write.
    pub(crate) fn acl(&mut self, op: &AclOp) -> Result<Response, StoreError> {
        match op {
            AclOp::TokenSet { token, create } => self.acl_token_set(token, *create),
            AclOp::TokenDelete { accessors } => {
                let mut any = false;
                for a in accessors {
                    if let Some(t) = self.st.acl_tokens.remove(a) {
                        self.st.acl_secrets.remove(&t.secret_id);
                        any = true;
                    }
                }
                if any {
                    self.bump(WatchKey::Acl);
                }
                Ok(Response::Bool(any))
            }
            AclOp::PolicySet { policy, create } => self.acl_policy_set(policy, *create),
            AclOp::PolicyDelete { id } => {
                let found = self.st.acl_policies.remove(id).is_some();
                if found {
                    self.bump(WatchKey::Acl);
                }
                Ok(Response::Bool(found))
            }
            AclOp::RoleSet { role, create } => self.acl_role_set(role, *create),
            AclOp::RoleDelete { id } => {
                let found = self.st.acl_roles.remove(id).is_some();
                if found {
                    self.bump(WatchKey::Acl);
                }
                Ok(Response::Bool(found))
            }
            AclOp::Bootstrap { token, reset_index } => {
                if let Some(done) = self.st.acl_bootstrap {
                    match reset_index {
                        Some(r) if *r == done => {}
                        Some(r) => {
                            return Err(StoreError::Invalid(format!(
                                "Invalid bootstrap reset index (specified {r}, reset index: {done})"
                            )));
                        }
                        None => {
                            return Err(StoreError::Denied(format!(
                                "Permission denied: ACL bootstrap no longer allowed (reset index: {done})"
                            )));
                        }
                    }
                }
                self.acl_token_set(token, true)?;
                self.st.acl_bootstrap = Some(self.index);
                Ok(Response::Done)
            }
        }
    }

    fn acl_token_set(&mut self, token: &AclToken, create: bool) -> Result<Response, StoreError> {
        let existing = self.st.acl_tokens.get(&token.accessor_id).cloned();
        if create && existing.is_some() {
            return Err(StoreError::Invalid(
                "Invalid Token: AccessorID is already in use".into(),
            ));
        }
        if let Some(owner) = self.st.acl_secrets.get(&token.secret_id)
            && owner != &token.accessor_id
        {
            return Err(StoreError::Invalid(
                "Provided token cannot be used because a token with that secret already exists."
                    .into(),
            ));
        }
        let mut t = token.clone();
        t.create_index = existing.as_ref().map_or(self.index, |e| e.create_index);
        t.modify_index = self.index;
        if let Some(old) = existing
            && old.secret_id != t.secret_id
        {
            self.st.acl_secrets.remove(&old.secret_id);
        }
        self.st
            .acl_secrets
            .insert(t.secret_id.clone(), t.accessor_id.clone());
        self.st
            .acl_tokens
            .insert(t.accessor_id.clone(), Arc::new(t));
        self.bump(WatchKey::Acl);
        Ok(Response::Done)
    }

    fn acl_policy_set(&mut self, policy: &AclPolicy, create: bool) -> Result<Response, StoreError> {
        let existing = self.st.acl_policies.get(&policy.id).cloned();
        if create && existing.is_some() {
            return Err(StoreError::Invalid("Policy ID already in use".into()));
        }
        if self
            .st
            .acl_policies
            .values()
            .any(|p| p.id != policy.id && p.name == policy.name)
        {
            return Err(StoreError::Invalid(format!(
                "Invalid Policy: A Policy with Name {:?} already exists",
                policy.name
            )));
        }
        let mut p = policy.clone();
        p.create_index = existing.map_or(self.index, |e| e.create_index);
        p.modify_index = self.index;
        self.st.acl_policies.insert(p.id.clone(), Arc::new(p));
        self.bump(WatchKey::Acl);
        Ok(Response::Done)
    }

    fn acl_role_set(&mut self, role: &AclRole, create: bool) -> Result<Response, StoreError> {
        let existing = self.st.acl_roles.get(&role.id).cloned();
        if create && existing.is_some() {
            return Err(StoreError::Invalid("Role ID already in use".into()));
        }
        if self
            .st
            .acl_roles
            .values()
            .any(|r| r.id != role.id && r.name == role.name)
        {
            return Err(StoreError::Invalid(format!(
                "Invalid Role: A Role with Name {:?} already exists",
                role.name
            )));
        }
        let mut r = role.clone();
        r.create_index = existing.map_or(self.index, |e| e.create_index);
        r.modify_index = self.index;
        self.st.acl_roles.insert(r.id.clone(), Arc::new(r));
        self.bump(WatchKey::Acl);
        Ok(Response::Done)
    }
}

impl State {
    /// The token with this secret.
    pub fn acl_token_by_secret(&self, secret: &str) -> Option<Arc<AclToken>> {
        let accessor = self.acl_secrets.get(secret)?;
        self.acl_tokens.get(accessor).cloned()
    }

    /// The token with this accessor ID.
    pub fn acl_token(&self, accessor: &str) -> Option<Arc<AclToken>> {
        self.acl_tokens.get(accessor).cloned()
    }

    /// Every token, by accessor ID.
    pub fn acl_tokens(&self) -> impl Iterator<Item = &Arc<AclToken>> {
        self.acl_tokens.values()
    }

    /// The policy with this ID.
    pub fn acl_policy(&self, id: &str) -> Option<Arc<AclPolicy>> {
        self.acl_policies.get(id).cloned()
    }

    /// The policy with this name.
    pub fn acl_policy_by_name(&self, name: &str) -> Option<Arc<AclPolicy>> {
        self.acl_policies.values().find(|p| p.name == name).cloned()
    }

    /// Every policy, by ID.
    pub fn acl_policies(&self) -> impl Iterator<Item = &Arc<AclPolicy>> {
        self.acl_policies.values()
    }

    /// The role with this ID.
    pub fn acl_role(&self, id: &str) -> Option<Arc<AclRole>> {
        self.acl_roles.get(id).cloned()
    }

    /// The role with this name.
    pub fn acl_role_by_name(&self, name: &str) -> Option<Arc<AclRole>> {
        self.acl_roles.values().find(|r| r.name == name).cloned()
    }

    /// Every role, by ID.
    pub fn acl_roles(&self) -> impl Iterator<Item = &Arc<AclRole>> {
        self.acl_roles.values()
    }

    /// The index the ACL system was bootstrapped at (its reset index), if it was.
    pub fn acl_bootstrapped(&self) -> Option<u64> {
        self.acl_bootstrap
    }

    /// The ACL tables' index: any change to tokens, policies or roles moves it.
    pub fn acl_index(&self) -> u64 {
        self.index_of(&WatchKey::Acl)
    }
}

/// Rebuilds the secret index from the tokens (after a restore).
pub(crate) fn rebuild_secrets(st: &mut State) {
    st.acl_secrets = st
        .acl_tokens
        .values()
        .map(|t| (t.secret_id.clone(), t.accessor_id.clone()))
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    fn token(accessor: &str, secret: &str) -> AclToken {
        AclToken {
            accessor_id: accessor.into(),
            secret_id: secret.into(),
            ..AclToken::default()
        }
    }

    fn apply(st: &mut State, index: u64, op: AclOp) -> Result<Response, StoreError> {
        st.apply(index, &Command::Acl { op }).result
    }

    #[test]
    fn tokens_are_found_by_secret_and_secrets_stay_unique() {
        let mut st = State::new();
        let create = |t| AclOp::TokenSet {
            token: t,
            create: true,
        };
        apply(&mut st, 1, create(token("a1", "s1"))).expect("created");
        assert_eq!(
            st.acl_token_by_secret("s1").map(|t| t.accessor_id.clone()),
            Some("a1".into())
        );
        assert!(apply(&mut st, 2, create(token("a2", "s1"))).is_err());
        assert!(apply(&mut st, 3, create(token("a1", "s9"))).is_err());
        apply(
            &mut st,
            4,
            AclOp::TokenDelete {
                accessors: vec!["a1".into()],
            },
        )
        .expect("deleted");
        assert!(st.acl_token_by_secret("s1").is_none());
        assert_eq!(st.acl_index(), 4);
    }

    #[test]
    fn bootstrap_happens_once_unless_reset_with_its_index() {
        let mut st = State::new();
        let boot = |a: &str, s: &str, r| AclOp::Bootstrap {
            token: token(a, s),
            reset_index: r,
        };
        apply(&mut st, 5, boot("a1", "s1", None)).expect("first bootstrap");
        assert_eq!(st.acl_bootstrapped(), Some(5));
        let again = apply(&mut st, 6, boot("a2", "s2", None));
        assert!(matches!(again, Err(StoreError::Denied(m)) if m.contains("reset index: 5")));
        assert!(apply(&mut st, 7, boot("a2", "s2", Some(4))).is_err());
        apply(&mut st, 8, boot("a2", "s2", Some(5))).expect("reset bootstrap");
        assert_eq!(st.acl_bootstrapped(), Some(8));
    }

    #[test]
    fn policy_names_are_unique() {
        let mut st = State::new();
        let p = |id: &str, name: &str| AclOp::PolicySet {
            policy: AclPolicy {
                id: id.into(),
                name: name.into(),
                ..AclPolicy::default()
            },
            create: true,
        };
        apply(&mut st, 1, p("p1", "web")).expect("created");
        assert!(apply(&mut st, 2, p("p2", "web")).is_err());
        apply(&mut st, 3, p("p2", "db")).expect("created");
        assert_eq!(
            st.acl_policy_by_name("db").map(|p| p.id.clone()),
            Some("p2".into())
        );
    }

    #[test]
    fn acl_tables_survive_a_snapshot() {
        let mut st = State::new();
        apply(
            &mut st,
            1,
            AclOp::Bootstrap {
                token: token("a1", "s1"),
                reset_index: None,
            },
        )
        .expect("bootstrap");
        let bytes = crate::snapshot::write(&st).expect("snapshot");
        let back = crate::snapshot::read(&bytes).expect("restored");
        assert_eq!(back.acl_bootstrapped(), Some(1));
        assert!(back.acl_token_by_secret("s1").is_some());
        assert_eq!(back.acl_index(), 1);
    }
}
