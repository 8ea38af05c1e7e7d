//! Prepared-query writes (`POST /v1/query`, `PUT` and `DELETE /v1/query/:id`): definitions are
//! checked here, on the leader, before they reach the log.

use cairn_catalog::Command;
use cairn_catalog::model::PreparedQuery;

use super::{Built, Ctx, Reply};
use crate::acl::Access;
use crate::api::Error;
use crate::server::prepared::NAME_PREFIX_MATCH;

/// Checks a definition: a service to query (unless a template fills it), a valid template
/// and regular expression, a valid DNS TTL and a non-negative `NearestN`.
///
/// Everything that could fail later, at execute time on every server, is refused here once: a
/// regexp that does not compile, a TTL DNS could not use.
fn check(q: &PreparedQuery) -> Result<(), Error> {
    // A definition read back without `acl:write` shows its token as `<hidden>`; storing that
    // would silently replace the real token.
    if q.token == REDACTED {
        return Err(Error::Failed(format!(
            "Bad Token '{REDACTED}', it looks like a query definition with a redacted token was submitted"
        )));
    }
    match q.template.kind.as_str() {
        "" => {
            if q.service.service.is_empty() {
                return Err(Error::Invalid(
                    "Must provide a Service name to query".into(),
                ));
            }
        }
        // A template may leave the service empty: it is rendered from the name (`${name.full}` and
        // friends) when the query runs.
        NAME_PREFIX_MATCH => {
            if !q.template.regexp.is_empty() {
                regex::Regex::new(&q.template.regexp).map_err(|e| {
                    Error::Invalid(format!("Invalid template regular expression: {e}"))
                })?;
            }
        }
        other => return Err(Error::Invalid(format!("Bad Template.Type '{other}'"))),
    }
    if !q.dns.ttl.is_empty() {
        cairn_catalog::duration::parse_go_duration(&q.dns.ttl)
            .map_err(|e| Error::Invalid(format!("Bad DNS TTL '{}': {e}", q.dns.ttl)))?;
    }
    if q.service.failover.nearest_n < 0 {
        return Err(Error::Invalid("Bad NearestN, must be >= 0".into()));
    }
    Ok(())
}

/// What readers without `acl:write` see instead of a query's token.
pub const REDACTED: &str = "<hidden>";

/// `query:write` on the query's name; an unnamed query needs no query permission (it is
/// reachable only by its ID), as in Consul.
fn require_write(ctx: &Ctx<'_>, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Ok(());
    }
    ctx.authz.require(Access::QueryWrite(name))
}

/// Creates a query; its ID is derived from the write's identity.
pub(super) fn create(ctx: &Ctx<'_>, q: &PreparedQuery) -> Result<Built, Error> {
    check(q)?;
    require_write(ctx, &q.name)?;
    let mut query = q.clone();
    query.id = ctx.derived_uuid("query");
    let id = query.id.clone();
    Ok(Built {
        cmd: Command::QuerySet {
            query,
            create: true,
        },
        reply: Reply::Id(id),
    })
}

/// Replaces the definition of an existing query.
///
/// `create: false`: the state machine refuses the update when no query has that ID, rather than
/// creating one under an ID the caller chose.
pub(super) fn update(ctx: &Ctx<'_>, q: &PreparedQuery) -> Result<Built, Error> {
    check(q)?;
    require_write(ctx, &q.name)?;
    // Changing a query also needs write on the name it had.
    if let Some(old) = ctx
        .server
        .state()
        .queries()
        .1
        .iter()
        .find(|old| old.id == q.id)
    {
        require_write(ctx, &old.name)?;
    }
    Ok(Built {
        cmd: Command::QuerySet {
            query: q.clone(),
            create: false,
        },
        reply: Reply::Done,
    })
}

/// Deletes a query (nothing if it does not exist).
pub(super) fn delete(ctx: &Ctx<'_>, id: &str) -> Result<Built, Error> {
    // Authorized by the name of the query being deleted (Consul's `query:write` is per name);
    // an unknown ID is Consul's error, as for an update.
    let Some(name) = ctx
        .server
        .state()
        .queries()
        .1
        .iter()
        .find(|q| q.id == id)
        .map(|q| q.name.clone())
    else {
        return Err(Error::Invalid(format!(
            "Cannot modify non-existent prepared query: '{id}'"
        )));
    };
    require_write(ctx, &name)?;
    Ok(Built {
        cmd: Command::QueryDelete { id: id.to_string() },
        reply: Reply::Done,
    })
}
