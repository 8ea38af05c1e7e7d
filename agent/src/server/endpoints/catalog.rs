//! Catalog registrations and deregistrations (`/v1/catalog/register`, `/deregister`, and
//! every agent's anti-entropy).
//!
//! Anti-entropy writes come through here too, so an agent's own registrations get exactly the
//! checks and defaults of `/v1/catalog/register`.

use cairn_catalog::Command;
use cairn_catalog::command::{DeregisterRequest, RegisterRequest};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::Error;
use crate::local::defs::{AGENT_NODE_META, validate_id_len, validate_meta, validate_meta_allowing};

/// Validates a registration and fills its defaults: the service ID is its name, the
/// datacenter this one, and every check names the node.
pub(super) fn register(ctx: &Ctx<'_>, mut req: RegisterRequest) -> Result<Built, Error> {
    if req.node.is_empty() {
        return Err(Error::Invalid("Must provide node".into()));
    }
    // Nothing registered here may be unreachable by URL afterwards.
    // The same 8 KiB bound as the agent endpoints (`local::defs`): an ID longer than a URI can
    // carry could never be deregistered.
    validate_id_len("Node name", &req.node)?;
    if let Some(s) = &req.service {
        validate_id_len("Service ID", &s.id)?;
        validate_id_len("Service name", &s.service)?;
    }
    for c in req.check.iter().chain(req.checks.iter()) {
        validate_id_len("Check ID", &c.check_id)?;
        validate_id_len("Check name", &c.name)?;
        validate_id_len("Check ServiceID", &c.service_id)?;
    }
    // `SkipNodeUpdate` registers a service or check on an existing node without rewriting the node,
    // so it may omit the address, as in Consul.
    if req.address.is_empty() && !req.skip_node_update {
        return Err(Error::Invalid("Must provide address".into()));
    }
    validate_meta_allowing("Node", &req.node_meta, AGENT_NODE_META)?;
    // As Consul's `vetRegisterWithACL`: `node:write` only when the node record would change
    // (a service registration on an unchanged node needs only `service:write`), then
    // `service:write` for the service (and for the name it replaces), and for each check
    // `service:write` on its service or `node:write` on its node.
    let st = ctx.server.state();
    if !ctx.authz.is_unrestricted() {
        let node_changes = !req.skip_node_update
            && st.node(&req.node).is_none_or(|n| {
                n.address != req.address
                    || (!req.tagged_addresses.is_empty()
                        && n.tagged_addresses != req.tagged_addresses)
                    || (!req.node_meta.is_empty() && n.meta != req.node_meta)
                    || (!req.id.is_empty() && n.id != req.id)
            });
        if node_changes {
            ctx.authz.require(Access::NodeWrite(&req.node))?;
        }
        if let Some(s) = &req.service {
            let id = if s.id.is_empty() { &s.service } else { &s.id };
            if let Some(old) = st.service(&req.node, id)
                && old.service != s.service
            {
                ctx.authz.require(Access::ServiceWrite(&old.service))?;
            }
        }
        for c in req.check.iter().chain(req.checks.iter()) {
            if c.service_id.is_empty() {
                ctx.authz.require(Access::NodeWrite(&req.node))?;
            } else {
                let name = req
                    .service
                    .as_ref()
                    .filter(|s| {
                        s.id == c.service_id || (s.id.is_empty() && s.service == c.service_id)
                    })
                    .map(|s| s.service.clone())
                    .or_else(|| {
                        st.service(&req.node, &c.service_id)
                            .map(|s| s.service.clone())
                    })
                    .unwrap_or_else(|| c.service_name.clone());
                ctx.authz.require(Access::ServiceWrite(&name))?;
            }
        }
    }
    if let Some(s) = &mut req.service {
        if s.service.is_empty() {
            return Err(Error::Invalid("Must provide service name".into()));
        }
        validate_meta("Service", &s.meta)?;
        // Consul's default: an instance registered without an ID is identified by its name.
        if s.id.is_empty() {
            s.id = s.service.clone();
        }
        ctx.authz.require(Access::ServiceWrite(&s.service))?;
    }
    if req.datacenter.is_empty() {
        req.datacenter = ctx.server.datacenter().to_string();
    }
    // Checks may omit their node (Consul fills it from the registration); the state machine then
    // finds every check under the node it belongs to.
    for c in req.check.iter_mut().chain(req.checks.iter_mut()) {
        if c.node.is_empty() {
            c.node = req.node.clone();
        }
    }
    Ok(Built {
        cmd: Command::Register {
            req,
            now_ms: ctx.now_ms,
        },
        reply: Reply::Done,
    })
}

/// Validates a deregistration of a node, a service instance or a check.
///
/// What is removed depends on the IDs given (a service ID, else a check ID, else the whole node),
/// decided by the state machine; removing what does not exist changes nothing and succeeds.
pub(super) fn deregister(ctx: &Ctx<'_>, req: DeregisterRequest) -> Result<Built, Error> {
    if req.node.is_empty() {
        return Err(Error::Invalid("Must provide node".into()));
    }
    // As Consul's `vetDeregisterWithACL`: a service needs `service:write` on it, a service check
    // on its service, a node check or the whole node `node:write`.
    let st = ctx.server.state();
    if !req.service_id.is_empty() {
        match st.service(&req.node, &req.service_id) {
            Some(s) => ctx.authz.require(Access::ServiceWrite(&s.service))?,
            None => ctx.authz.require(Access::NodeWrite(&req.node))?,
        }
    } else if !req.check_id.is_empty() {
        match st.check(&req.node, &req.check_id) {
            Some(c) if !c.service_name.is_empty() => {
                ctx.authz.require(Access::ServiceWrite(&c.service_name))?
            }
            _ => ctx.authz.require(Access::NodeWrite(&req.node))?,
        }
    } else {
        ctx.authz.require(Access::NodeWrite(&req.node))?;
    }
    Ok(Built {
        cmd: Command::Deregister {
            req,
            now_ms: ctx.now_ms,
        },
        reply: Reply::Done,
    })
}
