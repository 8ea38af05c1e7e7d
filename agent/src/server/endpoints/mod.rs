//! Server endpoints: the only code that turns a typed request into a replicated command. Each
//! write runs on the leader: it is forwarded there (typed, over the server RPC) when this server
//! does not lead, then the endpoint checks the datacenter, resolves the token, validates the
//! request and fills its defaults, stamps the leader's clock, builds the command with the
//! request's identity and proposes it. One file per API area.
//!
//! Forwarding waits up to `rpc_hold_timeout` for a leader, and retries a forward that failed in
//! transit: the write's identity makes every retry safe (it is applied once).
//!
//! Why the leader builds commands, not the agent that received the request: defaults, validation
//! against the current state, the clock and generated IDs then come from one place and one moment,
//! and an older client agent cannot put a command into the log that the servers' version would not
//! have built.

mod acl;
mod catalog;
mod kv;
mod operator;
mod query;
mod read;
mod session;
mod snapshot;
mod txn;

use std::time::Duration;

use cairn_catalog::command::RequestId;
use cairn_catalog::{Command, Response};
use sha2::{Digest, Sha256};

use super::{Server, now_ms};
use crate::acl::Authorizer;
use crate::api::{Error, Write, WriteOp, Written};

/// A command ready to propose, and how to read its result.
///
/// Kept apart from `Written` because the same command response reads differently per endpoint: a KV
/// set's `Bool` is the answer, a session create's answer is the ID the endpoint chose, whatever the
/// command returned.
struct Built {
    cmd: Command,
    reply: Reply,
}

/// How a command's response becomes the write's answer.
enum Reply {
    /// Nothing to report.
    Done,
    /// The command's boolean outcome.
    Bool,
    /// The ID the endpoint chose for what it created.
    Id(String),
    /// A transaction's results or errors.
    Txn,
    /// The token with this accessor, read back after the commit.
    AclToken(String),
    /// The policy with this ID, read back after the commit.
    AclPolicy(String),
    /// The role with this ID, read back after the commit.
    AclRole(String),
    /// A transaction refused before the log (operations its token may not do): nothing is
    /// proposed, the answer lists them.
    Refused(Vec<cairn_catalog::command::TxnError>),
}

impl Reply {
    /// A response of the wrong kind is an internal error, never a guessed answer: it means the
    /// endpoint and the state machine disagree.
    fn answer(self, r: Response, server: &Server) -> Result<Written, Error> {
        match (self, r) {
            (Reply::AclToken(accessor), _) => Ok(Written::AclToken(Box::new(
                cairn_catalog::acl::AclToken::clone(&*acl::stored_token(server, &accessor)?),
            ))),
            (Reply::AclPolicy(id), _) => server
                .state()
                .acl_policy(&id)
                .map(|p| Written::AclPolicy(Box::new(cairn_catalog::acl::AclPolicy::clone(&p))))
                .ok_or_else(|| Error::Internal(format!("policy {id} missing after its write"))),
            (Reply::AclRole(id), _) => {
                let st = server.state();
                st.acl_role(&id)
                    .map(|r| {
                        let r = crate::server::acl_reads::role_view(&st, &r);
                        Written::AclRole(Box::new(cairn_catalog::acl::AclRole::clone(&r)))
                    })
                    .ok_or_else(|| Error::Internal(format!("role {id} missing after its write")))
            }
            (Reply::Done, _) => Ok(Written::Done),
            (Reply::Bool, Response::Bool(b)) => Ok(Written::Bool(b)),
            (Reply::Id(id), _) => Ok(Written::Id(id)),
            (Reply::Txn, Response::Txn { results, errors }) => Ok(Written::Txn { results, errors }),
            (Reply::Refused(errors), _) => Ok(Written::Txn {
                results: Vec::new(),
                errors,
            }),
            (_, other) => Err(Error::Internal(format!(
                "unexpected command response {other:?}"
            ))),
        }
    }
}

/// What an endpoint knows when it builds a command: the caller's permissions, the write's
/// identity (object IDs are derived from it, so a retried create names the same object) and
/// the leader's clock.
struct Ctx<'a> {
    server: &'a Server,
    authz: Authorizer,
    id: &'a RequestId,
    /// Read once per write on the leader and put in the command, so every server applies the same
    /// time.
    now_ms: u64,
}

