//! Operator restores (`PUT /v1/snapshot`): a small archive in one entry, a large one in pieces
//! staged in the replicated state and swapped in at once. Archives are checked before they
//! reach the log.

use cairn_catalog::{Command, snapshot as archive};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::{Error, Write, WriteOp};
use crate::backend::Backend;

/// Pieces of an archive larger than this go in separate entries.
pub const RESTORE_PIECE: usize = 1024 * 1024;

/// Restores from a whole archive.
pub(super) fn restore(ctx: &Ctx<'_>, data: &[u8]) -> Result<Built, Error> {
    ctx.authz.require(Access::OperatorWrite)?;
    archive::read(data).map_err(|e| Error::Invalid(format!("Invalid snapshot: {e}")))?;
    Ok(Built {
        cmd: Command::Restore {
            data: data.to_vec(),
        },
        reply: Reply::Done,
    })
}

/// Stages one piece.
pub(super) fn piece(ctx: &Ctx<'_>, id: &str, offset: u64, data: &[u8]) -> Result<Built, Error> {
    ctx.authz.require(Access::OperatorWrite)?;
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
pub(super) fn finish(ctx: &Ctx<'_>, id: &str, len: u64) -> Result<Built, Error> {
    ctx.authz.require(Access::OperatorWrite)?;
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
    ctx.authz.require(Access::OperatorWrite)?;
    Ok(Built {
        cmd: Command::RestoreAbort { id: id.to_string() },
        reply: Reply::Done,
    })
}

/// Restores an operator archive through `backend`: checked first, then in one write, or piece
/// by piece followed by the swap (the pieces are dropped if any step fails). Logs progress
/// of large restores.
pub async fn restore_archive(
    backend: &Backend,
    data: &[u8],
    dc: Option<&str>,
    token: Option<crate::api::Token>,
) -> Result<(), Error> {
    archive::read(data).map_err(|e| Error::Invalid(format!("Invalid snapshot: {e}")))?;
    let write = |op| Write::new(op).in_dc(dc).with_token(token.clone());
    if data.len() <= RESTORE_PIECE {
        backend
            .write(write(WriteOp::Restore {
                data: data.to_vec(),
            }))
            .await?;
        return Ok(());
    }
    let id = uuid::Uuid::new_v4().to_string();
    let pieces = data.len().div_ceil(RESTORE_PIECE);
    tracing::info!(restore = %id, bytes = data.len(), pieces, "restoring a snapshot in pieces");
    let started = std::time::Instant::now();
    let mut last_report = started;
    let result = async {
        for (n, chunk) in data.chunks(RESTORE_PIECE).enumerate() {
            backend
                .write(write(WriteOp::RestorePiece {
                    restore: id.clone(),
                    offset: (n * RESTORE_PIECE) as u64,
                    data: chunk.to_vec(),
                }))
                .await?;
            if last_report.elapsed() >= std::time::Duration::from_secs(2) {
                last_report = std::time::Instant::now();
                tracing::info!(restore = %id, piece = n + 1, pieces, "restore progress");
            }
        }
        backend
            .write(write(WriteOp::RestoreFinish {
                restore: id.clone(),
                len: data.len() as u64,
            }))
            .await
    }
    .await;
    match result {
        Ok(_) => {
            tracing::info!(
                restore = %id,
                seconds = started.elapsed().as_secs_f64(),
                "snapshot restored"
            );
            Ok(())
        }
        Err(e) => {
            if let Err(abort) = backend
                .write(write(WriteOp::RestoreAbort {
                    restore: id.clone(),
                }))
                .await
            {
                tracing::warn!(restore = %id, error = %abort, "could not drop the staged pieces");
            }
            Err(e)
        }
    }
}
