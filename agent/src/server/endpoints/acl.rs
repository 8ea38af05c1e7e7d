//! ACL writes (`/v1/acl/bootstrap`, tokens, policies, roles) and the objects the leader keeps
//! (the built-in policies, the anonymous token, the configured initial management token).
//!
//! Validation and Consul's error texts live here: links by name are resolved to IDs against
//! the leader's state, secrets are drawn from the operating system's randomness (never derived
//! from the write's identity, which other servers see), and times come from the leader's clock.

use std::sync::Arc;

use cairn_catalog::Command;
use cairn_catalog::acl::{
    AclLink, AclNodeIdentity, AclOp, AclPolicy, AclRole, AclServiceIdentity, AclTemplatedPolicy,
    AclToken,
};
use sha2::{Digest, Sha256};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::acl::builtin::{
    self, ANONYMOUS_ACCESSOR, GLOBAL_MANAGEMENT_ID, GLOBAL_MANAGEMENT_NAME, GLOBAL_READ_ONLY_ID,
    GLOBAL_READ_ONLY_NAME, RESERVED_PREFIX,
};
use crate::acl::rules::Rules;
use crate::api::acl::{
    LinkSpec, NodeIdentitySpec, PolicySpec, RoleSpec, ServiceIdentitySpec, TemplatedPolicySpec,
    TokenSpec,
};
use crate::api::{Error, Token};
use crate::server::Server;

/// The file an operator writes the reset index into to allow one more bootstrap.
pub const BOOTSTRAP_RESET_FILE: &str = "acl-bootstrap-reset";

/// A fresh random UUID: for secrets, which must not be guessable from anything other servers
/// or clients see.
fn random_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// A digest of an object's content (Consul's `Hash`), base64.
fn digest<T: serde::Serialize>(parts: &T) -> String {
    use base64::Engine;
    let bytes = serde_json::to_vec(parts).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes))
}

/// `PUT /v1/acl/bootstrap`: the one-time management token. A reset index in the data
/// directory's `acl-bootstrap-reset` allows one more; the file is removed once used.
pub(super) fn bootstrap(ctx: &Ctx<'_>, secret: Option<&Token>) -> Result<Built, Error> {
    let server = ctx.server;
    if !server.acl().is_enabled() {
        return Err(Error::Failed("ACL support disabled".into()));
    }
    let reset_index = match server.data_dir() {
        Some(dir) => match std::fs::read_to_string(dir.join(BOOTSTRAP_RESET_FILE)) {
            Ok(text) => Some(text.trim().parse::<u64>().map_err(|_| {
                Error::Failed(format!(
                    "failed to parse {BOOTSTRAP_RESET_FILE}: {:?} is not an index",
                    text.trim()
                ))
            })?),
            Err(_) => None,
        },
        None => None,
    };
    let secret = match secret {
        Some(t) if !t.0.is_empty() => {
            if !is_uuid(&t.0) {
                return Err(Error::Failed("Invalid BootstrapSecret: not a UUID".into()));
            }
            t.0.clone()
        }
        _ => random_uuid(),
    };
    let accessor = ctx.derived_uuid("acl-bootstrap");
    let mut token = AclToken {
        accessor_id: accessor.clone(),
        secret_id: secret,
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![AclLink {
            id: GLOBAL_MANAGEMENT_ID.into(),
            name: GLOBAL_MANAGEMENT_NAME.into(),
        }],
        create_time_ms: ctx.now_ms,
        ..AclToken::default()
    };
    token.hash = token_hash(&token);
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::Bootstrap { token, reset_index },
        },
        reply: Reply::AclToken(accessor),
    })
}

/// After a bootstrap that used the reset file: the file is spent.
pub(super) fn after_bootstrap(server: &Server) {
    if let Some(dir) = server.data_dir() {
        let _ = std::fs::remove_file(dir.join(BOOTSTRAP_RESET_FILE));
    }
}

