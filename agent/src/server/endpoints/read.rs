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
    pub async fn query(&self, q: &crate::api::Query) -> Result<(QueryMeta, Arc<Answer>), Error> {
        self.check_dc(q.dc.as_deref())?;
        let authz = self.acl.resolve(q.token.as_ref())?;
        authorize(&authz, &q.read)?;
        self.run_query(q).await
    }

    /// Runs `read` for this agent itself (local datacenter, the agent's token).
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
        _ => Ok(()),
    }
}