impl Ctx<'_> {
    /// A UUID derived from the write's identity and `purpose`: unique per write, the same for
    /// every retry of it.
    fn derived_uuid(&self, purpose: &str) -> String {
        derived_uuid(self.id, purpose)
    }
}

/// A version-4-shaped UUID from a hash of a write's identity and `purpose`.
///
/// `purpose` keeps IDs of different kinds distinct even for one write. Only the client and the
/// sequence number go in: they alone identify the write. Version and variant bits are set by
/// `from_random_bytes`, so clients that validate UUIDs accept it.
fn derived_uuid(id: &RequestId, purpose: &str) -> String {
    let mut h = Sha256::new();
    h.update(id.client.as_bytes());
    h.update(id.seq.to_be_bytes());
    h.update(purpose.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl Server {
    /// The permissions of `token` (`None`: anonymous) in this server's current state.
    pub fn authorize(&self, token: Option<&crate::api::Token>) -> Result<Authorizer, Error> {
        // Every read and write asks: without ACLs, not even the state view is taken.
        if !self.acl.is_enabled() {
            return Ok(Authorizer::allow_all());
        }
        self.acl.resolve(&self.state(), token, now_ms())
    }

    /// The ACL resolver (whether ACLs are on, and their settings).
    pub fn acl(&self) -> &crate::acl::Acl {
        &self.acl
    }

    /// Fails unless `dc` is this server's datacenter (or unset): for the calls that never cross
    /// datacenters (a write sent to a leader, status and operator calls).
    pub fn check_dc(&self, dc: Option<&str>) -> Result<(), Error> {
        match dc {
            Some(dc) if !self.router.is_local(dc) => Err(Error::NoPathToDatacenter(dc.to_string())),
            _ => Ok(()),
        }
    }

    /// The servers of `dc` when it is another datacenter (`None`: the request is for this one).
    ///
    /// Consul's errors: an unknown datacenter has no path; a known one whose servers all failed
    /// has none reachable.
    fn remote_servers(&self, dc: Option<&str>) -> Result<Option<(String, Vec<String>)>, Error> {
        let Some(dc) = dc.filter(|dc| !self.router.is_local(dc)) else {
            return Ok(None);
        };
        match self.router.servers(dc) {
            None => Err(Error::NoPathToDatacenter(dc.to_string())),
            Some(servers) if servers.is_empty() => Err(Error::NoRemoteServer(dc.to_string())),
            Some(servers) => Ok(Some((dc.to_string(), servers))),
        }
    }

    /// Sends a call for another datacenter to its servers, one after the other until one
    /// answers: only a server that cannot be reached passes the call on (an error a server
    /// answered is the answer, as for client agents).
    async fn to_remote<T, F, Fut>(&self, dc: &str, servers: Vec<String>, f: F) -> Result<T, Error>
    where
        F: Fn(crate::rpc::Client, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut last = String::new();
        for addr in servers {
            match f(self.rpc.clone(), addr.clone()).await {
                Err(Error::Unavailable(why)) => {
                    tracing::debug!(%dc, server = %addr, error = %why, "remote server unreachable; trying another");
                    last = why;
                }
                other => return other,
            }
        }
        tracing::debug!(%dc, error = %last, "no server of the datacenter answered");
        Err(Error::NoRemoteServer(dc.to_string()))
    }

    /// Whether `dc` is another datacenter this server has a route to (its DNS questions go
    /// there).
    pub fn knows_remote(&self, dc: &str) -> bool {
        !self.router.is_local(dc) && self.router.servers(dc).is_some()
    }

    /// Hands a DNS question about another datacenter to a server there, which answers it from
    /// its own catalog with its own DNS settings.
    pub async fn dns_remote(
        &self,
        dc: &str,
        req: &crate::rpc::DnsRequest,
    ) -> Result<crate::rpc::DnsReply, Error> {
        let Some((dc, servers)) = self.remote_servers(Some(dc))? else {
            return Err(Error::Internal(format!("{dc} is this server's datacenter")));
        };
        self.to_remote(&dc, servers, |c, addr| {
            let req = req.clone();
            async move { c.dns(&addr, &req).await }
        })
        .await
    }

    /// The status of `dc`'s servers: this server's own, or a server's of that datacenter.
    pub async fn status_in(&self, dc: Option<&str>) -> Result<crate::rpc::ServerStatus, Error> {
        match self.remote_servers(dc)? {
            None => Ok(self.status().await),
            Some((dc, servers)) => {
                self.to_remote(&dc, servers, |c, addr| async move {
                    c.status_in(&addr, None).await
                })
                .await
            }
        }
    }

    /// Resets a session's TTL timer in its datacenter: here (or on this datacenter's leader),
    /// or through a server of another one.
    pub async fn renew_session_in(
        &self,
        dc: Option<&str>,
        id: &str,
        ttl: std::time::Duration,
    ) -> Result<(), Error> {
        match self.remote_servers(dc)? {
            None => self.renew_session(id, ttl).await,
            Some((dc, servers)) => {
                let req = crate::rpc::RenewRequest {
                    id: id.to_string(),
                    ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                    dc: None,
                };
                self.to_remote(&dc, servers, |c, addr| {
                    let req = req.clone();
                    async move { c.renew(&addr, &req).await }
                })
                .await
            }
        }
    }

    /// Fires a user event in another datacenter, through a server there.
    pub async fn event_remote(
        &self,
        dc: &str,
        event: crate::events::UserEvent,
    ) -> Result<crate::events::UserEvent, Error> {
        let Some((dc, servers)) = self.remote_servers(Some(dc))? else {
            return Err(Error::Internal(format!("{dc} is this server's datacenter")));
        };
        let req = crate::rpc::EventRequest { dc: None, event };
        self.to_remote(&dc, servers, |c, addr| {
            let req = req.clone();
            async move { c.fire_event(&addr, &req).await }
        })
        .await
    }

    /// Runs a write: here when this server leads, else forwarded to the leader; waits up to
    /// the hold timeout for a leader and retries forwards that failed in transit. Returns the
    /// index the write was applied at and its answer. A write for another datacenter goes to a
    /// server there, with its identity, so the remote leader applies it once.
    pub async fn write(&self, mut w: Write) -> Result<(u64, Written), Error> {
        self.check_running()?;
        let remote = self.remote_servers(w.dc.as_deref())?;
        // A write from this server's own edge gets its identity here, before the first attempt; one
        // forwarded by a client agent arrives with it and keeps it.
        let _in_flight = match w.id {
            Some(_) => None,
            None => {
                let (id, ticket) = self.requests.next();
                w.id = Some(id);
                Some(ticket)
            }
        };
        if let Some((dc, servers)) = remote {
            return self
                .to_remote(&dc, servers, |c, addr| {
                    let w = w.clone();
                    async move { c.write(&addr, &w).await }
                })
                .await;
        }
        let deadline = tokio::time::Instant::now() + self.hold_timeout;
        loop {
            let attempt = match self.leader_node() {
                Some((id, _)) if id == self.node_id => self.write_here(&w).await,
                // Straight to the leader's `write-leader` route: it runs the write or refuses it,
                // never forwards it again.
                Some((_, node)) => self.rpc.write_on_leader(&node.addr, &w).await,
                None => Err(Error::NoLeader),
            };
            match attempt {
                Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "write not taken yet; retrying");
                    // Short, fixed pause: elections take a few hundred milliseconds, and the retry
                    // is safe because the write keeps its identity.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Out of time while leadership moved: to the caller that is "No cluster
                // leader", as in Consul, not an internal hop's refusal.
                Err(Error::NotLeader { .. } | Error::NotReady) => return Err(Error::NoLeader),
                other => return other,
            }
        }
    }

    /// Runs a write on this server, which must lead: the end of a forward, never forwarded
    /// further (a leader that just stepped down answers `NotLeader` and its caller retries).
    pub async fn write_here(&self, w: &Write) -> Result<(u64, Written), Error> {
        self.check_running()?;
        self.check_dc(w.dc.as_deref())?;
        if !self.is_leader() {
            return Err(Error::NotLeader {
                leader: self.leader().map(|a| a.to_string()),
            });
        }
        if !self.lease_ok() {
            // Leading without a quorum's recent word: a write could not commit (and the
            // caller retries until a leader that can takes it).
            return Err(Error::NoLeader);
        }
        // Every path that reaches here gives the write an identity first; a write without one would
        // lose exactly-once, so it is refused rather than given a fresh identity here.
        let Some(id) = &w.id else {
            return Err(Error::Invalid(
                "a write reached the leader without its request identity".into(),
            ));
        };
        let ctx = Ctx {
            server: self,
            authz: self.authorize(w.token.as_ref())?,
            id,
            now_ms: now_ms(),
        };
        // Validation and authorization happen on the leader's current state, just before the
        // proposal: a refusal costs no log entry.
        let built = build(&ctx, &w.op)?;
        if let Reply::Refused(errors) = built.reply {
            return Ok((
                self.state().last_index(),
                Written::Txn {
                    results: Vec::new(),
                    errors,
                },
            ));
        }
        let (index, response) = self
            .propose(Command::Request {
                id: id.clone(),
                cmd: Box::new(built.cmd),
            })
            .await?;
        let written = built.reply.answer(response, self)?;
        if matches!(w.op, WriteOp::AclBootstrap { .. }) {
            acl::after_bootstrap(self);
        }
        // After the commit, never before: a TTL timer must not exist for a session the log never
        // created.
        session::after(self, &w.op, &written);
        Ok((index, written))
    }
}

pub use acl::{BOOTSTRAP_RESET_FILE, init_commands as acl_init_commands};

/// Validates a write, checks its permissions and builds its command.
///
/// One arm per `WriteOp`, with no catch-all: a new write operation does not compile until it has an
/// endpoint.
fn build(ctx: &Ctx<'_>, op: &WriteOp) -> Result<Built, Error> {
    match op {
        WriteOp::Register(req) => catalog::register(ctx, req.clone()),
        WriteOp::Deregister(req) => catalog::deregister(ctx, req.clone()),
        WriteOp::KvSet {
            key,
            value,
            flags,
            mode,
        } => kv::set(ctx, key, value.clone(), *flags, mode),
        WriteOp::KvDelete { key, mode } => kv::delete(ctx, key, mode),
        WriteOp::SessionCreate(spec) => session::create(ctx, spec),
        WriteOp::SessionDestroy { id } => session::destroy(ctx, id),
        WriteOp::Txn { ops } => txn::apply(ctx, ops),
        WriteOp::CoordinateUpdate { entry } => operator::coordinate(ctx, entry),
        WriteOp::AutopilotSet { config, cas } => operator::autopilot(ctx, config, *cas),
        WriteOp::QueryCreate { query } => query::create(ctx, query),
        WriteOp::QueryUpdate { query } => query::update(ctx, query),
        WriteOp::QueryDelete { id } => query::delete(ctx, id),
        WriteOp::Restore { data } => snapshot::restore(ctx, data),
        WriteOp::RestorePiece {
            restore,
            offset,
            data,
        } => snapshot::piece(ctx, restore, *offset, data),
        WriteOp::RestoreFinish { restore, len } => snapshot::finish(ctx, restore, *len),
        WriteOp::RestoreAbort { restore } => snapshot::abort(ctx, restore),
        WriteOp::AclBootstrap { secret } => acl::bootstrap(ctx, secret.as_ref()),
        WriteOp::AclTokenSet { spec, accessor } => acl::token_set(ctx, spec, accessor.as_deref()),
        WriteOp::AclTokenClone {
            accessor,
            description,
        } => acl::token_clone(ctx, accessor, description),
        WriteOp::AclTokenDelete { accessor } => acl::token_delete(ctx, accessor),
        WriteOp::AclPolicySet { spec, id } => acl::policy_set(ctx, spec, id.as_deref()),
        WriteOp::AclPolicyDelete { id } => acl::policy_delete(ctx, id),
        WriteOp::AclRoleSet { spec, id } => acl::role_set(ctx, spec, id.as_deref()),
        WriteOp::AclRoleDelete { id } => acl::role_delete(ctx, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: &str, seq: u64) -> RequestId {
        RequestId {
            client: client.into(),
            seq,
            floor: 1,
        }
    }

    #[test]
    fn derived_ids_are_stable_per_write_and_distinct_across_writes() {
        let a = derived_uuid(&id("c", 1), "session");
        assert_eq!(a, derived_uuid(&id("c", 1), "session"));
        assert_ne!(a, derived_uuid(&id("c", 2), "session"));
        assert_ne!(a, derived_uuid(&id("d", 1), "session"));
        assert_ne!(a, derived_uuid(&id("c", 1), "query"));
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
    }
}