fn token_hash(t: &AclToken) -> String {
    digest(&(
        &t.description,
        t.local,
        &t.policies.iter().map(|l| &l.id).collect::<Vec<_>>(),
        &t.roles.iter().map(|l| &l.id).collect::<Vec<_>>(),
        &t.service_identities,
        &t.node_identities,
        &t.templated_policies,
    ))
}

/// Policy links by ID or name, resolved to IDs against the state, without duplicates.
fn resolve_policies(server: &Server, links: &[LinkSpec]) -> Result<Vec<AclLink>, Error> {
    let st = server.state();
    let mut out: Vec<AclLink> = Vec::new();
    for l in links {
        let p = if !l.id.is_empty() {
            st.acl_policy(&l.id)
                .ok_or_else(|| Error::Failed(format!("No such ACL policy with ID {:?}", l.id)))?
        } else if !l.name.is_empty() {
            st.acl_policy_by_name(&l.name).ok_or_else(|| {
                Error::Failed(format!("No such ACL policy with name {:?}", l.name))
            })?
        } else {
            return Err(Error::Failed("Policy link with no ID or Name".into()));
        };
        if !out.iter().any(|o| o.id == p.id) {
            out.push(AclLink {
                id: p.id.clone(),
                name: p.name.clone(),
            });
        }
    }
    Ok(out)
}

fn resolve_roles(server: &Server, links: &[LinkSpec]) -> Result<Vec<AclLink>, Error> {
    let st = server.state();
    let mut out: Vec<AclLink> = Vec::new();
    for l in links {
        let r = if !l.id.is_empty() {
            st.acl_role(&l.id)
                .ok_or_else(|| Error::Failed(format!("No such ACL role with ID {:?}", l.id)))?
        } else if !l.name.is_empty() {
            st.acl_role_by_name(&l.name)
                .ok_or_else(|| Error::Failed(format!("No such ACL role with name {:?}", l.name)))?
        } else {
            return Err(Error::Failed("Role link with no ID or Name".into()));
        };
        if !out.iter().any(|o| o.id == r.id) {
            out.push(AclLink {
                id: r.id.clone(),
                name: r.name.clone(),
            });
        }
    }
    Ok(out)
}

/// Identity names: lowercase alphanumerics, `-` and `_`, not starting or ending with either.
fn valid_identity_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn service_identities(
    specs: &[ServiceIdentitySpec],
    local: bool,
) -> Result<Vec<AclServiceIdentity>, Error> {
    let mut out: Vec<AclServiceIdentity> = Vec::new();
    for s in specs {
        if s.service_name.is_empty() {
            return Err(Error::Failed(
                "Service identity is missing the service name field on this token".into(),
            ));
        }
        if !valid_identity_name(&s.service_name) {
            return Err(Error::Failed(format!(
                "Service identity {:?} has an invalid name. Only lowercase alphanumeric \
                 characters, '-' and '_' are allowed",
                s.service_name
            )));
        }
        if local && !s.datacenters.is_empty() {
            return Err(Error::Failed(format!(
                "Service identity {:?} cannot specify a list of datacenters on a local token",
                s.service_name
            )));
        }
        if let Some(dup) = out.iter_mut().find(|o| o.service_name == s.service_name) {
            dup.datacenters.extend(s.datacenters.iter().cloned());
        } else {
            out.push(AclServiceIdentity {
                service_name: s.service_name.clone(),
                datacenters: s.datacenters.clone(),
            });
        }
    }
    Ok(out)
}

