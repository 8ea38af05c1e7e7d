//! Alias checks: mirror the health of a service instance (`AliasService`, a service **ID**)
//! and of its node, as Consul's `CheckAlias` does.
//!
//! - Without `AliasNode` the service is looked up in this agent's local state, re-evaluated on
//!   every local change (and at least once a minute).
//! - With `AliasNode` the node's checks are read from the catalog with blocking queries (stale
//!   reads allowed), re-evaluated whenever the node changes; read errors turn the check
//!   critical from the second failure on, with backoff after the third.
//!
//! The status is the worst of the node's node-level checks and the service's checks: any
//! critical ⇒ critical, else any warning ⇒ warning, else passing (`All checks passing.`);
//! a failing check is named in the output (`Aliased check "x" failing: <its output>`). An
//! instance that does not exist ⇒ critical (`Service <id> could not be found on node <node>`).
//! The alias check never counts itself (Consul would, for a node-level alias check, and so
//! stay critical forever).
//!
//! The runner reads the agent through [`AliasSource`]; [`AgentAliasSource`] implements it
//! over the running agent.
//!
//! Local aliases (the common case: a sidecar's check following its service) are pushed by
//! change notifications and cost no server round trip; remote ones rely on blocking queries,
//! so that an alias follows a remote node within one change rather than one poll interval.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_catalog::model::{HealthCheck, HealthStatus};
use tokio::sync::mpsc;

use super::CheckResult;
use crate::agent::Agent;
use crate::local::truncate_output;

/// A boxed, sendable future (the trait below is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Local re-evaluation at least this often, in case a change notification was missed.
const LOCAL_REFRESH: Duration = Duration::from_secs(60);
/// Longest wait of one blocking catalog read.
/// A wait that ends without a change just evaluates the same view again.
const REMOTE_WAIT: Duration = Duration::from_secs(60);
/// Failed reads before backing off.
/// Up to this many failures are retried after a short pause only, so that a brief outage
/// (a leader election) does not slow the alias down; longer ones back off.
const BACKOFF_AFTER: u32 = 3;
/// Longest backoff between failed reads.
/// Bounds how long an alias lags after the servers come back.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The parts of a check an alias looks at.
///
/// A copy rather than the catalog's `HealthCheck`, so that a local view and a remote one
/// (which come from different structures) evaluate through the same code.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AliasCheck {
    /// Node of the check.
    pub node: String,
    /// Check ID.
    pub check_id: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: HealthStatus,
    /// Output.
    pub output: String,
    /// Service instance (empty: node-level).
    pub service_id: String,
}

impl From<&HealthCheck> for AliasCheck {
    fn from(c: &HealthCheck) -> AliasCheck {
        AliasCheck {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            name: c.name.clone(),
            status: c.status,
            output: c.output.clone(),
            service_id: c.service_id.clone(),
        }
    }
}

/// What an alias check sees of one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AliasView {
    /// The node looked at.
    pub node: String,
    /// Its checks (node-level and of every service).
    pub checks: Vec<AliasCheck>,
    /// Whether the aliased service instance is registered on it.
    pub service_exists: bool,
}

/// Where alias checks read health from. Implemented over the agent by [`AgentAliasSource`];
/// tests use their own.
///
/// A trait so that the runner's logic (what to re-read and when) is tested without an
/// agent, servers or clocks beyond tokio's.
pub trait AliasSource: Send + Sync {
    /// This agent's node name.
    fn node_name(&self) -> String;

    /// This agent's local state: a version that changes with every local change, and the view
    /// of this node for `service_id`.
    fn local(&self, service_id: &str) -> (u64, AliasView);

    /// Resolves once the local state's version differs from `version`.
    fn local_changed(&self, version: u64) -> BoxFuture<'_, ()>;

