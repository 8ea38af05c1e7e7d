//! Transactions with writes (`PUT /v1/txn`): all-or-nothing over KV, nodes, services and
//! checks, stamped with the leader's clock.
//!
//! Read-only transactions never get here: the HTTP edge runs them as a `Read::Txn`, a read.
//! Verbs were typed by the edge; anything unknown stays `Unrecognized` and is refused by
//! `Command::validate` in `propose`, before the log.

use cairn_catalog::Command;
use cairn_catalog::command::{KvVerb, TxnError, TxnOp};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::Error;

/// Checks the permissions of every operation and builds the transaction.
pub(super) fn apply(ctx: &Ctx<'_>, ops: &[TxnOp]) -> Result<Built, Error> {
    // Every operation is authorized before any is proposed: a transaction is all or nothing, so one
    // refused operation refuses it all, and the answer lists each refused operation (Consul's 409
    // with `Errors`), as for any failing operation. Reads need read, writes write; a recursive
    // delete needs write on everything under its prefix; a service check needs its service.
    let mut refused = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let access = match op {
            TxnOp::Kv(kv) => match kv.verb {
                KvVerb::DeleteTree => Access::KeyWritePrefix(&kv.key),
                v if v.is_read() => Access::KeyRead(&kv.key),
                _ => Access::KeyWrite(&kv.key),
            },
            TxnOp::Node(n) if n.verb.is_read() => Access::NodeRead(&n.node.node),
            TxnOp::Node(n) => Access::NodeWrite(&n.node.node),
            TxnOp::Service(s) if s.verb.is_read() => Access::ServiceRead(&s.service.service),
            TxnOp::Service(s) => Access::ServiceWrite(&s.service.service),
            TxnOp::Check(c) if !c.check.service_name.is_empty() => {
                Access::ServiceWrite(&c.check.service_name)
            }
            TxnOp::Check(c) => Access::NodeWrite(&c.check.node),
            // Refused by the command's validation before it is proposed.
            TxnOp::Unrecognized(_) => continue,
        };
        if !ctx.authz.allows(access) {
            refused.push(TxnError {
                op_index: i,
                what: ctx.authz.denial(access),
            });
        }
    }
    if !refused.is_empty() {
        return Ok(Built {
            cmd: Command::Noop,
            reply: Reply::Refused(refused),
        });
    }
    Ok(Built {
        cmd: Command::Txn {
            ops: ops.to_vec(),
            now_ms: ctx.now_ms,
        },
        reply: Reply::Txn,
    })
}