fn node_identities(specs: &[NodeIdentitySpec]) -> Result<Vec<AclNodeIdentity>, Error> {
    let mut out: Vec<AclNodeIdentity> = Vec::new();
    for n in specs {
        if n.node_name.is_empty() {
            return Err(Error::Failed(
                "Node identity is missing the node name field on this token".into(),
            ));
        }
        if n.datacenter.is_empty() {
            return Err(Error::Failed(
                "Node identity is missing the datacenter field on this token".into(),
            ));
        }
        if !valid_identity_name(&n.node_name) {
            return Err(Error::Failed(format!(
                "Node identity has an invalid name. Only lowercase alphanumeric characters, \
                 '-' and '_' are allowed (got {:?})",
                n.node_name
            )));
        }
        let id = AclNodeIdentity {
            node_name: n.node_name.clone(),
            datacenter: n.datacenter.clone(),
        };
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

fn templated(specs: &[TemplatedPolicySpec]) -> Result<Vec<AclTemplatedPolicy>, Error> {
    let mut out = Vec::new();
    for t in specs {
        let Some(tpl) = builtin::template(&t.template_name) else {
            return Err(Error::Failed(format!(
                "no such ACL templated policy with name {:?}",
                t.template_name
            )));
        };
        let name = t
            .template_variables
            .as_ref()
            .map(|v| v.name.clone())
            .unwrap_or_default();
        if tpl.needs_name && !valid_identity_name(&name) {
            return Err(Error::Failed(format!(
                "validation error for templated policy {:?}: name is required and must be \
                 lowercase alphanumerics, '-' and '_'",
                t.template_name
            )));
        }
        out.push(AclTemplatedPolicy {
            template_name: t.template_name.clone(),
            name: if tpl.needs_name { name } else { String::new() },
            datacenters: t.datacenters.clone(),
        });
    }
    Ok(out)
}

/// Go-duration or nanoseconds.
fn parse_ttl(v: &serde_json::Value) -> Result<std::time::Duration, Error> {
    match v {
        serde_json::Value::String(s) => cairn_catalog::duration::parse_go_duration(s)
            .map_err(|e| Error::Invalid(format!("Token decoding failed: ExpirationTTL: {e}"))),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(ns) if ns < 0 => Err(Error::Failed(format!(
                "Token Expiration TTL '{ns}ns' should be > 0"
            ))),
            Some(ns) => Ok(std::time::Duration::from_nanos(ns.unsigned_abs())),
            None => Err(Error::Invalid(
                "Token decoding failed: ExpirationTTL is not a duration".into(),
            )),
        },
        _ => Err(Error::Invalid(
            "Token decoding failed: ExpirationTTL is not a duration".into(),
        )),
    }
}

fn parse_rfc3339_ms(s: &str) -> Result<u64, Error> {
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| Error::Invalid(format!("Token decoding failed: ExpirationTime {s:?}: {e}")))?;
    Ok(u64::try_from(t.timestamp_millis()).unwrap_or(0))
}

