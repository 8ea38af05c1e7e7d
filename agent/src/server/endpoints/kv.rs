//! KV writes (`PUT` and `DELETE /v1/kv/:key`): plain, check-and-set, lock and unlock writes,
//! single, check-and-set and recursive deletes.
//!
//! Every KV write answers a boolean, as Consul's `PUT` and `DELETE` do: `false` when a condition
//! (CAS index, lock holder) did not hold. The endpoint only translates the mode; the state machine
//! decides the outcome at apply time, on the state as of that log index.

use cairn_catalog::Command;
use cairn_catalog::command::{KvOp, KvRequest};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::Error;
use crate::api::write::{KvDeleteMode, KvSetMode};

/// A key write.
///
/// The value travels as given (`None`: no body), never interpreted: KV values are bytes.
pub(super) fn set(
    ctx: &Ctx<'_>,
    key: &str,
    value: Option<Vec<u8>>,
    flags: u64,
    mode: &KvSetMode,
) -> Result<Built, Error> {
    if key.is_empty() {
        return Err(Error::Invalid("Missing key name".into()));
    }
    ctx.authz.require(Access::KeyWrite(key))?;
    // The session's existence and its hold on the lock are checked when the command applies, not
    // here: between this check and the apply another write could change them.
    let (op, index, session) = match mode {
        KvSetMode::Set => (KvOp::Set, 0, String::new()),
        KvSetMode::Cas(i) => (KvOp::Cas, *i, String::new()),
        KvSetMode::Acquire(s) => (KvOp::Lock, 0, s.clone()),
        KvSetMode::Release(s) => (KvOp::Unlock, 0, s.clone()),
    };
    Ok(Built {
        cmd: Command::Kv {
            op,
            req: KvRequest {
                key: key.to_string(),
                value,
                flags,
                index,
                session,
            },
            now_ms: ctx.now_ms,
        },
        reply: Reply::Bool,
    })
}

/// A key or prefix delete.
pub(super) fn delete(ctx: &Ctx<'_>, key: &str, mode: &KvDeleteMode) -> Result<Built, Error> {
    let (op, index) = match mode {
        KvDeleteMode::Key => (KvOp::Delete, 0),
        KvDeleteMode::Cas(i) => (KvOp::DeleteCas, *i),
        KvDeleteMode::Tree => (KvOp::DeleteTree, 0),
    };
    // An empty key is allowed only for a recursive delete, where it means the whole KV store, as
    // `DELETE /v1/kv/?recurse` does in Consul.
    if key.is_empty() && op != KvOp::DeleteTree {
        return Err(Error::Invalid("Missing key name".into()));
    }
    ctx.authz.require(if op == KvOp::DeleteTree {
        // A recursive delete needs write on every key under the prefix, not just the prefix itself.
        Access::KeyWritePrefix(key)
    } else {
        Access::KeyWrite(key)
    })?;
    Ok(Built {
        cmd: Command::Kv {
            op,
            req: KvRequest {
                key: key.to_string(),
                index,
                ..KvRequest::default()
            },
            now_ms: ctx.now_ms,
        },
        reply: Reply::Bool,
    })
}
