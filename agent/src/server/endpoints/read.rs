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
        // Another datacenter's read runs there, with its blocking and consistency options: its
        // index and leader contact are the remote datacenter's.
        if let Some((dc, servers)) = self.remote_servers(q.dc.as_deref())? {
            let (meta, reply) = Box::pin(self.to_remote(&dc, servers, |c, addr| {
                let q = q.clone();
                async move { c.read(&addr, &q).await }
            }))
            .await?;
            return Ok((meta, Arc::new(Answer::new(reply))));
        }
        let local = self.run_query_checked(q).await?;
        match &q.read {
            Read::QueryExecute { key, limit, .. } => self.fail_over(q, key, *limit, local).await,
            _ => Ok(local),
        }
    }

    /// Runs a local query after its authorization.
    async fn run_query_checked(
        &self,
        q: &crate::api::Query,
    ) -> Result<(QueryMeta, Arc<Answer>), Error> {
        let authz = self.acl.resolve(q.token.as_ref())?;
        authorize(&authz, &q.read)?;
        self.run_query(q).await
    }

    /// Prepared-query failover: when the local execution found no healthy instance and the
    /// query has a `Failover`, the query runs in the other datacenters in order (`NearestN`
    /// first, then `Datacenters`) until one has instances; the answer names that datacenter and
    /// how many were tried. A datacenter that cannot be reached is skipped, as in Consul.
    ///
    /// Without network coordinates, "nearest" is the datacenter list's order (by name).
    async fn fail_over(
        &self,
        q: &crate::api::Query,
        key: &str,
        limit: usize,
        local: (QueryMeta, Arc<Answer>),
    ) -> Result<(QueryMeta, Arc<Answer>), Error> {
        let empty =
            matches!(&local.1.reply, crate::api::Reply::QueryResult(r) if r.nodes.is_empty());
        if !empty {
            return Ok(local);
        }
        let Some(def) = super::super::prepared::resolve(&self.state(), key) else {
            return Ok(local);
        };
        let failover = &def.service.failover;
        let mut targets: Vec<String> = Vec::new();
        let nearest = usize::try_from(failover.nearest_n.max(0)).unwrap_or(usize::MAX);
        for dc in self
            .router
            .datacenters()
            .into_iter()
            .filter(|dc| !self.router.is_local(dc))
            .take(nearest)
        {
            targets.push(dc);
        }
        for dc in &failover.datacenters {
            if !self.router.is_local(dc) && !targets.iter().any(|t| t.eq_ignore_ascii_case(dc)) {
                targets.push(dc.clone());
            }
        }
        let mut tried = 0u32;
        for dc in targets {
            tried += 1;
            let remote = crate::api::Query {
                read: Read::QueryRun {
                    query: Box::new(def.clone()),
                    limit,
                    dc: dc.clone(),
                },
                opts: crate::api::ReadOptions {
                    min_index: 0,
                    ..q.opts.clone()
                },
                dc: Some(dc.clone()),
                token: q.token.clone(),
            };
            match Box::pin(self.query(&remote)).await {
                Ok((meta, answer)) => {
                    if let crate::api::Reply::QueryResult(r) = &answer.reply
                        && !r.nodes.is_empty()
                    {
                        let mut r = r.clone();
                        r.failovers = tried;
                        return Ok((
                            meta,
                            Arc::new(Answer::new(crate::api::Reply::QueryResult(r))),
                        ));
                    }
                }
                Err(e) => {
                    tracing::debug!(%dc, error = %e, "prepared query failover: datacenter skipped")
                }
            }
        }
        let (meta, answer) = local;
        match &answer.reply {
            crate::api::Reply::QueryResult(r) if tried > 0 => {
                let mut r = r.clone();
                r.failovers = tried;
                Ok((
                    meta,
                    Arc::new(Answer::new(crate::api::Reply::QueryResult(r))),
                ))
            }
            _ => Ok((meta, answer)),
        }
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
