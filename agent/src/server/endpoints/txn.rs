//! Transactions with writes (`PUT /v1/txn`): all-or-nothing over KV, nodes, services and
//! checks, stamped with the leader's clock.
//!
//! Read-only transactions never get here: the HTTP edge runs them as a `Read::Txn`, a read.
//! Verbs were typed by the edge; anything unknown stays `Unrecognized` and is refused by
//! `Command::validate` in `propose`, before the log.

use cairn_catalog::Command;
use cairn_catalog::command::TxnOp;

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::Error;

/// Checks the permissions of every operation and builds the transaction.
pub(super) fn apply(ctx: &Ctx<'_>, ops: &[TxnOp]) -> Result<Built, Error> {
    // Every operation is authorized before any is proposed: a transaction is all or nothing, so one
    // refused operation refuses it all. Reads inside a write transaction are checked as writes, the
    // stricter permission.
    for op in ops {
        match op {
            TxnOp::Kv(kv) => ctx.authz.require(Access::KeyWrite(&kv.key))?,
            TxnOp::Node(n) => ctx.authz.require(Access::NodeWrite(&n.node.node))?,
            TxnOp::Service(s) => ctx
                .authz
                .require(Access::ServiceWrite(&s.service.service))?,
            TxnOp::Check(c) => ctx.authz.require(Access::NodeWrite(&c.check.node))?,
            // Refused by the command's validation before it is proposed.
            TxnOp::Unrecognized(_) => {}
        }
    }
    Ok(Built {
        cmd: Command::Txn {
            ops: ops.to_vec(),
            now_ms: ctx.now_ms,
        },
        reply: Reply::Txn,
    })
}
