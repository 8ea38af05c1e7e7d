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
        let authz = self.authorize(q.token.as_ref())?;
        // `token/self` is the read of the caller's own token: no permission needed, and an
        // unknown secret is "ACL not found".
        if let Read::AclTokenSelf = q.read {
            let secret = q.token.as_ref().map(|t| t.0.as_str()).unwrap_or("");
            let Some(t) = crate::acl::Acl::token_of(&self.state(), secret, crate::server::now_ms())
            else {
                return Err(Error::PermissionDenied(crate::acl::ACL_NOT_FOUND.into()));
            };
            let mut own = q.clone();
            own.read = Read::AclToken {
                accessor: t.accessor_id.clone(),
            };
            return self.run_query(&own).await;
        }
        authorize(&authz, &q.read)?;
        // A prepared query runs with the token stored with it, when it has one (Consul's
        // "SECURITY DEFINER"): its results are what that token may see.
        let authz = match &q.read {
            Read::QueryExecute { key, .. } if self.acl().is_enabled() => {
                match crate::server::prepared::resolve(&self.state(), key)
                    .filter(|d| !d.token.is_empty())
                {
                    Some(d) => self.authorize(Some(&crate::api::Token(d.token.clone())))?,
                    None => authz,
                }
            }
            _ => authz,
        };
        let (meta, answer) = self.run_query(q).await?;
        if authz.is_unrestricted() {
            return Ok((meta, answer));
        }
        Ok(filter(&authz, meta, answer))
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
        | Read::HealthNode { node, .. } => authz.require(Access::NodeRead(node)),
        // The agent's own anti-entropy view of its node, never asked through HTTP.
        Read::NodeView { .. } => Ok(()),
        Read::CatalogService { name, .. }
        | Read::HealthChecks { name, .. }
        | Read::HealthService { name, .. } => authz.require(Access::ServiceRead(name)),
        Read::SessionNode { node } => authz.require(Access::SessionRead(node)),
        Read::Snapshot => authz.require(Access::AclWrite),
        Read::Autopilot | Read::Usage => authz.require(Access::OperatorRead),
        Read::AclToken { .. }
        | Read::AclTokens(_)
        | Read::AclPolicy { .. }
        | Read::AclPolicies
        | Read::AclRole { .. }
        | Read::AclRoles { .. } => authz.require(Access::AclRead),
        Read::KvList { prefix } | Read::KvKeys { prefix, .. } => {
            // With `acl.enable_key_list_policy`, listing needs `key:list` on the prefix;
            // either way each key is filtered by `key:read`.
            if authz.key_list_policy() {
                authz.require(Access::KeyList(prefix))?;
            }
            Ok(())
        }
        Read::Txn { ops } => {
            for op in ops {
                match op {
                    cairn_catalog::command::TxnOp::Kv(kv) => {
                        authz.require(Access::KeyRead(&kv.key))?
                    }
                    cairn_catalog::command::TxnOp::Node(n) => {
                        authz.require(Access::NodeRead(&n.node.node))?
                    }
                    cairn_catalog::command::TxnOp::Service(s) => {
                        authz.require(Access::ServiceRead(&s.service.service))?
                    }
                    cairn_catalog::command::TxnOp::Check(c) => {
                        authz.require(Access::NodeRead(&c.check.node))?
                    }
                    cairn_catalog::command::TxnOp::Unrecognized(_) => {}
                }
            }
            Ok(())
        }
        // Lists and executions are filtered by `filter`; the agent's own views and another
        // datacenter's run of a query need nothing here.
        Read::CatalogNodes(_)
        | Read::CatalogServices(_)
        | Read::HealthState { .. }
        | Read::SessionInfo { .. }
        | Read::SessionList
        | Read::Queries { .. }
        | Read::QueryExecute { .. }
        | Read::QueryRun { .. }
        | Read::QueryExplain { .. }
        | Read::Coordinates { .. }
        | Read::AclTokenSelf => Ok(()),
    }
}