/// `PUT /v1/acl/token` and `PUT /v1/acl/token/:accessor`.
pub(super) fn token_set(
    ctx: &Ctx<'_>,
    spec: &TokenSpec,
    path: Option<&str>,
) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    let server = ctx.server;
    let st = server.state();
    if !spec.auth_method.is_empty() {
        return Err(Error::Failed(
            "AuthMethod field is disallowed outside of login".into(),
        ));
    }
    let existing = match path {
        Some(acc) => {
            if !spec.accessor_id.is_empty() && spec.accessor_id != acc {
                return Err(Error::Invalid(
                    "Token Accessor ID in URL and payload do not match".into(),
                ));
            }
            Some(
                st.acl_token(acc)
                    .ok_or_else(|| Error::Failed(format!("Cannot find token {acc:?}")))?,
            )
        }
        None => None,
    };
    let mut token = match &existing {
        Some(old) => {
            if !spec.secret_id.is_empty() && spec.secret_id != old.secret_id {
                return Err(Error::Failed(
                    "Changing a token's SecretID is not permitted".into(),
                ));
            }
            if spec.local != old.local {
                return Err(Error::Failed(format!(
                    "Cannot toggle local mode of {}",
                    old.accessor_id
                )));
            }
            if spec.expiration_ttl.is_some()
                || spec
                    .expiration_time
                    .as_deref()
                    .is_some_and(|t| Ok(old.expiration_ms.unwrap_or(0)) != parse_rfc3339_ms(t))
            {
                return Err(Error::Failed(
                    "Cannot change expiration time of a token".into(),
                ));
            }
            AclToken::clone(old)
        }
        None => {
            let accessor = if spec.accessor_id.is_empty() {
                ctx.derived_uuid("acl-accessor")
            } else {
                if !is_uuid(&spec.accessor_id) {
                    return Err(Error::Failed(
                        "Invalid Token: AccessorID is not a valid UUID".into(),
                    ));
                }
                if spec.accessor_id.starts_with(RESERVED_PREFIX) {
                    return Err(Error::Failed(format!(
                        "Invalid Token: UUIDs with the prefix {RESERVED_PREFIX:?} are reserved"
                    )));
                }
                if st.acl_token(&spec.accessor_id).is_some() {
                    return Err(Error::Failed(
                        "Invalid Token: AccessorID is already in use".into(),
                    ));
                }
                spec.accessor_id.clone()
            };
            let secret = if spec.secret_id.is_empty() {
                random_uuid()
            } else {
                if !is_uuid(&spec.secret_id) {
                    return Err(Error::Failed(
                        "Invalid Token: SecretID is not a valid UUID".into(),
                    ));
                }
                if spec.secret_id.starts_with(RESERVED_PREFIX) {
                    return Err(Error::Failed(format!(
                        "Invalid Token: UUIDs with the prefix {RESERVED_PREFIX:?} are reserved"
                    )));
                }
                if st.acl_token_by_secret(&spec.secret_id).is_some() {
                    return Err(Error::Failed(
                        "Invalid Token: SecretID is already in use".into(),
                    ));
                }
                spec.secret_id.clone()
            };
            let expiration_ms = match (&spec.expiration_ttl, &spec.expiration_time) {
                (Some(_), Some(_)) => {
                    return Err(Error::Failed(
                        "Token Expiration TTL and Expiration Time cannot both be set".into(),
                    ));
                }
                (Some(ttl), None) => {
                    let ttl = parse_ttl(ttl)?;
                    if ttl.is_zero() {
                        None
                    } else {
                        Some(
                            ctx.now_ms
                                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
                        )
                    }
                }
                (None, Some(t)) => Some(parse_rfc3339_ms(t)?),
                (None, None) => None,
            };
            if let Some(e) = expiration_ms
                && e < ctx.now_ms + 60_000
            {
                return Err(Error::Failed(
                    "ExpirationTime cannot be less than 1m0s in the future".into(),
                ));
            }
            AclToken {
                accessor_id: accessor,
                secret_id: secret,
                local: spec.local,
                create_time_ms: ctx.now_ms,
                expiration_ms,
                ..AclToken::default()
            }
        }
    };
    token.description = spec.description.clone();
    token.policies = resolve_policies(server, &spec.policies)?;
    token.roles = resolve_roles(server, &spec.roles)?;
    token.service_identities = service_identities(&spec.service_identities, token.local)?;
    token.node_identities = node_identities(&spec.node_identities)?;
    token.templated_policies = templated(&spec.templated_policies)?;
    token.hash = token_hash(&token);
    let accessor = token.accessor_id.clone();
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::TokenSet {
                token,
                create: existing.is_none(),
            },
        },
        reply: Reply::AclToken(accessor),
    })
}

/// `PUT /v1/acl/token/:accessor/clone`: a new token with the same links.
pub(super) fn token_clone(
    ctx: &Ctx<'_>,
    accessor: &str,
    description: &str,
) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    let st = ctx.server.state();
    let Some(old) = st.acl_token(accessor) else {
        return Err(Error::Failed("Cannot find token to clone".into()));
    };
    if old.expiration_ms.is_some_and(|e| e <= ctx.now_ms) {
        return Err(Error::Failed("Cannot find token to clone".into()));
    }
    let mut token = AclToken::clone(&old);
    token.accessor_id = ctx.derived_uuid("acl-clone");
    token.secret_id = random_uuid();
    token.create_time_ms = ctx.now_ms;
    if !description.is_empty() {
        token.description = description.to_string();
    }
    token.hash = token_hash(&token);
    let id = token.accessor_id.clone();
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::TokenSet {
                token,
                create: true,
            },
        },
        reply: Reply::AclToken(id),
    })
}