    /// A blocking catalog read of `node` (stale allowed): returns once its index passes
    /// `index` or after `wait`, with the index and the view for `service_id`.
    fn remote(
        &self,
        node: &str,
        service_id: &str,
        index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(u64, AliasView), String>>;
}

/// The alias status and output for a view (Consul's `processChecks`).
pub fn evaluate(
    self_id: &str,
    own_node: &str,
    node_filter: &str,
    service_id: &str,
    view: &AliasView,
) -> (HealthStatus, String) {
    // Sorted by ID so that the check named in the output does not depend on the order a
    // map happened to hold them in.
    let mut checks: Vec<&AliasCheck> = view.checks.iter().collect();
    checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    let mut health = HealthStatus::Passing;
    let mut msg = "No checks found.".to_string();
    let mut found = false;
    for c in checks {
        // Node names compare case-insensitively, as in Consul's catalog.
        if !node_filter.is_empty() && !c.node.eq_ignore_ascii_case(node_filter) {
            continue;
        }
        // The alias check itself: counting it would feed its own status back (critical
        // forever once critical). A check with the same ID on another node is another check.
        if c.check_id == self_id && c.node.eq_ignore_ascii_case(own_node) {
            continue;
        }
        let service_match = c.service_id == service_id;
        // Node-level checks (empty service ID) count for every service; other services'
        // checks do not.
        if !c.service_id.is_empty() && !service_match {
            continue;
        }
        found |= service_match;
        // Consul's order: the last failing check gives the output, a critical one ends it.
        match c.status {
            HealthStatus::Critical | HealthStatus::Warning => {
                health = c.status;
                msg = format!("Aliased check {:?} failing: {}", c.name, c.output);
                if c.status == HealthStatus::Critical {
                    break;
                }
            }
            HealthStatus::Passing => {
                if health == HealthStatus::Passing {
                    msg = "All checks passing.".into();
                }
            }
        }
    }
    // No check of the instance was seen and it is not registered: the instance is gone.
    // An instance that exists without checks is passing, as in Consul.
    if !found && !view.service_exists {
        health = HealthStatus::Critical;
        msg = if service_id.is_empty() {
            format!("Node {} has no checks to alias", view.node)
        } else {
            format!(
                "Service {service_id} could not be found on node {}",
                view.node
            )
        };
    }
    (health, msg)
}

/// Runs an alias check until aborted.
///
/// Without `node` the alias follows this agent's local state; with one, the catalog's view
/// of that node. Every evaluation is sent, changed or not: recording an unchanged result
/// leaves the local state (and its version) as it was.
pub(crate) async fn run(
    id: String,
    generation: u64,
    node: String,
    service: String,
    source: Arc<dyn AliasSource>,
    tx: mpsc::Sender<CheckResult>,
    max_output: usize,
) {
    let own = source.node_name();
    let send = |(status, output): (HealthStatus, String)| {
        let r = CheckResult {
            check_id: id.clone(),
            status,
            output: truncate_output(&output, max_output),
            generation,
        };
        let tx = tx.clone();
        async move { tx.send(r).await.is_ok() }
    };
    if node.is_empty() {
        loop {
            let (version, view) = source.local(&service);
            if !send(evaluate(&id, &own, "", &service, &view)).await {
                return;
            }
            tokio::select! {
                () = source.local_changed(version) => {}
                // A missed notification would otherwise leave the alias stale until the next
                // unrelated change.
                () = tokio::time::sleep(LOCAL_REFRESH) => {}
            }
        }
    }
    let mut index = 0u64;
    let mut attempt = 0u32;
    loop {
        if attempt > BACKOFF_AFTER {
            // 2 s, 4 s, 8 s, ... up to BACKOFF_MAX; the shift is capped so it cannot overflow.
            let shift = (attempt - BACKOFF_AFTER).min(16);
            let wait = Duration::from_secs(1u64 << shift).min(BACKOFF_MAX);
            tokio::time::sleep(wait).await;
        }
        match source.remote(&node, &service, index, REMOTE_WAIT).await {
            Err(e) => {
                attempt += 1;
                // One failed read is not reported (Consul's rule): a single blip during a
                // leader change must not flip the service critical.
                if attempt > 1 {
                    let out = format!("Failure checking aliased node or service: {e}");
                    if !send((HealthStatus::Critical, out)).await {
                        return;
                    }
                }
                // Never spin on an immediate error.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok((idx, view)) => {
                attempt = 0;
                // Index 0 would make the next read return at once (no blocking), a busy loop
                // against a view that reports no index.
                index = idx.max(1);
                if !send(evaluate(&id, &own, &node, &service, &view)).await {
                    return;
                }
            }
        }
    }
}

/// [`AliasSource`] over the running agent: local state and change notifications for local
/// aliases, blocking `NodeView` reads through the agent's backend for remote ones. Holds the
/// agent weakly (the agent owns the runners).
// Constructed by `Agent::new` once it installs the source (`Runners::set_alias_source`).
// The weak reference breaks the cycle agent → runners → alias task → source → agent,
// which would otherwise keep a stopped agent alive.
pub struct AgentAliasSource {
    agent: Weak<Agent>,
    node: String,
}

impl AgentAliasSource {
    /// A source reading `agent`.
    pub fn new(agent: &Arc<Agent>) -> AgentAliasSource {
        AgentAliasSource {
            agent: Arc::downgrade(agent),
            node: agent.node.name.clone(),
        }
    }
}

impl AliasSource for AgentAliasSource {
    fn node_name(&self) -> String {
        self.node.clone()
    }

