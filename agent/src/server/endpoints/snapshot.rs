//! Operator restores (`PUT /v1/snapshot`): a small archive in one entry, a large one in pieces
//! staged in the replicated state and swapped in at once. Archives are checked before they
//! reach the log.

use cairn_catalog::{Command, snapshot as archive};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::Error;

/// Restores from a whole archive.
pub(super) fn restore(ctx: &Ctx<'_>, data: &[u8]) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    // Decoded and checksummed on the leader before it reaches the log: a damaged archive is a 400
    // now rather than a failed apply on every server.
    archive::read(data).map_err(|e| Error::Invalid(format!("Invalid snapshot: {e}")))?;
    Ok(Built {
        cmd: Command::Restore {
            data: data.to_vec(),
        },
        reply: Reply::Done,
    })
}

/// Stages one piece.
///
/// Pieces are staged in the replicated state, so a Raft snapshot taken halfway carries them; the
/// state machine refuses a piece out of order or for a restore that another superseded.
pub(super) fn piece(ctx: &Ctx<'_>, id: &str, offset: u64, data: &[u8]) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    Ok(Built {
        cmd: Command::RestoreChunk {
            id: id.to_string(),
            offset,
            data: data.to_vec(),
        },
        reply: Reply::Done,
    })
}

/// Swaps in the staged archive (the state machine checks it is whole and valid).
///
/// The length guards against a lost piece: every server checks the staged archive (length, then
/// decoding and checksum) as it applies this command.
pub(super) fn finish(ctx: &Ctx<'_>, id: &str, len: u64) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    Ok(Built {
        cmd: Command::RestoreFinish {
            id: id.to_string(),
            len,
        },
        reply: Reply::Done,
    })
}

/// Drops the staged pieces of a failed restore.
pub(super) fn abort(ctx: &Ctx<'_>, id: &str) -> Result<Built, Error> {
    ctx.authz.require(Access::AclWrite)?;
    Ok(Built {
        cmd: Command::RestoreAbort { id: id.to_string() },
        reply: Reply::Done,
    })
}
