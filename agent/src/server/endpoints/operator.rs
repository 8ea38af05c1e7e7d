//! Operator and coordinate writes: autopilot settings (`PUT
//! /v1/operator/autopilot/configuration`) and node coordinates (`PUT /v1/coordinate/update`).

use cairn_catalog::Command;
use cairn_catalog::model::{AutopilotConfig, CoordinateEntry};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::Error;

/// Dimensions of a network coordinate (Serf's Vivaldi uses 8).
///
/// Checked before the log: a non-finite component would be written to snapshots as `null` (JSON has
/// no NaN) and the snapshot would no longer read back, and a vector of another size cannot be
/// compared with the others' by the clients that compute distances.
pub const DIMENSIONS: usize = 8;

/// Replaces autopilot's settings, with `cas` only if their ModifyIndex is that.
///
/// Stored in the replicated state: the leader's autopilot reads it at each pass
/// (`Server::autopilot_settings`), so a change takes effect without restarting any server.
pub(super) fn autopilot(
    ctx: &Ctx<'_>,
    config: &AutopilotConfig,
    cas: Option<u64>,
) -> Result<Built, Error> {
    ctx.authz.require(Access::OperatorWrite)?;
    Ok(Built {
        cmd: Command::AutopilotSet {
            config: config.clone(),
            cas,
        },
        reply: Reply::Bool,
    })
}

/// Sets one node's coordinate.
///
/// One entry per command: Consul batches coordinate updates on the servers, here each update still
/// joins the batcher with whatever else is being proposed.
pub(super) fn coordinate(ctx: &Ctx<'_>, entry: &CoordinateEntry) -> Result<Built, Error> {
    if entry.node.is_empty() {
        return Err(Error::Invalid("Missing node name".into()));
    }
    if entry.coord.vec.len() != DIMENSIONS || !entry.coord.is_valid() {
        return Err(Error::Invalid(format!(
            "Invalid coordinate: expected {DIMENSIONS} finite dimensions"
        )));
    }
    ctx.authz.require(Access::NodeWrite(&entry.node))?;
    Ok(Built {
        cmd: Command::CoordinateUpdate {
            entries: vec![entry.clone()],
        },
        reply: Reply::Done,
    })
}