    fn local(&self, service_id: &str) -> (u64, AliasView) {
        let Some(agent) = self.agent.upgrade() else {
            // The agent is stopping; its runners are about to be aborted.
            return (0, AliasView::default());
        };
        let local = agent.local.lock().unwrap_or_else(|p| p.into_inner());
        let view = AliasView {
            node: local.node.name.clone(),
            checks: local
                .checks
                .values()
                .map(|c| AliasCheck::from(&c.check))
                .collect(),
            service_exists: local.services.contains_key(service_id),
        };
        (local.version, view)
    }

    fn local_changed(&self, version: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(agent) = self.agent.upgrade() else {
                // The agent is gone: there will be no change, and the runner is aborted soon.
                return std::future::pending().await;
            };
            loop {
                // Registered before the version is read, so no change slips between the two.
                let notified = agent.local_changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let now = agent
                    .local
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .version;
                if now != version {
                    return;
                }
                notified.await;
            }
        })
    }

    fn remote(
        &self,
        node: &str,
        service_id: &str,
        index: u64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(u64, AliasView), String>> {
        let (node, service_id) = (node.to_string(), service_id.to_string());
        Box::pin(async move {
            let agent = self.agent.upgrade().ok_or("the agent is stopping")?;
            let opts = crate::api::ReadOptions {
                min_index: index,
                wait,
                consistency: crate::api::Consistency::Stale,
                // A stale read spreads the load over every server; a server more than 15 s out of
                // touch with the leader forwards the read instead of answering from its copy.
                max_stale: Some(Duration::from_secs(15)),
                filter: None,
            };
            let found = agent
                .backend
                .node_view(&node, &opts)
                .await
                .map_err(|e| e.to_string())?;
            let v = found.value;
            Ok((
                found.meta.index,
                AliasView {
                    node,
                    checks: v.checks.iter().map(|c| AliasCheck::from(&**c)).collect(),
                    service_exists: v.services.iter().any(|s| s.id == service_id),
                },
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;
    use std::sync::Mutex;
    use tokio::sync::Notify;

    /// A check whose name and output are derived from its ID, so outputs are predictable.
    fn chk(node: &str, id: &str, svc: &str, status: HealthStatus) -> AliasCheck {
        AliasCheck {
            node: node.into(),
            check_id: id.into(),
            name: format!("{id} name"),
            status,
            output: format!("{id} out"),
            service_id: svc.into(),
        }
    }

    /// A view of node `n1`.
    fn view(checks: Vec<AliasCheck>, exists: bool) -> AliasView {
        AliasView {
            node: "n1".into(),
            checks,
            service_exists: exists,
        }
    }

    /// The aggregation rules of Consul's `processChecks`, and the alias ignoring itself.
    #[test]
    fn worst_of_node_and_service_checks() {
        let ev = |checks, exists| evaluate("alias", "n1", "", "web1", &view(checks, exists));
        assert_eq!(
            ev(
                vec![
                    chk("n1", "a", "web1", Passing),
                    chk("n1", "serf", "", Passing)
                ],
                true
            ),
            (Passing, "All checks passing.".into())
        );
        assert_eq!(
            ev(
                vec![
                    chk("n1", "a", "web1", Warning),
                    chk("n1", "b", "web1", Passing),
                    chk("n1", "other", "db", Critical),
                ],
                true
            ),
            (Warning, "Aliased check \"a name\" failing: a out".into()),
            "other services do not count"
        );
        assert_eq!(
            ev(
                vec![
                    chk("n1", "a", "web1", Warning),
                    chk("n1", "maint", "", Critical)
                ],
                true
            ),
            (
                Critical,
                "Aliased check \"maint name\" failing: maint out".into()
            ),
            "node checks count"
        );
        assert_eq!(
            ev(vec![chk("n1", "alias", "", Critical)], true),
            (Passing, "No checks found.".into()),
            "a service without checks is healthy; the alias ignores itself"
        );
        assert_eq!(
            ev(vec![chk("n1", "serf", "", Passing)], false),
            (
                Critical,
                "Service web1 could not be found on node n1".into()
            )
        );
    }

    /// A remote alias only counts checks of the named node, matched case-insensitively.
    #[test]
    fn remote_views_filter_by_node() {
        let v = view(
            vec![
                chk("n1", "a", "web1", Passing),
                chk("n2", "b", "web1", Critical),
            ],
            true,
        );
        assert_eq!(evaluate("alias", "me", "N1", "web1", &v).0, Passing);
        // Same ID as the alias on another node is a different check.
        assert_eq!(evaluate("b", "me", "n2", "web1", &v).0, Critical);
    }

    /// A local state whose checks the test edits.
    struct Fake {
        state: Mutex<(u64, Vec<AliasCheck>)>,
        changed: Notify,
    }

    impl Fake {
        fn set(&self, checks: Vec<AliasCheck>) {
            let mut s = self.state.lock().expect("lock");
            s.0 += 1;
            s.1 = checks;
            drop(s);
            self.changed.notify_waiters();
        }
    }

    impl AliasSource for Fake {
        fn node_name(&self) -> String {
            "n1".into()
        }

        fn local(&self, service_id: &str) -> (u64, AliasView) {
            let s = self.state.lock().expect("lock");
            let exists = s.1.iter().any(|c| c.service_id == service_id);
            (s.0, view(s.1.clone(), exists))
        }

        fn local_changed(&self, version: u64) -> BoxFuture<'_, ()> {
            Box::pin(async move {
                loop {
                    let n = self.changed.notified();
                    tokio::pin!(n);
                    n.as_mut().enable();
                    if self.state.lock().expect("lock").0 != version {
                        return;
                    }
                    n.await;
                }
            })
        }

        fn remote(
            &self,
            _node: &str,
            _service_id: &str,
            _index: u64,
            _wait: Duration,
        ) -> BoxFuture<'_, Result<(u64, AliasView), String>> {
            Box::pin(async { Err("no servers".to_string()) })
        }
    }

    /// A local alias re-evaluates on every change notification, down to its service
    /// disappearing.
    #[tokio::test]
    async fn local_alias_follows_changes() {
        let fake = Arc::new(Fake {
            state: Mutex::new((1, vec![chk("n1", "ttl", "web1", Critical)])),
            changed: Notify::new(),
        });
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(run(
            "alias".into(),
            7,
            String::new(),
            "web1".into(),
            Arc::clone(&fake) as Arc<dyn AliasSource>,
            tx,
            4096,
        ));
        let r = rx.recv().await.expect("first");
        assert_eq!((r.status, r.generation), (Critical, 7));
        fake.set(vec![chk("n1", "ttl", "web1", Passing)]);
        let r = rx.recv().await.expect("second");
        assert_eq!(
            (r.status, r.output.as_str()),
            (Passing, "All checks passing.")
        );
        fake.set(vec![]);
        let r = rx.recv().await.expect("third");
        assert_eq!(r.status, Critical, "service gone");
        task.abort();
    }

    /// The first failed read is silent; the second is reported critical.
    #[tokio::test(start_paused = true)]
    async fn remote_errors_turn_critical_from_the_second() {
        let fake = Arc::new(Fake {
            state: Mutex::new((1, vec![])),
            changed: Notify::new(),
        });
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(run(
            "alias".into(),
            1,
            "n2".into(),
            "web1".into(),
            fake as Arc<dyn AliasSource>,
            tx,
            4096,
        ));
        let r = rx.recv().await.expect("error result");
        assert_eq!(
            (r.status, r.output.as_str()),
            (
                Critical,
                "Failure checking aliased node or service: no servers"
            )
        );
        task.abort();
    }
}