/// `DELETE /v1/acl/token/:accessor`.
pub(super) fn token_delete(ctx: &Ctx<'_>, accessor: &str) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    if !is_uuid(accessor) {
        return Err(Error::Failed(
            "Accessor ID is missing or an invalid UUID".into(),
        ));
    }
    if accessor == ANONYMOUS_ACCESSOR {
        return Err(Error::Failed(
            "Delete operation not permitted on the anonymous token".into(),
        ));
    }
    if ctx.authz.accessor() == Some(accessor) {
        return Err(Error::Failed(
            "Deletion of the request's authorization token is not permitted".into(),
        ));
    }
    if ctx.server.state().acl_token(accessor).is_none() {
        return Err(Error::NotFound("Cannot find token to delete".into()));
    }
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::TokenDelete {
                accessors: vec![accessor.to_string()],
            },
        },
        reply: Reply::Bool,
    })
}

/// Policy names: letters, digits, `-` and `_`, optionally one `/` inside.
fn valid_policy_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 128 || name.starts_with('/') {
        return false;
    }
    let ok = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    match name.split_once('/') {
        Some((a, b)) => !a.is_empty() && ok(a) && ok(b),
        None => ok(name),
    }
}

/// The object a `PUT /v1/acl/<kind>[/:id]` updates: the path's ID must name an existing one and
/// agree with the body's; a create (no path ID) must not choose its ID. Consul's texts, with
/// `kind` (`policy`, `role`) in them.
fn existing_for_update<T>(
    kind: &str,
    body_id: &str,
    path: Option<&str>,
    lookup: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Error> {
    let mut cap = kind.to_string();
    if let Some(first) = cap.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    match path {
        Some(id) => {
            if !body_id.is_empty() && body_id != id {
                return Err(Error::Invalid(format!(
                    "{cap} ID in URL and payload do not match"
                )));
            }
            lookup(id)
                .map(Some)
                .ok_or_else(|| Error::Failed(format!("Cannot find {kind} {id:?}")))
        }
        None if !body_id.is_empty() => Err(Error::Invalid(format!(
            "Cannot specify the ID when creating a new {kind}"
        ))),
        None => Ok(None),
    }
}

/// `PUT /v1/acl/policy` and `PUT /v1/acl/policy/:id`.
pub(super) fn policy_set(
    ctx: &Ctx<'_>,
    spec: &PolicySpec,
    path: Option<&str>,
) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    let st = ctx.server.state();
    let existing = existing_for_update("policy", &spec.id, path, |id| st.acl_policy(id))?;
    if spec.name.is_empty() {
        return Err(Error::Failed("Invalid Policy: no Name is set".into()));
    }
    let builtin_ro = existing
        .as_ref()
        .is_some_and(|p| p.id == GLOBAL_READ_ONLY_ID);
    if !builtin_ro && (!valid_policy_name(&spec.name) || spec.name.starts_with("builtin/")) {
        return Err(Error::Failed(
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
                .into(),
        ));
    }
    if st
        .acl_policies()
        .any(|p| p.name == spec.name && Some(&p.id) != existing.as_ref().map(|e| &e.id))
    {
        return Err(Error::Failed(format!(
            "Invalid Policy: A Policy with Name {:?} already exists",
            spec.name
        )));
    }
    if let Some(old) = &existing
        && old.id == GLOBAL_MANAGEMENT_ID
    {
        if spec.rules != old.rules {
            return Err(Error::Failed(
                "Changing the Rules for the builtin global-management policy is not permitted"
                    .into(),
            ));
        }
        if spec.datacenters != old.datacenters {
            return Err(Error::Failed(
                "Changing the Datacenters of the builtin global-management policy is not permitted"
                    .into(),
            ));
        }
    }
    Rules::parse(&spec.rules).map_err(|e| Error::Invalid(e.to_string()))?;
    let id = match &existing {
        Some(p) => p.id.clone(),
        None => ctx.derived_uuid("acl-policy"),
    };
    let mut policy = AclPolicy {
        id: id.clone(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        rules: spec.rules.clone(),
        datacenters: spec.datacenters.clone(),
        ..AclPolicy::default()
    };
    policy.hash = digest(&(
        &policy.name,
        &policy.description,
        &policy.rules,
        &policy.datacenters,
    ));
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::PolicySet {
                policy,
                create: existing.is_none(),
            },
        },
        reply: Reply::AclPolicy(id),
    })
}