/// Drops from a reply what the token may not read, and hides secrets from tokens without
/// `acl:write`. Marks the answer filtered when something was dropped and the request carried a
/// token (`X-Consul-Results-Filtered-By-ACLs`).
fn filter(
    authz: &Authorizer,
    mut meta: QueryMeta,
    answer: Arc<Answer>,
) -> (QueryMeta, Arc<Answer>) {
    use crate::api::Reply;
    let node_ok = |n: &str| authz.allows(Access::NodeRead(n));
    let svc_ok = |s: &str| authz.allows(Access::ServiceRead(s));
    let check_ok = |c: &cairn_catalog::model::HealthCheck| {
        node_ok(&c.node) && (c.service_name.is_empty() || svc_ok(&c.service_name))
    };
    let mut dropped = false;
    let mut keep = |ok: bool| {
        if !ok {
            dropped = true;
        }
        ok
    };
    let acl_write = authz.allows(Access::AclWrite);
    let reply = match &answer.reply {
        Reply::Nodes(ns) => Reply::Nodes(
            ns.iter()
                .filter(|n| keep(node_ok(&n.node)))
                .cloned()
                .collect(),
        ),
        Reply::ServiceTags(m) => Reply::ServiceTags(
            m.iter()
                .filter(|(name, _)| keep(svc_ok(name)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Reply::ServiceNodes(v) => Reply::ServiceNodes(
            v.iter()
                .filter(|sn| keep(node_ok(&sn.node.node) && svc_ok(&sn.service.service)))
                .cloned()
                .collect(),
        ),
        Reply::NodeServices(Some(ns)) => {
            if keep(node_ok(&ns.node.node)) {
                let mut ns = ns.clone();
                ns.services.retain(|s| keep(svc_ok(&s.service)));
                Reply::NodeServices(Some(ns))
            } else {
                Reply::NodeServices(None)
            }
        }
        Reply::Checks(cs) => {
            Reply::Checks(cs.iter().filter(|c| keep(check_ok(c))).cloned().collect())
        }
        Reply::ServiceHealth(v) => Reply::ServiceHealth(
            v.iter()
                .filter(|e| keep(node_ok(&e.node.node) && svc_ok(&e.service.service)))
                .cloned()
                .collect(),
        ),
        Reply::KvList(es) => Reply::KvList(
            es.iter()
                .filter(|e| keep(authz.allows(Access::KeyRead(&e.key))))
                .cloned()
                .collect(),
        ),
        Reply::KvKeys(ks) => Reply::KvKeys(
            ks.iter()
                .filter(|k| keep(authz.allows(Access::KeyRead(k))))
                .cloned()
                .collect(),
        ),
        Reply::Sessions(ss) => Reply::Sessions(
            ss.iter()
                .filter(|s| keep(authz.allows(Access::SessionRead(&s.node))))
                .cloned()
                .collect(),
        ),
        Reply::Coordinates(cs) => Reply::Coordinates(
            cs.iter()
                .filter(|c| keep(node_ok(&c.node)))
                .cloned()
                .collect(),
        ),
        Reply::QueryResult(r) => {
            let mut r = r.clone();
            r.nodes
                .retain(|e| keep(node_ok(&e.node.node) && svc_ok(&e.service.service)));
            Reply::QueryResult(r)
        }
        Reply::Queries(qs) => Reply::Queries(
            qs.iter()
                .filter(|q| {
                    keep(if q.name.is_empty() {
                        acl_write
                    } else {
                        authz.allows(Access::QueryRead(&q.name))
                    })
                })
                .map(|q| {
                    if acl_write || q.token.is_empty() {
                        Arc::clone(q)
                    } else {
                        let mut q = cairn_catalog::model::PreparedQuery::clone(q);
                        q.token = super::query::REDACTED.into();
                        Arc::new(q)
                    }
                })
                .collect(),
        ),
        Reply::AclTokens(ts) if !acl_write => Reply::AclTokens(
            ts.iter()
                .map(|t| {
                    let mut t = cairn_catalog::acl::AclToken::clone(t);
                    t.secret_id = "<hidden>".into();
                    Arc::new(t)
                })
                .collect(),
        ),
        _ => return (meta, answer),
    };
    meta.filtered_by_acls = dropped && authz.authenticated();
    (meta, Arc::new(Answer::new(reply)))
}
