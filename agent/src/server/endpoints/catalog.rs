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
    // `node:write` for the node, plus `service:write` for a service, as Consul asks of a
    // registration.
    ctx.authz.require(Access::NodeWrite(&req.node))?;
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
    ctx.authz.require(Access::NodeWrite(&req.node))?;
    Ok(Built {
        cmd: Command::Deregister {
            req,
            now_ms: ctx.now_ms,
        },
        reply: Reply::Done,
    })
}
