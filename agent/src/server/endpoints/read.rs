//! The read endpoint: checks the datacenter and the token's permission for what the read
//! names, then runs it in its consistency mode (see `Server::read`). Reads of lists are
//! not refused but filtered (once ACLs exist, the reply drops what the token may not see).

use std::sync::Arc;

use crate::acl::{Access, Authorizer};
use crate::api::{Error, QueryMeta, Read};
use crate::server::Server;
use crate::server::query::Answer;

impl Server {
    /// Runs a query: for this datacenter, with the token's permission, in its mode.
    ///
    /// The datacenter and the token are checked on the server that receives the query, before it
    /// forwards or blocks: a refused read never waits out its blocking time.
    pub async fn query(&self, q: &crate::api::Query) -> Result<(QueryMeta, Arc<Answer>), Error> {
        self.check_dc(q.dc.as_deref())?;
        let authz = self.acl.resolve(q.token.as_ref())?;
        authorize(&authz, &q.read)?;
        self.run_query(q).await
    }

    /// Runs `read` for this agent itself (local datacenter, the agent's token).
    ///
    /// Shorthand for reads the agent makes on its own behalf, which carry no token.
    pub async fn read(
        &self,
        read: &Read,
        opts: &crate::api::ReadOptions,
    ) -> Result<(QueryMeta, Arc<Answer>), Error> {
        self.query(&crate::api::Query::new(read.clone(), opts.clone()))
            .await
    }
}

/// The permission a read needs on what it names (lists need none: they are filtered).
///
/// Reads that name one object are checked here, up front, so a refused read never blocks;
/// only what a list shows depends on the token.
fn authorize(authz: &Authorizer, read: &Read) -> Result<(), Error> {
    match read {
        Read::KvGet { key } => authz.require(Access::KeyRead(key)),
        Read::CatalogNode { node, .. }
        | Read::CatalogNodeServices { node, .. }
        | Read::HealthNode { node, .. }
        | Read::NodeView { node } => authz.require(Access::NodeRead(node)),
        Read::CatalogService { name, .. }
        | Read::HealthChecks { name, .. }
        | Read::HealthService { name, .. } => authz.require(Access::ServiceRead(name)),
        Read::SessionNode { node } => authz.require(Access::SessionRead(node)),
        Read::Snapshot | Read::Autopilot => authz.require(Access::OperatorRead),
        // Lists, prepared queries, coordinates, usage and read-only transactions: to be filtered
        // (or checked per operation) once ACLs exist.
        _ => Ok(()),
    }
}