/// `DELETE /v1/acl/policy/:id`.
pub(super) fn policy_delete(ctx: &Ctx<'_>, id: &str) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    if id == GLOBAL_MANAGEMENT_ID {
        return Err(Error::Failed(
            "Delete operation not permitted on the builtin global-management policy".into(),
        ));
    }
    if ctx.server.state().acl_policy(id).is_none() {
        return Err(Error::NotFound("Cannot find policy to delete".into()));
    }
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::PolicyDelete { id: id.to_string() },
        },
        reply: Reply::Bool,
    })
}

/// `PUT /v1/acl/role` and `PUT /v1/acl/role/:id`.
pub(super) fn role_set(ctx: &Ctx<'_>, spec: &RoleSpec, path: Option<&str>) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    let st = ctx.server.state();
    let existing = existing_for_update("role", &spec.id, path, |id| st.acl_role(id))?;
    if spec.name.is_empty() {
        return Err(Error::Failed("Invalid Role: no Name is set".into()));
    }
    if spec.name.len() > 256
        || !spec
            .name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(Error::Failed(
            "Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed"
                .into(),
        ));
    }
    if st
        .acl_roles()
        .any(|r| r.name == spec.name && Some(&r.id) != existing.as_ref().map(|e| &e.id))
    {
        return Err(Error::Failed(format!(
            "Invalid Role: A Role with Name {:?} already exists",
            spec.name
        )));
    }
    let id = match &existing {
        Some(r) => r.id.clone(),
        None => ctx.derived_uuid("acl-role"),
    };
    let mut role = AclRole {
        id: id.clone(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        policies: resolve_policies(ctx.server, &spec.policies)?,
        service_identities: service_identities(&spec.service_identities, false)?,
        node_identities: node_identities(&spec.node_identities)?,
        templated_policies: templated(&spec.templated_policies)?,
        ..AclRole::default()
    };
    role.hash = digest(&(
        &role.name,
        &role.description,
        role.policies.iter().map(|l| &l.id).collect::<Vec<_>>(),
        &role.service_identities,
        &role.node_identities,
        &role.templated_policies,
    ));
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::RoleSet {
                role,
                create: existing.is_none(),
            },
        },
        reply: Reply::AclRole(id),
    })
}

/// `DELETE /v1/acl/role/:id`.
pub(super) fn role_delete(ctx: &Ctx<'_>, id: &str) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    if ctx.server.state().acl_role(id).is_none() {
        return Err(Error::NotFound("Cannot find role to delete".into()));
    }
    Ok(Built {
        cmd: Command::Acl {
            op: AclOp::RoleDelete { id: id.to_string() },
        },
        reply: Reply::Bool,
    })
}

