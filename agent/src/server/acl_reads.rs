//! ACL reads on a state view: tokens, policies and roles, with the names of their links
//! refreshed from the linked objects (a renamed policy shows its new name on every token), and
//! links to deleted objects left out, as Consul shows them.

use std::sync::Arc;

use cairn_catalog::State;
use cairn_catalog::WatchKey;
use cairn_catalog::acl::{AclLink, AclRole, AclToken};

use crate::api::{Error, Read, Reply};

/// Consul's texts for reads of missing objects (403 for tokens, 404 for policies and roles).
const TOKEN_MISSING: &str = "token does not exist: ACL not found";
const POLICY_MISSING: &str = "Requested policy does not exist: ACL not found";
const ROLE_MISSING: &str = "Requested role does not exist: ACL not found";

/// Runs an ACL read.
pub fn execute(read: &Read, st: &State) -> Result<(u64, Reply), Error> {
    let idx = st.index_of(&WatchKey::Acl);
    match read {
        Read::AclToken { accessor } => {
            let t = st
                .acl_token(accessor)
                .ok_or_else(|| Error::PermissionDenied(TOKEN_MISSING.into()))?;
            Ok((idx, Reply::AclTokens(vec![token_view(st, &t)])))
        }
        // Rewritten by the read endpoint into `AclToken` of the caller's accessor.
        Read::AclTokenSelf => Err(Error::Internal("token/self reached the state".into())),
        Read::AclTokens(f) => {
            let list = st
                .acl_tokens()
                .filter(|t| {
                    f.policy
                        .as_ref()
                        .is_none_or(|p| t.policies.iter().any(|l| &l.id == p))
                        && f.role
                            .as_ref()
                            .is_none_or(|r| t.roles.iter().any(|l| &l.id == r))
                        && f.service_name.as_ref().is_none_or(|s| {
                            t.service_identities.iter().any(|i| &i.service_name == s)
                        })
                        && f.auth_method.as_ref().is_none_or(|m| &t.auth_method == m)
                })
                .map(|t| token_view(st, t))
                .collect();
            Ok((idx, Reply::AclTokens(list)))
        }
        Read::AclPolicy { id, name } => {
            let p = match (id, name) {
                (Some(id), _) => st.acl_policy(id),
                (None, Some(name)) => st.acl_policy_by_name(name),
                (None, None) => None,
            }
            .ok_or_else(|| Error::NotFound(POLICY_MISSING.into()))?;
            Ok((idx, Reply::AclPolicies(vec![p])))
        }
        Read::AclPolicies => Ok((
            idx,
            Reply::AclPolicies(st.acl_policies().cloned().collect()),
        )),
        Read::AclRole { id, name } => {
            let r = match (id, name) {
                (Some(id), _) => st.acl_role(id),
                (None, Some(name)) => st.acl_role_by_name(name),
                (None, None) => None,
            }
            .ok_or_else(|| Error::NotFound(ROLE_MISSING.into()))?;
            Ok((idx, Reply::AclRoles(vec![role_view(st, &r)])))
        }
        Read::AclRoles { policy } => {
            let list = st
                .acl_roles()
                .filter(|r| {
                    policy
                        .as_ref()
                        .is_none_or(|p| r.policies.iter().any(|l| &l.id == p))
                })
                .map(|r| role_view(st, r))
                .collect();
            Ok((idx, Reply::AclRoles(list)))
        }
        other => Err(Error::Internal(format!(
            "not an ACL read: {:?}",
            std::mem::discriminant(other)
        ))),
    }
}

/// Policy links with current names; links to deleted policies dropped.
fn policy_links(st: &State, links: &[AclLink]) -> Vec<AclLink> {
    links
        .iter()
        .filter_map(|l| {
            st.acl_policy(&l.id).map(|p| AclLink {
                id: p.id.clone(),
                name: p.name.clone(),
            })
        })
        .collect()
}

/// A token as shown: link names refreshed.
pub fn token_view(st: &State, t: &Arc<AclToken>) -> Arc<AclToken> {
    let policies = policy_links(st, &t.policies);
    let roles: Vec<AclLink> = t
        .roles
        .iter()
        .filter_map(|l| {
            st.acl_role(&l.id).map(|r| AclLink {
                id: r.id.clone(),
                name: r.name.clone(),
            })
        })
        .collect();
    if policies == t.policies && roles == t.roles {
        return Arc::clone(t);
    }
    let mut out = AclToken::clone(t);
    out.policies = policies;
    out.roles = roles;
    Arc::new(out)
}

/// A role as shown: policy link names refreshed.
pub fn role_view(st: &State, r: &Arc<AclRole>) -> Arc<AclRole> {
    let policies = policy_links(st, &r.policies);
    if policies == r.policies {
        return Arc::clone(r);
    }
    let mut out = AclRole::clone(r);
    out.policies = policies;
    Arc::new(out)
}
