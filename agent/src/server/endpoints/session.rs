//! Sessions (`/v1/session/create`, `/destroy`): validation, defaults and the leader's TTL
//! timers.

use std::time::Duration;

use cairn_catalog::Command;
use cairn_catalog::model::{Session, SessionBehavior};

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::write::SessionSpec;
use crate::api::{Error, WriteOp, Written};
use crate::server::leader::SERF_CHECK_ID;
use crate::server::{Server, parse_session_ttl_min};

/// Default lock delay.
///
/// Consul's default: after a session holding a lock is invalidated, the lock cannot be taken again
/// for this long, so the old holder has time to notice it lost the lock before a new holder acts.
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
/// Largest lock delay.
///
/// Consul's bound: a longer delay would keep a lock unusable for too long after its holder died.
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);

/// Validates a session and fills its defaults (lock delay 15 s, behavior `release`, the
/// `serfHealth` node check); its ID is derived from the write's identity.
pub(super) fn create(ctx: &Ctx<'_>, spec: &SessionSpec) -> Result<Built, Error> {
    let behavior = match spec.behavior.as_str() {
        "" | "release" => SessionBehavior::Release,
        "delete" => SessionBehavior::Delete,
        other => {
            return Err(Error::Invalid(format!(
                "Invalid Behavior setting '{other}'"
            )));
        }
    };
    // Checked, then kept as the client wrote it, which is what session reads show.
    let ttl = parse_session_ttl_min(&spec.ttl, ctx.server.session_ttl_min)?;
    let lock_delay = spec
        .lock_delay_ns
        .map_or(DEFAULT_LOCK_DELAY, Duration::from_nanos);
    if lock_delay > MAX_LOCK_DELAY {
        return Err(Error::Invalid(format!(
            "Invalid LockDelay: {} exceeds the maximum of 60s",
            cairn_catalog::duration::format_go_duration(lock_delay)
        )));
    }
    if spec.node.is_empty() {
        return Err(Error::Invalid("Missing node name".into()));
    }
    ctx.authz.require(Access::SessionWrite(&spec.node))?;
    // Derived from the write's identity: a create retried after a lost reply names the same
    // session, and the state machine answers the first result instead of making a second one.
    let id = ctx.derived_uuid("session");
    let session = Session {
        id: id.clone(),
        name: spec.name.clone(),
        node: spec.node.clone(),
        lock_delay: u64::try_from(lock_delay.as_nanos()).unwrap_or(u64::MAX),
        behavior,
        ttl: if ttl.is_some() {
            spec.ttl.clone()
        } else {
            String::new()
        },
        // A session is tied to its node's health by default, as in Consul: when the node fails, its
        // sessions are invalidated and their locks released or deleted, as their behavior says.
        node_checks: spec
            .node_checks
            .clone()
            .unwrap_or_else(|| vec![SERF_CHECK_ID.to_string()]),
        service_checks: spec.service_checks.clone(),
        // Set by the state machine at apply time.
        create_index: 0,
        modify_index: 0,
    };
    Ok(Built {
        cmd: Command::SessionCreate { session },
        reply: Reply::Id(id),
    })
}

/// Invalidates a session (its locks are released or deleted, with its lock delay).
pub(super) fn destroy(ctx: &Ctx<'_>, id: &str) -> Result<Built, Error> {
    let (_, found) = ctx.server.state().session(id);
    // Destroying an unknown session is not an error, and needs no permission since nothing is
    // changed.
    if let Some(s) = &found {
        ctx.authz.require(Access::SessionWrite(&s.node))?;
    }
    Ok(Built {
        cmd: Command::SessionDestroy {
            id: id.to_string(),
            now_ms: ctx.now_ms,
        },
        reply: Reply::Done,
    })
}

/// The leader's TTL timers follow what a session write did.
///
/// Runs on the leader after the commit; timers are leader-local and not replicated, and a new
/// leader rebuilds them from the state (`SessionTimers::sync_with`).
pub(super) fn after(server: &Server, op: &WriteOp, written: &Written) {
    match (op, written) {
        (WriteOp::SessionCreate(spec), Written::Id(id)) => {
            if let Ok(Some(ttl)) = crate::server::stored_session_ttl(&spec.ttl) {
                server.session_timers.reset(id, ttl);
            }
        }
        (WriteOp::SessionDestroy { id }, _) => server.session_timers.clear(id),
        _ => {}
    }
}