/// The commands a leader proposes so that the built-in objects exist: the two built-in
/// policies, the anonymous token, and the initial management token of the configuration.
/// Empty once they all do.
pub fn init_commands(
    st: &cairn_catalog::State,
    initial_management: Option<&str>,
    now_ms: u64,
) -> Vec<Command> {
    let mut out = Vec::new();
    let builtins = [
        (
            GLOBAL_MANAGEMENT_ID,
            GLOBAL_MANAGEMENT_NAME,
            "Builtin Policy that grants unlimited access",
            builtin::GLOBAL_MANAGEMENT_RULES,
        ),
        (
            GLOBAL_READ_ONLY_ID,
            GLOBAL_READ_ONLY_NAME,
            "Builtin Policy that grants unlimited read access",
            builtin::GLOBAL_READ_ONLY_RULES,
        ),
    ];
    for (id, name, description, rules) in builtins {
        if st.acl_policy(id).is_none() {
            // A user policy that took the name first keeps it; the built-in gets its ID as name.
            let name = if st.acl_policy_by_name(name).is_some() {
                id
            } else {
                name
            };
            let mut policy = AclPolicy {
                id: id.into(),
                name: name.into(),
                description: description.into(),
                rules: rules.trim_start().into(),
                ..AclPolicy::default()
            };
            policy.hash = digest(&(&policy.name, &policy.rules));
            out.push(Command::Acl {
                op: AclOp::PolicySet {
                    policy,
                    create: true,
                },
            });
        }
    }
    if st.acl_token(ANONYMOUS_ACCESSOR).is_none() {
        let mut token = AclToken {
            accessor_id: ANONYMOUS_ACCESSOR.into(),
            secret_id: builtin::ANONYMOUS_SECRET.into(),
            description: "Anonymous Token".into(),
            create_time_ms: now_ms,
            ..AclToken::default()
        };
        token.hash = token_hash(&token);
        out.push(Command::Acl {
            op: AclOp::TokenSet {
                token,
                create: true,
            },
        });
    }
    if let Some(secret) = initial_management.filter(|s| !s.is_empty())
        && st.acl_token_by_secret(secret).is_none()
    {
        let mut token = AclToken {
            accessor_id: random_uuid(),
            secret_id: secret.to_string(),
            description: "Initial Management Token".into(),
            policies: vec![AclLink {
                id: GLOBAL_MANAGEMENT_ID.into(),
                name: GLOBAL_MANAGEMENT_NAME.into(),
            }],
            create_time_ms: now_ms,
            ..AclToken::default()
        };
        token.hash = token_hash(&token);
        // It takes the one-time bootstrap when that is still open, as in Consul.
        let op = if st.acl_bootstrapped().is_none() {
            AclOp::Bootstrap {
                token,
                reset_index: None,
            }
        } else {
            AclOp::TokenSet {
                token,
                create: true,
            }
        };
        out.push(Command::Acl { op });
    }
    out
}

/// The token's view after a write: as stored, link names current.
pub(super) fn stored_token(server: &Server, accessor: &str) -> Result<Arc<AclToken>, Error> {
    let st = server.state();
    st.acl_token(accessor)
        .map(|t| crate::server::acl_reads::token_view(&st, &t))
        .ok_or_else(|| Error::Internal(format!("token {accessor} missing after its write")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_consul_rules() {
        assert!(valid_policy_name("web-read_1"));
        assert!(valid_policy_name("team/web"));
        assert!(!valid_policy_name("/web"));
        assert!(!valid_policy_name("a b"));
        assert!(!valid_policy_name(""));
        assert!(valid_identity_name("web-1"));
        assert!(!valid_identity_name("Web"));
        assert!(!valid_identity_name("-web"));
    }

    #[test]
    fn the_leader_creates_the_builtins_once() {
        let st = cairn_catalog::State::new();
        let cmds = init_commands(&st, Some("11111111-2222-3333-4444-555555555555"), 1);
        assert_eq!(cmds.len(), 4);
        let mut st = st;
        for (i, c) in cmds.iter().enumerate() {
            assert!(st.apply(i as u64 + 1, c).result.is_ok(), "{c:?}");
        }
        assert!(st.acl_policy(GLOBAL_MANAGEMENT_ID).is_some());
        assert!(st.acl_token(ANONYMOUS_ACCESSOR).is_some());
        assert!(
            st.acl_token_by_secret("11111111-2222-3333-4444-555555555555")
                .is_some()
        );
        assert!(st.acl_bootstrapped().is_some());
        assert!(init_commands(&st, Some("11111111-2222-3333-4444-555555555555"), 2).is_empty());
    }
}
